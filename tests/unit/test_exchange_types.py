"""Unit tests for the bundled exchange types and the exchange-type registry.

Expected behaviour is RabbitMQ's (rabbit_exchange_type_{direct,fanout,topic,headers},
rabbit_db_topic_exchange), not whatever the implementation happens to do.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import logging
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import decode

from amqp_server import type_registry
from amqp_server.protocol.errors import PRECONDITION_FAILED, ChannelError
from exchanges import registry
from exchanges.base import EXCHANGE, QUEUE, Binding, Destination, ExchangeType, RoutableMessage
from exchanges.direct import DirectExchange
from exchanges.fanout import FanoutExchange
from exchanges.headers import HeadersExchange
from exchanges.topic import TopicExchange, split_topic_key

# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Msg:
    routing_keys: tuple[str, ...] = ("",)
    headers: Mapping[str, Any] | None = None


def q(name: str) -> Destination:
    return Destination(QUEUE, name)


def make_binding(dest: str | Destination, key: str = "", args: Mapping[str, Any] | None = None) -> Binding:
    destination = q(dest) if isinstance(dest, str) else dest
    return Binding("x", destination, key, dict(args or {}))


def bind(
    ex: ExchangeType, dest: str | Destination, key: str = "", args: Mapping[str, Any] | None = None
) -> Binding:
    binding = make_binding(dest, key, args)
    ex.validate_binding(binding)
    ex.add_binding(binding)
    return binding


def route(ex: ExchangeType, *keys: str, headers: Mapping[str, Any] | None = None) -> set[str]:
    """Names routed to; also checks the contract that a destination comes back at most once."""
    result = list(ex.route(Msg(keys or ("",), headers)))
    assert len(result) == len(set(result)), f"duplicate destinations: {result}"
    return {dest.name for dest in result}


# --------------------------------------------------------------------------- direct


class TestDirect:
    def test_exact_key_only(self) -> None:
        ex = DirectExchange("x", {})
        bind(ex, "q1", "a")
        bind(ex, "q2", "b")
        assert route(ex, "a") == {"q1"}
        assert route(ex, "b") == {"q2"}
        assert route(ex, "c") == set()
        assert route(ex, "A") == set()  # keys are case sensitive
        assert route(ex, "a.b") == set()  # no pattern matching

    def test_empty_routing_key(self) -> None:
        ex = DirectExchange("x", {})
        bind(ex, "q1", "")
        assert route(ex, "") == {"q1"}
        assert route(ex, "a") == set()

    def test_one_key_returns_stored_collection(self) -> None:
        ex = DirectExchange("x", {})
        bind(ex, "q1", "a")
        bind(ex, "q2", "a")
        first = ex.route(Msg(("a",)))
        assert isinstance(first, tuple)
        assert first is ex.route(Msg(("a",)))  # no new object per publish
        assert set(first) == {q("q1"), q("q2")}
        assert ex.route(Msg(("none",))) == ()

    def test_several_keys_union_without_duplicates(self) -> None:
        ex = DirectExchange("x", {})
        bind(ex, "q1", "a")
        bind(ex, "q2", "b")
        bind(ex, "both", "a")
        bind(ex, "both", "b")
        assert route(ex, "a", "b") == {"q1", "q2", "both"}
        assert route(ex, "a", "a") == {"q1", "both"}
        assert route(ex, "zzz", "b") == {"q2", "both"}
        assert route(ex, "zzz", "yyy") == set()

    def test_same_key_and_queue_different_arguments_are_two_bindings(self) -> None:
        ex = DirectExchange("x", {})
        b1 = bind(ex, "q1", "a", {"tag": 1})
        b2 = bind(ex, "q1", "a", {"tag": 2})
        assert list(ex.route(Msg(("a",)))) == [q("q1")]
        ex.remove_bindings([b1])
        assert route(ex, "a") == {"q1"}  # b2 still binds it
        ex.remove_bindings([b2])
        assert route(ex, "a") == set()

    def test_re_adding_a_binding_is_idempotent(self) -> None:
        ex = DirectExchange("x", {})
        b = bind(ex, "q1", "a")
        ex.add_binding(b)  # e.g. recovery replaying a binding already known
        ex.remove_bindings([b])
        assert route(ex, "a") == set()

    def test_removing_unknown_bindings_is_harmless(self) -> None:
        ex = DirectExchange("x", {})
        bind(ex, "q1", "a")
        ex.remove_bindings([make_binding("q1", "b"), make_binding("q2", "a")])
        assert route(ex, "a") == {"q1"}

    def test_remove_one_of_several_destinations(self) -> None:
        ex = DirectExchange("x", {})
        b1 = bind(ex, "q1", "a")
        bind(ex, "q2", "a")
        ex.remove_bindings([b1])
        assert route(ex, "a") == {"q2"}

    def test_exchange_destinations(self) -> None:
        ex = DirectExchange("x", {})
        bind(ex, Destination(EXCHANGE, "downstream"), "a")
        bind(ex, q("downstream"), "a")  # same name, other kind: a different destination
        assert set(ex.route(Msg(("a",)))) == {Destination(EXCHANGE, "downstream"), q("downstream")}

    def test_delete_clears_state(self) -> None:
        ex = DirectExchange("x", {})
        bind(ex, "q1", "a")
        ex.delete()
        assert route(ex, "a") == set()


# --------------------------------------------------------------------------- fanout


class TestFanout:
    def test_routes_to_all_whatever_the_key(self) -> None:
        ex = FanoutExchange("x", {})
        bind(ex, "q1", "")
        bind(ex, "q2", "some.key")
        assert route(ex, "") == {"q1", "q2"}
        assert route(ex, "anything") == {"q1", "q2"}
        assert route(ex, "a", "b") == {"q1", "q2"}

    def test_no_bindings(self) -> None:
        assert route(FanoutExchange("x", {}), "a") == set()

    def test_one_destination_per_queue_however_often_bound(self) -> None:
        ex = FanoutExchange("x", {})
        b1 = bind(ex, "q1", "k1")
        b2 = bind(ex, "q1", "k2")
        b3 = bind(ex, "q1", "k1", {"x-extra": 1})
        assert list(ex.route(Msg(("k1",)))) == [q("q1")]
        ex.remove_bindings([b1, b3])
        assert list(ex.route(Msg(("k1",)))) == [q("q1")]
        ex.remove_bindings([b2])
        assert list(ex.route(Msg(("k1",)))) == []

    def test_returns_precomputed_tuple(self) -> None:
        ex = FanoutExchange("x", {})
        bind(ex, "q1")
        first = ex.route(Msg())
        assert isinstance(first, tuple)
        assert first is ex.route(Msg(("other",)))

    def test_idempotent_add_and_unknown_remove(self) -> None:
        ex = FanoutExchange("x", {})
        b = bind(ex, "q1")
        ex.add_binding(b)
        ex.remove_bindings([make_binding("q2")])
        assert route(ex) == {"q1"}
        ex.remove_bindings([b])
        assert route(ex) == set()


# --------------------------------------------------------------------------- topic


def ref_topic_match(pattern: str, key: str) -> bool:
    """Reference matcher: RabbitMQ's word rules, written as plainly as possible."""

    def words(s: str) -> list[str]:
        return s.split(".") if s else []

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        head, rest = p[0], p[1:]
        if head == "#":
            return any(match(rest, k[i:]) for i in range(len(k) + 1))
        if not k:
            return False
        return (head == "*" or head == k[0]) and match(rest, k[1:])

    return match(words(pattern), words(key))


TOPIC_CASES = [
    # the facts RabbitMQ's behaviour fixes
    ("*", "", False),
    ("#.*", "", False),
    ("a.*", "a.", True),
    ("#.a", "a", True),
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", ".", True),
    # empty words are words
    ("a..b", "a..b", True),
    ("a.*.b", "a..b", True),
    ("a.b", "a..b", False),
    ("*", ".", False),
    ("*.*", ".", True),
    (".", ".", True),
    (".", "", False),
    ("", "", True),
    ("", "a", False),
    ("", ".", False),
    ("a", "a.", False),
    ("a.", "a", False),
    ("*.", "a.", True),
    # '*' is exactly one word
    ("*", "a", True),
    ("*", "a.b", False),
    ("a.*", "a", False),
    ("a.*", "a.b", True),
    ("a.*", "a.b.c", False),
    ("*.*", "a.b", True),
    ("*.#", "", False),
    ("*.#", "a", True),
    # '#' is zero or more words
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "ab", False),
    ("a.#", "b.a", False),
    ("#.a", "b.a", True),
    ("#.a", "a.b", False),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("#.#.a", "a", True),
    ("#.a.#", "a", True),
    ("#.a.#", "b.a.c", True),
    ("#.a.#", "b.c", False),
    ("b.#.b", "b", False),
    ("b.#.b", "b.b", True),
    ("b.#.b", "b.x.y.b", True),
    ("#.*", "a", True),
    ("#.*.*", "a", False),
    # wildcard characters in a routing key are plain words
    ("a", "*", False),
    ("*", "*", True),
    ("#", "#", True),
    ("a.#", "a.#", True),
    ("a.*.c", "a.#.c", True),
    ("a.b", "a.*", False),
    ("a.b", "a.#", False),
    # words are whole: no partial-word wildcards
    ("a*", "ab", False),
    ("a#", "a", False),
    ("a*", "a*", True),
]


class TestTopic:
    @pytest.mark.parametrize(("pattern", "key", "expected"), TOPIC_CASES)
    def test_pattern(self, pattern: str, key: str, expected: bool) -> None:
        ex = TopicExchange("x", {})
        bind(ex, "q", pattern)
        assert (route(ex, key) == {"q"}) is expected
        # the reference matcher used by the property test agrees with the table
        assert ref_topic_match(pattern, key) is expected

    def test_split_follows_rabbitmq(self) -> None:
        assert list(split_topic_key("")) == []
        assert list(split_topic_key("a")) == ["a"]
        assert list(split_topic_key("a..b")) == ["a", "", "b"]
        assert list(split_topic_key("a.")) == ["a", ""]
        assert list(split_topic_key(".")) == ["", ""]

    def test_same_pattern_several_destinations(self) -> None:
        ex = TopicExchange("x", {})
        bind(ex, "q1", "a.*")
        bind(ex, "q2", "a.*")
        bind(ex, Destination(EXCHANGE, "e"), "a.*")
        result = list(ex.route(Msg(("a.b",))))
        assert sorted(result) == sorted([q("q1"), q("q2"), Destination(EXCHANGE, "e")])

    def test_several_patterns_same_destination_returned_once(self) -> None:
        ex = TopicExchange("x", {})
        for pattern in ("a.b", "a.*", "*.b", "#", "a.#", "#.b", "#.#"):
            bind(ex, "q1", pattern)
        bind(ex, "q2", "a.b")
        assert list(ex.route(Msg(("c",)))) == [q("q1")]
        assert route(ex, "a.b") == {"q1", "q2"}

    def test_same_pattern_same_queue_different_arguments(self) -> None:
        ex = TopicExchange("x", {})
        b1 = bind(ex, "q1", "a.#", {"n": 1})
        b2 = bind(ex, "q1", "a.#", {"n": 2})
        assert list(ex.route(Msg(("a.b",)))) == [q("q1")]
        ex.remove_bindings([b1])
        assert route(ex, "a.b") == {"q1"}
        ex.remove_bindings([b2])
        assert route(ex, "a.b") == set()

    def test_cc_keys(self) -> None:
        ex = TopicExchange("x", {})
        bind(ex, "q1", "a.*")
        bind(ex, "q2", "b.#")
        bind(ex, "q3", "#.z")
        assert route(ex, "a.x", "b") == {"q1", "q2"}
        assert route(ex, "a.z", "b.z") == {"q1", "q2", "q3"}
        assert route(ex, "c", "d") == set()
        # positions explored for one key must not suppress matches for the next
        assert route(ex, "y.y.y", "q.z") == {"q3"}

    def test_single_match_returns_stored_tuple(self) -> None:
        ex = TopicExchange("x", {})
        bind(ex, "q1", "a.*")
        result = ex.route(Msg(("a.b",)))
        assert isinstance(result, tuple)
        assert result is ex.route(Msg(("a.c",)))

    def test_remove_prunes_empty_nodes(self) -> None:
        ex = TopicExchange("x", {})
        long = bind(ex, "q1", "a.b.c.d")
        short = bind(ex, "q2", "a.b")
        hashed = bind(ex, "q3", "a.#.x")
        # root, a, a.b, a.b.c, a.b.c.d, a.#, a.#.x
        assert ex.node_count == 7
        ex.remove_bindings([long])
        assert ex.node_count == 5  # c.d pruned, a.b kept: it has a binding
        assert route(ex, "a.b") == {"q2"}
        assert route(ex, "a.b.c.d") == set()
        ex.remove_bindings([short, hashed])
        assert ex.node_count == 1  # only the root: the '#' edge went too
        assert route(ex, "a.b", "a.q.x", "a.b.c.d") == set()
        # an emptied trie works as a new one, '#' edges included
        bind(ex, "q3", "a.#.x")
        assert route(ex, "a.x", "a.b.b.x", "a.b") == {"q3"}
        assert route(ex, "a.b", "x") == set()

    def test_remove_keeps_shared_prefix(self) -> None:
        ex = TopicExchange("x", {})
        b1 = bind(ex, "q1", "a.b.c")
        bind(ex, "q2", "a.b.d")
        assert ex.node_count == 5  # root, a, a.b, a.b.c, a.b.d
        ex.remove_bindings([b1])
        assert ex.node_count == 4  # only a.b.c went: a and a.b still lead to a.b.d
        assert route(ex, "a.b.d") == {"q2"}
        assert route(ex, "a.b.c") == set()

    def test_remove_unknown_and_idempotent_add(self) -> None:
        ex = TopicExchange("x", {})
        b = bind(ex, "q1", "a.#")
        ex.add_binding(b)
        ex.remove_bindings([make_binding("q1", "never.bound"), make_binding("q9", "a.#")])
        assert route(ex, "a") == {"q1"}
        ex.remove_bindings([b])
        assert route(ex, "a") == set()
        assert ex.node_count == 1

    def test_many_hashes_do_not_explode(self) -> None:
        # RabbitMQ's naive walk explores C(61, 6)-ish paths here; each (node, position) once is instant.
        ex = TopicExchange("x", {})
        bind(ex, "q1", ".".join(["#", "a"] * 6) + ".#.b")
        bind(ex, "q2", ".".join(["#", "a"] * 6) + ".#.c")
        key = ".".join(["a"] * 60 + ["b"])
        started = time.perf_counter()
        assert route(ex, key) == {"q1"}
        assert time.perf_counter() - started < 2.0

    def test_delete_clears_state(self) -> None:
        ex = TopicExchange("x", {})
        bind(ex, "q1", "#")
        ex.delete()
        assert route(ex, "a") == set()


PATTERN_WORDS = st.sampled_from(["a", "b", "", "*", "#"])
KEY_WORDS = st.sampled_from(["a", "b", "", "*", "#"])
patterns = st.lists(PATTERN_WORDS, max_size=5).map(".".join)
keys = st.lists(KEY_WORDS, max_size=6).map(".".join)


@settings(max_examples=400, deadline=None)
@given(
    bindings=st.lists(st.tuples(patterns, st.integers(0, 3)), max_size=8),
    removed=st.sets(st.integers(0, 7)),
    routing_keys=st.lists(keys, min_size=1, max_size=3),
)
def test_topic_matches_reference(
    bindings: list[tuple[str, int]], removed: set[int], routing_keys: list[str]
) -> None:
    ex = TopicExchange("x", {})
    made = [bind(ex, f"q{n}", pattern) for pattern, n in bindings]
    ex.remove_bindings([made[i] for i in sorted(removed) if i < len(made)])
    # Bindings are a set: binding the same pattern to the same queue twice is one binding.
    live = set(bindings) - {bindings[i] for i in removed if i < len(bindings)}
    expected = {f"q{n}" for pattern, n in live for key in routing_keys if ref_topic_match(pattern, key)}
    assert route(ex, *routing_keys) == expected
    # removing what is left must leave an empty trie that nothing routes through ...
    ex.remove_bindings(made)
    assert ex.node_count == 1
    assert route(ex, *routing_keys) == set()
    # ... and that works as a new one when bindings come back
    for pattern, n in bindings:
        bind(ex, f"q{n}", pattern)
    assert route(ex, *routing_keys) == {
        f"q{n}" for pattern, n in bindings for key in routing_keys if ref_topic_match(pattern, key)
    }


# --------------------------------------------------------------------------- headers


def headers_ex(*bindings: tuple[str, Mapping[str, Any]]) -> HeadersExchange:
    ex = HeadersExchange("x", {})
    for dest, args in bindings:
        bind(ex, dest, "", args)
    return ex


def hmatch(args: Mapping[str, Any], headers: Mapping[str, Any] | None) -> bool:
    return route(headers_ex(("q", args)), headers=headers) == {"q"}


def table(*fields: bytes) -> dict[str, Any]:
    """Decode a field table given as encoded fields, as pamqp decodes what clients send."""
    payload = b"".join(fields)
    return decode.field_table(struct.pack(">I", len(payload)) + payload)[1]


def field(name: str, kind: bytes, packed: bytes) -> bytes:
    raw = name.encode()
    return bytes([len(raw)]) + raw + kind + packed


class TestHeadersMatching:
    def test_all_is_the_default(self) -> None:
        args = {"a": 1, "b": "x"}
        assert hmatch(args, {"a": 1, "b": "x"})
        assert hmatch(args, {"a": 1, "b": "x", "c": "extra"})
        assert not hmatch(args, {"a": 1})
        assert not hmatch(args, {"a": 1, "b": "y"})
        assert not hmatch(args, {})

    def test_explicit_all(self) -> None:
        args = {"x-match": "all", "a": 1, "b": "x"}
        assert hmatch(args, {"a": 1, "b": "x"})
        assert not hmatch(args, {"a": 2, "b": "x"})

    def test_any(self) -> None:
        args = {"x-match": "any", "a": 1, "b": "x"}
        assert hmatch(args, {"a": 1})
        assert hmatch(args, {"b": "x", "a": 99})
        assert not hmatch(args, {"a": 2, "b": "y"})
        assert not hmatch(args, {"c": 1})
        assert not hmatch(args, None)

    def test_all_without_arguments_matches_everything(self) -> None:
        assert hmatch({}, {"a": 1})
        assert hmatch({}, {})
        assert hmatch({}, None)
        assert hmatch({"x-match": "all"}, None)
        assert hmatch({"x-match": "all", "x-other": 1}, {"z": 1})

    def test_any_without_arguments_matches_nothing(self) -> None:
        assert not hmatch({"x-match": "any"}, {"a": 1})
        assert not hmatch({"x-match": "any"}, None)
        assert not hmatch({"x-match": "any", "x-other": 1}, {"x-other": 1})

    def test_none_headers_count_as_empty(self) -> None:
        assert not hmatch({"a": 1}, None)
        assert not hmatch({"x-match": "any", "a": None}, None)

    def test_x_arguments_ignored_by_all_and_any(self) -> None:
        assert hmatch({"a": 1, "x-foo": "bar"}, {"a": 1})
        assert hmatch({"a": 1, "x-foo": "bar"}, {"a": 1, "x-foo": "other"})
        assert not hmatch({"x-match": "any", "x-foo": "bar"}, {"x-foo": "bar"})

    def test_all_with_x_includes_x_arguments(self) -> None:
        args = {"x-match": "all-with-x", "a": 1, "x-foo": "bar"}
        assert hmatch(args, {"a": 1, "x-foo": "bar"})
        assert not hmatch(args, {"a": 1})
        assert not hmatch(args, {"a": 1, "x-foo": "baz"})

    def test_any_with_x_includes_x_arguments(self) -> None:
        args = {"x-match": "any-with-x", "a": 1, "x-foo": "bar"}
        assert hmatch(args, {"x-foo": "bar"})
        assert hmatch(args, {"a": 1})
        assert not hmatch(args, {"x-foo": "baz"})
        assert not hmatch({"x-match": "any-with-x"}, {"x-match": "any-with-x"})

    def test_x_match_itself_is_never_compared(self) -> None:
        # the message has no x-match header, yet all-with-x matches
        assert hmatch({"x-match": "all-with-x", "x-a": 1}, {"x-a": 1})
        assert hmatch({"x-match": "all-with-x"}, {})

    def test_void_binding_value_matches_presence(self) -> None:
        args = {"a": None}
        assert hmatch(args, {"a": 1})
        assert hmatch(args, {"a": "anything"})
        assert hmatch(args, {"a": None})
        assert hmatch(args, {"a": {"nested": [1]}})
        assert not hmatch(args, {"b": 1})
        assert not hmatch(args, {})

    def test_void_header_only_matches_void_binding(self) -> None:
        assert not hmatch({"a": 1}, {"a": None})
        assert not hmatch({"a": ""}, {"a": None})
        assert not hmatch({"a": False}, {"a": None})

    def test_legacy_invalid_x_match_means_all(self) -> None:
        # bindings recovered from before validation: RabbitMQ's route treats them as "all"
        ex = HeadersExchange("x", {})
        ex.add_binding(make_binding("q", "", {"x-match": "bogus", "a": 1, "b": 2}))
        assert route(ex, headers={"a": 1, "b": 2}) == {"q"}
        assert route(ex, headers={"a": 1}) == set()


class TestHeadersTypes:
    def test_int_never_equals_string(self) -> None:
        assert not hmatch({"a": 5}, {"a": "5"})
        assert not hmatch({"a": "5"}, {"a": 5})

    def test_int_never_equals_float(self) -> None:
        # RabbitMQ compares with =:=, so 5 and 5.0 differ
        assert not hmatch({"a": 5}, {"a": 5.0})
        assert not hmatch({"a": 5.0}, {"a": 5})
        assert hmatch({"a": 5.0}, {"a": 5.0})

    def test_bool_is_not_an_int(self) -> None:
        assert not hmatch({"a": True}, {"a": 1})
        assert not hmatch({"a": 1}, {"a": True})
        assert not hmatch({"a": False}, {"a": 0})
        assert hmatch({"a": True}, {"a": True})
        assert not hmatch({"a": True}, {"a": False})

    def test_integers_of_any_width_and_signedness_compare_by_value(self) -> None:
        # binding argument sent as unsigned 32-bit, header as signed 8-bit / signed 64-bit
        args = table(field("a", b"i", struct.pack(">I", 5)))
        assert hmatch(args, table(field("a", b"b", struct.pack(">b", 5))))
        assert hmatch(args, table(field("a", b"l", struct.pack(">q", 5))))
        assert hmatch(args, table(field("a", b"u", struct.pack(">H", 5))))
        assert not hmatch(args, table(field("a", b"b", struct.pack(">b", -5))))

    def test_long_string_equals_byte_array_with_same_bytes(self) -> None:
        args = table(field("a", b"S", struct.pack(">I", 3) + b"abc"))
        header = table(field("a", b"x", struct.pack(">I", 3) + b"abc"))
        assert isinstance(args["a"], str) and isinstance(header["a"], bytearray)
        assert hmatch(args, header)
        assert hmatch({"a": "abc"}, {"a": b"abc"})
        assert hmatch({"a": b"abc"}, {"a": "abc"})
        assert hmatch({"a": "é"}, {"a": "é".encode()})
        assert not hmatch({"a": "abc"}, {"a": b"abd"})

    def test_strings_are_exact(self) -> None:
        assert hmatch({"a": "Hello"}, {"a": "Hello"})
        assert not hmatch({"a": "Hello"}, {"a": "hello"})
        assert not hmatch({"a": "x"}, {"a": "x "})
        assert hmatch({"a": ""}, {"a": ""})

    def test_decimals_compare_scale_and_digits(self) -> None:
        assert hmatch({"a": Decimal("5.0")}, {"a": Decimal("5.0")})
        assert not hmatch({"a": Decimal("5.0")}, {"a": Decimal("5.00")})
        assert not hmatch({"a": Decimal("5")}, {"a": 5})
        decoded = table(field("a", b"D", struct.pack(">BI", 1, 50)))
        assert hmatch({"a": Decimal("5.0")}, decoded)

    def test_timestamps(self) -> None:
        moment = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        assert hmatch({"a": moment}, {"a": moment})
        assert hmatch({"a": moment}, {"a": moment.replace(tzinfo=None)})  # naive is UTC
        assert not hmatch({"a": moment}, {"a": moment + datetime.timedelta(seconds=1)})
        assert not hmatch({"a": moment}, {"a": int(moment.timestamp())})

    def test_nested_tables(self) -> None:
        assert hmatch({"a": {"k": 1, "j": "v"}}, {"a": {"k": 1, "j": "v"}})
        assert not hmatch({"a": {"k": 1}}, {"a": {"k": 2}})
        assert not hmatch({"a": {"k": 1}}, {"a": {"k": True}})
        assert not hmatch({"a": {"k": 1}}, {"a": {"k": 1, "extra": 0}})
        # Erlang compares the field lists in order
        assert not hmatch({"a": {"k": 1, "j": 2}}, {"a": {"j": 2, "k": 1}})
        # inside a table the field type counts: long string and byte array differ
        assert not hmatch({"a": {"k": "s"}}, {"a": {"k": bytearray(b"s")}})

    def test_arrays(self) -> None:
        assert hmatch({"a": [1, "two", [3]]}, {"a": [1, "two", [3]]})
        assert not hmatch({"a": [1, 2]}, {"a": [2, 1]})
        assert not hmatch({"a": [1]}, {"a": [True]})
        assert not hmatch({"a": [1]}, {"a": [1.0]})
        assert not hmatch({"a": []}, {"a": {}})


class TestHeadersBindings:
    def test_several_bindings_one_destination_returned_once(self) -> None:
        ex = headers_ex(("q1", {"a": 1}), ("q1", {"b": 2}), ("q2", {"x-match": "any", "a": 1, "b": 0}))
        assert list(ex.route(Msg(headers={"a": 1, "b": 2}))) == [q("q1"), q("q2")]
        assert route(ex, headers={"b": 2}) == {"q1"}
        assert route(ex, headers={"c": 3}) == set()

    def test_add_and_remove(self) -> None:
        ex = HeadersExchange("x", {})
        b1 = bind(ex, "q1", "", {"a": 1})
        assert route(ex, headers={"a": 1}) == {"q1"}
        b2 = bind(ex, "q2", "", {"a": 1})
        assert route(ex, headers={"a": 1}) == {"q1", "q2"}
        ex.remove_bindings([b1])
        assert route(ex, headers={"a": 1}) == {"q2"}
        ex.remove_bindings([b2, make_binding("never", "", {"a": 1})])
        assert route(ex, headers={"a": 1}) == set()

    def test_routing_key_is_irrelevant(self) -> None:
        ex = HeadersExchange("x", {})
        bind(ex, "q1", "some-key", {"a": 1})
        assert route(ex, "other-key", headers={"a": 1}) == {"q1"}

    def test_binding_arguments_are_compiled_once(self) -> None:
        args: dict[str, Any] = {"a": 1}
        ex = HeadersExchange("x", {})
        ex.add_binding(Binding("x", q("q1"), "", args))
        args["a"] = 2  # later changes to the caller's dict must not change routing
        assert route(ex, headers={"a": 1}) == {"q1"}

    def test_delete_clears_state(self) -> None:
        ex = headers_ex(("q1", {}))
        ex.delete()
        assert route(ex, headers={}) == set()


VALUE_TEXT = "expected all, any, all-with-x, or any-with-x"


class TestHeadersValidation:
    @pytest.mark.parametrize("mode", ["all", "any", "all-with-x", "any-with-x"])
    def test_valid_x_match(self, mode: str) -> None:
        HeadersExchange("x", {}).validate_binding(make_binding("q", "", {"x-match": mode}))

    def test_x_match_may_be_omitted(self) -> None:
        HeadersExchange("x", {}).validate_binding(make_binding("q", "", {"a": 1}))

    @pytest.mark.parametrize(
        ("value", "explanation"),
        [
            ("foo", f'Invalid x-match field value <<"foo">>; {VALUE_TEXT}'),
            ("ALL", f'Invalid x-match field value <<"ALL">>; {VALUE_TEXT}'),
            ("", f"Invalid x-match field value <<>>; {VALUE_TEXT}"),
            ('a"b\\c', f'Invalid x-match field value <<"a\\"b\\\\c">>; {VALUE_TEXT}'),
            ("é", f'Invalid x-match field value <<"é"/utf8>>; {VALUE_TEXT}'),
            ("a\nb", f'Invalid x-match field value <<"a\\nb">>; {VALUE_TEXT}'),
            ("日", f"Invalid x-match field value <<230,151,165>>; {VALUE_TEXT}"),
            ("\u07ff", f"Invalid x-match field value <<223,191>>; {VALUE_TEXT}"),
            # latin1-printable octets are sent back as they came (e9 74 e9), as RabbitMQ does
            (b"\xe9t\xe9", f'Invalid x-match field value <<"\udce9t\udce9">>; {VALUE_TEXT}'),
            (b"\xff\x01", f"Invalid x-match field value <<255,1>>; {VALUE_TEXT}"),
            (1, "Invalid x-match field type signedint (value 1); expected longstr"),
            (True, "Invalid x-match field type bool (value true); expected longstr"),
            (None, "Invalid x-match field type void (value undefined); expected longstr"),
            (bytearray(b"all"), 'Invalid x-match field type binary (value <<"all">>); expected longstr'),
            (2**40, f"Invalid x-match field type long (value {2**40}); expected longstr"),
            (1.5, "Invalid x-match field type double (value 1.5); expected longstr"),
        ],
    )
    def test_invalid_x_match(self, value: Any, explanation: str) -> None:
        ex = HeadersExchange("x", {})
        with pytest.raises(ChannelError) as info:
            ex.validate_binding(make_binding("q", "", {"x-match": value}))
        assert info.value.code == PRECONDITION_FAILED
        assert info.value.explanation == explanation
        assert info.value.reply_text == f"PRECONDITION_FAILED - {explanation}"

    def test_other_types_do_not_validate_bindings(self) -> None:
        # Only the headers type checks x-match; the others accept any arguments, as RabbitMQ's.
        for ex in (DirectExchange("x", {}), FanoutExchange("x", {}), TopicExchange("x", {})):
            ex.validate_binding(make_binding("q", "k", {"x-match": "bogus"}))


# --------------------------------------------------------------------------- registry


class Custom(ExchangeType):
    name = "x-test-custom"

    def add_binding(self, binding: Binding) -> None:
        pass

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        pass

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        return ()


class NotAnExchange:
    name = "x-not-an-exchange"


class TestRegistry:
    def test_bundled_types_come_from_entry_points(self) -> None:
        types = registry.load_exchange_types()
        assert types["direct"] is DirectExchange
        assert types["fanout"] is FanoutExchange
        assert types["topic"] is TopicExchange
        assert types["headers"] is HeadersExchange
        for name, cls in types.items():
            assert cls.name == name

    def test_register_and_unregister(self) -> None:
        try:
            assert registry.register(Custom) is Custom  # usable as a decorator
            assert registry.load_exchange_types()["x-test-custom"] is Custom
        finally:
            registry.unregister("x-test-custom")
        assert "x-test-custom" not in registry.load_exchange_types()

    def test_registered_type_overrides_entry_point(self) -> None:
        class MyDirect(DirectExchange):
            name = "direct"

        try:
            registry.register(MyDirect)
            assert registry.load_exchange_types()["direct"] is MyDirect
        finally:
            registry.unregister("direct")
        assert registry.load_exchange_types()["direct"] is DirectExchange

    def test_register_rejects_non_types(self) -> None:
        class Abstract(ExchangeType):
            name = "x-abstract"

        class Nameless(Custom):
            name = ""

        for bad in (NotAnExchange, Abstract, Nameless, 42):
            with pytest.raises(TypeError):
                registry.register(bad)  # type: ignore[type-var]
        assert "x-abstract" not in registry.load_exchange_types()

    def test_broken_plugin_is_logged_and_skipped(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        group = registry.ENTRY_POINT_GROUP
        fake = [
            importlib.metadata.EntryPoint("missing", "no_such_module_for_tests:Thing", group),
            importlib.metadata.EntryPoint("wrong", f"{__name__}:NotAnExchange", group),
            importlib.metadata.EntryPoint("direct", "exchanges.direct:DirectExchange", group),
            importlib.metadata.EntryPoint("x-test-custom", f"{__name__}:Custom", group),
        ]
        monkeypatch.setattr(type_registry, "entry_points", lambda group: fake)
        with caplog.at_level(logging.ERROR, logger="amqp_server.type_registry"):
            types = registry.load_exchange_types()
        assert types == {"direct": DirectExchange, "x-test-custom": Custom}
        logged = " ".join(record.getMessage() for record in caplog.records)
        assert "'missing'" in logged and "'wrong'" in logged

    def test_conflicting_plugins_keep_one(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        group = registry.ENTRY_POINT_GROUP

        fake = [
            importlib.metadata.EntryPoint("x-test-custom", f"{__name__}:Custom", group),
            importlib.metadata.EntryPoint("x-test-custom", f"{__name__}:OtherCustom", group),
        ]
        monkeypatch.setattr(type_registry, "entry_points", lambda group: fake)
        with caplog.at_level(logging.ERROR, logger="amqp_server.type_registry"):
            types = registry.load_exchange_types()
        assert types["x-test-custom"] is Custom
        assert any("provided by both" in record.getMessage() for record in caplog.records)


class OtherCustom(Custom):
    name = "x-test-custom"
