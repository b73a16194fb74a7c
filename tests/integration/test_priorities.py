"""x-max-priority through the wire: higher priority first, FIFO within a priority, priorities above
the maximum count as the maximum but are delivered unchanged, no priority counts as 0, requeued
messages return to their place (recorded against RabbitMQ 3.10.8)."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pika
import pytest
from helpers import get_messages, message_count, wait_until
from pika.exceptions import ChannelClosedByBroker


def publish(channel: Any, name: str, priorities: list[int | None]) -> None:
    for index, priority in enumerate(priorities):
        channel.basic_publish("", name, f"{index}:{priority}".encode(), pika.BasicProperties(priority=priority))


def get_all(channel: Any, name: str) -> list[tuple[bytes, int | None]]:
    return [(body, properties.priority) for _method, properties, body in get_messages(channel, name)]


def test_higher_priority_first_fifo_within_and_capped_at_the_maximum(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 5})
    publish(channel, unique, [1, 9, 5, None, 3, 0, 7, 255])
    assert get_all(channel, unique) == [
        (b"1:9", 9),  # 9, 5, 7 and 255 all count as 5: FIFO among them, priority delivered as sent
        (b"2:5", 5),
        (b"6:7", 7),
        (b"7:255", 255),
        (b"4:3", 3),
        (b"0:1", 1),
        (b"3:None", None),  # no priority is 0
        (b"5:0", 0),
    ]


@pytest.mark.parametrize("arguments", [{}, {"x-max-priority": 0}])
def test_without_max_priority_the_queue_is_fifo(channel, unique, arguments):
    channel.queue_declare(unique, arguments=arguments)
    publish(channel, unique, [1, 9, None, 5])
    assert [body for body, _ in get_all(channel, unique)] == [b"0:1", b"1:9", b"2:None", b"3:5"]


def test_max_priority_one(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 1})
    publish(channel, unique, [0, 1, None, 2, 1])
    assert [body for body, _ in get_all(channel, unique)] == [b"1:1", b"3:2", b"4:1", b"0:0", b"2:None"]


def test_requeued_messages_return_to_their_priority_position(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-max-priority": 10})
    publish(channel, unique, [1, 3, 10])
    taken = [channel.basic_get(unique)[0] for _ in range(2)]  # 2:10 and 1:3
    publish(channel, unique, [3, 10])  # behind their equals
    channel.basic_nack(taken[-1].delivery_tag, multiple=True, requeue=True)
    got = []
    while True:
        method, _props, body = channel.basic_get(unique, auto_ack=True)
        if method is None:
            break
        got.append((body, method.redelivered))
    assert got == [(b"2:10", True), (b"1:10", False), (b"1:3", True), (b"0:3", False), (b"0:1", False)]


def test_consumer_receives_by_priority(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-max-priority": 3})
    publish(channel, unique, [None, 1, 2, 3])
    got: list[bytes] = []
    channel.basic_consume(unique, lambda ch, m, p, b: got.append(b), auto_ack=True)
    wait_until(connection, lambda: len(got) >= 4, 2)
    assert got == [b"3:3", b"2:2", b"1:1", b"0:None"]


def test_priority_queue_with_max_length_drops_the_head(channel, unique):
    """The head is the highest-priority message: that is the one dropped (as RabbitMQ 3.10)."""
    channel.queue_declare(unique, arguments={"x-max-priority": 5, "x-max-length": 2})
    publish(channel, unique, [1, 5, 3])
    assert [body for body, _ in get_all(channel, unique)] == [b"2:3", b"0:1"]
    publish(channel, unique, [5, 1, 3, 0])
    assert [body for body, _ in get_all(channel, unique)] == [b"1:1", b"3:0"]


def test_priority_queue_expires_at_the_head_only(connection, unique):
    """An expired lower-priority message behind a live higher-priority head stays counted."""
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-max-priority": 5})
    channel.basic_publish("", unique, b"high-long", pika.BasicProperties(priority=5, expiration="60000"))
    channel.basic_publish("", unique, b"low-short", pika.BasicProperties(priority=1, expiration="50"))
    channel.basic_publish("", unique, b"low-plain", pika.BasicProperties(priority=1))
    connection.sleep(0.3)
    assert message_count(channel, unique) == 3
    method, _props, body = channel.basic_get(unique, auto_ack=True)
    assert (body, method.message_count) == (b"high-long", 1)
    assert [body for body, _ in get_all(channel, unique)] == [b"low-plain"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (256, "{max_value_exceeded,256}"),
        (-1, "{value_negative,-1}"),
        ("5", '"expected integer, got longstr"'),
        (True, '"expected integer, got bool"'),
    ],
)
def test_invalid_max_priority_is_refused(connection, unique, value, reason):
    channel = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as raised:
        channel.queue_declare(unique, arguments={"x-max-priority": value})
    assert (raised.value.reply_code, raised.value.reply_text) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{unique}' in vhost '/': {reason}",
    )


def test_max_priority_redeclare_must_match(connection, unique):
    connection.channel().queue_declare(unique, arguments={"x-max-priority": 5})
    with pytest.raises(ChannelClosedByBroker) as raised:
        connection.channel().queue_declare(unique, arguments={"x-max-priority": 6})
    assert raised.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '{unique}' in vhost '/': "
        "received '6' but current is '5'"
    )


def test_priorities_with_aio_pika(broker, unique):
    async def scenario() -> list[tuple[bytes, int | None]]:
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(unique, arguments={"x-max-priority": 10})
            for body, priority in ((b"low", 1), (b"none", None), (b"high", 8), (b"top", 200)):
                await channel.default_exchange.publish(aio_pika.Message(body, priority=priority), unique)
            got = []
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                got.append((message.body, message.priority))
            return got

    got = asyncio.run(scenario())
    assert got == [(b"top", 200), (b"high", 8), (b"low", 1), (b"none", 0)]  # aio-pika sends 0
