"""Decoded field values as RabbitMQ sees them, and the strings that carry client octets.

RabbitMQ's texts name a value's AMQP type (``signedint``, ``longstr``; rabbit_text prints the
value with Erlang's ``~tp``). Decoding loses the integer and float width the client used, so
those are taken as pika sends them (signed 32-bit else 64-bit integers, doubles).
"""

from __future__ import annotations

import calendar
import datetime
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def text(value: str | bytes) -> str:
    """A longstr value as text. Octets that are not UTF-8 become lone surrogates
    (``surrogateescape``): such a text never equals a name (names are valid UTF-8, as in
    RabbitMQ), and it goes back out as the very same octets in a reply text or a shortstr."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def octets(value: str) -> bytes:
    """The octets a text stands for: the inverse of ``text``; any other lone surrogate (from
    JSON, say) is kept as its three UTF-8-style octets rather than refused."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def lenient_str(raw: bytes) -> str:
    """A name RabbitMQ takes as opaque octets (basic.publish, properties, table keys).

    Invalid UTF-8 becomes U+FFFD rather than an error: RabbitMQ accepts such names, and
    the text must stay encodable because it may be echoed in a reply text.
    """
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


def short_str(value: str) -> bytes:
    """A shortstr: the octets ``value`` stands for (see ``text``) after their length."""
    raw = value.encode("utf-8", "surrogateescape")
    if len(raw) > 255:
        raise ValueError("short string longer than 255 bytes")
    return bytes((len(raw),)) + raw


def timestamp_seconds(value: datetime.datetime | time.struct_time) -> int:
    # As pamqp encodes it: naive datetimes are taken as UTC.
    if isinstance(value, time.struct_time):
        return calendar.timegm(value)
    return calendar.timegm(value.utctimetuple())


def decimal_parts(value: Decimal) -> tuple[Any, ...]:
    # AMQP decimals are (scale, integer), compared as such: 5.0 is (1, 50), 5.00 is (2, 500).
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # NaN / Infinity cannot come off the wire; keep them apart
        return ("decimal", str(value))
    number = 0
    for digit in digits:
        number = number * 10 + digit
    return ("decimal", -exponent, -number if sign else number)


def amqp_type_name(value: Any) -> str:
    """The RabbitMQ field type name for a decoded value (a best guess where pamqp lost it)."""
    if value is None:
        return "void"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        # Width is lost in decoding; clients send int as 'I' when it fits, else 'l'.
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, str | bytes):
        return "longstr"
    if isinstance(value, bytearray | memoryview):
        return "binary"
    if isinstance(value, datetime.datetime | time.struct_time):
        return "timestamp"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__
