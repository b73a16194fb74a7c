"""AMQP field tables: RabbitMQ's rabbit_binary_parser and rabbit_binary_generator.

One parser, as strict as RabbitMQ's, gives two readings of a table:

* values (``decode_values``, ``decode_table``): a dict of Python values as pamqp types them,
  for checking arguments and routing on headers; the AMQP type of a value is partly lost
  (integer widths, longstr vs bytes), and ``encode_table`` writes such a dict the way pamqp
  would;
* entries (``decode_entries``): kind-preserving, for a table that is changed and written back
  with the exact AMQP types RabbitMQ would send (x-death). A table is a list of
  ``(key, type, value)``, an array a list of ``(type, value)``, the type as its octet
  (``ord("S")``). Integers and timestamps are ints, ``S``/``x`` bytes, ``t`` a bool, ``V``
  None, and ``f``/``d``/``D`` their raw value octets (they are only ever copied). As in
  RabbitMQ, ``L`` reads as a signed long and is written back as ``l``, and any non-zero ``t``
  as 1. ``encode_entries`` writes them back in the order given.
"""

from __future__ import annotations

import datetime
import math
import struct
from typing import Any

from pamqp import decode, encode

from amqp_server.protocol.field_types import lenient_str, short_str

Table = list[tuple[bytes, int, Any]]
Array = list[tuple[int, Any]]

# Nesting deeper than this is refused rather than risking Python's recursion limit.
MAX_TABLE_DEPTH = 100

S, T, F, A, L_LONG, X_BINARY, V_VOID, T_BOOL = (ord(c) for c in "STFAlxVt")
_D_FLOAT, _F_FLOAT, _DECIMAL, _L_UNSIGNED_NAME = (ord(c) for c in "dfDL")
# RabbitMQ's names of the field types, as its error texts show them.
FIELD_TYPE_NAMES = {
    ord("S"): "longstr",
    ord("T"): "timestamp",
    ord("b"): "byte",
    ord("B"): "unsignedbyte",
    ord("s"): "short",
    ord("u"): "unsignedshort",
    ord("I"): "signedint",
    ord("i"): "unsignedint",
    ord("d"): "double",
    ord("f"): "float",
    ord("l"): "long",
    ord("L"): "long",
    ord("t"): "bool",
    ord("D"): "decimal",
    ord("F"): "table",
    ord("A"): "array",
    ord("x"): "binary",
    ord("V"): "void",
}
_fixed_values: dict[int, tuple[int, Any]] = {
    T_BOOL: (1, decode.boolean),
    ord("b"): (1, decode.short_short_int),
    ord("B"): (1, decode.short_short_uint),
    ord("s"): (2, decode.short_int),
    ord("u"): (2, decode.short_uint),
    ord("I"): (4, decode.long_int),
    ord("i"): (4, decode.long_uint),
    L_LONG: (8, decode.long_long_int),
    _L_UNSIGNED_NAME: (8, decode.long_long_int),
    _F_FLOAT: (4, decode.floating_point),
    _D_FLOAT: (8, decode.double),
    _DECIMAL: (5, decode.decimal),
}
# Integer types of the entries reading, as they are written back.
_INTS: dict[int, struct.Struct] = {
    ord("b"): struct.Struct(">b"),
    ord("B"): struct.Struct(">B"),
    ord("s"): struct.Struct(">h"),
    ord("u"): struct.Struct(">H"),
    ord("I"): struct.Struct(">i"),
    ord("i"): struct.Struct(">I"),
    L_LONG: struct.Struct(">q"),
    T: struct.Struct(">Q"),
}
_RAW_KINDS = frozenset((_F_FLOAT, _D_FLOAT, _DECIMAL))
_long = struct.Struct(">I")
_timestamp = struct.Struct(">Q")


class Malformed(ValueError):
    """Bytes that do not parse as the AMQP type expected (caught and turned into a reply)."""


def timestamp(seconds: int) -> datetime.datetime | int:
    """pamqp's reading of a timestamp (values past 2106 taken as milliseconds).

    A value no datetime can hold is kept as the integer: RabbitMQ accepts any 64-bit value.
    """
    value: float = seconds / 1000.0 if seconds > 0xFFFFFFFF else seconds
    try:
        return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    except (OverflowError, ValueError, OSError):
        return seconds


# ---------------------------------------------------------------------------------------------
# The parser: ``typed`` chooses the reading (entries when true, values otherwise).


def _value(data: bytes, pos: int, end: int, depth: int, typed: bool) -> tuple[Any, int]:
    """The value whose type octet is at ``pos`` (``(type, value)`` when typed), and where the
    next one starts."""
    kind = data[pos]
    pos += 1
    fixed = _fixed_values.get(kind)
    if fixed is not None:
        width, decoder = fixed
        stop = pos + width
        if stop > end:
            raise Malformed("field value truncated")
        value = decoder(data[pos:stop])[1]
        if kind in (_D_FLOAT, _F_FLOAT) and not math.isfinite(value):
            # Erlang's float matching refuses NaN and infinities, and so does RabbitMQ.
            raise Malformed("not a finite float")
        if typed:
            if kind in _RAW_KINDS:
                return (kind, data[pos:stop]), stop
            return (L_LONG if kind == _L_UNSIGNED_NAME else kind, value), stop
        return value, stop
    if kind == T:
        if pos + 8 > end:
            raise Malformed("timestamp truncated")
        seconds = _timestamp.unpack_from(data, pos)[0]
        return ((T, seconds) if typed else timestamp(seconds)), pos + 8
    if kind == V_VOID:
        return ((V_VOID, None) if typed else None), pos
    if kind not in (S, X_BINARY, F, A):
        raise Malformed(f"unknown field type {kind}")
    if pos + 4 > end:
        raise Malformed("field length truncated")
    start = pos + 4
    stop = start + _long.unpack_from(data, pos)[0]
    if stop > end:
        raise Malformed("field value truncated")
    if kind == F:
        value = _table(data, start, stop, depth + 1, typed)
    elif kind == A:
        value = _array(data, start, stop, depth + 1, typed)
    elif typed:
        value = data[start:stop]
    elif kind == S:
        raw = data[start:stop]
        try:
            value = raw.decode()
        except UnicodeDecodeError:
            value = raw  # pamqp's convention: bytes when not UTF-8
    else:
        value = bytearray(data[start:stop])
    return ((kind, value) if typed else value), stop


def _table(data: bytes, pos: int, end: int, depth: int, typed: bool) -> Any:
    if depth > MAX_TABLE_DEPTH:
        raise Malformed("field tables nested too deeply")
    table: Any = [] if typed else {}  # a Table, or a dict of values
    while pos < end:
        key_end = pos + 1 + data[pos]
        if key_end >= end:
            raise Malformed("field table entry truncated")
        key = data[pos + 1 : key_end]
        value, pos = _value(data, key_end, end, depth, typed)
        if typed:
            table.append((key, *value))
        else:
            table[lenient_str(key)] = value
    return table


def _array(data: bytes, pos: int, end: int, depth: int, typed: bool) -> list[Any]:
    if depth > MAX_TABLE_DEPTH:
        raise Malformed("field arrays nested too deeply")
    items = []
    while pos < end:
        item, pos = _value(data, pos, end, depth, typed)
        items.append(item)
    return items


def decode_values(data: bytes, start: int, end: int) -> dict[str, Any]:
    """The table ``data[start:end]`` (without its length) as a dict; Malformed if it does not
    parse."""
    try:
        return _table(data, start, end, 0, False)
    except (IndexError, struct.error, RecursionError) as exc:
        raise Malformed("malformed field table") from exc


def decode_entries(data: bytes, start: int, end: int) -> Table:
    """The table ``data[start:end]`` (without its length) as kind-preserving entries; Malformed
    if it does not parse."""
    try:
        return _table(data, start, end, 0, True)
    except (IndexError, struct.error, RecursionError) as exc:
        raise Malformed("malformed field table") from exc


def decode_table(data: bytes) -> dict[str, Any]:
    """A field table with its 4-octet length prefix, as a dict; Malformed if it does not parse."""
    if len(data) < 4:
        raise Malformed("field table length truncated")
    end = 4 + _long.unpack_from(data)[0]
    if end != len(data):
        raise Malformed("field table length does not match the data")
    return decode_values(data, 4, end)


def entry_spans(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """``(key, type octet, entry start, entry end)`` of each entry of a well-formed table, for
    cutting an entry out of the raw octets."""
    spans = []
    pos = start
    while pos < end:
        key_end = pos + 1 + data[pos]
        _, value_end = _value(data, key_end, end, 0, False)
        spans.append((data[pos + 1 : key_end], data[key_end], pos, value_end))
        pos = value_end
    return spans


# ---------------------------------------------------------------------------------------------
# Encoding


def encode_table(table: dict[str, Any]) -> bytes:
    """A field table with its length, for any value decode_values produces.

    As pamqp (keys sorted, smallest integer type), except that a float is sent as a double
    (pamqp narrows it to 32 bits) and bytes as a longstr (a longstr that was not UTF-8
    decodes to bytes and must go back out the same).
    """
    out = []
    for key, value in sorted(table.items()):
        out.append(short_str(key))
        out.append(_encode_value(value))
    data = b"".join(out)
    return _long.pack(len(data)) + data


def _encode_value(value: Any) -> bytes:
    if isinstance(value, float):
        return b"d" + struct.pack(">d", value)
    if isinstance(value, bytes):
        return b"S" + _long.pack(len(value)) + value
    if isinstance(value, dict):
        return b"F" + encode_table(value)
    if isinstance(value, list | tuple):
        data = b"".join(_encode_value(item) for item in value)
        return b"A" + _long.pack(len(data)) + data
    return encode.encode_table_value(value)


def encode_entries(table: Table) -> bytes:
    """Kind-preserving entries as a table with its 4-octet length, in the order given."""
    data = b"".join(bytes((len(key),)) + key + _encode_entry(kind, value) for key, kind, value in table)
    return _long.pack(len(data)) + data


def _encode_entry(kind: int, value: Any) -> bytes:
    number = _INTS.get(kind)
    if number is not None:
        return bytes((kind,)) + number.pack(value)
    if kind in _RAW_KINDS:
        return bytes((kind,)) + value
    if kind == T_BOOL:
        return b"t\x01" if value else b"t\x00"
    if kind == V_VOID:
        return b"V"
    if kind == F:
        return b"F" + encode_entries(value)
    if kind == A:
        data = b"".join(_encode_entry(item_kind, item) for item_kind, item in value)
        return b"A" + _long.pack(len(data)) + data
    return bytes((kind,)) + _long.pack(len(value)) + value


# ---------------------------------------------------------------------------------------------
# rabbit_misc's helpers for tables, on entries


def table_lookup(table: Table, key: bytes) -> tuple[int, Any] | None:
    """rabbit_misc:table_lookup: ``(type, value)`` of the first entry named ``key``."""
    for name, kind, value in table:
        if name == key:
            return kind, value
    return None


def sort_table(table: Table) -> Table:
    """rabbit_misc:sort_field_table: a stable sort by key octets."""
    return sorted(table, key=lambda entry: entry[0])


def set_table_value(table: Table, key: bytes, kind: int, value: Any) -> Table:
    """rabbit_misc:set_table_value: replace the first ``key`` entry (or append one), then sort."""
    out = list(table)
    for index, (name, _kind, _value) in enumerate(out):
        if name == key:
            out[index] = (key, kind, value)
            break
    else:
        out.append((key, kind, value))
    return sort_table(out)


def delete_key(table: Table, key: bytes) -> Table:
    """lists:keydelete: the table without its first ``key`` entry."""
    for index, (name, _kind, _value) in enumerate(table):
        if name == key:
            return table[:index] + table[index + 1 :]
    return table
