"""Message TTL through the wire: x-message-ttl, the per-message ``expiration`` property, expiry at
the queue head only, TTL 0, publish-time validation of ``expiration`` and expired messages
dead-lettered, as RabbitMQ 3.10 does (recorded against RabbitMQ 3.10.8)."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from helpers import drain, message_count_on, wait_until
from pika.exceptions import ChannelClosedByBroker


def props(expiration: str | None = None, **kw: Any) -> pika.BasicProperties:
    return pika.BasicProperties(expiration=expiration, **kw)


def test_queue_ttl_expires_without_consumers(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-message-ttl": 100})
    channel.basic_publish("", unique, b"m")
    assert message_count_on(connection, unique) == 1
    # The queue's head timer removes it: the count drops with nobody asking.
    wait_until(connection, lambda: message_count_on(connection, unique) == 0)
    assert channel.basic_get(unique)[0] is None


def test_per_message_expiration_expires_and_is_delivered_unchanged(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"short", props("100"))
    channel.basic_publish("", unique, b"long", props("60000"))
    wait_until(connection, lambda: message_count_on(connection, unique) == 1)
    method, properties, body = channel.basic_get(unique, auto_ack=True)
    assert body == b"long"
    assert properties.expiration == "60000"  # queue-side expiry does not touch the message


def test_queue_ttl_does_not_add_an_expiration_property(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-message-ttl": 60000})
    channel.basic_publish("", unique, b"m")
    _method, properties, _body = channel.basic_get(unique, auto_ack=True)
    assert properties.expiration is None


@pytest.mark.parametrize(("queue_ttl", "expiration", "survives"), [(5000, "100", False), (100, "60000", False)])
def test_the_lower_of_queue_ttl_and_expiration_applies(connection, unique, queue_ttl, expiration, survives):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-message-ttl": queue_ttl})
    channel.basic_publish("", unique, b"m", props(expiration))
    wait_until(connection, lambda: message_count_on(connection, unique) == 0)


def test_policy_ttl_lower_than_argument_wins(broker, connection, unique):
    broker.run(broker.admin.set_policy("/", unique, f"^{unique}$", {"message-ttl": 100}, apply_to="queues"))
    try:
        channel = connection.channel()
        channel.queue_declare(unique, arguments={"x-message-ttl": 60000})
        channel.basic_publish("", unique, b"m")
        wait_until(connection, lambda: message_count_on(connection, unique) == 0)
    finally:
        broker.run(broker.admin.clear_policy("/", unique))


def test_expired_message_behind_a_live_one_counts_until_it_reaches_the_head(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"head", props("60000"))
    channel.basic_publish("", unique, b"expired", props("50"))
    channel.basic_publish("", unique, b"plain")
    connection.sleep(0.3)
    assert message_count_on(connection, unique) == 3  # only the head expires
    method, _props, body = channel.basic_get(unique, auto_ack=True)
    assert body == b"head"
    assert method.message_count == 1  # the expired one left as soon as it became the head
    assert drain(channel, unique) == [b"plain"]


def test_expired_message_behind_a_live_one_is_never_delivered_to_a_consumer(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"head", props("60000"))
    channel.basic_publish("", unique, b"expired", props("50"))
    channel.basic_publish("", unique, b"plain")
    connection.sleep(0.2)
    got: list[bytes] = []
    channel.basic_consume(unique, lambda ch, m, p, b: got.append(b), auto_ack=True)
    wait_until(connection, lambda: len(got) == 2)
    connection.sleep(0.05)
    assert got == [b"head", b"plain"]


def test_requeued_expired_message_is_dropped(connection, unique):
    """TTL counts from publish: a message that expired while unacked goes when requeued."""
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-message-ttl": 150})
    channel.basic_publish("", unique, b"m")
    method, _props, _body = channel.basic_get(unique)
    connection.sleep(0.25)
    channel.basic_reject(method.delivery_tag, requeue=True)
    assert message_count_on(connection, unique) == 0
    assert channel.basic_get(unique)[0] is None


def test_requeued_live_message_comes_back(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-message-ttl": 60000})
    channel.basic_publish("", unique, b"m")
    method, _props, _body = channel.basic_get(unique)
    channel.basic_reject(method.delivery_tag, requeue=True)
    method, _props, body = channel.basic_get(unique, auto_ack=True)
    assert (body, method.redelivered) == (b"m", True)


@pytest.mark.parametrize("ttl", [{"arguments": {"x-message-ttl": 0}}, {"expiration": "0"}])
def test_ttl_zero_without_a_waiting_consumer_drops(connection, unique, ttl):
    channel = connection.channel()
    channel.queue_declare(unique, arguments=ttl.get("arguments"))
    channel.basic_publish("", unique, b"m", props(ttl.get("expiration")))
    assert message_count_on(connection, unique) == 0
    assert channel.basic_get(unique)[0] is None


@pytest.mark.parametrize("ttl", [{"arguments": {"x-message-ttl": 0}}, {"expiration": "0"}])
def test_ttl_zero_delivers_to_a_waiting_consumer_only(connection, unique, ttl):
    channel = connection.channel()
    channel.queue_declare(unique, arguments=ttl.get("arguments"))
    consumer_channel = connection.channel()
    consumer_channel.basic_qos(prefetch_count=1)
    got: list[tuple[Any, Any, bytes]] = []
    consumer_channel.basic_consume(unique, lambda ch, m, p, b: got.append((m, p, b)))
    channel.basic_publish("", unique, b"first", props(ttl.get("expiration")))
    wait_until(connection, lambda: len(got) == 1)
    assert got[0][1].expiration == ttl.get("expiration")  # per-message "0" is kept on delivery
    # The consumer's window is full: the second has nobody waiting and goes at once.
    channel.basic_publish("", unique, b"second", props(ttl.get("expiration")))
    assert message_count_on(connection, unique) == 0
    consumer_channel.basic_ack(got[0][0].delivery_tag)
    connection.sleep(0.1)
    assert [b for _m, _p, b in got] == [b"first"]


LEFTOVER = "PRECONDITION_FAILED - invalid expiration '{0}': {{leftover_string,{1}}}"


@pytest.mark.parametrize(
    ("expiration", "text"),
    [
        ("abc", "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"),
        ("-1", "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}"),
        ("", "PRECONDITION_FAILED - invalid expiration '': no_integer"),
        (" 10", "PRECONDITION_FAILED - invalid expiration ' 10': no_integer"),
        ("+", "PRECONDITION_FAILED - invalid expiration '+': no_integer"),
        ("1.5", LEFTOVER.format("1.5", '".5"')),
        ("10 ", LEFTOVER.format("10 ", '" "')),
        ("1e3", LEFTOVER.format("1e3", '"e3"')),
        ("0x10", LEFTOVER.format("0x10", '"x10"')),
        ("315360000001", "PRECONDITION_FAILED - invalid expiration '315360000001': {value_too_large,315360000001}"),
        (
            "9999999999999999",
            "PRECONDITION_FAILED - invalid expiration '9999999999999999': {value_too_large,9999999999999999}",
        ),
        (
            "123456789012345678",
            "PRECONDITION_FAILED - invalid expiration '123456789012345678': {value_too_large,123456789012345678}",
        ),
        (  # Erlang's ~p wraps a term that would pass column 78, indenting to just after the brace
            "1234567890123456789",
            "PRECONDITION_FAILED - invalid expiration '1234567890123456789': {value_too_large,\n"
            + " " * 43
            + "1234567890123456789}",
        ),
        ("1" + "x" * 17, LEFTOVER.format("1" + "x" * 17, '"' + "x" * 17 + '"')),
        (
            "1" + "x" * 18,
            LEFTOVER.format("1" + "x" * 18, "\n" + " " * 43 + '"' + "x" * 18 + '"'),
        ),
        ("1\u00e9", LEFTOVER.format("1\u00e9", '"\u00e9"')),  # printable Latin-1 octets: a string
        ("1\u0101", LEFTOVER.format("1\u0101", "[196,129]")),  # else a list of the octets
        ('1"', LEFTOVER.format('1"', '"\\""')),
        (
            "18446744073709551616",
            "PRECONDITION_FAILED - invalid expiration '18446744073709551616': {value_too_large,\n"
            + " " * 44
            + "18446744073709551616}",
        ),
        (
            "1844674407370955161600",
            "PRECONDITION_FAILED - invalid expiration '1844674407370955161600': {value_too_large,\n"
            + " " * 46
            + "1844674407370955161600}",
        ),
    ],
)
def test_invalid_expiration_is_refused_at_publish(connection, unique, expiration, text):
    channel = connection.channel()
    channel.queue_declare(unique)
    channel.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as raised:
        channel.basic_publish("", unique, b"m", props(expiration))
    assert (raised.value.reply_code, raised.value.reply_text) == (406, text)
    assert message_count_on(connection, unique) == 0


@pytest.mark.parametrize("expiration", ["0", "+10000", "010000", "315360000000"])
def test_valid_expirations_are_accepted(connection, unique, expiration):
    channel = connection.channel()
    channel.queue_declare(unique)
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"m", props(expiration))
    assert channel.is_open


def test_expired_messages_are_dead_lettered_with_reason_expired(connection, unique):
    channel = connection.channel()
    target = f"{unique}-dlq"
    channel.queue_declare(target)
    channel.queue_declare(
        unique,
        arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": target},
    )
    channel.basic_publish("", unique, b"queue-ttl")
    channel.basic_publish("", unique, b"own-ttl", props("50"))
    wait_until(connection, lambda: message_count_on(connection, target) == 2)
    assert message_count_on(connection, unique) == 0
    _m, first, body1 = channel.basic_get(target, auto_ack=True)
    _m, second, body2 = channel.basic_get(target, auto_ack=True)
    assert (body1, body2) == (b"queue-ttl", b"own-ttl")
    for properties in (first, second):
        (death,) = properties.headers["x-death"]
        assert (death["reason"], death["queue"], death["count"]) == ("expired", unique, 1)
        assert properties.expiration is None
    assert "original-expiration" not in first.headers["x-death"][0]
    assert second.headers["x-death"][0]["original-expiration"] == "50"


def test_expired_without_dead_letter_exchange_just_goes(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-message-ttl": 50})
    for index in range(20):
        channel.basic_publish("", unique, str(index).encode())
    wait_until(connection, lambda: message_count_on(connection, unique) == 0)


def test_ttl_applies_to_messages_reaching_an_existing_consumer_late(connection, unique):
    """A consumer whose window is full: the messages waiting for it still expire."""
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-message-ttl": 100})
    consumer_channel = connection.channel()
    consumer_channel.basic_qos(prefetch_count=1)
    got: list[Any] = []
    consumer_channel.basic_consume(unique, lambda ch, m, p, b: got.append((m, b)))
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", unique, body)
    wait_until(connection, lambda: len(got) == 1)
    wait_until(connection, lambda: message_count_on(connection, unique) == 0)
    consumer_channel.basic_ack(got[0][0].delivery_tag)
    connection.sleep(0.1)
    assert [b for _m, b in got] == [b"a"]
