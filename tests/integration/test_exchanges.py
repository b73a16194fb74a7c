"""Exchanges through the wire with pika: declare/delete rules, exchange-to-exchange bindings,
alternate exchanges and the routing of each type, with RabbitMQ 3.10's reply codes and texts (recorded against RabbitMQ 3.10.8)."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from helpers import channel_error, drain, new_queue
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker, UnroutableError

DEFAULT_EXCHANGE_REFUSED = "ACCESS_REFUSED - operation not permitted on the default exchange"


def publish(channel: Any, exchange: str, routing_key: str, body: bytes = b"m", **kw: Any) -> None:
    """Publish on a confirming channel, so that the broker has routed it when this returns."""
    channel.basic_publish(exchange, routing_key, body, **kw)


@pytest.fixture
def ch(connection: pika.BlockingConnection) -> Any:
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


# The suffixes the tests below add to ``unique`` when they need several exchanges.
SUFFIXES = ("", "-src", "-dst", "-int", "-pub", "-top", "-mid", "-a", "-b", "-c", "-d", "-main", "-ae",
            "-1", "-2", "-3")  # fmt: skip


@pytest.fixture(autouse=True)
def delete_exchanges(broker: Any, unique: str) -> Any:
    """Delete the exchanges a test made (the broker is shared by the whole session)."""
    yield
    connection = broker.connect()
    channel = connection.channel()
    for suffix in SUFFIXES:
        channel.exchange_delete(unique + suffix)
    connection.close()


# -- exchange.declare -----------------------------------------------------------------------


@pytest.mark.parametrize("type_name", ["direct", "fanout", "topic", "headers"])
def test_declare_each_type_then_redeclare_and_route(ch, unique, type_name):
    ch.exchange_declare(unique, type_name)
    ch.exchange_declare(unique, type_name)  # identical: fine
    ch.exchange_declare(unique, "fanout" if type_name != "fanout" else "direct", passive=True)
    q = new_queue(ch)
    ch.queue_bind(q, unique, "k", arguments={"x-match": "any", "h": 1} if type_name == "headers" else None)
    publish(ch, unique, "k", b"hit", properties=pika.BasicProperties(headers={"h": 1}))
    publish(ch, unique, "other", b"miss", properties=pika.BasicProperties(headers={"h": 2}))
    expected = [b"hit", b"miss"] if type_name == "fanout" else [b"hit"]
    assert drain(ch, q) == expected


@pytest.mark.parametrize(
    ("name", "type_name", "text"),
    [
        ("t-x", "foo", "COMMAND_INVALID - invalid exchange type 'foo'"),
        ("t-x", "", "COMMAND_INVALID - invalid exchange type ''"),
        ("t-x", "x-modulus-hash", "COMMAND_INVALID - unknown exchange type 'x-modulus-hash'"),
        ("t-x", "x-delayed-message", "COMMAND_INVALID - unknown exchange type 'x-delayed-message'"),
        ("t-x", "DIRECT", "COMMAND_INVALID - unknown exchange type 'DIRECT'"),
        # The type is checked before the name: neither the default exchange nor amq.* come first.
        ("", "foo", "COMMAND_INVALID - invalid exchange type 'foo'"),
        ("amq.x", "foo", "COMMAND_INVALID - invalid exchange type 'foo'"),
    ],
)
def test_unknown_type_closes_the_connection(broker, name, type_name, text):
    connection = broker.connect()
    with pytest.raises(ConnectionClosedByBroker) as raised:
        connection.channel().exchange_declare(name, type_name)
    assert (raised.value.reply_code, raised.value.reply_text) == (503, text)
    assert connection.is_closed


def test_passive_declare_ignores_the_type(connection, unique):
    assert channel_error(connection, lambda c: c.exchange_declare(unique, "foo", passive=True)) == (
        404,
        f"NOT_FOUND - no exchange '{unique}' in vhost '/'",
    )
    connection.channel().exchange_declare("amq.direct", "fanout", passive=True)


def test_reserved_amq_prefix(connection):
    assert channel_error(connection, lambda c: c.exchange_declare("amq.foo", "direct")) == (
        403,
        "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'",
    )
    assert channel_error(connection, lambda c: c.exchange_declare("amq.foo", "direct", passive=True)) == (
        404,
        "NOT_FOUND - no exchange 'amq.foo' in vhost '/'",
    )


def test_predeclared_exchanges_redeclared(connection):
    channel = connection.channel()
    for name, type_name in [("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
                            ("amq.headers", "headers"), ("amq.match", "headers")]:  # fmt: skip
        channel.exchange_declare(name, type_name, durable=True)
    channel.exchange_declare("amq.rabbitmq.trace", "topic", passive=True)
    assert channel_error(connection, lambda c: c.exchange_declare("amq.direct", "direct")) == (
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost '/': "
        "received 'false' but current is 'true'",
    )
    assert channel_error(connection, lambda c: c.exchange_declare("amq.direct", "fanout", durable=True)) == (
        406,
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.direct' in vhost '/': "
        "received 'fanout' but current is 'direct'",
    )


@pytest.mark.parametrize(
    ("first", "second", "field", "received", "current"),
    [
        ({}, {"exchange_type": "fanout"}, "type", "'fanout'", "'direct'"),
        ({}, {"durable": True}, "durable", "'true'", "'false'"),
        ({}, {"auto_delete": True}, "auto_delete", "'true'", "'false'"),
        ({}, {"internal": True}, "internal", "'true'", "'false'"),
        # Several differ: type, durable, auto_delete, internal, arguments is RabbitMQ's order.
        ({"durable": True, "auto_delete": True, "internal": True}, {"exchange_type": "fanout"}, "type",
         "'fanout'", "'direct'"),
        ({"durable": True, "auto_delete": True, "internal": True}, {}, "durable", "'false'", "'true'"),
        ({"auto_delete": True, "internal": True}, {}, "auto_delete", "'false'", "'true'"),
        ({"internal": True}, {"arguments": {"alternate-exchange": "a"}}, "internal", "'false'", "'true'"),
        ({}, {"arguments": {"alternate-exchange": "amq.fanout"}}, "alternate-exchange",
         "the value 'amq.fanout' of type 'longstr'", "none"),
        ({"arguments": {"alternate-exchange": "amq.fanout"}}, {}, "alternate-exchange", "none",
         "the value 'amq.fanout' of type 'longstr'"),
        ({"arguments": {"alternate-exchange": "amq.fanout"}}, {"arguments": {"alternate-exchange": "amq.topic"}},
         "alternate-exchange", "'amq.topic'", "'amq.fanout'"),
        ({"arguments": {"alternate-exchange": "amq.fanout"}}, {"arguments": {"alternate-exchange": 5}},
         "alternate-exchange", "'5'", "'amq.fanout'"),
    ],
)  # fmt: skip
def test_inequivalent_redeclare(connection, unique, first, second, field, received, current):
    declare = {"exchange_type": "direct", **first}
    connection.channel().exchange_declare(unique, **declare)
    again = {"exchange_type": "direct", **second}
    assert channel_error(connection, lambda c: c.exchange_declare(unique, **again)) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg '{field}' for exchange '{unique}' in vhost '/': "
        f"received {received} but current is {current}",
    )


def test_equivalent_redeclare_ignores_other_arguments(connection, unique):
    channel = connection.channel()
    channel.exchange_declare(unique, "direct", arguments={"alternate-exchange": "amq.fanout"})
    channel.exchange_declare(unique, "direct", arguments={"alternate-exchange": "amq.fanout", "x-foo": 1})
    channel.exchange_declare(unique, "direct", arguments={"alternate-exchange": b"amq.fanout"})
    channel.exchange_declare(unique, "fanout", passive=True)


@pytest.mark.parametrize(("value", "type_name"), [(True, "bool"), (5, "signedint"), (b"amq.fanout", "binary")])
def test_alternate_exchange_must_be_a_string(connection, unique, value, type_name):
    # pika sends bytes as a byte array ('x'), which RabbitMQ does not take as an exchange name.
    assert channel_error(
        connection, lambda c: c.exchange_declare(unique, "direct", arguments={"alternate-exchange": value})
    ) == (
        406,
        f"PRECONDITION_FAILED - invalid type '{type_name}' for arg 'alternate-exchange' "
        f"in exchange '{unique}' in vhost '/'",
    )


# -- the default exchange and amq.default ---------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        lambda c, q: c.exchange_declare("", "direct", durable=True),
        lambda c, q: c.exchange_declare("", "direct", passive=True),
        lambda c, q: c.exchange_delete(""),
        lambda c, q: c.queue_bind(q, "", "k"),
        lambda c, q: c.queue_unbind(q, "", q),
        lambda c, q: c.exchange_bind("", "amq.direct", "k"),
        lambda c, q: c.exchange_bind("amq.direct", "", "k"),
        lambda c, q: c.exchange_unbind("", "amq.direct", "k"),
        lambda c, q: c.exchange_unbind("amq.direct", "", "k"),
    ],
    ids=["declare", "declare-passive", "delete", "queue.bind", "queue.unbind", "exchange.bind-destination",
         "exchange.bind-source", "exchange.unbind-destination", "exchange.unbind-source"],
)  # fmt: skip
def test_default_exchange_cannot_be_changed(connection, action):
    q = connection.channel().queue_declare("", exclusive=True).method.queue
    assert channel_error(connection, lambda c: action(c, q)) == (403, DEFAULT_EXCHANGE_REFUSED)


def test_amq_default_is_not_a_real_name(connection):
    channel = connection.channel()
    q = channel.queue_declare("", exclusive=True).method.queue
    not_found = (404, "NOT_FOUND - no exchange 'amq.default' in vhost '/'")
    assert channel_error(connection, lambda c: c.exchange_declare("amq.default", "direct", passive=True)) == not_found
    assert channel_error(connection, lambda c: c.queue_bind(q, "amq.default", "k")) == not_found
    assert channel_error(connection, lambda c: c.exchange_bind("amq.default", "amq.direct", "k")) == not_found

    def publish_to_amq_default(c: Any) -> None:
        c.confirm_delivery()
        c.basic_publish("amq.default", q, b"x")

    assert channel_error(connection, publish_to_amq_default) == not_found
    assert channel_error(connection, lambda c: c.exchange_declare("amq.default", "direct", durable=True)) == (
        403,
        "ACCESS_REFUSED - exchange name 'amq.default' contains reserved prefix 'amq.*'",
    )
    assert channel_error(connection, lambda c: c.exchange_delete("amq.default")) == (
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.default' in vhost '/' not allowed",
    )


def test_default_exchange_routes_by_queue_name(ch, unique):
    ch.queue_declare(unique, exclusive=True)
    other = new_queue(ch)
    publish(ch, "", unique, b"direct")
    publish(ch, "", unique, b"cc", properties=pika.BasicProperties(headers={"CC": [other]}))
    assert drain(ch, unique) == [b"direct", b"cc"]
    assert drain(ch, other) == [b"cc"]
    with pytest.raises(UnroutableError) as raised:
        ch.basic_publish("", f"{unique}-nobody", b"x", mandatory=True)
    returned = raised.value.messages[0].method
    assert (returned.reply_code, returned.reply_text, returned.exchange, returned.routing_key) == (
        312,
        "NO_ROUTE",
        "",
        f"{unique}-nobody",
    )


# -- exchange.delete ------------------------------------------------------------------------


def test_delete_missing_is_ok(connection, unique):
    channel = connection.channel()
    channel.exchange_delete(unique)
    channel.exchange_delete(unique, if_unused=True)


@pytest.mark.parametrize("name", ["amq.direct", "amq.foo"])
def test_delete_system_exchange_refused(connection, name):
    assert channel_error(connection, lambda c: c.exchange_delete(name)) == (
        403,
        f"ACCESS_REFUSED - deletion of system exchange '{name}' in vhost '/' not allowed",
    )


def test_delete_if_unused(connection, unique):
    channel = connection.channel()
    src, dst = f"{unique}-src", f"{unique}-dst"
    channel.exchange_declare(src, "direct")
    channel.exchange_declare(dst, "direct")
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, dst, "k")
    assert channel_error(connection, lambda c: c.exchange_delete(dst, if_unused=True)) == (
        406,
        f"PRECONDITION_FAILED - exchange '{dst}' in vhost '/' in use",
    )
    channel = connection.channel()
    channel.queue_unbind(q, dst, "k")
    channel.exchange_bind(dst, src, "k")
    # Being an exchange-to-exchange destination does not count as use; being a source does.
    assert channel_error(connection, lambda c: c.exchange_delete(src, if_unused=True)) == (
        406,
        f"PRECONDITION_FAILED - exchange '{src}' in vhost '/' in use",
    )
    channel = connection.channel()
    channel.exchange_delete(dst, if_unused=True)
    channel.exchange_delete(src, if_unused=True)  # its only binding went with dst
    assert channel_error(connection, lambda c: c.exchange_declare(src, "direct", passive=True))[0] == 404


def test_internal_exchange(ch, connection, unique):
    internal, public = f"{unique}-int", f"{unique}-pub"
    ch.exchange_declare(internal, "fanout", internal=True)
    ch.exchange_declare(public, "direct")
    ch.exchange_bind(internal, public, "k")  # an internal exchange is reached through bindings
    q = new_queue(ch)
    ch.queue_bind(q, internal)
    publish(ch, public, "k", b"via-binding")
    assert drain(ch, q) == [b"via-binding"]

    def publish_internal(c: Any) -> None:
        c.confirm_delivery()
        c.basic_publish(internal, "k", b"x")

    assert channel_error(connection, publish_internal) == (
        403,
        f"ACCESS_REFUSED - cannot publish to internal exchange '{internal}' in vhost '/'",
    )

    def publish_trace(c: Any) -> None:
        c.confirm_delivery()
        c.basic_publish("amq.rabbitmq.trace", "k", b"x")

    assert channel_error(connection, publish_trace) == (
        403,
        "ACCESS_REFUSED - cannot publish to internal exchange 'amq.rabbitmq.trace' in vhost '/'",
    )


# -- auto-delete ----------------------------------------------------------------------------


def _exists(connection: pika.BlockingConnection, name: str) -> bool:
    try:
        connection.channel().exchange_declare(name, "direct", passive=True)
    except ChannelClosedByBroker as error:
        assert (error.reply_code, error.reply_text) == (404, f"NOT_FOUND - no exchange '{name}' in vhost '/'")
        return False
    return True


def test_auto_delete_exchange_outlives_declare_without_bindings(connection, unique):
    connection.channel().exchange_declare(unique, "direct", auto_delete=True)
    assert _exists(connection, unique)
    connection.channel().exchange_delete(unique)


def test_auto_delete_exchange_goes_with_its_last_binding(connection, unique):
    channel = connection.channel()
    channel.exchange_declare(unique, "direct", auto_delete=True)
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, unique, "a")
    channel.queue_bind(q, unique, "b")
    channel.queue_unbind(q, unique, "a")
    assert _exists(connection, unique)
    connection.channel().queue_unbind(q, unique, "b")
    assert not _exists(connection, unique)


def test_auto_delete_exchange_goes_when_its_queue_goes(connection, unique):
    channel = connection.channel()
    channel.exchange_declare(unique, "direct", auto_delete=True)
    channel.queue_declare(unique)
    channel.queue_bind(unique, unique, "a")
    channel.queue_delete(unique)
    assert not _exists(connection, unique)


def test_auto_delete_cascades_through_exchange_bindings(connection, unique):
    channel = connection.channel()
    top, middle = f"{unique}-top", f"{unique}-mid"
    channel.exchange_declare(top, "fanout", auto_delete=True)
    channel.exchange_declare(middle, "fanout", auto_delete=True)
    channel.exchange_bind(middle, top)
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, middle)
    # Only being a source counts: removing the binding that leads *to* top leaves it alone.
    channel.queue_unbind(q, middle)
    assert not _exists(connection, middle)
    assert not _exists(connection, top)  # middle's deletion removed top's last binding


def test_auto_delete_destination_is_kept(connection, unique):
    channel = connection.channel()
    src, dst = f"{unique}-src", f"{unique}-dst"
    channel.exchange_declare(src, "fanout")
    channel.exchange_declare(dst, "fanout", auto_delete=True)
    channel.exchange_bind(dst, src)
    channel.exchange_unbind(dst, src)
    assert _exists(connection, dst)
    channel = connection.channel()
    channel.exchange_delete(src)
    channel.exchange_delete(dst)


# -- exchange.bind / exchange.unbind ---------------------------------------------------------


def test_exchange_binding_chain_and_unbind(ch, unique):
    a, b, c = (f"{unique}-{n}" for n in "abc")
    ch.exchange_declare(a, "direct")
    ch.exchange_declare(b, "topic")
    ch.exchange_declare(c, "fanout")
    ch.exchange_bind(b, a, "k")
    ch.exchange_bind(c, b, "k.#")
    q = new_queue(ch)
    ch.queue_bind(q, c)
    publish(ch, a, "k", b"through")
    publish(ch, a, "other", b"stopped-at-a")
    assert drain(ch, q) == [b"through"]
    ch.exchange_unbind(b, a, "k")
    publish(ch, a, "k", b"after-unbind")
    assert drain(ch, q) == []
    publish(ch, b, "k", b"b-still-bound")
    assert drain(ch, q) == [b"b-still-bound"]


def test_diamond_delivers_once(ch, unique):
    a, b, c, d = (f"{unique}-{n}" for n in "abcd")
    for name in (a, b, c, d):
        ch.exchange_declare(name, "fanout")
    ch.exchange_bind(b, a)
    ch.exchange_bind(c, a)
    ch.exchange_bind(d, b)
    ch.exchange_bind(d, c)
    q, q_b = new_queue(ch), new_queue(ch)
    ch.queue_bind(q, d)
    ch.queue_bind(q, a)  # the same queue directly too
    ch.queue_bind(q_b, b)
    publish(ch, a, "", b"once")
    assert drain(ch, q) == [b"once"]
    assert drain(ch, q_b) == [b"once"]


def test_cycle_delivers_once(ch, unique):
    a, b = f"{unique}-a", f"{unique}-b"
    ch.exchange_declare(a, "fanout")
    ch.exchange_declare(b, "fanout")
    ch.exchange_bind(b, a)
    ch.exchange_bind(a, b)
    ch.exchange_bind(a, a)  # an exchange bound to itself is allowed too
    q_a, q_b = new_queue(ch), new_queue(ch)
    ch.queue_bind(q_a, a)
    ch.queue_bind(q_b, b)
    publish(ch, a, "", b"from-a")
    publish(ch, b, "", b"from-b")
    assert drain(ch, q_a) == [b"from-a", b"from-b"]
    assert drain(ch, q_b) == [b"from-a", b"from-b"]


def test_exchange_bind_missing_ends(connection, unique):
    missing = f"{unique}-missing"
    assert channel_error(connection, lambda c: c.exchange_bind("amq.direct", missing, "k")) == (
        404,
        f"NOT_FOUND - no exchange '{missing}' in vhost '/'",
    )
    assert channel_error(connection, lambda c: c.exchange_bind(missing, "amq.direct", "k")) == (
        404,
        f"NOT_FOUND - no exchange '{missing}' in vhost '/'",
    )
    # Both missing: the source is reported.
    assert channel_error(connection, lambda c: c.exchange_bind(f"{missing}-dst", f"{missing}-src", "k")) == (
        404,
        f"NOT_FOUND - no exchange '{missing}-src' in vhost '/'",
    )


def test_exchange_unbind_of_nothing_is_ok(connection, unique):
    channel = connection.channel()
    channel.exchange_unbind("amq.fanout", "amq.direct", f"{unique}-nokey")
    channel.exchange_unbind("amq.direct", f"{unique}-missing", "k")
    channel.exchange_unbind(f"{unique}-missing", "amq.direct", "k")


# -- alternate exchanges --------------------------------------------------------------------


def test_alternate_exchange_takes_unroutable_messages(ch, unique):
    main, alternate = f"{unique}-main", f"{unique}-ae"
    ch.exchange_declare(alternate, "fanout")
    ch.exchange_declare(main, "direct", arguments={"alternate-exchange": alternate})
    routed, unrouted = new_queue(ch), new_queue(ch)
    ch.queue_bind(routed, main, "k")
    ch.queue_bind(unrouted, alternate)
    publish(ch, main, "k", b"routed", mandatory=True)
    publish(ch, main, "nobody", b"unroutable", mandatory=True)  # no return: the AE routed it
    assert drain(ch, routed) == [b"routed"]
    assert drain(ch, unrouted) == [b"unroutable"]


def test_alternate_exchange_chain(ch, unique):
    first, second, third = (f"{unique}-{n}" for n in (1, 2, 3))
    ch.exchange_declare(third, "fanout")
    ch.exchange_declare(second, "direct", arguments={"alternate-exchange": third})
    ch.exchange_declare(first, "direct", arguments={"alternate-exchange": second})
    q = new_queue(ch)
    ch.queue_bind(q, third)
    publish(ch, first, "k", b"two-hops", mandatory=True)
    assert drain(ch, q) == [b"two-hops"]


def test_alternate_exchange_only_for_messages_the_exchange_did_not_route(ch, unique):
    main, middle, alternate = f"{unique}-main", f"{unique}-mid", f"{unique}-ae"
    ch.exchange_declare(alternate, "fanout")
    ch.exchange_declare(middle, "fanout")
    ch.exchange_declare(main, "direct", arguments={"alternate-exchange": alternate})
    ch.exchange_bind(middle, main, "k")  # routes to an exchange with nothing bound
    q = new_queue(ch)
    ch.queue_bind(q, alternate)
    with pytest.raises(UnroutableError):
        ch.basic_publish(main, "k", b"x", mandatory=True)
    assert drain(ch, q) == []


@pytest.mark.parametrize("alternate", ["missing", "empty", "cycle"])
def test_alternate_exchange_that_does_not_route(ch, unique, alternate):
    main = f"{unique}-main"
    if alternate == "missing":
        ch.exchange_declare(main, "direct", arguments={"alternate-exchange": f"{unique}-missing"})
    elif alternate == "empty":
        ch.exchange_declare(f"{unique}-ae", "fanout")
        ch.exchange_declare(main, "direct", arguments={"alternate-exchange": f"{unique}-ae"})
    else:
        ch.exchange_declare(f"{unique}-ae", "direct", arguments={"alternate-exchange": main})
        ch.exchange_declare(main, "direct", arguments={"alternate-exchange": f"{unique}-ae"})
    publish(ch, main, "k", b"dropped")  # not mandatory: silently dropped, still confirmed
    with pytest.raises(UnroutableError) as raised:
        ch.basic_publish(main, "k", b"x", mandatory=True)
    returned = raised.value.messages[0]
    assert (returned.method.reply_code, returned.method.reply_text, returned.method.exchange) == (
        312,
        "NO_ROUTE",
        main,
    )
    assert (returned.method.routing_key, returned.body) == ("k", b"x")


# -- topic and headers routing --------------------------------------------------------------

TOPIC_KEYS = ["", "a", "b", "a.b", "a.c", "a.c.b", "a.c.d.b", "a..b", "a.", ".a", ".", "x.a.b", "a.b.c",
              "#", "*", "a*", "#a"]  # fmt: skip
EVERY_KEY = TOPIC_KEYS
EVERY_NON_EMPTY_KEY = TOPIC_KEYS[1:]
# Binding key -> the routing keys above it matches, as recorded from RabbitMQ 3.10.
TOPIC_MATCHES = {
    "#": EVERY_KEY,
    "*": ["a", "b", "#", "*", "a*", "#a"],
    "a.*": ["a.b", "a.c", "a."],
    "a.#": ["a", "a.b", "a.c", "a.c.b", "a.c.d.b", "a..b", "a.", "a.b.c"],
    "#.b": ["b", "a.b", "a.c.b", "a.c.d.b", "a..b", "x.a.b"],
    "*.b": ["a.b"],
    "a.*.b": ["a.c.b", "a..b"],
    "a.#.b": ["a.b", "a.c.b", "a.c.d.b", "a..b"],
    "#.#": EVERY_KEY,
    "*.*": ["a.b", "a.c", "a.", ".a", "."],
    "a..b": ["a..b"],
    "": [""],
    "a.": ["a."],
    ".a": [".a"],
    "a.b.": [],
    "#.*": EVERY_NON_EMPTY_KEY,
    "*.#": EVERY_NON_EMPTY_KEY,
    "a.#.#.b": ["a.b", "a.c.b", "a.c.d.b", "a..b"],
    "#a": ["#a"],
    "a*": ["a*"],
    "a.*#": [],
}


def test_topic_matching_corner_cases(ch, unique):
    ch.exchange_declare(unique, "topic")
    queues = {}
    for pattern in TOPIC_MATCHES:
        queues[pattern] = new_queue(ch)
        ch.queue_bind(queues[pattern], unique, pattern)
    for key in TOPIC_KEYS:
        publish(ch, unique, key, key.encode() or b"<empty>")
    got = {pattern: [body.decode() for body in drain(ch, q)] for pattern, q in queues.items()}
    expected = {pattern: [k or "<empty>" for k in keys] for pattern, keys in TOPIC_MATCHES.items()}
    assert got == expected


def test_topic_overlapping_bindings_deliver_once(ch, unique):
    ch.exchange_declare(unique, "topic")
    q = new_queue(ch)
    for pattern in ("a.*", "a.#", "#", "*.b", "a.b"):
        ch.queue_bind(q, unique, pattern)
    publish(ch, unique, "a.b", b"once")
    assert drain(ch, q) == [b"once"]
    ch.queue_unbind(q, unique, "#")
    ch.queue_unbind(q, unique, "a.#")
    publish(ch, unique, "a.b.c", b"unbound")
    publish(ch, unique, "x.b", b"star-b")
    assert drain(ch, q) == [b"star-b"]


@pytest.mark.parametrize(
    ("x_match", "text"),
    [
        ("foo", 'Invalid x-match field value <<"foo">>; expected all, any, all-with-x, or any-with-x'),
        ("", "Invalid x-match field value <<>>; expected all, any, all-with-x, or any-with-x"),
        (1, "Invalid x-match field type signedint (value 1); expected longstr"),
    ],
)
def test_headers_invalid_x_match(connection, unique, x_match, text):
    channel = connection.channel()
    channel.exchange_declare(unique, "headers")
    q = channel.queue_declare("", exclusive=True).method.queue
    assert channel_error(connection, lambda c: c.queue_bind(q, unique, "", arguments={"x-match": x_match})) == (
        406,
        f"PRECONDITION_FAILED - {text}",
    )


HEADER_BINDINGS = {
    "all": {"x-match": "all", "a": 1, "b": "x"},
    "any": {"x-match": "any", "a": 1, "b": "x"},
    "default-all": {"a": 1, "b": "x"},
    "all-with-x": {"x-match": "all-with-x", "a": 1, "x-k": "v"},
    "any-with-x": {"x-match": "any-with-x", "x-k": "v"},
    "all-x-ignored": {"x-match": "all", "a": 1, "x-k": "v"},
    "all-empty": {"x-match": "all"},
    "any-empty": {"x-match": "any"},
    "present": {"x-match": "all", "p": None},
}
# message headers -> names of the bindings above that match
HEADER_CASES = [
    ({"a": 1, "b": "x"}, {"all", "any", "default-all", "all-x-ignored", "all-empty"}),
    ({"a": 1}, {"any", "all-x-ignored", "all-empty"}),
    ({"a": 2, "b": "x"}, {"any", "all-empty"}),
    ({"a": 1, "x-k": "v"}, {"any", "all-with-x", "any-with-x", "all-x-ignored", "all-empty"}),
    ({"a": "1", "b": "x"}, {"any", "all-empty"}),
    ({"p": "anything"}, {"all-empty", "present"}),
    (None, {"all-empty"}),
]


def test_headers_matching(ch, unique):
    ch.exchange_declare(unique, "headers")
    queues = {}
    for name, arguments in HEADER_BINDINGS.items():
        queues[name] = new_queue(ch)
        ch.queue_bind(queues[name], unique, "", arguments=arguments)
    for index, (headers, _) in enumerate(HEADER_CASES):
        publish(ch, unique, "", str(index).encode(), properties=pika.BasicProperties(headers=headers))
    got = {name: {int(body) for body in drain(ch, q)} for name, q in queues.items()}
    expected = {name: {i for i, (_, names) in enumerate(HEADER_CASES) if name in names} for name in queues}
    assert got == expected
