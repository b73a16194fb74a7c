"""Users, passwords and permissions: set up through the in-process Admin API (``broker.admin``),
checked through the wire with pika against RabbitMQ 3.10's permission table, reply codes and texts."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
from helpers import channel_error
from pika.exceptions import (
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
)

from amqp_server.admin.errors import AdminError
from amqp_server.core import access
from amqp_server.metadata.store import Change

PASSWORD = "s3cret"
# Made by RabbitMQ 3.10 (rabbitmqctl add_user + export_definitions) for the password below.
RABBIT_PASSWORD = "S3cret-pässword"
RABBIT_HASH = "O2yTNXNVnPNy2n0yijsEpW/ZmONS7rZu5q4RSLWKIp8wjuLC"
RABBIT_GUEST_HASH = "b1FRvaGOs3NUhc/gz4DQRlxkZpShZ3fr6ftrQMYSGU/9FQZX"  # password "guest"


@pytest.fixture
def user(broker: Any, unique: str) -> Iterator[str]:
    """A user with password PASSWORD and no permissions; deleted afterwards."""
    name = f"{unique}-user"
    broker.run(broker.admin.add_user(name, PASSWORD, ["management"]))
    yield name
    if name in broker.broker.users:
        broker.run(broker.admin.delete_user(name))


def grant(broker: Any, user: str, configure: str, write: str, read: str, vhost: str = "/") -> None:
    broker.run(broker.admin.set_permissions(user, vhost, configure, write, read))


def refused(resource: str, name: str, user: str, vhost: str = "/") -> tuple[int, str]:
    return 403, f"ACCESS_REFUSED - access to {resource} '{name}' in vhost '{vhost}' refused for user '{user}'"


def wait_for_close(connection: pika.BlockingConnection) -> tuple[int, str]:
    """Pump the connection until the broker closes it; its (code, text)."""
    with pytest.raises(ConnectionClosedByBroker) as raised:
        for _ in range(200):
            connection.process_data_events(0.01)
    return raised.value.reply_code, raised.value.reply_text


# -- users and passwords --------------------------------------------------------------------


def test_added_user_logs_in_with_its_password(broker, user):
    assert broker.broker.users[user].tags == ["management"]
    assert {"name": user, "tags": ["management"]} in broker.admin.list_users()
    grant(broker, user, ".*", ".*", ".*")
    connection = broker.connect(user=user, password=PASSWORD)
    connection.channel().queue_declare("", exclusive=True)
    connection.close()
    with pytest.raises(ProbableAuthenticationError) as raised:
        broker.connect(user=user, password="wrong")
    assert "(403) 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. " in str(raised.value)


def test_login_needs_permissions_on_the_vhost(broker, user):
    with pytest.raises(ProbableAccessDeniedError) as raised:
        broker.connect(user=user, password=PASSWORD)
    assert f"(530) \"NOT_ALLOWED - access to vhost '/' refused for user '{user}'\"" in str(raised.value)
    with pytest.raises(ProbableAccessDeniedError) as raised:
        broker.connect(user=user, password=PASSWORD, vhost="no-such-vhost")
    assert "(530) 'NOT_ALLOWED - vhost no-such-vhost not found'" in str(raised.value)


def test_password_hash_is_rabbitmq_salted_sha256(broker, user):
    stored = broker.broker.users[user].password_hash
    raw = base64.b64decode(stored)
    salt, digest = raw[:4], raw[4:]
    assert (len(raw), digest) == (36, hashlib.sha256(salt + PASSWORD.encode()).digest())
    assert access.check_password(PASSWORD, stored)
    assert not access.check_password(PASSWORD + "x", stored)


def test_rabbitmq_generated_hashes_are_accepted(broker, unique):
    assert access.check_password(RABBIT_PASSWORD, RABBIT_HASH)
    assert access.check_password("guest", RABBIT_GUEST_HASH)
    assert not access.check_password("guesT", RABBIT_GUEST_HASH)
    # A user imported with RabbitMQ's hash (as from a definitions export) logs in over the wire.
    name = f"{unique}-imported"
    record = {"password_hash": RABBIT_HASH, "tags": [], "hashing_algorithm": access.SHA256}
    broker.run(broker.broker.change(Change("user", "put", None, name, record)))
    try:
        grant(broker, name, ".*", ".*", ".*")
        broker.connect(user=name, password=RABBIT_PASSWORD).close()
    finally:
        broker.run(broker.admin.delete_user(name))


# -- the permission table -------------------------------------------------------------------

# Each case: an operation and the permissions it needs, in the order RabbitMQ checks them, as
# (permission, resource kind, name); names are templates filled with the test's resources.
PERMISSION_TABLE: list[tuple[str, Callable[[Any, dict[str, str]], Any], list[tuple[str, str, str]]]] = [
    ("exchange.declare", lambda c, n: c.exchange_declare(n["x"], "direct"), [("configure", "exchange", "x")]),
    ("exchange.declare-new", lambda c, n: c.exchange_declare(n["new"], "direct"),
     [("configure", "exchange", "new")]),
    ("exchange.declare-new-with-alternate",
     lambda c, n: c.exchange_declare(n["new"], "direct", arguments={"alternate-exchange": n["x"]}),
     [("configure", "exchange", "new"), ("read", "exchange", "new"), ("write", "exchange", "x")]),
    ("exchange.declare-passive", lambda c, n: c.exchange_declare(n["x"], "direct", passive=True), []),
    ("exchange.delete", lambda c, n: c.exchange_delete(n["x2"]), [("configure", "exchange", "x2")]),
    ("exchange.delete-missing", lambda c, n: c.exchange_delete(n["new"]), [("configure", "exchange", "new")]),
    ("queue.declare", lambda c, n: c.queue_declare(n["q"]), [("configure", "queue", "q")]),
    ("queue.declare-new-with-dead-letter-exchange",
     lambda c, n: c.queue_declare(n["new"], exclusive=True, arguments={"x-dead-letter-exchange": n["x"]}),
     [("configure", "queue", "new"), ("read", "queue", "new"), ("write", "exchange", "x")]),
    ("queue.declare-passive", lambda c, n: c.queue_declare(n["q"], passive=True), []),
    ("queue.delete", lambda c, n: c.queue_delete(n["q2"]), [("configure", "queue", "q2")]),
    ("queue.delete-missing", lambda c, n: c.queue_delete(n["new"]), [("configure", "queue", "new")]),
    ("queue.bind", lambda c, n: c.queue_bind(n["q"], n["x"], "other"),
     [("write", "queue", "q"), ("read", "exchange", "x")]),
    ("queue.unbind", lambda c, n: c.queue_unbind(n["q"], n["x"], "k"),
     [("write", "queue", "q"), ("read", "exchange", "x")]),
    ("exchange.bind", lambda c, n: c.exchange_bind(n["x2"], n["x"], "other"),
     [("write", "exchange", "x2"), ("read", "exchange", "x")]),
    ("exchange.unbind", lambda c, n: c.exchange_unbind(n["x2"], n["x"], "k"),
     [("write", "exchange", "x2"), ("read", "exchange", "x")]),
    ("basic.publish", lambda c, n: (c.confirm_delivery(), c.basic_publish(n["x"], "k", b"m")),
     [("write", "exchange", "x")]),
    ("basic.publish-default-exchange", lambda c, n: (c.confirm_delivery(), c.basic_publish("", n["q"], b"m")),
     [("write", "exchange", "amq.default")]),
    ("basic.get", lambda c, n: c.basic_get(n["q"]), [("read", "queue", "q")]),
    ("basic.consume", lambda c, n: c.basic_consume(n["q"], lambda *args: None), [("read", "queue", "q")]),
    ("queue.purge", lambda c, n: c.queue_purge(n["q"]), [("read", "queue", "q")]),
]  # fmt: skip
KINDS = ("configure", "write", "read")


@pytest.mark.parametrize(("action", "needs"), [case[1:] for case in PERMISSION_TABLE],
                         ids=[case[0] for case in PERMISSION_TABLE])  # fmt: skip
def test_permission_table(broker, connection, user, unique, action, needs):
    names = {key: f"{unique}-{key}" for key in ("x", "x2", "q", "q2", "new")}
    names["amq.default"] = "amq.default"
    setup = connection.channel()
    setup.exchange_declare(names["x"], "direct")
    setup.exchange_declare(names["x2"], "direct")
    setup.queue_declare(names["q"])
    setup.queue_declare(names["q2"])
    setup.queue_bind(names["q"], names["x"], "k")
    setup.exchange_bind(names["x2"], names["x"], "k")
    try:
        # Refused: everything allowed but one of the needed permissions.
        for kind, resource, key in needs:
            patterns = {k: ".*" for k in KINDS}
            patterns[kind] = f"^(?!{re.escape(names[key])}$)"
            grant(broker, user, *(patterns[k] for k in KINDS))
            as_user = broker.connect(user=user, password=PASSWORD)
            assert channel_error(as_user, lambda c: action(c, names)) == refused(resource, names[key], user)
            as_user.close()
        # Allowed: exactly the needed permissions and nothing else.
        patterns = {
            kind: "|".join(f"^{re.escape(names[key])}$" for k, _, key in needs if k == kind) or "^$" for kind in KINDS
        }
        grant(broker, user, *(patterns[k] for k in KINDS))
        as_user = broker.connect(user=user, password=PASSWORD)
        action(as_user.channel(), names)
        as_user.close()
    finally:
        cleanup = connection.channel()
        for key in ("x", "x2", "new"):
            cleanup.exchange_delete(names[key])
        for key in ("q", "q2", "new"):
            cleanup.queue_delete(names[key])


def test_publish_permission_is_checked_before_the_exchange_exists(broker, user, unique):
    grant(broker, user, ".*", "^$", ".*")
    as_user = broker.connect(user=user, password=PASSWORD)

    def publish(c: Any) -> None:
        c.confirm_delivery()
        c.basic_publish(unique, "k", b"m")

    assert channel_error(as_user, publish) == refused("exchange", unique, user)
    grant(broker, user, ".*", ".*", ".*")
    assert channel_error(as_user, publish) == (404, f"NOT_FOUND - no exchange '{unique}' in vhost '/'")


def test_server_named_queue_needs_configure(broker, user):
    grant(broker, user, "^$", ".*", ".*")
    as_user = broker.connect(user=user, password=PASSWORD)
    code, text = channel_error(as_user, lambda c: c.queue_declare("", exclusive=True))
    assert code == 403
    assert re.fullmatch(
        rf"ACCESS_REFUSED - access to queue 'amq\.gen-[\w-]{{22}}' in vhost '/' refused for user '{user}'", text
    )


def test_name_checks_come_before_permissions(broker, user):
    grant(broker, user, "", "", "")
    as_user = broker.connect(user=user, password=PASSWORD)
    assert channel_error(as_user, lambda c: c.queue_declare("amq.foo")) == (
        403,
        "ACCESS_REFUSED - queue name 'amq.foo' contains reserved prefix 'amq.*'",
    )
    assert channel_error(as_user, lambda c: c.exchange_declare("", "direct")) == (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )
    assert channel_error(as_user, lambda c: c.exchange_delete("amq.direct")) == (
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
    )
    # ... but a reserved exchange name is checked only once the exchange is known to be new.
    assert channel_error(as_user, lambda c: c.exchange_declare("amq.new", "direct")) == refused(
        "exchange", "amq.new", user
    )
    with pytest.raises(ConnectionClosedByBroker) as raised:
        as_user.channel().exchange_declare("amq.new", "foo")
    assert raised.value.reply_code == 503


def test_bind_checks_write_before_the_default_exchange(broker, user, unique):
    setup = broker.connect()
    setup.channel().queue_declare(unique)
    try:
        grant(broker, user, ".*", "^$", ".*")
        as_user = broker.connect(user=user, password=PASSWORD)
        assert channel_error(as_user, lambda c: c.queue_bind(unique, "", "k")) == refused("queue", unique, user)
        grant(broker, user, ".*", ".*", "^$")
        as_user = broker.connect(user=user, password=PASSWORD)
        assert channel_error(as_user, lambda c: c.queue_bind(unique, "", "k")) == (
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
        )
    finally:
        setup.channel().queue_delete(unique)
        setup.close()


def test_empty_pattern_matches_nothing(broker, user, unique):
    grant(broker, user, "", "", "")
    as_user = broker.connect(user=user, password=PASSWORD)
    assert channel_error(as_user, lambda c: c.queue_declare(unique)) == refused("queue", unique, user)
    assert channel_error(as_user, lambda c: c.exchange_declare(unique, "fanout")) == refused(
        "exchange", unique, user
    )

    def publish_default(c: Any) -> None:
        c.confirm_delivery()
        c.basic_publish("", "any-queue", b"m")

    assert channel_error(as_user, publish_default) == refused("exchange", "amq.default", user)
    grant(broker, user, "", "^amq\\.default$", "")
    broker.connect(user=user, password=PASSWORD).channel().basic_publish("", "any-queue", b"m")


def test_patterns_are_unanchored_searches(broker, user, unique):
    grant(broker, user, "mid", "", "")
    as_user = broker.connect(user=user, password=PASSWORD)
    name = f"{unique}-mid-dle"
    as_user.channel().queue_declare(name, exclusive=True)
    assert channel_error(as_user, lambda c: c.queue_declare(f"{unique}-mi-d", exclusive=True)) == refused(
        "queue", f"{unique}-mi-d", user
    )


def test_permission_change_reaches_new_channels(broker, user, unique):
    grant(broker, user, ".*", ".*", ".*")
    as_user = broker.connect(user=user, password=PASSWORD)
    used = as_user.channel()
    used.queue_declare(unique, exclusive=True)
    grant(broker, user, "^$", ".*", ".*")
    assert channel_error(as_user, lambda c: c.queue_declare(unique, exclusive=True)) == refused(
        "queue", unique, user
    )
    # A channel remembers the checks it passed (RabbitMQ's per-channel permission cache).
    used.queue_declare(unique, exclusive=True)
    grant(broker, user, ".*", ".*", ".*")
    as_user.channel().queue_declare(unique, exclusive=True)
    broker.run(broker.admin.clear_permissions(user, "/"))
    assert channel_error(as_user, lambda c: c.queue_declare(unique, exclusive=True)) == refused(
        "queue", unique, user
    )
    assert as_user.is_open


def test_permission_cache_holds_twelve_checks(broker, user, unique):
    grant(broker, user, ".*", ".*", ".*")
    for others, outcome in ((11, "kept"), (12, "forgotten")):
        as_user = broker.connect(user=user, password=PASSWORD)
        channel = as_user.channel()
        channel.queue_declare(unique, exclusive=True)
        grant(broker, user, f"^{unique}-other-", ".*", ".*")
        for i in range(others):
            channel.queue_declare(f"{unique}-other-{i}", exclusive=True)
        if outcome == "kept":
            channel.queue_declare(unique, exclusive=True)
        else:
            with pytest.raises(ChannelClosedByBroker) as raised:
                channel.queue_declare(unique, exclusive=True)
            assert (raised.value.reply_code, raised.value.reply_text) == refused("queue", unique, user)
        as_user.close()
        grant(broker, user, ".*", ".*", ".*")


# -- topic permissions (set by a definitions import, as rabbitmqctl set_topic_permissions) ---------


def topic_grant(broker: Any, user: str, exchange: str, write: str, read: str) -> None:
    topic = {"user": user, "vhost": "/", "exchange": exchange, "write": write, "read": read}
    broker.run(broker.admin.import_definitions({"topic_permissions": [topic]}))


def topic_refused(key: str, exchange: str, user: str) -> tuple[int, str]:
    return 403, f"ACCESS_REFUSED - access to topic '{key}' in exchange '{exchange}' in vhost '/' refused for user '{user}'"


def publishing(exchange: str, key: str) -> Callable[[Any], Any]:
    """basic.publish, then a round trip, so that a refusal comes back to the caller."""
    return lambda c: (c.basic_publish(exchange, key, b"m"), c.basic_qos(prefetch_count=0))


@pytest.fixture
def topic_user(broker: Any, user: str, unique: str) -> Iterator[str]:
    """``user`` with every permission, and topic permissions on amq.topic, on a topic exchange of
    its own (``<unique>-t``) and on amq.direct (not a topic exchange, so they do not apply)."""
    grant(broker, user, ".*", ".*", ".*")
    setup = broker.connect()
    channel = setup.channel()
    channel.exchange_declare(f"{unique}-t", "topic")
    channel.exchange_declare(f"{unique}-other", "topic")
    channel.exchange_declare(f"{unique}-f", "fanout")
    channel.queue_declare(f"{unique}-q")
    topic_grant(broker, user, "amq.topic", r"^{username}\.", r"^{vhost}-r")
    topic_grant(broker, user, f"{unique}-t", "", "^ok$")
    topic_grant(broker, user, "amq.direct", "^never$", "^never$")
    yield user
    for name in ("t", "other", "f"):
        channel.exchange_delete(f"{unique}-{name}")
    channel.queue_delete(f"{unique}-q")
    setup.close()


def test_topic_write_permission_on_publish(broker, topic_user, unique):
    as_user = broker.connect(user=topic_user, password=PASSWORD)
    as_user.channel().basic_publish("amq.topic", f"{topic_user}.a", b"m")  # {username} expanded
    assert channel_error(as_user, publishing("amq.topic", "other.a")) == topic_refused("other.a", "amq.topic", topic_user)
    assert channel_error(as_user, publishing(f"{unique}-t", "a")) == topic_refused("a", f"{unique}-t", topic_user)
    channel = as_user.channel()
    publishing(f"{unique}-t", "")(channel)  # the empty pattern allows the empty key only
    publishing(f"{unique}-other", "a")(channel)  # no topic permission for that exchange
    publishing("amq.direct", "a")(channel)  # not a topic exchange
    # Checked after the exchange's existence, as RabbitMQ.
    assert channel_error(as_user, publishing(f"{unique}-none", "x")) == (
        404,
        f"NOT_FOUND - no exchange '{unique}-none' in vhost '/'",
    )
    as_user.close()


def test_topic_read_permission_on_bindings(broker, topic_user, unique):
    queue, fanout = f"{unique}-q", f"{unique}-f"
    as_user = broker.connect(user=topic_user, password=PASSWORD)
    channel = as_user.channel()
    channel.queue_bind(queue, "amq.topic", "/-r")  # {vhost} expanded
    channel.queue_unbind(queue, "amq.topic", "/-r")
    channel.exchange_bind("amq.topic", "amq.direct", "x")  # a topic destination needs nothing
    refusal = topic_refused("x", "amq.topic", topic_user)
    assert channel_error(as_user, lambda c: c.queue_bind(queue, "amq.topic", "x")) == refusal
    assert channel_error(as_user, lambda c: c.queue_unbind(queue, "amq.topic", "x")) == refusal
    assert channel_error(as_user, lambda c: c.exchange_bind(fanout, "amq.topic", "x")) == refusal
    assert channel_error(as_user, lambda c: c.exchange_unbind(fanout, "amq.topic", "x")) == refusal
    # Checked right after read on the source (before the destination's existence), and only on
    # a source that exists.
    assert channel_error(as_user, lambda c: c.queue_bind(f"{unique}-none", "amq.topic", "x")) == refusal
    assert channel_error(as_user, lambda c: c.queue_bind(queue, f"{unique}-none", "x")) == (
        404,
        f"NOT_FOUND - no exchange '{unique}-none' in vhost '/'",
    )
    # Write on the destination and read on the source come first.
    grant(broker, topic_user, ".*", f"^{re.escape(fanout)}$", "^amq\\.direct$")
    assert channel_error(as_user, lambda c: c.queue_bind(queue, "amq.topic", "x")) == refused("queue", queue, topic_user)
    assert channel_error(as_user, lambda c: c.exchange_bind(fanout, "amq.topic", "x")) == refused(
        "exchange", "amq.topic", topic_user
    )
    as_user.close()


def test_topic_checks_passed_are_cached_per_channel(broker, topic_user):
    """As RabbitMQ's topic_permission_cache: a change reaches a channel for routing keys it has
    not used yet."""
    as_user = broker.connect(user=topic_user, password=PASSWORD)
    channel = as_user.channel()
    publishing("amq.topic", f"{topic_user}.cached")(channel)
    topic_grant(broker, topic_user, "amq.topic", "^nothing$", "")
    publishing("amq.topic", f"{topic_user}.cached")(channel)
    key = f"{topic_user}.new"
    assert channel_error(as_user, publishing("amq.topic", f"{topic_user}.cached")) == topic_refused(
        f"{topic_user}.cached", "amq.topic", topic_user
    )
    with pytest.raises(ChannelClosedByBroker) as raised:
        publishing("amq.topic", key)(channel)
    assert (raised.value.reply_code, raised.value.reply_text) == topic_refused(key, "amq.topic", topic_user)
    as_user.close()


def test_topic_pattern_that_no_longer_compiles_closes_the_connection(broker, unique):
    """A user name spliced into a pattern can make it no regular expression: RabbitMQ's channel
    crashes on it, which closes the connection with 541."""
    name = f"{unique}(u"
    broker.run(broker.admin.add_user(name, PASSWORD))
    try:
        grant(broker, name, ".*", ".*", ".*")
        topic_grant(broker, name, "amq.topic", "^{username}", "^{username}")
        for action in (publishing("amq.topic", "k"), lambda c: c.queue_bind("amq.gen-none", "amq.topic", "k")):
            as_user = broker.connect(user=name, password=PASSWORD)
            with pytest.raises(ConnectionClosedByBroker) as raised:
                action(as_user.channel())
            assert (raised.value.reply_code, raised.value.reply_text) == (541, "INTERNAL_ERROR")
    finally:
        broker.run(broker.admin.delete_user(name))


# -- deleting vhosts and users --------------------------------------------------------------


def test_deleting_a_vhost_closes_its_connections(broker, unique):
    vhost = f"{unique}-vhost"
    broker.run(broker.admin.add_vhost(vhost))
    grant(broker, "guest", ".*", ".*", ".*", vhost=vhost)
    inside = broker.connect(vhost=vhost)
    inside.channel().queue_declare(unique)
    outside = broker.connect()
    broker.run(broker.admin.delete_vhost(vhost))
    assert wait_for_close(inside) == (320, f"CONNECTION_FORCED - vhost '{vhost}' is deleted")
    assert outside.is_open
    outside.channel().queue_declare("", exclusive=True)
    outside.close()
    assert vhost not in broker.admin.list_vhosts()
    assert all(p["vhost"] != vhost for p in broker.admin.list_permissions())


def test_deleting_a_user_closes_its_connections(broker, user):
    grant(broker, user, ".*", ".*", ".*")
    as_user = broker.connect(user=user, password=PASSWORD)
    broker.run(broker.admin.delete_user(user))
    assert wait_for_close(as_user) == (320, f"CONNECTION_FORCED - user '{user}' is deleted")
    assert all(p["user"] != user for p in broker.admin.list_permissions())


# -- admin errors (rabbitmqctl's words) -----------------------------------------------------


def test_admin_errors(broker, user, unique):
    admin = broker.admin
    missing_user, missing_vhost = f"{unique}-nobody", f"{unique}-nowhere"
    cases = [
        (admin.add_user(user, "x"), f'User "{user}" already exists'),
        (admin.delete_user(missing_user), f'User "{missing_user}" does not exist'),
        (admin.change_password(missing_user, "x"), f'User "{missing_user}" does not exist'),
        (admin.set_user_tags(missing_user, []), f'User "{missing_user}" does not exist'),
        (admin.set_permissions(missing_user, "/"), f"User {missing_user} does not exist"),
        (admin.set_permissions(missing_user, missing_vhost), f"User {missing_user} does not exist"),
        (admin.set_permissions(user, missing_vhost), f"Virtual host {missing_vhost} does not exist"),
        (admin.clear_permissions(user, missing_vhost), f"Virtual host {missing_vhost} does not exist"),
        (admin.delete_vhost(missing_vhost), f"Virtual host '{missing_vhost}' does not exist"),
        (admin.set_permissions(user, "/", "(", ".*", ".*"), "regular expression '(' is invalid"),
    ]
    for coro, text in cases:
        with pytest.raises(AdminError) as raised:
            broker.run(coro)
        assert str(raised.value) == text
    assert all(p["user"] != user for p in admin.list_permissions())  # the bad regex was not stored
    # Adding a vhost that exists and clearing permissions nobody has are no errors (as rabbitmqctl).
    broker.run(admin.add_vhost("/"))
    broker.run(admin.clear_permissions(user, "/"))
