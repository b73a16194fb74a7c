"""The basic class through the wire: publish, consume, get, ack/nack/reject, recover and QoS,
with RabbitMQ 3.10's reply codes and texts (each checked against a real RabbitMQ 3.10).

Most tests use pika. Where pika hides what the broker sent (the raw content header, the
class/method ids of a close, frames pika refuses to send), the raw socket client (``rawamqp.RawClient``)
talks AMQP directly.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pika
import pytest
from helpers import closes, message_count, new_queue, publish
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from rawamqp import RawClient

# -- helpers ---------------------------------------------------------------------------------


def closed_channel(connection: pika.BlockingConnection, action: Callable[[Any], Any]) -> tuple[int, str]:
    """Run ``action`` on a fresh channel, which the broker must close: (code, text)."""
    channel = connection.channel()
    return closes(channel, lambda: action(channel))


class Collector:
    """A basic_consume callback recording (consumer tag, delivery tag, redelivered, body)."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.connection = connection
        self.got: list[tuple[str, int, bool, bytes]] = []

    def __call__(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self.got.append((method.consumer_tag, method.delivery_tag, method.redelivered, body))

    def settle(self) -> list[tuple[str, int, bool, bytes]]:
        """Run the callbacks of deliveries already received."""
        self.connection.process_data_events(time_limit=0)
        return self.got

    def wait(self, count: int, timeout: float = 3.0) -> list[tuple[str, int, bool, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < count and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.02)
        return self.got

    def bodies(self) -> list[bytes]:
        return [body for *_, body in self.settle()]


def queue_state(broker: Any, name: str) -> tuple[int, int, int]:
    """(ready, unacked, consumers) of a queue, read on the broker's loop."""

    def read() -> tuple[int, int, int]:
        queue = broker.broker.vhosts["/"].queues[name]
        return queue.message_count, queue.unacked_count, queue.consumer_count

    return broker.call(read)


# -- basic.publish ---------------------------------------------------------------------------


def test_publish_to_missing_exchange_is_404(connection, unique):
    code, text = closed_channel(connection, lambda ch: ch.basic_publish(unique, "k", b"x"))
    assert (code, text) == (404, f"NOT_FOUND - no exchange '{unique}' in vhost '/'")


def test_mandatory_unroutable_is_returned_with_312(connection, unique):
    channel = connection.channel()
    returned = []
    channel.add_on_return_callback(lambda ch, method, props, body: returned.append((method, props, body)))
    channel.basic_publish("", unique, b"lost", pika.BasicProperties(message_id="m1"), mandatory=True)
    channel.basic_publish("amq.direct", unique, b"lost2", mandatory=True)
    channel.basic_publish("amq.direct", unique, b"dropped")  # not mandatory: dropped silently
    channel.queue_declare("", exclusive=True)
    connection.process_data_events(time_limit=0)
    assert [(m.reply_code, m.reply_text, m.exchange, m.routing_key, b) for m, _, b in returned] == [
        (312, "NO_ROUTE", "", unique, b"lost"),
        (312, "NO_ROUTE", "amq.direct", unique, b"lost2"),
    ]
    assert returned[0][1].message_id == "m1"


def test_immediate_publish_closes_the_connection_with_540(broker):
    raw = RawClient.connected(broker.port)
    raw.publish(1, "", "any", immediate=True)
    close = raw.expect(0, commands.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        540,
        "NOT_IMPLEMENTED - immediate=true",
        60,
        40,
    )
    raw.close()


@pytest.mark.parametrize("frame_max", [4096, 131072])
def test_large_body_spans_many_frames_intact(broker, unique, frame_max):
    body = bytes(range(256)) * 4096  # 1 MiB
    connection = broker.connect(frame_max=frame_max)
    try:
        channel = connection.channel()
        queue = new_queue(channel)
        publish(channel, queue, body, body[:-1])
        method, _props, got = channel.basic_get(queue, auto_ack=True)
        assert (got == body, len(got), method.message_count) == (True, len(body), 1)
        collector = Collector(connection)
        channel.basic_consume(queue, collector, auto_ack=True)
        assert collector.wait(1)[0][3] == body[:-1]
    finally:
        connection.close()


def test_large_body_frames_respect_negotiated_frame_max(broker, unique):
    raw = RawClient.connected(broker.port, frame_max=4096)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    body = b"z" * 20000
    raw.send(1, commands.Basic.Publish(exchange="", routing_key=unique))
    raw.send(1, ContentHeader(0, len(body), commands.Basic.Properties()))
    for start in range(0, len(body), 4088):
        raw.send(1, ContentBody(body[start : start + 4088]))
    raw.send(1, commands.Basic.Get(queue=unique, no_ack=True))
    raw.expect(1, commands.Basic.GetOk)
    raw.expect(1, ContentHeader)
    sizes = []
    received = b""
    while len(received) < len(body):
        frame_type, _channel, payload, _value = raw.next()
        assert frame_type == 3
        sizes.append(len(payload))
        received += payload
    assert received == body
    assert max(sizes) == 4096 - 8 and len(sizes) == 5
    raw.close()


def _header(body_size: int, class_id: int = 60) -> bytes:
    return struct.pack(">HHQH", class_id, 0, body_size, 0)


BODY_EXPECTED = "UNEXPECTED_FRAME - expected content body, got non content body frame instead"
HEADER_EXPECTED = (
    "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
)
METHOD_EXPECTED = "UNEXPECTED_FRAME - expected method frame, got non method frame instead"


@pytest.mark.parametrize(
    ("frames", "text", "method"),
    [
        ([(2, _header(10)), (1, None)], BODY_EXPECTED, (60, 40)),
        ([(2, _header(10)), (2, _header(10))], BODY_EXPECTED, (60, 40)),
        # More body than announced: absorbed, then the next non-body frame fails.
        ([(2, _header(3)), (3, b"abcdef"), (1, None)], BODY_EXPECTED, (60, 40)),
        # Over the 128 MiB max_message_size: refused only once all of it has come.
        ([(2, _header(134217729)), (3, b"x"), (1, None)], BODY_EXPECTED, (60, 40)),
        ([(3, b"x")], HEADER_EXPECTED, (60, 40)),
        ([(1, None)], HEADER_EXPECTED, (60, 40)),
        (
            [(2, _header(1, class_id=50))],
            "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead",
            (60, 40),
        ),
        ([(2, _header(0)), (3, b"x")], METHOD_EXPECTED, (0, 0)),
    ],
)
def test_content_frames_out_of_place_close_the_connection(broker, frames, text, method):
    raw = RawClient.connected(broker.port)
    raw.send(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
    for frame_type, payload in frames:
        if frame_type == 1:
            raw.send(1, commands.Basic.Qos())
        else:
            raw.send_frame(frame_type, 1, payload)
    close = raw.expect(0, commands.Connection.Close)
    assert (close.reply_code, close.reply_text, (close.class_id, close.method_id)) == (505, text, method)
    raw.close()


def test_body_split_over_frames_with_an_empty_one(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.send(1, commands.Basic.Publish(exchange="", routing_key=unique))
    raw.send_frame(2, 1, _header(6))
    for part in (b"abc", b"", b"def"):
        raw.send_frame(3, 1, part)
    raw.rpc(1, commands.Basic.Get(queue=unique, no_ack=True), commands.Basic.GetOk)
    raw.expect(1, ContentHeader)
    assert raw.expect(1, ContentBody).value == b"abcdef"
    raw.close()


def test_empty_body_round_trips(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, b"", b"", content_type="text/plain")
    method, props, body = channel.basic_get(queue, auto_ack=True)
    assert (body, props.content_type, method.message_count) == (b"", "text/plain", 1)
    collector = Collector(connection)
    channel.basic_consume(queue, collector, auto_ack=True)
    assert collector.wait(1)[0][3] == b""


def test_all_basic_properties_survive_byte_for_byte(broker, unique):
    """The broker forwards the publisher's content header unchanged (field-table value types
    included, which a decode/re-encode would not keep)."""
    properties = commands.Basic.Properties(
        content_type="application/x-test",
        content_encoding="gzip",
        headers={
            "b": 1,  # pamqp sends a short-short int, pika would send a signed 32-bit one
            "s": "text",
            "f": 1.5,
            "nested": {"list": [1, "two", True], "x": bytearray(b"\x00\x01")},
            "t": None,
        },
        delivery_mode=2,
        priority=7,
        correlation_id="corr",
        reply_to="reply",
        expiration="60000",
        message_id="mid",
        timestamp=None,
        message_type="kind",
        user_id="guest",
        app_id="app",
    )
    header = ContentHeader(0, 3, properties).marshal()
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.send(1, commands.Basic.Publish(exchange="", routing_key=unique))
    raw.send_frame(2, 1, header)
    raw.send(1, ContentBody(b"abc"))
    raw.send(1, commands.Basic.Get(queue=unique, no_ack=False))
    raw.expect(1, commands.Basic.GetOk)
    assert raw.next().payload == header  # the content header frame's payload
    assert raw.next().payload == b"abc"
    raw.send(1, commands.Basic.Nack(delivery_tag=1, requeue=True))
    raw.rpc(1, commands.Basic.Consume(queue=unique, consumer_tag="c", no_ack=True), commands.Basic.ConsumeOk)
    deliver = raw.expect(1, commands.Basic.Deliver)
    assert (deliver.redelivered, raw.next().payload, raw.next().payload) == (True, header, b"abc")
    raw.close()


def test_properties_round_trip_through_pika(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    sent = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"int": 5, "str": "v", "list": [1, 2], "table": {"a": "b"}, "bool": True},
        delivery_mode=2,
        priority=3,
        correlation_id="c",
        reply_to="r",
        expiration="100000",
        message_id="m",
        timestamp=1700000000,
        type="t",
        user_id="guest",
        app_id="a",
        cluster_id="cl",
    )
    channel.basic_publish("", queue, b"{}", sent)
    _method, props, _body = channel.basic_get(queue, auto_ack=True)
    assert vars(props) == vars(sent)


def test_user_id_must_be_the_authenticated_user(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, b"ok", user_id="guest")
    assert channel.basic_get(queue, auto_ack=True)[1].user_id == "guest"
    code, text = closed_channel(connection, lambda ch: publish(ch, queue, b"bad", user_id="bob"))
    assert (code, text) == (
        406,
        "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'",
    )


# -- basic.consume / basic.cancel ------------------------------------------------------------


def test_no_ack_consumer_leaves_nothing_unacked(broker, connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, b"a", b"b", b"c")
    collector = Collector(connection)
    channel.basic_consume(queue, collector, auto_ack=True)
    assert [body for *_, body in collector.wait(3)] == [b"a", b"b", b"c"]
    assert queue_state(broker, queue) == (0, 0, 1)


def test_exclusive_consumer_refuses_a_second_consumer(broker, connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, auto_delete=True)
    channel.basic_consume(unique, lambda *a: None, exclusive=True)
    expected = (403, f"ACCESS_REFUSED - queue '{unique}' in vhost '/' in exclusive use")
    assert closed_channel(connection, lambda ch: ch.basic_consume(unique, lambda *a: None)) == expected
    other = broker.connect()
    try:
        assert closed_channel(other, lambda ch: ch.basic_consume(unique, lambda *a: None)) == expected
    finally:
        other.close()


def test_exclusive_consumer_refused_when_queue_has_consumers(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, auto_delete=True)
    channel.basic_consume(unique, lambda *a: None)
    code, text = closed_channel(
        connection, lambda ch: ch.basic_consume(unique, lambda *a: None, exclusive=True)
    )
    # RabbitMQ 3.10 says the same in both directions.
    assert (code, text) == (403, f"ACCESS_REFUSED - queue '{unique}' in vhost '/' in exclusive use")


def test_exclusive_consumer_allows_basic_get_elsewhere(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue, lambda *a: None, exclusive=True)
    publish(channel, queue, b"a", b"b")
    method, _props, body = connection.channel().basic_get(queue, auto_ack=True)
    assert (body, method.message_count) == (b"b", 0)


def test_duplicate_consumer_tag_closes_the_connection_with_530(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.rpc(1, commands.Queue.Declare(queue=unique + "2", exclusive=True), commands.Queue.DeclareOk)
    raw.rpc(1, commands.Basic.Consume(queue=unique, consumer_tag="tag"), commands.Basic.ConsumeOk)
    raw.send(1, commands.Basic.Consume(queue=unique + "2", consumer_tag="tag"))  # another queue: still reuse
    close = raw.expect(0, commands.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        530,
        "NOT_ALLOWED - attempt to reuse consumer tag 'tag'",
        60,
        20,
    )
    raw.close()


def test_generated_consumer_tags(broker, unique):
    raw = RawClient.connected(broker.port)  # pika always makes up its own tags
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    tags = set()
    for _ in range(3):
        tags.add(
            raw.rpc(1, commands.Basic.Consume(queue=unique, consumer_tag=""), commands.Basic.ConsumeOk).consumer_tag
        )
    raw.close()
    assert len(tags) == 3
    assert all(tag.startswith("amq.ctag-") and len(tag) == 31 for tag in tags)


def test_same_consumer_tag_on_two_channels_is_fine(connection, unique):
    first, second = connection.channel(), connection.channel()
    queue = new_queue(first)
    assert first.basic_consume(queue, lambda *a: None, consumer_tag="same") == "same"
    assert second.basic_consume(queue, lambda *a: None, consumer_tag="same") == "same"


def test_consumer_priority_serves_higher_priority_first_while_it_has_capacity(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    channel.basic_qos(prefetch_count=2)
    collector = Collector(connection)
    channel.basic_consume(queue, collector, consumer_tag="low")
    channel.basic_consume(queue, collector, consumer_tag="high", arguments={"x-priority": 5})
    publish(channel, queue, b"0", b"1", b"2", b"3", b"4")
    assert [(tag, body) for tag, _, _, body in collector.wait(4)] == [
        ("high", b"0"),
        ("high", b"1"),
        ("low", b"2"),
        ("low", b"3"),
    ]
    channel.basic_ack(2)  # high has room again: it gets the next one
    assert collector.wait(5)[4][::3] == ("high", b"4")


@pytest.mark.parametrize(
    ("value", "type_name"), [("high", "longstr"), (Decimal("1.5"), "decimal"), (True, "bool")]
)
def test_invalid_consumer_priority(connection, unique, value, type_name):
    queue = new_queue(connection.channel())
    code, text = closed_channel(
        connection, lambda ch: ch.basic_consume(queue, lambda *a: None, arguments={"x-priority": value})
    )
    assert (code, text) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{queue}' in vhost '/': "
        f'"expected integer, got {type_name}"',
    )


def test_round_robin_across_consumers(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    collector = Collector(connection)
    for tag in ("a", "b", "c"):
        channel.basic_consume(queue, collector, auto_ack=True, consumer_tag=tag)
    publish(channel, queue, *[b"%d" % i for i in range(6)])
    assert [(tag, body) for tag, _, _, body in collector.wait(6)] == [
        ("a", b"0"),
        ("b", b"1"),
        ("c", b"2"),
        ("a", b"3"),
        ("b", b"4"),
        ("c", b"5"),
    ]


def test_round_robin_with_prefetch_one(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, *[b"%d" % i for i in range(4)])
    channel.basic_qos(prefetch_count=1)
    collector = Collector(connection)
    channel.basic_consume(queue, collector, consumer_tag="a")
    channel.basic_consume(queue, collector, consumer_tag="b")
    message_count(channel, queue)
    assert [(tag, body) for tag, _, _, body in collector.settle()] == [("a", b"0"), ("b", b"1")]
    channel.basic_ack(0, multiple=True)
    message_count(channel, queue)
    assert [(tag, body) for tag, _, _, body in collector.settle()[2:]] == [("a", b"2"), ("b", b"3")]


def test_basic_cancel_known_and_unknown_tags(broker, connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    tag = channel.basic_consume(queue, lambda *a: None)
    assert queue_state(broker, queue)[2] == 1
    channel.basic_cancel(tag)
    assert queue_state(broker, queue)[2] == 0
    raw = RawClient.connected(broker.port)
    ok = raw.rpc(1, commands.Basic.Cancel(consumer_tag="never-made"), commands.Basic.CancelOk)
    assert ok.consumer_tag == "never-made"
    raw.close()


def test_cancelled_consumer_messages_stay_unacked_until_acked(broker, connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, b"a", b"b")
    collector = Collector(connection)
    tag = channel.basic_consume(queue, collector)
    collector.wait(2)
    channel.basic_cancel(tag)
    assert queue_state(broker, queue) == (0, 2, 0)
    channel.basic_ack(1)
    channel.basic_nack(2, requeue=True)
    assert message_count(channel, queue) == 1


@pytest.mark.parametrize("method", ["consume", "get"])
def test_consume_or_get_on_missing_queue_is_404(connection, unique, method):
    def action(ch: Any) -> None:
        if method == "consume":
            ch.basic_consume(unique, lambda *a: None)
        else:
            ch.basic_get(unique)

    assert closed_channel(connection, action) == (404, f"NOT_FOUND - no queue '{unique}' in vhost '/'")


def test_empty_queue_name_without_a_declared_queue_is_404(broker):
    raw = RawClient.connected(broker.port)
    close = raw.rpc(1, commands.Basic.Consume(queue=""), commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        404,
        "NOT_FOUND - no previously declared queue",
        60,
        20,
    )
    raw.close()


# -- basic.get, ack, nack, reject ------------------------------------------------------------


def test_get_and_get_empty_with_message_count(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    assert channel.basic_get(queue) == (None, None, None)
    publish(channel, queue, b"a", b"b", b"c")
    counts = []
    for expected in (b"a", b"b", b"c"):
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        assert (body, method.redelivered, method.exchange, method.routing_key) == (expected, False, "", queue)
        counts.append(method.message_count)
    assert counts == [2, 1, 0]
    assert channel.basic_get(queue) == (None, None, None)


def test_delivery_tags_are_shared_by_get_and_consume(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, b"a", b"b")
    assert channel.basic_get(queue)[0].delivery_tag == 1
    collector = Collector(connection)
    channel.basic_consume(queue, collector)
    assert collector.wait(1)[0][1] == 2


def test_requeued_messages_keep_their_place_and_are_redelivered(broker, connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, *[b"m%d" % i for i in range(6)])
    tags = [channel.basic_get(queue)[0].delivery_tag for _ in range(5)]  # m0..m4 unacked, m5 ready
    channel.basic_reject(tags[1], requeue=True)  # m1
    channel.basic_nack(tags[3], multiple=True, requeue=True)  # m0, m2, m3
    channel.basic_ack(tags[4])  # m4
    assert message_count(channel, queue) == 5
    assert queue_state(broker, queue) == (5, 0, 0)
    got = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        got.append((body, method.redelivered))
    assert got == [(b"m0", True), (b"m1", True), (b"m2", True), (b"m3", True), (b"m5", False)]


def test_nack_and_reject_without_requeue_drop(broker, connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, b"a", b"b", b"c")
    for _ in range(3):
        channel.basic_get(queue)
    channel.basic_reject(1, requeue=False)
    channel.basic_nack(3, multiple=True, requeue=False)
    assert message_count(channel, queue) == 0
    assert queue_state(broker, queue) == (0, 0, 0)


@pytest.mark.parametrize(
    ("method", "method_id"),
    [
        (commands.Basic.Ack(delivery_tag=5), 80),
        (commands.Basic.Ack(delivery_tag=0), 80),
        (commands.Basic.Ack(delivery_tag=7, multiple=True), 80),
        (commands.Basic.Nack(delivery_tag=5), 120),
        (commands.Basic.Reject(delivery_tag=5), 90),
    ],
)
def test_unknown_delivery_tag_is_406(broker, method, method_id):
    raw = RawClient.connected(broker.port)
    raw.send(1, method)
    close = raw.expect(1, commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        f"PRECONDITION_FAILED - unknown delivery tag {method.delivery_tag}",
        60,
        method_id,
    )
    raw.close()


def test_double_ack_is_406(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, b"a")
    tag = channel.basic_get(queue)[0].delivery_tag
    channel.basic_ack(tag)
    code, text = closes(channel, lambda: channel.basic_ack(tag))
    assert (code, text) == (406, "PRECONDITION_FAILED - unknown delivery tag 1")


def test_ack_multiple_with_tag_zero_acks_everything(broker, connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, b"a", b"b", b"c")
    collector = Collector(connection)
    channel.basic_consume(queue, collector)
    collector.wait(3)
    assert queue_state(broker, queue) == (0, 3, 1)
    channel.basic_ack(0, multiple=True)
    message_count(channel, queue)
    assert queue_state(broker, queue) == (0, 0, 1)
    channel.basic_ack(0, multiple=True)  # nothing outstanding: still fine
    message_count(channel, queue)


def test_ack_multiple_up_to_a_tag(broker, connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, b"a", b"b", b"c", b"d")
    for _ in range(4):
        channel.basic_get(queue)
    channel.basic_ack(2, multiple=True)
    message_count(channel, queue)
    assert queue_state(broker, queue) == (0, 2, 0)
    assert closes(channel, lambda: channel.basic_ack(1)) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 1",
    )


def test_recover_requeue_redelivers_all_unacked(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, b"a", b"b", b"c")
    collector = Collector(connection)
    channel.basic_consume(queue, collector)
    collector.wait(3)
    channel.basic_ack(2)
    channel.basic_recover(requeue=True)
    collector.wait(5)
    assert collector.got[3:] == [
        (collector.got[0][0], 4, True, b"a"),
        (collector.got[0][0], 5, True, b"c"),
    ]


def test_recover_without_requeue_closes_the_connection_with_540(broker):
    raw = RawClient.connected(broker.port)
    raw.send(1, commands.Basic.Recover(requeue=False))
    close = raw.expect(0, commands.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        540,
        "NOT_IMPLEMENTED - requeue=false",
        60,
        110,
    )
    raw.close()


@pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")
def test_recover_async(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.publish(1, "", unique, b"m")
    raw.send(1, commands.Basic.Get(queue=unique))
    raw.expect(1, commands.Basic.GetOk)
    raw.next()
    raw.next()
    raw.send(1, commands.Basic.RecoverAsync(requeue=True))  # no reply to this one
    ok = raw.rpc(1, commands.Basic.Get(queue=unique), commands.Basic.GetOk)
    assert (ok.delivery_tag, ok.redelivered) == (2, True)
    raw.next()
    raw.next()
    raw.send(1, commands.Basic.RecoverAsync(requeue=False))
    close = raw.expect(0, commands.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        540,
        "NOT_IMPLEMENTED - requeue=false",
        60,
        100,
    )
    raw.close()


# -- basic.qos -------------------------------------------------------------------------------


def test_per_consumer_prefetch_applies_to_consumers_made_later(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, *[b"%d" % i for i in range(6)])
    channel.basic_qos(prefetch_count=2)
    collector = Collector(connection)
    channel.basic_consume(queue, collector, consumer_tag="a")
    message_count(channel, queue)
    assert collector.bodies() == [b"0", b"1"]
    channel.basic_qos(prefetch_count=4)  # not for "a": it keeps its window of 2
    assert message_count(channel, queue) == 4
    assert collector.settle() and collector.bodies() == [b"0", b"1"]
    channel.basic_consume(queue, collector, consumer_tag="b")  # "b" gets a window of 4
    assert message_count(channel, queue) == 0
    assert [tag for tag, *_ in collector.settle()] == ["a", "a", "b", "b", "b", "b"]
    channel.basic_ack(1)
    message_count(channel, queue)
    assert len(collector.settle()) == 6  # nothing left to deliver


def test_global_prefetch_is_shared_by_the_channel_consumers(connection, unique):
    channel = connection.channel()
    first, second = new_queue(channel), new_queue(channel)
    publish(channel, first, b"a0", b"a1", b"a2", b"a3")
    publish(channel, second, b"b0", b"b1", b"b2", b"b3")
    channel.basic_qos(prefetch_count=3, global_qos=True)
    collector = Collector(connection)
    channel.basic_consume(first, collector, consumer_tag="a")
    channel.basic_consume(second, collector, consumer_tag="b")
    message_count(channel, first)
    assert collector.settle() and collector.bodies() == [b"a0", b"a1", b"a2"]
    channel.basic_ack(2, multiple=True)
    message_count(channel, first)
    assert {(tag, body) for tag, _, _, body in collector.settle()[3:]} == {("a", b"a3"), ("b", b"b0")}


def test_global_and_per_consumer_prefetch_both_apply(connection, unique):
    channel = connection.channel()
    first, second = new_queue(channel), new_queue(channel)
    publish(channel, first, b"a0", b"a1")
    publish(channel, second, b"b0", b"b1")
    channel.basic_qos(prefetch_count=3, global_qos=True)
    channel.basic_qos(prefetch_count=1)
    collector = Collector(connection)
    channel.basic_consume(first, collector, consumer_tag="a")
    channel.basic_consume(second, collector, consumer_tag="b")
    message_count(channel, first)
    assert collector.settle() and collector.bodies() == [b"a0", b"b0"]


def test_raising_global_prefetch_releases_more_deliveries(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    publish(channel, queue, *[b"%d" % i for i in range(5)])
    channel.basic_qos(prefetch_count=1, global_qos=True)
    collector = Collector(connection)
    channel.basic_consume(queue, collector)
    message_count(channel, queue)
    assert collector.settle() and collector.bodies() == [b"0"]
    channel.basic_qos(prefetch_count=3, global_qos=True)
    message_count(channel, queue)
    assert collector.settle() and collector.bodies() == [b"0", b"1", b"2"]
    channel.basic_qos(prefetch_count=0, global_qos=True)  # unlimited
    message_count(channel, queue)
    assert collector.settle() and len(collector.got) == 5


def test_basic_get_does_not_count_against_prefetch(connection, unique):
    for global_qos in (False, True):
        channel = connection.channel()
        queue = new_queue(channel)
        publish(channel, queue, *[b"%d" % i for i in range(5)])
        channel.basic_qos(prefetch_count=2, global_qos=global_qos)
        assert channel.basic_get(queue)[2] == b"0"  # unacked, outside the window
        collector = Collector(connection)
        channel.basic_consume(queue, collector)
        message_count(channel, queue)
        assert collector.settle() and collector.bodies() == [b"1", b"2"]


def test_prefetch_size_closes_the_connection_with_540(broker):
    for global_qos in (False, True):
        raw = RawClient.connected(broker.port)
        method = commands.Basic.Qos(prefetch_size=10, prefetch_count=0, global_=global_qos)
        raw.send(1, method)
        close = raw.expect(0, commands.Connection.Close)
        assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
            540,
            "NOT_IMPLEMENTED - prefetch_size!=0 (10)",
            60,
            10,
        )
        raw.close()


# -- unacked messages when a channel or connection goes ---------------------------------------


def test_unacked_return_in_order_redelivered_when_the_channel_closes(connection, unique):
    keeper = connection.channel()
    queue = new_queue(keeper)
    publish(keeper, queue, *[b"m%d" % i for i in range(5)])
    channel = connection.channel()
    collector = Collector(connection)
    channel.basic_consume(queue, collector)
    collector.wait(5)
    channel.basic_ack(2)
    channel.close()
    assert message_count(keeper, queue) == 4
    got = [keeper.basic_get(queue, auto_ack=True) for _ in range(4)]
    assert [(m.redelivered, body) for m, _p, body in got] == [
        (True, b"m0"),
        (True, b"m2"),
        (True, b"m3"),
        (True, b"m4"),
    ]


def test_unacked_return_when_the_connection_closes(broker, connection, unique):
    keeper = connection.channel()
    keeper.queue_declare(unique, auto_delete=False)
    try:
        publish(keeper, unique, *[b"m%d" % i for i in range(4)])
        other = broker.connect()
        channel = other.channel()
        channel.basic_get(unique)  # unacked by get, tag 1
        collector = Collector(other)
        channel.basic_consume(unique, collector)
        collector.wait(3)
        channel.basic_ack(3)  # m2
        other.close()
        assert message_count(keeper, unique) == 3
        got = [keeper.basic_get(unique, auto_ack=True) for _ in range(3)]
        assert [(m.redelivered, body) for m, _p, body in got] == [(True, b"m0"), (True, b"m1"), (True, b"m3")]
    finally:
        keeper.queue_delete(unique)


def test_unacked_return_when_the_broker_closes_the_channel(connection, unique):
    keeper = connection.channel()
    queue = new_queue(keeper)
    publish(keeper, queue, b"a", b"b")
    channel = connection.channel()
    channel.basic_get(queue)
    channel.basic_get(queue)
    assert closes(channel, lambda: channel.basic_ack(99))[0] == 406
    got = [keeper.basic_get(queue, auto_ack=True) for _ in range(2)]
    assert [(m.redelivered, body) for m, _p, body in got] == [(True, b"a"), (True, b"b")]


# -- channel.flow ----------------------------------------------------------------------------


def test_channel_flow(broker, connection):
    assert connection.channel().flow(True) is True
    raw = RawClient.connected(broker.port)
    raw.send(1, commands.Channel.Flow(active=False))
    close = raw.expect(0, commands.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        540,
        "NOT_IMPLEMENTED - active=false",
        20,
        20,
    )
    raw.close()
