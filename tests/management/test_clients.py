"""The API through real third-party clients of RabbitMQ's HTTP API from PyPI: amqpstorm's
``ManagementApi`` and pyrabbit2's ``Client``, used as their documentation shows."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest
from amqpstorm.management import ApiError, ManagementApi
from conftest import BrokerHandle
from pyrabbit2.api import Client
from pyrabbit2.http import HTTPError


@pytest.fixture
def storm(managed_broker: BrokerHandle) -> Iterator[ManagementApi]:
    with ManagementApi(f"http://127.0.0.1:{managed_broker.server.management_port}", "guest", "guest") as client:
        yield client


@pytest.fixture
def pyrabbit(managed_broker: BrokerHandle) -> Client:
    return Client(f"127.0.0.1:{managed_broker.server.management_port}", "guest", "guest")


def test_amqpstorm_queues_exchanges_messages(storm: ManagementApi, unique: str) -> None:
    assert storm.overview()["rabbitmq_version"] == "3.10.8"
    assert storm.whoami() == {"name": "guest", "tags": ["administrator"]}
    assert storm.aliveness_test() == {"status": "ok"}
    assert storm.healthchecks.get() == {"status": "ok"}
    storm.queue.declare(unique, durable=True, arguments={"x-max-length": 10})
    storm.exchange.declare(unique, exchange_type="topic")
    storm.queue.bind(unique, unique, "a.*")
    assert [b["routing_key"] for b in storm.queue.bindings(unique)] == [unique, "a.*"]
    assert storm.basic.publish("hello", "a.b", exchange=unique) == {"routed": True}
    assert storm.basic.publish("nowhere", "b.a", exchange=unique) == {"routed": False}
    queue = storm.queue.get(unique)
    assert (queue["messages"], queue["durable"], queue["arguments"]) == (1, True, {"x-max-length": 10})
    assert unique in [q["name"] for q in storm.queue.list(name=unique)]
    [message] = storm.basic.get(unique, requeue=True)
    assert message.body == "hello"
    [message] = storm.basic.get(unique, to_dict=True)
    assert message["payload"] == "hello" and message["redelivered"] is True
    assert storm.basic.get(unique) == []
    storm.queue.unbind(unique, unique, "a.*")
    assert [b["routing_key"] for b in storm.queue.bindings(unique)] == [unique]
    storm.queue.purge(unique)
    with pytest.raises(ApiError) as refused:
        storm.queue.declare(unique, durable=False)
    assert refused.value.error_code == 400
    storm.queue.delete(unique)
    storm.exchange.delete(unique)
    with pytest.raises(ApiError):
        storm.queue.get(unique)


def test_amqpstorm_users_vhosts_connections(storm: ManagementApi, managed_broker: BrokerHandle, unique: str) -> None:
    storm.virtual_host.create(unique)
    assert unique in [v["name"] for v in storm.virtual_host.list()]
    storm.user.create(unique, "pw", tags="monitoring")
    storm.user.set_permission(unique, unique, ".*", ".*", ".*")
    assert storm.user.get_permission(unique, unique)["configure"] == ".*"
    assert [p["vhost"] for p in storm.user.get_permissions(unique)] == [unique]
    with ManagementApi(f"http://127.0.0.1:{managed_broker.server.management_port}", unique, "pw") as monitor:
        assert monitor.whoami()["tags"] == ["monitoring"]
    params = managed_broker.params(vhost=unique, client_properties={"connection_name": unique})
    connection = pika.BlockingConnection(params)
    connection.channel()
    [mine] = [c for c in storm.connection.list() if c["vhost"] == unique]
    assert storm.connection.get(mine["name"])["vhost"] == unique
    assert [c["name"] for c in storm.channel.list() if c["vhost"] == unique] == [f"{mine['name']} (1)"]
    storm.connection.close(mine["name"], reason="done here")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        connection.process_data_events(2)
    assert closed.value.reply_text == "CONNECTION_FORCED - done here"
    storm.user.delete_permission(unique, unique)
    storm.user.delete([unique])
    storm.virtual_host.delete(unique)
    assert unique not in [v["name"] for v in storm.virtual_host.list()]


def test_pyrabbit2(pyrabbit: Client, managed_broker: BrokerHandle, unique: str) -> None:
    assert pyrabbit.is_alive()
    assert pyrabbit.get_whoami()["name"] == "guest"
    assert pyrabbit.get_overview()["management_version"] == "3.10.8"
    assert [n["name"] for n in pyrabbit.get_nodes()] == [managed_broker.broker.node_name]
    pyrabbit.create_vhost(unique)
    assert unique in pyrabbit.get_vhost_names()
    pyrabbit.create_exchange(unique, "ex", "direct", durable=True)
    pyrabbit.create_queue(unique, "q", durable=True, arguments={"x-message-ttl": 60000})
    pyrabbit.create_binding(unique, "ex", "q", "key")
    assert [b["routing_key"] for b in pyrabbit.get_queue_bindings(unique, "q")] == ["q", "key"]
    assert pyrabbit.publish(unique, "ex", "key", "payload") is True
    assert pyrabbit.get_queue_depth(unique, "q") == 1
    assert [q["name"] for q in pyrabbit.get_queues(unique)] == ["q"]
    assert [q["name"] for q in pyrabbit.get_queues(unique, pattern="^q$", regex=True)] == ["q"]
    [message] = pyrabbit.get_messages(unique, "q", requeue=False)
    assert message["payload"] == "payload"
    pyrabbit.delete_binding(unique, "ex", "q", "key")
    assert [b["routing_key"] for b in pyrabbit.get_queue_bindings(unique, "q")] == ["q"]
    pyrabbit.create_user(unique, "pw", tags="management")
    pyrabbit.set_vhost_permissions(unique, unique, ".*", ".*", ".*")
    assert pyrabbit.get_vhost_permissions(unique)[-1]["user"] in ("guest", unique)
    pyrabbit.create_policy(unique, "ttl", pattern="^q$", definition={"max-length": 5}, priority=0, **{"apply-to": "queues"})
    assert pyrabbit.get_policy(unique, "ttl")["definition"] == {"max-length": 5}
    pyrabbit.delete_policy(unique, "ttl")
    definitions = pyrabbit.get_definitions()
    assert {"name": "q", "vhost": unique} in [{"name": q["name"], "vhost": q["vhost"]} for q in definitions["queues"]]
    pyrabbit.purge_queue(unique, "q")
    pyrabbit.delete_queue(unique, "q")
    pyrabbit.delete_exchange(unique, "ex")
    with pytest.raises(HTTPError) as missing:
        pyrabbit.get_queue(unique, "q")
    assert missing.value.status == 404
    pyrabbit.delete_user(unique)
    pyrabbit.delete_vhost(unique)
