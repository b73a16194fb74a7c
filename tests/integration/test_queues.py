"""Queues through the wire with pika: declare (server-named, counts, equivalence, reserved names),
exclusive and auto-delete queues, bind/unbind, purge and delete, with RabbitMQ 3.10's reply codes
and texts."""

from __future__ import annotations

import re
from typing import Any

import pika
import pytest
from helpers import channel_error, message_count, queue_exists
from pika.exceptions import ChannelClosedByBroker

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' in vhost '/'. It could be "
    "originally declared on another connection or the exclusive property value does not match that of "
    "the original declaration."
)


def not_found(name: str) -> tuple[int, str]:
    return 404, f"NOT_FOUND - no queue '{name}' in vhost '/'"


def assert_goes(connection: pika.BlockingConnection, name: str) -> None:
    """The queue is deleted soon: the broker deletes exclusive and auto-delete queues after it
    answered the method that made them go (RabbitMQ too), so poll with passive declares."""
    for _ in range(200):
        try:
            connection.channel().queue_declare(name, passive=True)
        except ChannelClosedByBroker as error:
            if error.reply_code == 404:
                assert error.reply_text == not_found(name)[1]
                return
            assert (error.reply_code, error.reply_text) == (405, LOCKED.format(name=name))
        connection.sleep(0.01)
    pytest.fail(f"queue {name} was not deleted")


@pytest.fixture
def other(broker: Any) -> Any:
    """A second connection."""
    connection = broker.connect()
    yield connection
    if connection.is_open:
        connection.close()


# -- queue.declare --------------------------------------------------------------------------


def test_server_named_queue(channel):
    names = {channel.queue_declare("", exclusive=True).method.queue for _ in range(3)}
    assert len(names) == 3
    for name in names:
        assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", name), name


def test_declare_ok_counts(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()
    ok = channel.queue_declare(unique, exclusive=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (unique, 0, 0)
    for i in range(3):
        channel.basic_publish("", unique, b"%d" % i)
    ok = channel.queue_declare(unique, exclusive=True).method
    assert (ok.message_count, ok.consumer_count) == (3, 0)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(unique, lambda *args: None)
    connection.process_data_events(0)
    ok = channel.queue_declare(unique, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (2, 1)  # the unacked one is not counted


def test_passive_declare_of_missing_queue(connection, unique):
    assert channel_error(connection, lambda c: c.queue_declare(unique, passive=True)) == not_found(unique)
    assert channel_error(connection, lambda c: c.queue_declare("amq.foo", passive=True)) == not_found("amq.foo")


def test_reserved_amq_prefix(connection):
    channel = connection.channel()
    generated = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_declare(generated, passive=True)  # passive may name it
    for name in ("amq.foo", generated):  # but a declare may not, even of its own queue
        assert channel_error(connection, lambda c, name=name: c.queue_declare(name, exclusive=True)) == (
            403,
            f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'",
        )


@pytest.mark.parametrize(
    ("first", "second", "field", "received", "current"),
    [
        ({}, {"durable": True}, "durable", "'true'", "'false'"),
        ({"durable": True}, {}, "durable", "'false'", "'true'"),
        ({}, {"auto_delete": True}, "auto_delete", "'true'", "'false'"),
        ({"durable": True, "auto_delete": True, "arguments": {"x-max-length": 1}}, {}, "durable", "'false'",
         "'true'"),
        ({"auto_delete": True, "arguments": {"x-max-length": 1}}, {}, "auto_delete", "'false'", "'true'"),
        ({}, {"arguments": {"x-max-length": 10}}, "x-max-length", "the value '10' of type 'signedint'", "none"),
        ({"arguments": {"x-max-length": 10}}, {}, "x-max-length", "none", "the value '10' of type 'signedint'"),
        ({"arguments": {"x-max-length": 10}}, {"arguments": {"x-max-length": 20}}, "x-max-length", "'20'",
         "'10'"),
        ({"arguments": {"x-max-length": 10}}, {"arguments": {"x-max-length": "10"}}, "x-max-length", "'10'",
         "'10'"),
        ({"arguments": {"x-max-length": 10}}, {"arguments": {"x-max-length": 2**40}}, "x-max-length",
         "'1099511627776'", "'10'"),
        ({"arguments": {"x-max-length": 5}}, {"arguments": {"x-max-length": True}}, "x-max-length", "'true'",
         "'5'"),
        ({}, {"arguments": {"x-message-ttl": 1000}}, "x-message-ttl", "the value '1000' of type 'signedint'",
         "none"),
        ({}, {"arguments": {"x-expires": 100000}}, "x-expires", "the value '100000' of type 'signedint'", "none"),
        ({}, {"arguments": {"x-dead-letter-exchange": "dlx"}}, "x-dead-letter-exchange",
         "the value 'dlx' of type 'longstr'", "none"),
        ({}, {"arguments": {"x-dead-letter-routing-key": "k"}}, "x-dead-letter-routing-key",
         "the value 'k' of type 'longstr'", "none"),
        ({}, {"arguments": {"x-max-length-bytes": 1000}}, "x-max-length-bytes",
         "the value '1000' of type 'signedint'", "none"),
        ({}, {"arguments": {"x-max-priority": 0}}, "x-max-priority", "the value '0' of type 'signedint'", "none"),
        ({}, {"arguments": {"x-overflow": "reject-publish"}}, "x-overflow",
         "the value 'reject-publish' of type 'longstr'", "none"),
        ({}, {"arguments": {"x-queue-mode": "lazy"}}, "x-queue-mode", "the value 'lazy' of type 'longstr'", "none"),
        ({}, {"arguments": {"x-single-active-consumer": True}}, "x-single-active-consumer",
         "the value 'true' of type 'bool'", "none"),
        ({"arguments": {"x-single-active-consumer": True}}, {"arguments": {"x-single-active-consumer": False}},
         "x-single-active-consumer", "'false'", "'true'"),
        ({}, {"arguments": {"x-queue-type": "quorum"}}, "x-queue-type", "the value 'quorum' of type 'longstr'",
         "none"),
        ({"arguments": {"x-queue-type": "classic"}}, {"arguments": {"x-queue-type": "quorum"}}, "x-queue-type",
         "'quorum'", "'classic'"),
        ({}, {"arguments": {"x-queue-master-locator": "min-masters"}}, "x-queue-master-locator",
         "the value 'min-masters' of type 'longstr'", "none"),
        # The first argument in RabbitMQ's order is the one reported.
        ({"arguments": {"x-max-length": 10, "x-message-ttl": 5}}, {"arguments": {"x-queue-type": "quorum"}},
         "x-message-ttl", "none", "the value '5' of type 'signedint'"),
        ({}, {"arguments": {"x-expires": 10000, "x-max-length": 11}}, "x-expires",
         "the value '10000' of type 'signedint'", "none"),
    ],
)  # fmt: skip
def test_inequivalent_redeclare(connection, unique, first, second, field, received, current):
    connection.channel().queue_declare(unique, **first)
    try:
        assert channel_error(connection, lambda c: c.queue_declare(unique, **second)) == (
            406,
            f"PRECONDITION_FAILED - inequivalent arg '{field}' for queue '{unique}' in vhost '/': "
            f"received {received} but current is {current}",
        )
    finally:
        connection.channel().queue_delete(unique)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"arguments": {"x-max-length": 10}}, {"arguments": {"x-max-length": 10, "x-foo": "bar"}}),
        ({}, {"arguments": {"x-max-in-memory-length": 5, "x-max-age": "1D", "x-delivery-limit": 3}}),
        ({}, {"arguments": {"x-queue-type": "classic"}}),
        ({"arguments": {"x-queue-type": "classic"}}, {}),
        ({"arguments": {"x-dead-letter-exchange": "dlx"}}, {"arguments": {"x-dead-letter-exchange": b"dlx"}}),
    ],
)
def test_equivalent_redeclare(connection, unique, first, second):
    channel = connection.channel()
    channel.queue_declare(unique, **first)
    ok = channel.queue_declare(unique, **second).method
    assert ok.queue == unique
    channel.queue_delete(unique)


def test_exclusive_queue_is_never_durable(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, durable=True, exclusive=True)
    channel.queue_declare(unique, durable=False, exclusive=True)  # durable was ignored: equivalent
    channel.queue_declare(unique, durable=True, exclusive=True)


def test_exclusivity_must_match_on_redeclare(connection, unique):
    connection.channel().queue_declare(unique)
    locked = (405, LOCKED.format(name=unique))
    assert channel_error(connection, lambda c: c.queue_declare(unique, exclusive=True)) == locked
    connection.channel().queue_delete(unique)
    connection.channel().queue_declare(unique, exclusive=True)
    assert channel_error(connection, lambda c: c.queue_declare(unique)) == locked
    connection.channel().queue_declare(unique, passive=True)  # a passive declare does not care


# -- exclusive queues -----------------------------------------------------------------------


def test_exclusive_queue_refuses_other_connections(connection, other, unique):
    owner = connection.channel()
    owner.queue_declare(unique, exclusive=True)
    owner.queue_bind(unique, "amq.direct", unique)
    locked = (405, LOCKED.format(name=unique))
    actions = {
        "declare": lambda c: c.queue_declare(unique, exclusive=True),
        "declare-non-exclusive": lambda c: c.queue_declare(unique),
        "declare-passive": lambda c: c.queue_declare(unique, passive=True),
        "consume": lambda c: c.basic_consume(unique, lambda *args: None),
        "get": lambda c: c.basic_get(unique),
        "purge": lambda c: c.queue_purge(unique),
        "delete": lambda c: c.queue_delete(unique),
        "bind": lambda c: c.queue_bind(unique, "amq.direct", "k"),
        "bind-existing": lambda c: c.queue_bind(unique, "amq.direct", unique),
        "unbind-existing": lambda c: c.queue_unbind(unique, "amq.direct", unique),
    }
    got = {what: channel_error(other, action) for what, action in actions.items()}
    assert got == {what: locked for what in actions}
    # Unbinding what is not bound never looks at the queue.
    other.channel().queue_unbind(unique, "amq.direct", "not-bound")
    # Anyone may publish to it.
    publisher = other.channel()
    publisher.confirm_delivery()
    publisher.basic_publish("", unique, b"hello", mandatory=True)
    publisher.basic_publish("amq.direct", unique, b"via-binding", mandatory=True)
    assert [owner.basic_get(unique, auto_ack=True)[2] for _ in range(2)] == [b"hello", b"via-binding"]


def test_exclusive_queue_goes_with_its_connection(broker, other, unique):
    owner = broker.connect()
    owner.channel().queue_declare(unique, exclusive=True)
    assert channel_error(other, lambda c: c.queue_declare(unique, passive=True)) == (405, LOCKED.format(name=unique))
    owner.close()
    assert_goes(other, unique)


# -- auto-delete queues ---------------------------------------------------------------------


def test_auto_delete_queue_needs_a_first_consumer(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(unique, auto_delete=True)
    channel.basic_publish("", unique, b"x")
    channel.basic_get(unique, auto_ack=True)  # basic.get is not a consumer
    assert queue_exists(connection, unique)
    tag = channel.basic_consume(unique, lambda *args: None)
    assert queue_exists(connection, unique)
    channel.basic_cancel(tag)
    assert_goes(connection, unique)


def test_auto_delete_queue_goes_with_its_last_consumer(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, auto_delete=True)
    first = channel.basic_consume(unique, lambda *args: None)
    channel.basic_consume(unique, lambda *args: None)
    channel.basic_cancel(first)
    ok = connection.channel().queue_declare(unique, passive=True).method
    assert ok.consumer_count == 1
    channel.close()  # the channel's close cancels the other
    assert_goes(connection, unique)


# -- queue.bind / queue.unbind --------------------------------------------------------------


def test_bind_to_missing_queue_or_exchange(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    missing = f"{unique}-missing"
    assert channel_error(connection, lambda c: c.queue_bind(missing, "amq.direct", "k")) == not_found(missing)
    assert channel_error(connection, lambda c: c.queue_bind(unique, missing, "k")) == (
        404,
        f"NOT_FOUND - no exchange '{missing}' in vhost '/'",
    )
    # Both missing: the exchange is reported.
    assert channel_error(connection, lambda c: c.queue_bind(missing, missing, "k")) == (
        404,
        f"NOT_FOUND - no exchange '{missing}' in vhost '/'",
    )


def test_bind_without_a_previously_declared_queue(connection):
    assert channel_error(connection, lambda c: c.queue_bind("", "amq.direct", "k")) == (
        404,
        "NOT_FOUND - no previously declared queue",
    )


def test_bind_is_idempotent_and_unbind_of_nothing_is_ok(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(unique, exclusive=True)
    channel.exchange_declare(unique, "fanout", auto_delete=True)
    channel.queue_bind(unique, unique, "k")
    channel.queue_bind(unique, unique, "k")
    channel.basic_publish(unique, "", b"one")
    assert message_count(channel, unique) == 1
    channel.queue_unbind(unique, "amq.direct", "never-bound")
    channel.queue_unbind(f"{unique}-missing", "amq.direct", "k")
    channel.queue_unbind(unique, f"{unique}-missing", "k")
    channel.queue_unbind(unique, unique, "k")  # the one binding: unbound once is unbound
    with pytest.raises(ChannelClosedByBroker) as raised:  # auto-delete exchange gone with it
        channel.basic_publish(unique, "", b"two")
    assert raised.value.reply_code == 404


# -- queue.purge ----------------------------------------------------------------------------


def test_purge_returns_the_ready_count(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(unique, exclusive=True)
    for i in range(4):
        channel.basic_publish("", unique, b"%d" % i)
    method, _props, _body = channel.basic_get(unique)  # one unacked: not purged
    assert channel.queue_purge(unique).method.message_count == 3
    assert channel.queue_purge(unique).method.message_count == 0
    channel.basic_reject(method.delivery_tag, requeue=True)
    assert message_count(channel, unique) == 1
    assert channel_error(connection, lambda c: c.queue_purge(f"{unique}-missing")) == not_found(f"{unique}-missing")


# -- queue.delete ---------------------------------------------------------------------------


def test_delete_if_empty_and_if_unused(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(unique)
    for i in range(3):
        channel.basic_publish("", unique, b"%d" % i)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(unique, lambda *args: None)
    connection.process_data_events(0)
    not_empty = (406, f"PRECONDITION_FAILED - queue '{unique}' in vhost '/' not empty")
    in_use = (406, f"PRECONDITION_FAILED - queue '{unique}' in vhost '/' in use")
    assert channel_error(connection, lambda c: c.queue_delete(unique, if_empty=True)) == not_empty
    assert channel_error(connection, lambda c: c.queue_delete(unique, if_unused=True)) == in_use
    assert channel_error(connection, lambda c: c.queue_delete(unique, if_unused=True, if_empty=True)) == not_empty
    # The count is of ready messages: the unacked one is not in it.
    assert connection.channel().queue_delete(unique).method.message_count == 2


def test_delete_if_empty_counts_ready_messages_only(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"x")
    channel.basic_get(unique)  # unacked now
    assert connection.channel().queue_delete(unique, if_empty=True).method.message_count == 0


def test_delete_missing_queue(connection, unique):
    channel = connection.channel()
    assert channel.queue_delete(unique).method.message_count == 0
    assert channel.queue_delete(unique, if_unused=True, if_empty=True).method.message_count == 0


def test_delete_removes_bindings(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(unique)
    channel.queue_bind(unique, "amq.direct", unique)
    channel.queue_delete(unique)
    channel.queue_declare(unique, exclusive=True)
    channel.basic_publish("amq.direct", unique, b"x")
    assert message_count(channel, unique) == 0


def test_consumers_are_cancelled_when_their_queue_is_deleted(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique)
    cancelled = []
    tag = channel.basic_consume(unique, lambda *args: None)
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method))
    connection.channel().queue_delete(unique)
    for _ in range(100):  # basic.cancel came before delete-ok; pika hands it over here
        if cancelled:
            break
        connection.process_data_events(0.01)
    assert [(m.NAME, m.consumer_tag) for m in cancelled] == [("Basic.Cancel", tag)]
    assert channel.is_open and channel.consumer_tags == []
