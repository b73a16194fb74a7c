"""Firehose tracing (rabbit_trace) through the wire: amq.rabbitmq.trace in every vhost, off by
default; trace_on (amqp-ctl, or the HTTP API's vhost ``tracing``) publishes every publish as
``publish.<exchange>`` and every delivery as ``deliver.<queue>`` with RabbitMQ's headers, exactly
typed (recorded against RabbitMQ 3.10.8)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from conftest import BrokerHandle, start_broker
from helpers import connect_named, message_count, server_connection, wait_until
from pamqp import commands
from rawamqp import RawClient

from amqp_server.protocol.content import FLAG_HEADERS, split_properties
from amqp_server.protocol.tables import decode_entries

TRACE = "amq.rabbitmq.trace"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    handle = start_broker(
        data_dir=str(tmp_path_factory.mktemp("tracing")), management=True, management_port=0
    )
    yield handle
    handle.stop()


@pytest.fixture
def vhost(node: BrokerHandle, unique: str) -> Iterator[str]:
    """A vhost of the test's own, guest with full permissions on it."""
    node.run(node.admin.add_vhost(unique))
    node.run(node.admin.set_permissions("guest", unique))
    yield unique
    node.run(node.admin.delete_vhost(unique))


def ctl(node: BrokerHandle, *args: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "amqp_server.ctl", "--data-dir", node.broker.config.data_dir, *args],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    return done.returncode, done.stdout


def api(node: BrokerHandle, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.server.management_port}/api{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        data = response.read()
    return json.loads(data) if data else response.status


def traced(node: BrokerHandle, vhost: str, queue: str, count: int) -> list[tuple[str, list[Any], bytes]]:
    """``count`` messages of ``queue``, read raw: (routing key, the headers as typed entries
    with str keys, body)."""
    raw = RawClient(node.port)
    raw.handshake(vhost=vhost)
    raw.open_channel(1)
    got = []
    for _ in range(count):
        raw.send(1, commands.Basic.Get(queue=queue, no_ack=True))
        method = raw.expect(1, commands.Basic.GetOk)
        header = raw.next().payload
        body = raw.next().payload
        fields = split_properties(header)
        assert list(fields) == [FLAG_HEADERS]  # the headers property only, as RabbitMQ's
        table = fields[FLAG_HEADERS]
        got.append((method.routing_key, _plain(decode_entries(table, 4, len(table))), body))
    raw.close()
    return got


def _plain(entries: list[Any]) -> list[Any]:
    return [
        (key.decode(), chr(kind), _plain(value) if kind == ord("F") else value)
        for key, kind, value in entries
    ]


def test_every_vhost_has_the_trace_exchange_and_tracing_is_off(node: BrokerHandle, vhost: str) -> None:
    with node.connect(vhost=vhost) as connection:
        channel = connection.channel()
        channel.exchange_declare(TRACE, "topic", passive=True)
        channel.queue_declare("q")
        channel.queue_bind("q", TRACE, "#")
        channel.confirm_delivery()
        channel.basic_publish("", "q", b"untraced")
        assert message_count(channel, "q") == 1  # the publish only
    assert [(v["name"], v["tracing"]) for v in api(node, "GET", "/vhosts") if v["name"] == vhost] == [
        (vhost, False)
    ]


def test_publish_and_deliveries_are_traced_as_rabbitmq_does(
    node: BrokerHandle, vhost: str, unique: str
) -> None:
    assert ctl(node, "trace_on", "-p", vhost) == (
        0, f'Starting tracing for vhost "{vhost}" ...\nTrace enabled for vhost {vhost}\n'
    )  # fmt: skip
    assert f"\n{vhost}\ttrue\n" in ctl(node, "list_vhosts", "-q", "name", "tracing")[1]
    assert "\n/\tfalse\n" in ctl(node, "list_vhosts", "-q", "name", "tracing")[1]
    with connect_named(node, unique, vhost=vhost) as connection:
        channel = connection.channel()
        channel.queue_declare("trace")
        channel.queue_bind("trace", TRACE, "#")
        channel.queue_declare("work")
        channel.confirm_delivery()
        properties = pika.BasicProperties(
            content_type="text/plain", headers={"a": 1, "big": 2**40, "t": True}, delivery_mode=2, priority=3,
            timestamp=1700000000, user_id="guest",
        )  # fmt: skip
        channel.basic_publish("", "work", b"hello", properties)
        channel.basic_publish("amq.direct", "nowhere", b"lost")
        assert channel.basic_get("work", auto_ack=False)[2] == b"hello"
        channel.basic_recover(requeue=True)
        got: list[bytes] = []
        channel.basic_consume("work", lambda c, m, p, b: got.append(b), auto_ack=True)
        wait_until(connection, lambda: got == [b"hello"])
        name = server_connection(node, unique).name
    who = [("vhost", "S", vhost.encode()), ("connection", "S", name.encode()), ("channel", "I", 1),
           ("user", "S", b"guest")]  # fmt: skip
    props = [("user_id", "S", b"guest"), ("timestamp", "I", 1700000000), ("priority", "I", 3),
             ("delivery_mode", "I", 2), ("headers", "F", [("a", "I", 1), ("big", "l", 2**40), ("t", "t", 1)]),
             ("content_type", "S", b"text/plain")]  # fmt: skip
    common = [("exchange_name", "S", b""), ("routing_keys", "A", [(ord("S"), b"work")]), ("properties", "F", props),
              ("node", "S", node.broker.node_name.encode())]  # fmt: skip
    assert traced(node, vhost, "trace", 4) == [
        ("publish.", [*common, *who, ("routed_queues", "A", [(ord("S"), b"work")])], b"hello"),
        (
            "publish.amq.direct",
            [
                ("exchange_name", "S", b"amq.direct"),
                ("routing_keys", "A", [(ord("S"), b"nowhere")]),
                ("properties", "F", []),
                ("node", "S", node.broker.node_name.encode()),
                *who,
                ("routed_queues", "A", []),
            ],
            b"lost",
        ),
        ("deliver.work", [*common, ("redelivered", "I", 0), *who], b"hello"),  # basic.get-ok
        ("deliver.work", [*common, ("redelivered", "I", 1), *who], b"hello"),  # basic.deliver
    ]


def test_trace_off_and_the_http_api(node: BrokerHandle, vhost: str) -> None:
    path = f"/vhosts/{urllib.request.quote(vhost, safe='')}"
    assert api(node, "PUT", path, {"tracing": True}) == 204
    assert api(node, "GET", path)["tracing"] is True
    with node.connect(vhost=vhost) as connection:
        channel = connection.channel()
        channel.queue_declare("trace")
        channel.queue_bind("trace", TRACE, "publish.#")
        channel.confirm_delivery()
        channel.basic_publish("amq.fanout", "", b"1")
        assert ctl(node, "trace_off", "-q", "-p", vhost) == (0, f"Trace disabled for vhost {vhost}\n")
        channel.basic_publish("amq.fanout", "", b"2")
        assert message_count(channel, "trace") == 1
        assert api(node, "GET", path)["tracing"] is False
        assert api(node, "PUT", path, {"description": "kept"}) == 204  # no "tracing": unchanged
        assert api(node, "GET", path)["tracing"] is False


def test_trace_on_for_a_vhost_that_does_not_exist(node: BrokerHandle, unique: str) -> None:
    assert ctl(node, "trace_on", "-p", unique) == (0, f'Starting tracing for vhost "{unique}" ...\n'
                                                      f"Trace enabled for vhost {unique}\n")  # fmt: skip
