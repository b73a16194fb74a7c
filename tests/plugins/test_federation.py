"""rabbitmq_federation through the wire, between brokers of ours: exchange federation (the
upstream queue ``federation: X -> node`` bound with the federated exchange's bindings, kept in
sync), x-received-from, max-hops, queue federation, upstream validation and policy keys (texts
recorded against RabbitMQ 3.10.8), federation_status and /api/federation-links."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from conftest import BrokerHandle, start_broker
from helpers import drain, wait_until

from amqp_server.admin.errors import AdminError

LIMIT = 10  # seconds a link gets to do what a test expects (a reconnect takes 1 s)
UPSTREAM_QUEUE = "federation: {} -> rabbit@localhost"


@pytest.fixture(scope="module")
def upstream() -> Iterator[BrokerHandle]:
    handle = start_broker()
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def downstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    data = tmp_path_factory.mktemp("federation") / "data"
    handle = start_broker(
        plugins=["rabbitmq_federation"], data_dir=str(data), management=True, management_port=0
    )
    yield handle
    handle.stop()


def uri(handle: BrokerHandle) -> str:
    return f"amqp://guest:guest@127.0.0.1:{handle.port}"


def federate(down: BrokerHandle, up: BrokerHandle, name: str, apply_to: str, **upstream: Any) -> None:
    """Upstream ``name`` on ``up`` and a policy federating the exchanges or queues
    (``apply_to``) named ``name`` from it."""
    value = {"uri": uri(up), "reconnect-delay": 1, **upstream}
    down.run(down.admin.set_parameter("/", "federation-upstream", name, value))
    down.run(down.admin.set_policy("/", name, f"^{name}$", {"federation-upstream": name}, 0, apply_to))


def links(handle: BrokerHandle) -> list[dict[str, Any]]:
    return handle.call(lambda: handle.broker.plugin_commands["federation_status"]({}))


def running(handle: BrokerHandle, name: str) -> bool:
    return any(
        row["status"] == "running" and name in (row["exchange"], row["queue"]) for row in links(handle)
    )


def upstream_bindings(up: BrokerHandle, exchange: str) -> list[str]:
    queue = UPSTREAM_QUEUE.format(exchange)
    return sorted(b["routing_key"] for b in up.admin.list_bindings("/") if b["destination_name"] == queue
                  and b["source_name"] == exchange)  # fmt: skip


def test_exchange_federation_follows_the_bindings(upstream, downstream, unique):
    with upstream.connect() as connection:
        connection.channel().exchange_declare(unique, "direct")
    with downstream.connect() as connection:
        channel = connection.channel()
        channel.exchange_declare(unique, "direct")
        channel.queue_declare(unique)
        channel.queue_bind(unique, unique, "a")
    federate(downstream, upstream, unique, "exchanges")
    wait_until(
        None, lambda: upstream_bindings(upstream, unique) == ["a"], LIMIT, "the binding was not mirrored"
    )
    with downstream.connect() as connection:
        connection.channel().queue_bind(unique, unique, "b")
    wait_until(None, lambda: upstream_bindings(upstream, unique) == ["a", "b"], LIMIT)
    with upstream.connect() as connection:
        channel = connection.channel()
        for key in ("a", "b", "c"):
            channel.basic_publish(unique, key, key.encode(), pika.BasicProperties(headers={"h": 1}))
    with downstream.connect() as connection:
        channel = connection.channel()
        wait_until(None, lambda: channel.queue_declare(unique, passive=True).method.message_count == 2, LIMIT)
        _method, properties, body = channel.basic_get(unique, auto_ack=True)
        assert body == b"a" and properties.headers == {"h": 1, "x-received-from": [
            {"uri": f"amqp://127.0.0.1:{upstream.port}", "exchange": unique, "redelivered": False,
             "cluster-name": "rabbit@localhost", "vhost": "/"}]}  # fmt: skip
        assert drain(channel, unique) == [b"b"]
        channel.queue_unbind(unique, unique, "a")
    wait_until(
        None, lambda: upstream_bindings(upstream, unique) == ["b"], LIMIT, "the unbinding was not mirrored"
    )
    queue = UPSTREAM_QUEUE.format(unique)
    arguments = next(q["arguments"] for q in upstream.admin.list_queues("/") if q["name"] == queue)
    assert arguments == {"x-internal-purpose": "federation"}
    downstream.run(downstream.admin.clear_policy("/", unique))  # the link ends and takes its queue
    wait_until(None, lambda: all(q["name"] != queue for q in upstream.admin.list_queues("/")), LIMIT)


def test_max_hops_stops_a_cycle(upstream, downstream, unique):
    """Two brokers federating the same exchange from each other: with max-hops 1 a message
    crosses once. A marker published on the other side after it comes back alone, so nothing
    more is on its way."""
    mirror = start_broker(plugins=["rabbitmq_federation"])
    try:
        for handle in (mirror, downstream):
            with handle.connect() as connection:
                channel = connection.channel()
                channel.exchange_declare(unique, "fanout")
                channel.queue_declare(unique)
                channel.queue_bind(unique, unique)
        federate(downstream, mirror, unique, "exchanges", **{"max-hops": 1})
        federate(mirror, downstream, unique, "exchanges")
        wait_until(None, lambda: running(downstream, unique) and running(mirror, unique), LIMIT)
        wait_until(None, lambda: upstream_bindings(downstream, unique) == [unique]
                   and upstream_bindings(mirror, unique) == [unique], LIMIT)  # fmt: skip
        with downstream.connect() as connection:
            connection.channel().basic_publish(unique, "", b"once")
        with mirror.connect() as connection:
            channel = connection.channel()
            wait_until(
                None, lambda: channel.queue_declare(unique, passive=True).method.message_count == 1, LIMIT
            )
            channel.basic_publish(unique, "", b"marker")
        with downstream.connect() as connection:
            channel = connection.channel()
            wait_until(
                None, lambda: channel.queue_declare(unique, passive=True).method.message_count == 2, LIMIT
            )
            assert drain(channel, unique) == [b"once", b"marker"]
        with mirror.connect() as connection:
            assert drain(connection.channel(), unique) == [b"once", b"marker"]
    finally:
        mirror.stop()


def test_queue_federation_pulls_while_consumers_wait(upstream, downstream, unique):
    with upstream.connect() as connection:
        channel = connection.channel()
        channel.queue_declare(unique)
        for i in range(5):
            channel.basic_publish("", unique, f"q{i}".encode())
    with downstream.connect() as connection:
        connection.channel().queue_declare(unique)
    federate(downstream, upstream, unique, "queues", **{"prefetch-count": 1})
    wait_until(None, lambda: running(downstream, unique), LIMIT)
    with upstream.connect() as connection:  # no consumer downstream: nothing is pulled
        assert connection.channel().queue_declare(unique, passive=True).method.message_count == 5
    got: list[bytes] = []
    with downstream.connect() as connection:
        channel = connection.channel()
        channel.basic_consume(unique, lambda _c, _m, _p, body: got.append(body), auto_ack=True)
        wait_until(
            connection, lambda: len(got) == 5, LIMIT, "the consumer did not get the upstream's messages"
        )
    assert got == [f"q{i}".encode() for i in range(5)]
    row = next(r for r in links(downstream) if r["queue"] == unique)
    assert row == {"consumer_tag": f"federation-link-{unique}", "error": "", "exchange": "", "id": row["id"],
                   "last_changed": row["last_changed"], "local_connection": "", "queue": unique, "status": "running",
                   "type": "queue", "upstream": unique, "upstream_exchange": "", "upstream_queue": unique,
                   "uri": f"amqp://127.0.0.1:{upstream.port}", "vhost": "/"}  # fmt: skip


def test_an_unreachable_upstream_is_an_error_link(downstream, unique):
    down = downstream
    down.run(down.admin.set_parameter("/", "federation-upstream", unique, {"uri": "amqp://127.0.0.1:1"}))
    down.run(
        down.admin.set_policy("/", unique, f"^{unique}$", {"federation-upstream-set": "all"}, 0, "exchanges")
    )
    with down.connect() as connection:
        connection.channel().exchange_declare(unique, "topic")
    wait_until(
        None, lambda: any(r["exchange"] == unique and r["status"] == "error" for r in links(down)), LIMIT
    )
    row = next(r for r in links(down) if r["exchange"] == unique and r["upstream"] == unique)
    assert (row["error"], row["uri"], row["upstream_exchange"]) == (
        "econnrefused",
        "amqp://127.0.0.1:1",
        unique,
    )
    data = down.broker.config.data_dir
    done = subprocess.run([sys.executable, "-m", "amqp_server.ctl", "--data-dir", data, "federation_status"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith(
        "Listing federation links on node rabbit@localhost...\n[#{"
    )
    assert f'upstream => <<"{unique}">>' in done.stdout and "error => econnrefused" in done.stdout
    request = urllib.request.Request(f"http://127.0.0.1:{down.server.management_port}/api/federation-links/%2F",
                                     headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as reply:
        found = next(item for item in json.load(reply) if item["upstream"] == unique)
    assert found == {"node": "rabbit@localhost", "exchange": unique, "upstream_exchange": unique, "type": "exchange",
                     "vhost": "/", "upstream": unique, "id": row["id"], "status": "error", "error": "econnrefused",
                     "uri": "amqp://127.0.0.1:1", "timestamp": row["last_changed"]}  # fmt: skip
    down.run(down.admin.clear_policy("/", unique))
    wait_until(
        None, lambda: all(r["exchange"] != unique for r in links(down)), LIMIT, "the link was not stopped"
    )


@pytest.mark.parametrize(
    ("component", "value", "errors"),
    [
        ("federation-upstream", {}, 'Key "uri" not found in bad'),
        ("federation-upstream", {"uri": 5, "max-hops": 0, "ack-mode": "x", "trust-user-id": 1, "expires": 0,
                                 "message-ttl": -1, "prefetch-count": "a", "reconnect-delay": "b", "exchange": 1,
                                 "queue": 2, "foo": 3},
         "Unrecognised terms [{<<\"foo\">>,3}] in bad\n"
         "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was <<\"x\">>\n"
         "trust-user-id should be boolean, actually was 1\nreconnect-delay should be a number, actually was <<\"b\">>\n"
         "prefetch-count should be a number, actually was <<\"a\">>\nqueue should be binary, actually was 2\n"
         "exchange should be binary, actually was 1\nuri should be list, actually was 5"),
        ("federation-upstream", {"uri": ["amqp://", "bad://"]},
         '"bad://" not a valid URI: {{unexpected_uri_scheme,"bad"},"bad://"}'),
        ("federation-upstream-set", [{"upstream": "up1"}, {"x": 1}],
         'Unrecognised terms [{<<"x">>,1}] in bad\nKey "upstream" not found in bad'),
    ],
)  # fmt: skip
def test_upstream_validation(downstream, component, value, errors):
    with pytest.raises(AdminError) as raised:
        downstream.run(downstream.admin.set_parameter("/", component, "bad", value))
    assert str(raised.value) == f"Validation failed\n\n{errors}\n"


@pytest.mark.parametrize(
    ("definition", "error"),
    [({"federation-upstream": 1}, "1 is not a valid federation upstream name"),
     ({"federation-upstream-set": 2}, "2 is not a valid federation upstream set name")],
)  # fmt: skip
def test_policy_keys_are_validated(downstream, definition, error):
    with pytest.raises(AdminError) as raised:
        downstream.run(downstream.admin.set_policy("/", "bad", "^x", definition, 0, "all"))
    assert str(raised.value) == f"Validation failed\n\n{error}"
