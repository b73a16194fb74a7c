"""The ``headers`` exchange type, following RabbitMQ 4's rabbit_exchange_type_headers.

Binding arguments are matched against the message's headers table:

* ``x-match`` is ``all`` (the default), ``any``, ``all-with-x`` or ``any-with-x``. The binding
  argument ``x-match`` itself never takes part; other arguments whose name starts with ``x-``
  take part only with the ``-with-x`` variants.
* ``all`` with nothing left to match matches every message; ``any`` then matches none.
* A binding argument of type void (``None``) matches when the header is present, whatever its
  value (even void).
* Otherwise the values must be equal as RabbitMQ compares them: with ``=:=`` on the Erlang
  values, the AMQP type stripped at the top level. So integers of any width and signedness are
  equal when their values are (5 as signed 32-bit equals 5 as unsigned 8-bit), an integer never
  equals a float (5 vs 5.0) nor a string ('5') nor a boolean (1 vs true), long strings and byte
  arrays are equal when their bytes are, decimals are equal only with the same scale and digits
  (5.0 is not 5.00), and nested tables and arrays compare element by element, in order.

pamqp hands us Python values with the wire type dropped, which decides what can be told apart:
str and bytes are both long strings (bytes when not valid UTF-8), bytearray is a byte array,
datetime a timestamp. Inside nested tables/arrays RabbitMQ also compares the element types,
which pamqp does not keep for numbers: nested integers of different widths compare equal here.

Timestamps: RabbitMQ 4 converts a *header* timestamp to milliseconds before matching but not the
binding's, so a timestamp binding argument never matches a timestamp header (unless both are 0),
while a plain integer ``T*1000`` matches a timestamp ``T``. That is an accident, not a rule
anyone relies on; here a timestamp equals a timestamp of the same second (RabbitMQ 3.x
behaviour) and nothing else.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from amqp_server.plugin_api import (
    PRECONDITION_FAILED,
    Binding,
    ChannelError,
    Destination,
    ExchangeType,
    RoutableMessage,
    amqp_type_name,
    erlang_repr,
)
from amqp_server.protocol.field_types import decimal_parts, timestamp_seconds

_X_MATCH_VALUES = ("all", "any", "all-with-x", "any-with-x")

_MISSING: Any = object()
# Canonical value of a void binding argument: only presence of the header is checked.
_PRESENT: Any = object()
_EMPTY: Mapping[str, Any] = {}

# Types whose Python equality is exactly RabbitMQ's when both sides have the same type. Other
# cases (different types, decimals, tables, ...) go through _canonical().
_FAST_TYPES = frozenset({str, bytes, int, float, bool})

# (header name, binding value, its type if in _FAST_TYPES else None, canonical value)
_Arg = tuple[str, Any, type | None, Any]
# (match all?, the arguments that take part)
_Matcher = tuple[bool, tuple[_Arg, ...]]


def _canonical(value: Any, nested: bool = False) -> Any:
    """A value that compares (==) as RabbitMQ compares the corresponding Erlang term."""
    if value is None:
        return ("void",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        return ("float", value)
    if isinstance(value, str):
        return ("longstr" if nested else "bin", value.encode())
    if isinstance(value, bytes):
        return ("longstr" if nested else "bin", value)
    if isinstance(value, bytearray | memoryview):
        # A byte array's type is only visible (and different from a long string's) when nested.
        return ("binary" if nested else "bin", bytes(value))
    if isinstance(value, Decimal):
        return decimal_parts(value)
    if isinstance(value, datetime.datetime | time.struct_time):
        return ("timestamp", timestamp_seconds(value))
    if isinstance(value, Mapping):
        return ("table", tuple((key, _canonical(item, True)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(_canonical(item, True) for item in value))
    return ("other", value)


def _compile(arguments: Mapping[str, Any]) -> _Matcher:
    """Parse a binding's arguments once, so route() only looks up and compares."""
    mode = arguments.get("x-match")
    # As RabbitMQ's route: anything but these exact long strings means "all" (bindings made
    # before validation existed may hold other values).
    is_str = isinstance(mode, str)
    match_all = not (is_str and mode in ("any", "any-with-x"))
    with_x = is_str and mode in ("all-with-x", "any-with-x")
    args: list[_Arg] = []
    for key, value in arguments.items():
        if key == "x-match" or (not with_x and key.startswith("x-")):
            continue
        if value is None:
            args.append((key, value, None, _PRESENT))
        else:
            fast = type(value) if type(value) in _FAST_TYPES else None
            args.append((key, value, fast, _canonical(value)))
    return match_all, tuple(args)


def _matches(matcher: _Matcher, headers: Mapping[str, Any]) -> bool:
    """One binding against one message; runs per binding per message, hence written flat."""
    match_all, args = matcher
    for key, expected, fast_type, canonical in args:
        value = headers.get(key, _MISSING)
        if value is _MISSING:
            ok = False
        elif canonical is _PRESENT:
            ok = True
        elif type(value) is fast_type:
            ok = value == expected
        else:
            ok = _canonical(value) == canonical
        if ok is not match_all:
            return ok  # "all" fails on the first miss, "any" succeeds on the first hit
    return match_all


class HeadersExchange(ExchangeType):
    """Routes on message headers compared with binding arguments (x-match all/any[-with-x])."""

    name = "headers"
    description = "AMQP headers exchange, as per the AMQP specification"

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any]) -> None:
        super().__init__(exchange_name, arguments)
        self._bindings: dict[tuple[Any, ...], tuple[Destination, _Matcher]] = {}
        # route()'s view of the bindings, grouped by destination so each destination is tested
        # until its first matching binding and returned once. Rebuilt lazily: a burst of binding
        # changes (recovery, a client binding many queues) costs one rebuild, not one per change.
        self._plan: tuple[tuple[Destination, tuple[_Matcher, ...]], ...] | None = ()

    def validate_binding(self, binding: Binding) -> None:
        if "x-match" not in binding.arguments:
            return  # RabbitMQ allows omitting it (meaning "all")
        mode = binding.arguments["x-match"]
        if isinstance(mode, str) and mode in _X_MATCH_VALUES:
            return
        if isinstance(mode, str | bytes):  # bytes: a long string that is not UTF-8
            raise ChannelError(
                PRECONDITION_FAILED,
                f"Invalid x-match field value {erlang_repr(mode)}; "
                "expected all, any, all-with-x, or any-with-x",
            )
        raise ChannelError(
            PRECONDITION_FAILED,
            f"Invalid x-match field type {amqp_type_name(mode)} (value {erlang_repr(mode)}); "
            "expected longstr",
        )

    def add_binding(self, binding: Binding) -> None:
        identity = binding.key
        if identity in self._bindings:
            return
        self._bindings[identity] = (binding.destination, _compile(binding.arguments))
        self._plan = None

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
            if self._bindings.pop(binding.key, None) is not None:
                self._plan = None

    def _build_plan(self) -> tuple[tuple[Destination, tuple[_Matcher, ...]], ...]:
        grouped: dict[Destination, list[_Matcher]] = {}
        for dest, matcher in self._bindings.values():
            grouped.setdefault(dest, []).append(matcher)
        plan = tuple((dest, tuple(matchers)) for dest, matchers in grouped.items())
        self._plan = plan
        return plan

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        plan = self._plan
        if plan is None:
            plan = self._build_plan()
        if not plan:
            return ()
        headers = message.headers or _EMPTY
        out: list[Destination] = []
        for dest, matchers in plan:
            for matcher in matchers:
                if _matches(matcher, headers):
                    out.append(dest)
                    break
        return out

    def delete(self) -> None:
        self._bindings.clear()
        self._plan = ()
