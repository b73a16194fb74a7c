"""What every queue type must do, checked through the wire for each type in the queue-type
registry (classic and quorum today; a new type passes this module before it lands): declare
and redeclare, publish and consume in order, ack, requeue (redelivered; back in place, or at the
back for a quorum queue, as RabbitMQ 3.10 does), reject
to a dead-letter exchange, basic.get, purge, counts, delete with consumers told, and refusal
of arguments the generic checks refuse."""

from __future__ import annotations

import pika
import pytest
from conftest import BrokerHandle
from helpers import message_count

from queues.registry import load_queue_types

QUEUE_TYPES = sorted(load_queue_types())
# Where requeued messages go: their original places, or the back of the queue in the order
# they were returned (rabbit_fifo).
REQUEUED_TO_THE_BACK = {"quorum"}


@pytest.fixture(params=QUEUE_TYPES)
def declare(request: pytest.FixtureRequest, connection, channel, unique: str):  # noqa: ANN001, ANN201
    queue_type = request.param

    def declare_queue(name: str = unique, **arguments: object) -> str:
        channel.queue_declare(name, durable=True, arguments={"x-queue-type": queue_type, **arguments})
        return name

    declare_queue.queue_type = queue_type  # type: ignore[attr-defined]
    yield declare_queue
    connection.channel().queue_delete(unique)  # (a test may have closed ``channel``)


def _publish(channel, queue: str, bodies: list[bytes]) -> None:  # noqa: ANN001
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))


def test_declare_is_idempotent_and_counts(declare, channel) -> None:  # noqa: ANN001
    queue = declare()
    ok = channel.queue_declare(queue, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (0, 0)
    declare()  # the same declaration again is no error


def test_messages_come_out_in_order_and_ack_settles(declare, channel, connection) -> None:  # noqa: ANN001
    queue = declare()
    _publish(channel, queue, [b"%d" % i for i in range(20)])
    assert message_count(channel, queue) == 20
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=5)
    got = []
    for method, _, body in consumer.consume(queue, inactivity_timeout=5):
        assert method is not None
        got.append(body)
        consumer.basic_ack(method.delivery_tag)
        if len(got) == 20:
            break
    consumer.cancel()
    assert got == [b"%d" % i for i in range(20)]
    assert message_count(channel, queue) == 0


def test_requeued_messages_come_back_redelivered(declare, channel) -> None:  # noqa: ANN001
    queue = declare()
    _publish(channel, queue, [b"a", b"b", b"c"])
    first, _, _ = channel.basic_get(queue)
    second, _, _ = channel.basic_get(queue)
    channel.basic_nack(second.delivery_tag, requeue=True)
    channel.basic_nack(first.delivery_tag, requeue=True)
    bodies = []
    for _ in range(3):
        method, _, body = channel.basic_get(queue, auto_ack=True)
        bodies.append((body, method.redelivered))
    if declare.queue_type in REQUEUED_TO_THE_BACK:
        assert bodies == [(b"c", False), (b"b", True), (b"a", True)]
    else:
        assert bodies == [(b"a", True), (b"b", True), (b"c", False)]


def test_rejected_messages_are_dead_lettered(declare, channel, unique: str) -> None:  # noqa: ANN001
    dead = f"{unique}-dead"
    channel.queue_declare(dead, auto_delete=True)
    queue = declare(**{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    _publish(channel, queue, [b"bad"])
    method, _, _ = channel.basic_get(queue)
    channel.basic_reject(method.delivery_tag, requeue=False)
    method, properties, body = channel.basic_get(dead, auto_ack=True)
    assert body == b"bad" and properties.headers["x-death"][0]["reason"] == "rejected"
    assert properties.headers["x-death"][0]["queue"] == queue


def test_purge_and_delete(declare, channel, connection) -> None:  # noqa: ANN001
    queue = declare()
    _publish(channel, queue, [b"1", b"2"])
    assert channel.queue_purge(queue).method.message_count == 2
    assert channel.basic_get(queue)[0] is None
    watcher = connection.channel()
    cancelled = []
    watcher.add_on_cancel_callback(lambda frame: cancelled.append(frame))
    watcher.basic_consume(queue, lambda *args: None)
    _publish(channel, queue, [b"3"])
    connection.process_data_events(time_limit=0.2)
    channel.queue_delete(queue)
    connection.process_data_events(time_limit=0.5)
    assert cancelled, "the consumer of a deleted queue is told with basic.cancel"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.queue_declare(queue, passive=True)
    assert info.value.reply_code == 404


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
def test_generic_argument_checks_apply(broker: BrokerHandle, unique: str, queue_type: str) -> None:
    with broker.connect() as connection:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            channel.queue_declare(unique, arguments={"x-queue-type": queue_type, "x-max-length": -1})
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-max-length' for queue '{unique}' in vhost '/': {{value_negative,-1}}"
    )
