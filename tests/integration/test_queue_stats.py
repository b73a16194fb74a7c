"""Per-queue counters (``stats()``, kept in O(1)) driven through the wire, and the length limits
whose effect they show: limits count ready messages only, a policy lowering max-length drops at
once, reject-publish refuses without dead-lettering (recorded against RabbitMQ 3.10.8)."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from helpers import message_count_on, queue_stats, wait_until


def test_lengths_bytes_and_totals(broker, connection, unique):
    """As the reference's http_queue_full.json: 5 x 30 B, a consumer with prefetch 2, one get."""
    channel = connection.channel()
    channel.queue_declare(unique)
    for _ in range(5):
        channel.basic_publish("", unique, b"x" * 30)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=2)
    got: list[Any] = []
    consumer.basic_consume(unique, lambda ch, m, p, b: got.append(m))
    wait_until(connection, lambda: len(got) == 2)
    channel.basic_get(unique, auto_ack=True)
    current = queue_stats(broker, unique)
    assert {key: current[key] for key in (
        "messages", "messages_ready", "messages_unacknowledged", "message_bytes", "message_bytes_ready",
        "message_bytes_unacknowledged", "consumers", "publish", "deliver", "deliver_no_ack", "get",
        "deliver_get", "redeliver",
    )} == {
        "messages": 4, "messages_ready": 2, "messages_unacknowledged": 2, "message_bytes": 120,
        "message_bytes_ready": 60, "message_bytes_unacknowledged": 60, "consumers": 1, "publish": 5,
        "deliver": 2, "deliver_no_ack": 0, "get": 1, "deliver_get": 3, "redeliver": 0,
    }  # fmt: skip
    acked_before = current["ack"]
    consumer.basic_ack(got[0].delivery_tag)
    consumer.basic_nack(got[1].delivery_tag, requeue=True)  # back, then redelivered to the consumer
    wait_until(connection, lambda: len(got) == 4)
    current = queue_stats(broker, unique)
    assert current["ack"] == acked_before + 1
    assert current["redeliver"] == 1
    assert (current["messages_ready"], current["messages_unacknowledged"]) == (1, 2)
    assert (current["message_bytes_ready"], current["message_bytes_unacknowledged"]) == (30, 60)


def test_no_ack_deliveries_and_refused_publishes(broker, connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"a")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", unique, b"b")
    assert queue_stats(broker, unique)["publish"] == 1  # a refused publish is not counted
    got: list[bytes] = []
    channel.basic_consume(unique, lambda ch, m, p, b: got.append(b), auto_ack=True)
    wait_until(connection, lambda: got == [b"a"])
    current = queue_stats(broker, unique)
    assert (current["deliver_no_ack"], current["deliver"], current["messages"]) == (1, 0, 0)


def test_closing_a_channel_moves_unacked_back_to_ready(broker, connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"abc")
    consumer = connection.channel()
    consumer.basic_get(unique)
    assert queue_stats(broker, unique)["message_bytes_unacknowledged"] == 3
    consumer.close()
    current = queue_stats(broker, unique)
    assert (current["messages_ready"], current["messages_unacknowledged"]) == (1, 0)
    assert (current["message_bytes_ready"], current["message_bytes_unacknowledged"]) == (3, 0)


# -- length limits -------------------------------------------------------------------------


def test_unacked_messages_do_not_count_towards_max_length(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-max-length": 2})
    channel.basic_publish("", unique, b"k1")
    channel.basic_get(unique)  # unacked
    channel.basic_publish("", unique, b"k2")
    channel.basic_publish("", unique, b"k3")
    assert message_count_on(connection, unique) == 2


def test_requeue_over_the_limit_drops_the_head(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-max-length": 1})
    channel.basic_publish("", unique, b"k1")
    method, _props, _body = channel.basic_get(unique)
    channel.basic_publish("", unique, b"k3")
    channel.basic_reject(method.delivery_tag, requeue=True)  # k1 back at the head, over the limit
    _method, _props, body = channel.basic_get(unique, auto_ack=True)
    assert body == b"k3"
    assert channel.basic_get(unique)[0] is None


def test_max_length_bytes_counts_bodies_and_drops_a_too_big_message(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-max-length-bytes": 10})
    channel.basic_publish("", unique, b"x" * 11, pika.BasicProperties(headers={"big": "h" * 100}))
    assert message_count_on(connection, unique) == 0
    channel.basic_publish("", unique, b"a" * 5, pika.BasicProperties(headers={"big": "h" * 100}))
    channel.basic_publish("", unique, b"b" * 5)
    assert message_count_on(connection, unique) == 2
    channel.basic_publish("", unique, b"c")
    _method, _props, body = channel.basic_get(unique, auto_ack=True)
    assert body == b"b" * 5


def test_policy_lowering_max_length_drops_at_once(broker, connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique)
    for body in (b"1", b"2", b"3", b"4"):
        channel.basic_publish("", unique, body)
    broker.run(broker.admin.set_policy("/", unique, f"^{unique}$", {"max-length": 2}, apply_to="queues"))
    try:
        assert message_count_on(connection, unique) == 2
        assert channel.basic_get(unique, auto_ack=True)[2] == b"3"
    finally:
        broker.run(broker.admin.clear_policy("/", unique))


def test_reject_publish_with_a_dead_letter_exchange_does_not_dead_letter(connection, unique):
    channel = connection.channel()
    target = f"{unique}-dlq"
    channel.queue_declare(target)
    channel.queue_declare(
        unique,
        arguments={
            "x-max-length": 1,
            "x-overflow": "reject-publish",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": target,
        },
    )
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"a")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", unique, b"b")
    assert (message_count_on(connection, unique), message_count_on(connection, target)) == (1, 0)


def test_max_length_zero_delivers_only_to_a_waiting_consumer(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-max-length": 0})
    channel.basic_publish("", unique, b"dropped")
    assert message_count_on(connection, unique) == 0
    got: list[bytes] = []
    channel.basic_consume(unique, lambda ch, m, p, b: got.append(b), auto_ack=True)
    channel.basic_publish("", unique, b"delivered")
    wait_until(connection, lambda: got == [b"delivered"])
