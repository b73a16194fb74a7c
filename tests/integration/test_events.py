"""The event bus through the wire: metadata changes made by clients and by the admin API emit
RabbitMQ's event names with their payloads, once each, in order; side effects of a change
(closing a deleted vhost's connections) are subscribers."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest
from conftest import BrokerHandle, start_broker
from helpers import wait_until

from amqp_server.core.events import Event


@pytest.fixture
def recorded() -> Iterator[tuple[BrokerHandle, list[Event]]]:
    handle = start_broker()
    events: list[Event] = []
    handle.call(lambda: handle.broker.events.subscribe(events.append))
    yield handle, events
    handle.stop()


def _names(events: list[Event], prefix: str = "") -> list[str]:
    return [e.name for e in events if e.name.startswith(prefix)]


def test_client_declares_emit_rabbitmq_events(recorded: tuple[BrokerHandle, list[Event]]) -> None:
    handle, events = recorded
    with handle.connect() as connection:
        channel = connection.channel()
        channel.exchange_declare("ev-x", "topic", durable=True)
        channel.queue_declare("ev-q", arguments={"x-max-length": 5})
        channel.queue_bind("ev-q", "ev-x", "a.#")
        channel.queue_declare("ev-q", arguments={"x-max-length": 5})  # a redeclare: no event
        channel.queue_unbind("ev-q", "ev-x", "a.#")
        channel.queue_delete("ev-q")
        channel.exchange_delete("ev-x")
    metadata = [e for e in events if e.name.split(".")[0] in ("exchange", "queue", "binding")]
    assert [e.name for e in metadata] == [
        "exchange.created", "queue.created", "binding.created", "binding.deleted", "queue.deleted", "exchange.deleted",
    ]  # fmt: skip
    created = metadata[1].payload
    assert created == {"name": "ev-q", "vhost": "/", "durable": False, "auto_delete": False, "exclusive": False,
                       "arguments": {"x-max-length": 5}, "type": "classic"}  # fmt: skip
    binding = metadata[2].payload
    assert (binding["source_name"], binding["destination_name"], binding["destination_kind"],
            binding["routing_key"]) == ("ev-x", "ev-q", "queue", "a.#")  # fmt: skip
    assert metadata[0].payload["type"] == "topic" and metadata[0].payload["durable"] is True
    assert all(e.timestamp_in_ms > 0 for e in metadata)


def test_admin_changes_emit_events(recorded: tuple[BrokerHandle, list[Event]]) -> None:
    handle, events = recorded
    admin = handle.admin
    handle.run(admin.add_vhost("ev-v"))
    handle.run(admin.add_user("ev-u", "pw"))
    handle.run(admin.set_user_tags("ev-u", ["monitoring"]))
    handle.run(admin.change_password("ev-u", "pw2"))
    handle.run(admin.set_permissions("ev-u", "ev-v", "^ev"))
    handle.run(admin.set_policy("ev-v", "ev-p", "^ev", {"max-length": 3}))
    handle.run(admin.clear_policy("ev-v", "ev-p"))
    handle.run(admin.set_vhost_limits("ev-v", {"max-queues": 4}))
    handle.run(admin.delete_user("ev-u"))
    handle.run(admin.delete_vhost("ev-v"))
    names = [n for n in _names(events) if not n.startswith("exchange.")]  # (a new vhost's amq.* exchanges)
    assert names == [
        "vhost.created", "user.created", "user.tags.set", "user.password.changed", "permission.created",
        "policy.set", "policy.cleared", "vhost.limits.set", "user.deleted", "vhost.deleted",
    ]  # fmt: skip
    policy = next(e for e in events if e.name == "policy.set").payload
    assert policy["definition"] == {"max-length": 3} and policy["vhost"] == "ev-v" and policy["apply-to"] == "all"
    assert len(_names(events, "exchange.created")) == 6  # amq.direct, .fanout, .topic, .headers, .match, .rabbitmq.trace


def test_deleting_a_vhost_closes_its_connections_through_a_subscriber(recorded: tuple[BrokerHandle, list[Event]]) -> None:
    handle, events = recorded
    handle.run(handle.admin.add_vhost("ev-gone"))
    handle.run(handle.admin.set_permissions("guest", "ev-gone"))
    connection = handle.connect(vhost="ev-gone")
    channel = connection.channel()
    channel.queue_declare("ev-inside")
    handle.run(handle.admin.delete_vhost("ev-gone"))
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        connection.process_data_events(time_limit=2)
        channel.queue_declare("ev-inside", passive=True)
    assert closed.value.reply_code == 320
    assert "vhost 'ev-gone' is deleted" in closed.value.reply_text
    # The vhost's queue went with it, through its own queue.deleted event.
    assert [e.name for e in events if e.name.split(".")[0] in ("queue", "vhost")][-2:] == [
        "queue.deleted", "vhost.deleted",
    ]  # fmt: skip


def test_a_failing_subscriber_does_not_stop_the_change(recorded: tuple[BrokerHandle, list[Event]]) -> None:
    handle, events = recorded

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    handle.call(lambda: handle.broker.events.subscribe(broken, "queue.created"))
    with handle.connect() as connection:
        connection.channel().queue_declare("ev-still-made")
    assert "ev-still-made" in handle.call(lambda: set(handle.broker.vhosts["/"].queues))
    assert _names(events, "queue.created") == ["queue.created"]


def test_connection_channel_consumer_and_login_events(recorded: tuple[BrokerHandle, list[Event]]) -> None:
    """The order and fields RabbitMQ 3.10's event exchange shows for the same client session."""
    handle, events = recorded
    connection = handle.connect(client_properties={"connection_name": "probe"})
    channel = connection.channel()
    channel.basic_qos(prefetch_count=7)
    channel.queue_declare("ev-c")
    tag = channel.basic_consume("ev-c", lambda *_: None, arguments={"x-priority": 3})
    channel.basic_cancel(tag)
    channel.close()
    connection.close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(handle.params(password="wrong"))
    wait_until(None, lambda: _names(events, "connection.").count("connection.closed") == 2)
    session = [e for e in events if e.name.split(".")[0] in ("user", "connection", "channel", "consumer")]
    assert [e.name for e in session] == [
        "user.authentication.success", "connection.created", "channel.created", "consumer.created",
        "consumer.deleted", "channel.closed", "connection.closed", "user.authentication.failure", "connection.closed",
    ]  # fmt: skip
    login, created, channel_created, consumer = (e.payload for e in session[:4])
    name = created["name"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+", name)
    assert (login["name"], login["auth_mechanism"], login["connection_name"]) == ("guest", "PLAIN", name)
    assert (created["user"], created["vhost"], created["user_provided_name"], created["port"]) == (
        "guest", "/", "probe", handle.port
    )  # fmt: skip
    assert channel_created == {"name": f"{name} (1)", "number": 1, "connection": name, "user": "guest", "vhost": "/"}
    assert consumer == {"consumer_tag": tag, "exclusive": False, "ack_required": True, "prefetch_count": 7,
                        "arguments": {"x-priority": 3}, "channel": f"{name} (1)", "queue": "ev-c", "vhost": "/"}  # fmt: skip
    assert session[7].payload["name"] == "guest" and session[7].payload["error"] == "invalid credentials"


def test_alarm_events(recorded: tuple[BrokerHandle, list[Event]]) -> None:
    handle, events = recorded
    handle.call(lambda: handle.broker.alarms.set_memory_high_watermark(absolute=1))
    handle.call(lambda: handle.broker.alarms.set_memory_high_watermark(0.4))
    alarms = [(e.name, e.payload) for e in events if e.name.startswith("alarm.")]
    assert alarms == [
        ("alarm.set", {"source": "memory", "node": "rabbit@localhost"}),
        ("alarm.cleared", {"source": "memory", "node": "rabbit@localhost"}),
    ]
