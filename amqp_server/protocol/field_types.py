"""Decoded field-table values as RabbitMQ names and prints them in its error texts.

RabbitMQ's texts name a value's AMQP type (``signedint``, ``longstr``) and print it with
Erlang's ``~tp``. Decoding loses the integer and float width the client used, so those are
taken as pika sends them (signed 32-bit else 64-bit integers, doubles).
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


def raw_octets(text: str) -> str:
    """Characters 0-255 standing for octets, as an Erlang char list that RabbitMQ turns into
    its reply text octet for octet (``list_to_binary``): octets past ASCII as surrogates."""
    return "".join(chr(0xDC00 + ord(c)) if 0x80 <= ord(c) <= 0xFF else c for c in text)


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


def _printable(char: str) -> bool:
    # io_lib's printable range is latin1 by default.
    code = ord(char)
    return 32 <= code <= 126 or 160 <= code <= 255 or char in "\n\r\t\v\b\f\x1b"


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\b": "\\b",
    "\f": "\\f",
    "\x1b": "\\e",
}


def _erlang_string(text: str) -> str:
    return '"' + "".join(_ESCAPES.get(char, char) for char in text) + '"'


def _erlang_binary(data: bytes) -> str:
    if not data:
        return "<<>>"
    # io_lib_pretty:printable_bin: valid UTF-8 is printed as text only if every character is
    # printable; only invalid UTF-8 gets the latin1 reading.
    try:
        text = data.decode()
    except UnicodeDecodeError:
        latin1 = data.decode("latin-1")
        if all(_printable(char) for char in latin1):
            return f"<<{raw_octets(_erlang_string(latin1))}>>"
    else:
        if all(_printable(char) for char in text):
            if text.isascii():
                return f"<<{_erlang_string(text)}>>"
            return f"<<{_erlang_string(text)}/utf8>>"
    return "<<" + ",".join(str(byte) for byte in data) + ">>"


def _erlang_float(value: float) -> str:
    # Erlang prints the shortest round-tripping digits, always with a '.': 1.0, 0.1, 1.0e25.
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}e{int(exponent)}"
    return text


def erlang_repr(value: Any) -> str:
    """``value`` as RabbitMQ would print the decoded AMQP field with ``~tp``."""
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _erlang_float(value)
    if isinstance(value, str):
        return _erlang_binary(octets(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return _erlang_binary(bytes(value))
    if isinstance(value, Decimal):
        decimal = decimal_parts(value)
        return f"{{{decimal[1]},{decimal[2]}}}" if len(decimal) == 3 else str(value)
    if isinstance(value, datetime.datetime | time.struct_time):
        return str(timestamp_seconds(value))
    if isinstance(value, Mapping):
        fields = (
            f"{{{_erlang_binary(octets(str(key)))},{amqp_type_name(item)},{erlang_repr(item)}}}"
            for key, item in value.items()
        )
        return "[" + ",".join(fields) + "]"
    if isinstance(value, list | tuple):
        return "[" + ",".join(f"{{{amqp_type_name(item)},{erlang_repr(item)}}}" for item in value) + "]"
    return repr(value)
