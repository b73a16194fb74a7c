"""x-single-active-consumer through the wire: one consumer receives; when it goes the next (highest
consumer priority, then registration order) takes over at once, with a closed channel's unacked
messages requeued to it first; exclusive consumers are refused (recorded against RabbitMQ 3.10.8)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import publish, queue_stats, wait_until
from pika.exceptions import ChannelClosedByBroker

SAC = {"x-single-active-consumer": True}


class Recorder:
    """A consumer callback that records (tag, body, redelivered, delivery tag)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, bool, int]] = []

    def __call__(self, tag: str) -> Any:
        def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            self.got.append((tag, body, method.redelivered, method.delivery_tag))

        return on_message

    def bodies(self, tag: str | None = None) -> list[bytes]:
        return [body for t, body, _r, _d in self.got if tag is None or t == tag]


def test_only_the_first_consumer_receives(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments=SAC)
    record = Recorder()
    channel.basic_consume(unique, record("a"), auto_ack=True, consumer_tag="a")
    channel.basic_consume(unique, record("b"), auto_ack=True, consumer_tag="b")
    publish(channel, unique, b"1", b"2", b"3")
    wait_until(connection, lambda: len(record.got) == 3)
    connection.process_data_events(0.05)
    assert record.bodies("a") == [b"1", b"2", b"3"]
    assert record.bodies("b") == []
    assert connection.channel().queue_declare(unique, passive=True).method.consumer_count == 2


def test_cancelled_active_consumer_hands_over_at_once(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments=SAC)
    record = Recorder()
    channel.basic_consume(unique, record("a"), auto_ack=True, consumer_tag="a")
    other = connection.channel()
    other.basic_consume(unique, record("b"), auto_ack=True, consumer_tag="b")
    publish(channel, unique, b"1")
    wait_until(connection, lambda: record.bodies() == [b"1"])
    channel.basic_cancel("a")
    publish(channel, unique, b"2")
    wait_until(connection, lambda: record.bodies("b") == [b"2"])


def test_channel_closed_by_the_broker_requeues_unacked_to_the_next_consumer_first(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments=SAC)
    record = Recorder()
    active_channel = connection.channel()
    active_channel.basic_qos(prefetch_count=1)
    active_channel.basic_consume(unique, record("a"), consumer_tag="a")
    channel.basic_consume(unique, record("b"), auto_ack=True, consumer_tag="b")
    publish(channel, unique, b"1", b"2", b"3")
    wait_until(connection, lambda: record.bodies("a") == [b"1"])
    with pytest.raises(ChannelClosedByBroker):  # the channel goes without cancelling first
        active_channel.basic_get(f"{unique}-missing")
    wait_until(connection, lambda: len(record.bodies("b")) == 3)
    assert [(body, redelivered) for tag, body, redelivered, _d in record.got if tag == "b"] == [
        (b"1", True),
        (b"2", False),
        (b"3", False),
    ]


def test_cancel_then_close_hands_over_at_once_and_requeues_later(connection, unique):
    """pika's channel.close() cancels its consumers first: the next consumer takes over at the
    cancel; the message still unacked comes back (redelivered) when the channel closes."""
    channel = connection.channel()
    channel.queue_declare(unique, arguments=SAC)
    channel.basic_qos(prefetch_count=1)
    record = Recorder()
    channel.basic_consume(unique, record("a"), consumer_tag="a")
    other = connection.channel()
    other.basic_consume(unique, record("b"), auto_ack=True, consumer_tag="b")
    publish(other, unique, b"1", b"2", b"3")
    wait_until(connection, lambda: record.bodies("a") == [b"1"])
    channel.close()
    wait_until(connection, lambda: len(record.bodies("b")) == 3)
    assert [(body, redelivered) for tag, body, redelivered, _d in record.got if tag == "b"] == [
        (b"2", False),
        (b"3", False),
        (b"1", True),
    ]


def test_cancel_with_unacked_messages_next_takes_over_and_ack_still_works(connection, unique):
    """RabbitMQ 3.10.8 leaves the next consumer idle here and crashes the queue on the next
    publish (bug #5460); the intended behaviour is an immediate hand-over."""
    channel = connection.channel()
    channel.queue_declare(unique, arguments=SAC)
    channel.basic_qos(prefetch_count=1)
    record = Recorder()
    channel.basic_consume(unique, record("a"), consumer_tag="a")
    other = connection.channel()
    other.basic_consume(unique, record("b"), auto_ack=True, consumer_tag="b")
    publish(channel, unique, b"1", b"2")
    wait_until(connection, lambda: record.bodies("a") == [b"1"])
    channel.basic_cancel("a")
    wait_until(connection, lambda: record.bodies("b") == [b"2"])
    publish(channel, unique, b"3")
    wait_until(connection, lambda: record.bodies("b") == [b"2", b"3"])
    channel.basic_ack(record.got[0][3])  # the cancelled consumer's message is still the channel's
    connection.process_data_events(0.05)
    assert channel.is_open
    queue = connection.channel().queue_declare(unique, passive=True).method
    assert (queue.message_count, queue.consumer_count) == (0, 1)


def test_next_active_is_the_highest_priority_waiting_consumer(connection, unique):
    """The first registered is active whatever its priority; on hand-over RabbitMQ 3.10 takes the
    highest-priority waiting consumer, the earliest registered among equals (checked on 3.10.8)."""
    channel = connection.channel()
    channel.queue_declare(unique, arguments=SAC)
    record = Recorder()
    channels = {}
    for tag, priority in (("a", 0), ("b", 0), ("c", 5), ("d", 5)):
        channels[tag] = connection.channel()
        channels[tag].basic_consume(
            unique, record(tag), auto_ack=True, consumer_tag=tag, arguments={"x-priority": priority}
        )
    publish(channel, unique, b"1")
    wait_until(connection, lambda: record.bodies("a") == [b"1"])
    channels["a"].basic_cancel("a")
    publish(channel, unique, b"2")
    wait_until(connection, lambda: record.bodies("c") == [b"2"])
    channels["c"].close()
    publish(channel, unique, b"3")
    wait_until(connection, lambda: record.bodies("d") == [b"3"])
    channels["d"].close()
    publish(channel, unique, b"4")
    wait_until(connection, lambda: record.bodies("b") == [b"4"])


def test_exclusive_consumer_is_refused(connection, unique):
    connection.channel().queue_declare(unique, arguments=SAC)
    channel = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as raised:
        channel.basic_consume(unique, lambda *a: None, exclusive=True)
    assert (raised.value.reply_code, raised.value.reply_text) == (
        403,
        f"ACCESS_REFUSED - queue '{unique}' in vhost '/' in exclusive use",
    )


def test_basic_get_bypasses_the_active_consumer(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments=SAC)
    channel.basic_qos(prefetch_count=1)
    record = Recorder()
    channel.basic_consume(unique, record("a"), consumer_tag="a")
    publish(channel, unique, b"1", b"2")
    wait_until(connection, lambda: record.bodies("a") == [b"1"])
    _method, _props, body = connection.channel().basic_get(unique, auto_ack=True)
    assert body == b"2"


def test_active_consumer_tag_in_stats(broker, connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments=SAC)
    channel.basic_consume(unique, lambda *a: None, consumer_tag="first")
    channel.basic_consume(unique, lambda *a: None, consumer_tag="second")
    stats = queue_stats(broker, unique)
    assert (stats["single_active_consumer_tag"], stats["consumers"]) == ("first", 2)
    channel.basic_cancel("first")
    stats = queue_stats(broker, unique)
    assert (stats["single_active_consumer_tag"], stats["consumers"]) == ("second", 1)


@pytest.mark.parametrize(
    ("value", "reason"), [("true", "{unacceptable_type,longstr}"), (1, "{unacceptable_type,signedint}")]
)
def test_invalid_single_active_consumer_argument(connection, unique, value, reason):
    channel = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as raised:
        channel.queue_declare(unique, arguments={"x-single-active-consumer": value})
    assert raised.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue '{unique}' in vhost '/': {reason}"
    )
