"""OAuth 2.0 scopes mapped to permissions exactly as rabbit_oauth2_scope and wildcard.erl map
them (the cases of RabbitMQ's wildcard_match_SUITE and scope_SUITE that apply)."""

from __future__ import annotations

import pytest

from amqp_server.auth import scopes


@pytest.mark.parametrize(
    ("subject", "pattern", "matches"),
    [
        ("foo", "foo", True),
        ("foo", "fo", False),
        ("fo", "foo", False),
        ("", "", True),
        ("a", "", False),
        ("anything", "*", True),
        ("", "*", True),
        ("foo.bar", "foo*", True),
        ("foo.bar", "*bar", True),
        ("foo.bar", "f*r", True),
        ("foo.bar.baz", "*.bar.*", True),
        ("foobar", "*.bar.*", False),
        ("abab", "a*b", False),  # no backtracking: the first 'b' after 'a' ends the match
        ("ab", "a**b", True),  # repeated wildcards are one
        ("a", "a**", False),  # ...except at the end, as wildcard.erl scans them
        ("a/b", "a%2Fb", True),  # parts are URL-decoded
        ("a b", "a+b", True),
        ("a%zz", "a%zz", False),  # a bad escape: the pattern is invalid
    ],
)
def test_wildcard_match(subject: str, pattern: str, matches: bool) -> None:
    assert scopes.wildcard_match(subject, pattern) is matches


def test_parse() -> None:
    assert scopes.parse("read:vhost/queue") == ("vhost", "queue", None, "read")
    assert scopes.parse("write:vhost/exchange/key.*") == ("vhost", "exchange", "key.*", "write")
    assert scopes.parse("configure:*/*") == ("*", "*", None, "configure")
    for ignored in ("read:vhost", "read:a/b/c/d", "delete:*/*", "tag:administrator", "openid", "read"):
        assert scopes.parse(ignored) is None


def test_resource_access() -> None:
    granted = ["read:prod/orders-*", "write:*/amq.default", "configure:dev/*"]
    assert scopes.resource_access("prod", "orders-eu", "read", granted)
    assert not scopes.resource_access("prod", "orders-eu", "write", granted)  # the permission must be granted
    assert not scopes.resource_access("prod", "invoices", "read", granted)
    assert scopes.resource_access("any", "amq.default", "write", granted)
    assert scopes.resource_access("dev", "x", "configure", granted)
    assert not scopes.resource_access("prod", "x", "configure", granted)


def test_vhost_access_is_any_permission_on_the_vhost() -> None:
    granted = ["read:prod/orders", "tag:management"]
    assert scopes.vhost_access("prod", granted)
    assert not scopes.vhost_access("dev", granted)
    assert not scopes.vhost_access("prod", ["tag:management"])


def test_topic_access_needs_a_routing_key_pattern() -> None:
    granted = ["write:*/events/eu.*", "read:*/events"]
    assert scopes.topic_access("/", "events", "eu.orders", "write", granted)
    assert not scopes.topic_access("/", "events", "us.orders", "write", granted)
    assert not scopes.topic_access("/", "events", "eu.orders", "read", granted)  # two parts: no topic access


def test_prefix_and_tags() -> None:
    raw = [
        "rabbitmq.read:*/*",
        "rabbitmq.tag:monitoring",
        "rabbitmq.tag:administrator",
        "other.write:*/*",
        "rabbitmq",
    ]
    own = scopes.without_prefix(raw, "rabbitmq.")
    assert own == ["read:*/*", "tag:monitoring", "tag:administrator"]
    assert scopes.tags(own) == ["administrator", "monitoring"]
