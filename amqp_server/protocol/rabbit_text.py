"""RabbitMQ's texts as its Erlang code prints them (io_lib's ``~p``, ``~tp`` and ``~s``).

Reply texts, FRAME_ERROR explanations and rabbitmqctl's errors are built by ``io_lib:format``;
matching RabbitMQ byte for byte means printing binaries, strings (lists of octets), atoms,
tuples, field values and JSON terms as io_lib_pretty does, including where it wraps a line.

A str here stands for the octets RabbitMQ sends: client octets that are not UTF-8 are lone
surrogates (see field_types.text), and go back out as those very octets.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from amqp_server.protocol.field_types import amqp_type_name, decimal_parts, octets, text, timestamp_seconds

# io_lib_pretty's default line length (~p counts columns from 1).
LINE_LENGTH = 80
# Where a wrapped term breaks: a term that would pass this column (measured on RabbitMQ 3.10).
LAST_COLUMN = 78

_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v", 0x08: "\\b", 0x0C: "\\f", 0x1B: "\\e"}
# io_lib's printable range is latin1 by default.
_PRINTABLE = frozenset(range(0x20, 0x7F)) | frozenset(range(0xA0, 0x100)) | frozenset(b"\n\r\t\x0b\x08\x0c\x1b")


def printable(codes: Iterable[int]) -> bool:
    """Every character code (or octet) is printable Latin-1, as io_lib:printable_list has it."""
    return all(code in _PRINTABLE for code in codes)


def raw_octets(chars: str) -> str:
    """Characters 0-255 standing for octets, as an Erlang char list that RabbitMQ turns into
    its reply text octet for octet (``list_to_binary``): octets past ASCII as surrogates."""
    return "".join(chr(0xDC00 + ord(c)) if 0x80 <= ord(c) <= 0xFF else c for c in chars)


def erlang_string(chars: str) -> str:
    """The characters as an Erlang string literal: quoted, with Erlang's escapes."""
    return '"' + "".join(_ESCAPES.get(ord(char), char) for char in chars) + '"'


def erlang_char_list(chars: str) -> str:
    """``~p`` of a string RabbitMQ holds as the list of the octets published: quoted when every
    octet is printable Latin-1, else the list of octets. Printable octets go out as they came
    (RabbitMQ writes them back unchanged, so "é" stays UTF-8)."""
    codes = octets(chars)
    if printable(codes):
        return erlang_string(chars)
    return "[" + ",".join(map(str, codes)) + "]"


def erlang_binary(data: bytes, column: int) -> str:
    """``~p`` of a binary with ``column`` characters already on the line, wrapped as
    io_lib_pretty wraps it. A printable binary prints as a latin-1 string, its octets
    0xA0-0xFF as the same characters (so they go out in UTF-8)."""
    if not data:
        return "<<>>"
    if printable(data):
        return "<<" + erlang_string(data.decode("latin-1")) + ">>"
    items = [str(octet) for octet in data]
    flat = "<<" + ",".join(items) + ">>"
    col = column + 1  # io_lib_pretty counts columns from 1
    if len(flat) < LINE_LENGTH - col:
        return flat
    # io_lib_pretty:pp_binary: fill lines of width n, continuation indented past the "<<".
    width = max(8, min(LINE_LENGTH - (col + 2), len(flat) - 4))
    indent = "\n" + " " * (col + 1)
    out = ["<<"]
    room = width
    for item in items[:-1]:
        if room - (len(item) + 1) < 0:
            out.append(indent)
            room = width
        out.append(item + ",")
        room -= len(item) + 1
    last = items[-1]
    if len(last) > room:
        out.append(indent)
    out.append(last + ">>")
    return "".join(out)


def erlang_unicode_binary(data: bytes) -> str:
    """``~tp`` of a binary, on one line (the texts that use it never wrap)."""
    if not data:
        return "<<>>"
    # io_lib_pretty:printable_bin: valid UTF-8 is printed as text only if every character is
    # printable; only invalid UTF-8 gets the latin1 reading.
    try:
        chars = data.decode()
    except UnicodeDecodeError:
        if printable(data):
            return f"<<{raw_octets(erlang_string(data.decode('latin-1')))}>>"
    else:
        if printable(map(ord, chars)):
            if chars.isascii():
                return f"<<{erlang_string(chars)}>>"
            return f"<<{erlang_string(chars)}/utf8>>"
    return "<<" + ",".join(str(byte) for byte in data) + ">>"


def erlang_term(term: str | tuple[Any, ...], column: int, last_column: int = LAST_COLUMN) -> str:
    """``~p`` of an atom, or of a tagged tuple of integers and already printed terms, starting at
    ``column``. A tuple that would pass ``last_column`` is broken after its tag."""
    if isinstance(term, str):
        return term
    flat = "{" + ",".join(map(str, term)) + "}"
    if column + len(flat) <= last_column:
        return flat
    # Here the tag never fits its own indentation (io_lib_pretty's cind fails for -1 and 4),
    # so the tag tuple gets TInd 1: the other elements go on the next line, one column in.
    return "{" + str(term[0]) + ",\n" + " " * (column + 1) + ",".join(map(str, term[1:])) + "}"


def frame_error_text(frame_type: int, payload: bytes, error: str | tuple[Any, ...]) -> str:
    """RabbitMQ's FRAME_ERROR explanation for a bad frame (without ``FRAME_ERROR - ``):
    rabbit_reader's ``io_lib:format("type ~p, ~s octets = ~p: ~p", [Type, "all" | "first 16",
    Snippet, Error])``, each ``~p`` wrapped from the column it starts at."""
    prefix = f"type {frame_type}, {'all' if len(payload) <= 16 else 'first 16'} octets = "
    line = prefix + erlang_binary(payload[:16], len(prefix)) + ": "
    column = len(line) - (line.rfind("\n") + 1)
    return line + erlang_term(error, column)


def _erlang_float(value: float) -> str:
    # Erlang prints the shortest round-tripping digits, always with a '.': 1.0, 0.1, 1.0e25.
    digits = repr(value)
    if "e" in digits:
        mantissa, exponent = digits.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}e{int(exponent)}"
    return digits


def erlang_repr(value: Any) -> str:
    """A decoded field value as RabbitMQ prints the AMQP field with ``~tp``."""
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _erlang_float(value)
    if isinstance(value, str):
        return erlang_unicode_binary(octets(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return erlang_unicode_binary(bytes(value))
    if isinstance(value, Decimal):
        decimal = decimal_parts(value)
        return f"{{{decimal[1]},{decimal[2]}}}" if len(decimal) == 3 else str(value)
    if isinstance(value, datetime.datetime | time.struct_time):
        return str(timestamp_seconds(value))
    if isinstance(value, Mapping):
        fields = (
            f"{{{erlang_unicode_binary(octets(str(key)))},{amqp_type_name(item)},{erlang_repr(item)}}}"
            for key, item in value.items()
        )
        return "[" + ",".join(fields) + "]"
    if isinstance(value, list | tuple):
        return "[" + ",".join(f"{{{amqp_type_name(item)},{erlang_repr(item)}}}" for item in value) + "]"
    return repr(value)


def erlang_json(value: Any) -> str:
    """A decoded JSON value as ``~p`` prints the term rabbit_json makes of it (policies,
    limits: rabbitmqctl's texts)."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(erlang_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "#{" + ",".join(f"{erlang_json(k)} => {erlang_json(v)}" for k, v in sorted(value.items())) + "}"
    return erlang_repr(value)


def misc_val(value: Any) -> str:
    """A value as rabbit_misc:val prints it in an equivalence error: ``~s`` of a binary, ``~p``
    of the booleans and numbers that occur there."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray):
        return text(bytes(value))
    return str(value)


def misc_val_of_type(value: Any) -> str:
    """rabbit_misc:val of a ``{Type, Value}`` pair: the value and its AMQP type name."""
    return f"the value '{misc_val(value)}' of type '{amqp_type_name(value)}'"
