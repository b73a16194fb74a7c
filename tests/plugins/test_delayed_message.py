"""rabbitmq_delayed_message_exchange through the wire: x-delayed-message holds a message with an
x-delay header that long, then routes it as its x-delayed-type would; held messages survive a
restart, are paged from disk beyond a memory window, and a mandatory publish nothing would
route is returned."""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aio_pika
import pika
import pytest
from conftest import BrokerHandle, Node, start_broker
from helpers import channel_error, message_count, wait_until
from pika.exceptions import ConnectionClosedByBroker, UnroutableError

from plugins.delayed_message import WINDOW_VARIABLE
from plugins.delayed_message.exchange import schedulers

PLUGIN = "rabbitmq_delayed_message_exchange"
DIRECT = {"x-delayed-type": "direct"}


@pytest.fixture(scope="module")
def node() -> Iterator[BrokerHandle]:
    handle = start_broker(plugins=[PLUGIN], management=True, management_port=0)
    yield handle
    handle.stop()


@pytest.fixture
def connection(node: BrokerHandle) -> Iterator[pika.BlockingConnection]:
    connection = node.connect()
    yield connection
    if connection.is_open:
        connection.close()


@pytest.fixture
def channel(connection: pika.BlockingConnection) -> Any:
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def delayed_exchange(
    channel: Any, name: str, arguments: dict[str, Any] = DIRECT, queue: str = "", key: str = "k"
) -> str:
    """A delayed exchange ``name`` with a queue bound to it with ``key``; the queue's name."""
    channel.exchange_declare(name, "x-delayed-message", arguments=arguments)
    queue = queue or f"{name}-q"
    channel.queue_declare(queue, auto_delete=True)
    channel.queue_bind(queue, name, key)
    return queue


def publish(
    channel: Any, exchange: str, body: bytes, delay: Any = None, key: str = "k", **headers: Any
) -> None:
    if delay is not None:
        headers["x-delay"] = delay
    channel.basic_publish(exchange, key, body, pika.BasicProperties(headers=headers))


def receive(
    connection: pika.BlockingConnection, channel: Any, queue: str, count: int, limit: float = 5
) -> list[Any]:
    """``count`` messages consumed from ``queue`` (waiting at most ``limit`` s): (time, properties, body)."""
    received: list[Any] = []
    channel.basic_consume(
        queue, lambda _ch, _m, props, body: received.append((time.monotonic(), props, body)), auto_ack=True
    )
    wait_until(connection, lambda: len(received) >= count, limit, f"{len(received)} of {count} delivered")
    return received


def test_held_until_due_then_routed_with_x_delay_negated(connection, channel, unique):
    queue = delayed_exchange(channel, unique)
    sent = time.monotonic()
    publish(channel, unique, b"late", 300, other="kept")
    assert message_count(channel, queue) == 0
    [(arrived, props, body)] = receive(connection, channel, queue, 1)
    assert body == b"late"
    assert arrived - sent >= 0.3  # not before it was due
    assert props.headers == {"other": "kept", "x-delay": -300}


def test_delivered_in_due_order_ties_in_publish_order(connection, channel, unique):
    queue = delayed_exchange(channel, unique)
    delays = [400, 150, 300, 150, 250, 150]
    for index, delay in enumerate(delays):
        publish(channel, unique, f"{index}".encode(), delay)
    received = receive(connection, channel, queue, len(delays))
    expected = [
        f"{index}".encode() for index, _ in sorted(enumerate(delays), key=lambda pair: (pair[1], pair[0]))
    ]
    assert [body for _t, _p, body in received] == expected


@pytest.mark.parametrize("delay", [None, 0, -50, 2**32, True, "0"])
def test_no_delay_routes_at_once(channel, unique, delay):
    queue = delayed_exchange(channel, unique)
    publish(channel, unique, b"now", delay)
    assert message_count(channel, queue) == 1  # confirmed, hence routed


def test_a_string_delay_is_parsed(connection, channel, unique):
    queue = delayed_exchange(channel, unique)
    publish(channel, unique, b"x", "200")
    assert message_count(channel, queue) == 0
    [(_t, props, _b)] = receive(connection, channel, queue, 1)
    assert props.headers["x-delay"] == -200  # a signedint now


async def test_a_float_delay_is_truncated(node, unique):
    """(pika cannot send a float: aio-pika sends a double)"""
    connection = await aio_pika.connect(node.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(unique, "x-delayed-message", arguments=DIRECT)
        queue = await channel.declare_queue(unique, auto_delete=True)
        await queue.bind(exchange, "k")
        for delay in (0.4, 150.7):  # 0.4 is no delay
            await exchange.publish(aio_pika.Message(str(delay).encode(), headers={"x-delay": delay}), "k")
        first = await queue.get(timeout=5)
        assert (first.body, first.headers) == (b"0.4", {"x-delay": pytest.approx(0.4)})  # a float, as sent
        async with queue.iterator() as messages:
            async for message in messages:
                assert (message.body, message.headers) == (b"150.7", {"x-delay": -150})
                break


@pytest.mark.parametrize("delay", ["soon", Decimal("1.5")])
def test_a_delay_erlang_cannot_make_an_integer_of_crashes_the_channel(connection, unique, delay):
    """binary_to_integer/1 of a longstr that is no integer, trunc/1 of a decimal: the channel
    process crashes, which RabbitMQ's clients see as 541 INTERNAL_ERROR."""
    channel = connection.channel()
    delayed_exchange(channel, unique)
    with pytest.raises(ConnectionClosedByBroker) as raised:
        publish(channel, unique, b"x", delay)
        channel.queue_declare("", exclusive=True)
    assert (raised.value.reply_code, raised.value.reply_text) == (541, "INTERNAL_ERROR")


def test_inner_topic_routing(connection, channel, unique):
    queue = delayed_exchange(channel, unique, {"x-delayed-type": "topic"}, key="a.*")
    publish(channel, unique, b"miss", 100, key="b.c")
    publish(channel, unique, b"hit", 100, key="a.b")
    [(_t, _p, body)] = receive(connection, channel, queue, 1)
    assert body == b"hit"
    assert message_count(channel, queue) == 0


def test_inner_headers_routing(connection, channel, unique):
    channel.exchange_declare(unique, "x-delayed-message", arguments={"x-delayed-type": "headers"})
    channel.queue_declare(unique, auto_delete=True)
    channel.queue_bind(unique, unique, "", arguments={"x-match": "all", "colour": "red"})
    publish(channel, unique, b"blue", 100, colour="blue")
    publish(channel, unique, b"red", 100, colour="red")
    [(_t, _p, body)] = receive(connection, channel, unique, 1)
    assert body == b"red"


def test_inner_fanout_through_an_exchange_to_exchange_binding(connection, channel, unique):
    """A delayed exchange reached through another exchange holds the message too."""
    channel.exchange_declare(f"{unique}-front", "direct")
    channel.exchange_declare(unique, "x-delayed-message", arguments={"x-delayed-type": "fanout"})
    channel.exchange_bind(unique, f"{unique}-front", "k")
    channel.queue_declare(unique, auto_delete=True)
    channel.queue_bind(unique, unique, "ignored")
    publish(channel, f"{unique}-front", b"via", 200)
    assert message_count(channel, unique) == 0
    [(_t, props, body)] = receive(connection, channel, unique, 1)
    assert (body, props.headers) == (b"via", {"x-delay": -200})


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ({}, "Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        ({"x-delayed-type": 5}, "Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        (
            {"x-delayed-type": "x-delayed-message"},
            "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'",
        ),
    ],
)
def test_declare_argument_errors(connection, unique, arguments, text):
    code, reply = channel_error(
        connection, lambda ch: ch.exchange_declare(unique, "x-delayed-message", arguments=arguments)
    )
    assert (code, reply) == (406, f"PRECONDITION_FAILED - {text}")


def test_an_unknown_inner_type_closes_the_connection_with_503(node, unique):
    connection = node.connect()
    with pytest.raises(ConnectionClosedByBroker) as raised:
        connection.channel().exchange_declare(
            unique, "x-delayed-message", arguments={"x-delayed-type": "x-nope"}
        )
    assert (raised.value.reply_code, raised.value.reply_text) == (
        503,
        "COMMAND_INVALID - unknown exchange type 'x-nope'",
    )


def test_bindings_are_checked_by_the_inner_type(connection, unique):
    channel = connection.channel()
    channel.exchange_declare(unique, "x-delayed-message", arguments={"x-delayed-type": "headers"})
    channel.exchange_declare(f"{unique}-plain", "headers")
    channel.queue_declare(unique, auto_delete=True)

    def bind(exchange: str) -> Any:
        return lambda ch: ch.queue_bind(unique, exchange, "", arguments={"x-match": "neither"})

    assert channel_error(connection, bind(unique)) == channel_error(connection, bind(f"{unique}-plain"))


def test_mandatory_delayed_publish_nothing_would_route_is_returned_and_not_held(connection, channel, unique):
    queue = delayed_exchange(channel, unique)
    with pytest.raises(UnroutableError):
        publish_mandatory(channel, unique, "elsewhere")
    channel.queue_bind(queue, unique, "elsewhere")
    publish_mandatory(channel, unique, "k")  # routable: held, confirmed, delivered after the other was due
    [(_t, _p, body)] = receive(connection, channel, queue, 1)
    assert body == b"k"
    assert message_count(channel, queue) == 0


def publish_mandatory(channel: Any, exchange: str, key: str) -> None:
    channel.basic_publish(
        exchange, key, key.encode(), pika.BasicProperties(headers={"x-delay": 100}), mandatory=True
    )


def test_routing_is_decided_again_when_due(connection, channel, unique):
    """Without mandatory a message is held even if nothing routes it yet, as in RabbitMQ."""
    queue = delayed_exchange(channel, unique)
    publish(channel, unique, b"later-bound", 300, key="other")
    channel.queue_bind(queue, unique, "other")
    [(_t, _p, body)] = receive(connection, channel, queue, 1)
    assert body == b"later-bound"


def test_persistent_and_transient_publishes_are_confirmed(channel, unique):
    delayed_exchange(channel, unique)
    for mode in (1, 2):
        channel.basic_publish(
            unique, "k", b"x", pika.BasicProperties(headers={"x-delay": 60_000}, delivery_mode=mode)
        )
    # pika's confirming channel raises unless every publish was acked


def management_exchange(node: BrokerHandle, name: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.server.management_port}/api/exchanges/%2F/{name}"
    )
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def test_management_shows_the_type_and_the_messages_held(node, channel, unique):
    delayed_exchange(channel, unique)
    for _ in range(3):
        publish(channel, unique, b"x", 60_000)
    item = management_exchange(node, unique)
    assert (item["type"], item["messages_delayed"]) == ("x-delayed-message", 3)


def test_deleting_the_exchange_drops_what_it_held(node, channel, unique):
    delayed_exchange(channel, unique)
    publish(channel, unique, b"x", 60_000)
    channel.exchange_delete(unique)
    delayed_exchange(channel, unique, queue=f"{unique}-again")
    assert management_exchange(node, unique)["messages_delayed"] == 0


def test_disabled_then_enabled_the_plugin_keeps_what_was_held(node, connection, channel, unique):
    queue = delayed_exchange(channel, unique)
    publish(channel, unique, b"kept", 500)
    node.run(node.broker.plugins.disable(PLUGIN))
    try:
        code, text = channel_error(
            connection,
            lambda ch: publish(ch, unique, b"refused", 100) or ch.queue_declare("", exclusive=True),
        )
        assert code == 406 and "x-delayed-message" in text
    finally:
        node.run(node.broker.plugins.enable(PLUGIN))
    [(_t, _p, body)] = receive(connection, channel, queue, 1)
    assert body == b"kept"


def test_a_small_window_pages_thousands_in_due_order(monkeypatch, tmp_path, handles):
    monkeypatch.setenv(WINDOW_VARIABLE, "50")
    handle = start_broker(plugins=[PLUGIN], data_dir=str(tmp_path))
    handles.append(handle)
    connection = handle.connect()
    channel = connection.channel()
    queue = delayed_exchange(channel, "paged")
    count = 3000
    delays = [1500 + (index * 7919) % 1000 for index in range(count)]  # 1.5-2.5 s, shuffled
    for index, delay in enumerate(delays):
        publish(channel, "paged", str(index).encode(), delay)
    scheduler = schedulers[handle.loop]
    wait_until(connection, lambda: handle.call(lambda: scheduler.count("/", "paged")) == count)
    assert handle.call(lambda: scheduler.in_memory) <= 100  # twice the window at most
    received = [int(body) for _t, _p, body in receive(connection, channel, queue, count, limit=20)]
    assert sorted(received) == list(range(count))
    for delay in set(delays):  # same delay: publish order
        same = [index for index in received if delays[index] == delay]
        assert same == sorted(same)
    connection.close()


def test_held_messages_survive_a_killed_node(tmp_path: Path, nodes: list[Node]):
    (tmp_path / "enabled_plugins").write_text(f"[{PLUGIN}].\n")
    node = Node(tmp_path, tmp_path)
    nodes.append(node)
    node.wait_listening()
    connection = node.connect()
    channel = connection.channel()
    channel.confirm_delivery()
    channel.exchange_declare("survivor", "x-delayed-message", durable=True, arguments=DIRECT)
    channel.queue_declare("survivor-q", durable=True)
    channel.queue_bind("survivor-q", "survivor", "k")
    for index, delay in enumerate((1500, 1000)):
        props = pika.BasicProperties(headers={"x-delay": delay}, delivery_mode=2)
        channel.basic_publish("survivor", "k", str(index).encode(), props)
    node.process.send_signal(signal.SIGKILL)
    node.exit_status()
    again = Node(tmp_path, tmp_path)
    nodes.append(again)
    again.wait_listening()
    connection = again.connect()
    channel = connection.channel()
    received = receive(connection, channel, "survivor-q", 2, limit=10)
    assert [(props.headers, body) for _t, props, body in received] == [
        ({"x-delay": -1000}, b"1"),
        ({"x-delay": -1500}, b"0"),
    ]
