"""AMQP 0-9-1 frame codec: bytes in, frames out; values in, bytes out. No I/O.

pamqp handles the rarely used control methods. The frames of the hot path (basic.publish,
basic.deliver, basic.ack/nack/reject, content header and body) are encoded and decoded here
by hand: a published message's content-header payload and body are kept as the raw bytes that
arrived and are written back out unchanged in basic.deliver.

Frame layout: type (octet), channel (short), size (long), payload, frame-end 0xCE.

Decoding is as strict as RabbitMQ's and fails only with ConnectionError, with RabbitMQ's
reply code and text: a bad frame is ``501 FRAME_ERROR - type T, all octets = <<...>>: Error``
(see frame_error_text), a method whose fields do not fill its payload exactly is
``501 FRAME_ERROR - cannot decode <<...>>``, properties that do not decode are 541.
"""

from __future__ import annotations

import datetime
import inspect
import math
import struct
from typing import Any

from pamqp import commands, decode, encode
from pamqp.base import Frame as PamqpMethod

from amqp_server.protocol.errors import (
    COMMAND_INVALID,
    FRAME_ERROR,
    INTERNAL_ERROR,
    UNEXPECTED_FRAME,
    ConnectionError,
    FatalFrameError,
    UnknownMethodError,
)

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_END_BYTE = b"\xce"
FRAME_OVERHEAD = 8  # 7-byte frame header + frame-end
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
# Before connection.tune-ok a peer may only send frames up to the spec minimum.
FRAME_MIN_SIZE = 4096

HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"

_frame_header = struct.Struct(">BHI")
_method_id = struct.Struct(">I")
CONTENT_HEADER_FIXED = struct.Struct(">HHQ")  # class id, weight, body size
_short = struct.Struct(">H")
_deliver_tail = struct.Struct(">QB")
ACK_FIELDS = struct.Struct(">QB")  # basic.ack/nack/reject: delivery tag, bits
_end_and_header = struct.Struct(">BBHI")

# (class_id << 16 | method_id) of the hot-path methods.
BASIC_PUBLISH = 0x003C0028
BASIC_ACK = 0x003C0050
BASIC_REJECT = 0x003C005A
BASIC_NACK = 0x003C0078
BASIC_DELIVER = 0x003C003C
BASIC_GET_OK = 0x003C0047
BASIC_RETURN = 0x003C0032

BASIC_CLASS = 60


# ---------------------------------------------------------------------------------------------
# RabbitMQ's frame-error texts
#
# rabbit_reader reports a bad frame as ``io_lib:format("type ~p, ~s octets = ~p: ~p",
# [Type, "all" | "first 16", Snippet, Error])``. ``~p`` pretty-prints with a line length of 80
# starting at the current column, so a long binary or error tuple is wrapped onto an
# indented second line; the functions below reproduce io_lib_pretty's layout for the
# binaries and tuples that occur here. Printable binaries print as latin-1 strings; their
# octets 0xA0-0xFF are sent by RabbitMQ as raw latin-1 bytes, which a str reply text can
# only carry as the same characters in UTF-8.

_ERL_LINE = 80
_ERL_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v", 0x08: "\\b", 0x0C: "\\f", 0x1B: "\\e"}
_ERL_PRINTABLE = frozenset(range(0x20, 0x7F)) | frozenset(range(0xA0, 0x100)) | frozenset(b"\n\r\t\x0b\x08\x0c\x1b")


def erlang_binary(data: bytes, column: int) -> str:
    """``io_lib:format("~p", [Binary])`` with ``column`` characters already on the line."""
    if not data:
        return "<<>>"
    if all(octet in _ERL_PRINTABLE for octet in data):
        return '<<"' + "".join(_ERL_ESCAPES.get(octet) or chr(octet) for octet in data) + '">>'
    items = [str(octet) for octet in data]
    flat = "<<" + ",".join(items) + ">>"
    col = column + 1  # io_lib_pretty counts columns from 1
    if len(flat) < _ERL_LINE - col:
        return flat
    # io_lib_pretty:pp_binary: fill lines of width n, continuation indented past the "<<".
    width = max(8, min(_ERL_LINE - (col + 2), len(flat) - 4))
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


def erlang_term(term: str | tuple[Any, ...], column: int) -> str:
    """``~p`` of an atom or a tagged tuple of an atom and integers, at ``column``."""
    if isinstance(term, str):
        return term
    flat = "{" + ",".join(map(str, term)) + "}"
    if len(flat) < _ERL_LINE - (column + 1):
        return flat
    # Here the tag never fits its own indentation (io_lib_pretty's cind fails for -1 and 4),
    # so the tag tuple gets TInd 1: the other elements go on the next line, one column in.
    return "{" + str(term[0]) + ",\n" + " " * (column + 1) + ",".join(map(str, term[1:])) + "}"


def frame_error_text(frame_type: int, payload: bytes, error: str | tuple[Any, ...]) -> str:
    """RabbitMQ's FRAME_ERROR explanation for a bad frame (without ``FRAME_ERROR - ``)."""
    prefix = f"type {frame_type}, {'all' if len(payload) <= 16 else 'first 16'} octets = "
    text = prefix + erlang_binary(payload[:16], len(prefix)) + ": "
    column = len(text) - (text.rfind("\n") + 1)
    return text + erlang_term(error, column)


class Publish:
    """basic.publish, decoded by hand.

    ``exchange_and_key`` is the raw exchange and routing-key shortstrs exactly as they arrived,
    reused unchanged in basic.deliver, basic.get-ok and basic.return.
    """

    __slots__ = ("exchange", "routing_key", "mandatory", "immediate", "exchange_and_key")
    name = "Basic.Publish"

    def __init__(
        self, exchange: str, routing_key: str, mandatory: bool, immediate: bool, exchange_and_key: bytes
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.mandatory = mandatory
        self.immediate = immediate
        self.exchange_and_key = exchange_and_key


class Ack:
    """basic.ack, basic.nack or basic.reject, decoded by hand (reject has multiple=False)."""

    __slots__ = ("method_id", "delivery_tag", "multiple", "requeue")

    def __init__(self, method_id: int, delivery_tag: int, multiple: bool, requeue: bool) -> None:
        self.method_id = method_id
        self.delivery_tag = delivery_tag
        self.multiple = multiple
        self.requeue = requeue

    @property
    def name(self) -> str:
        return {BASIC_ACK: "Basic.Ack", BASIC_NACK: "Basic.Nack", BASIC_REJECT: "Basic.Reject"}[self.method_id]


class FrameReader:
    """Splits a byte stream into ``(frame_type, channel, payload)`` tuples.

    Partial frames are buffered until complete. The size of every frame is checked against
    ``frame_max`` before its payload is awaited, so a peer cannot make us buffer more than one
    frame's worth of bytes.
    """

    __slots__ = ("_buffer", "frame_max")

    def __init__(self, frame_max: int = FRAME_MIN_SIZE) -> None:
        self._buffer = b""
        self.frame_max = frame_max

    def feed_one(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """``feed``, but at most one frame comes out; the rest stays buffered (for a caller that
        must act on a frame, e.g. tune-ok setting frame_max, before the next is read)."""
        data = self._buffer + data
        self._buffer = b""
        end = 8 + _frame_header.unpack_from(data)[2] if len(data) >= 7 else len(data)
        frames = self.feed(data[:end])
        self._buffer += data[end:]
        return frames

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Append ``data`` and return every frame it completes.

        Raises ConnectionError(FRAME_ERROR) with RabbitMQ's text for a frame larger than
        ``frame_max`` (as soon as its 7-byte header is in, before the payload arrives), a bad
        frame-end octet, an unknown frame type, or a payload too short for its type (a method
        needs 4 octets, a content header 12, a heartbeat none; the error's ``frame`` attribute is
        that frame, as (type, channel, payload)). Checks run in RabbitMQ's order.
        The exception's ``frames`` attribute lists the complete frames read before the bad one.
        """
        if self._buffer:
            data = self._buffer + data
        frames: list[tuple[int, int, bytes]] = []
        append = frames.append
        offset = 0
        length = len(data)
        unpack_from = _frame_header.unpack_from
        frame_max = self.frame_max
        try:
            while length - offset >= 7:
                frame_type, channel, size = unpack_from(data, offset)
                # RabbitMQ (rabbit_reader) refuses a payload larger than frame_max, i.e. it
                # tolerates up to 8 octets more than the negotiated maximum frame size.
                if frame_max and size > frame_max:
                    self._buffer = b""
                    raise FatalFrameError(
                        FRAME_ERROR, frame_error_text(frame_type, b"", ("frame_too_large", size, frame_max - 8))
                    )
                end = offset + 7 + size
                if end >= length:
                    break
                if data[end] != FRAME_END:
                    self._buffer = b""
                    raise FatalFrameError(
                        FRAME_ERROR,
                        frame_error_text(frame_type, data[offset + 7 : end], ("invalid_frame_end_marker", data[end])),
                    )
                if not (
                    frame_type == FRAME_BODY
                    or (frame_type == FRAME_METHOD and size >= 4)
                    or (frame_type == FRAME_HEADER and size >= 12)
                    or (frame_type == FRAME_HEARTBEAT and size == 0)
                ):
                    self._buffer = b""
                    payload = data[offset + 7 : end]
                    error = ConnectionError(FRAME_ERROR, frame_error_text(frame_type, payload, "unknown_frame"))
                    error.frame = (frame_type, channel, payload)  # type: ignore[attr-defined]
                    raise error
                append((frame_type, channel, data[offset + 7 : end]))
                offset = end + 1
        except ConnectionError as error:
            # The complete frames before the bad one still count (RabbitMQ handles them
            # first): the caller finds them on the exception.
            error.frames = frames  # type: ignore[attr-defined]
            raise
        self._buffer = data[offset:] if offset < length else b""
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer)


# ---------------------------------------------------------------------------------------------
# Methods


def method_id(payload: bytes) -> int:
    """``class_id << 16 | method_id`` of a method frame payload."""
    if len(payload) < 4:
        raise ConnectionError(FRAME_ERROR, frame_error_text(FRAME_METHOD, payload, "unknown_frame"))
    return _method_id.unpack_from(payload)[0]


class _Malformed(ValueError):
    """Bytes that do not parse as the AMQP type expected (caught and turned into a reply)."""


def _cannot_decode(mid: int, payload: bytes) -> ConnectionError:
    """RabbitMQ's reply when a method's fields do not match its layout (``~w`` of the fields)."""
    fields = payload[4:]
    # The reply text is a 255-octet shortstr: 128 octets (2+ characters each) overflow it.
    text = ",".join(map(str, fields[:128]))
    return ConnectionError(FRAME_ERROR, f"cannot decode <<{text}>>", (mid >> 16, mid & 0xFFFF))


def _malformed_utf8() -> ConnectionError:
    return ConnectionError(FRAME_ERROR, "Malformed UTF-8 in shortstr")


def _lenient_str(raw: bytes) -> str:
    """A name RabbitMQ takes as opaque bytes (basic.publish, properties, table keys).

    Invalid UTF-8 becomes U+FFFD rather than an error: RabbitMQ accepts such names, and
    the text must stay encodable because it may be echoed in a reply text.
    """
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


def decode_method(payload: bytes) -> Publish | Ack | PamqpMethod:
    """Decode a method frame payload the way RabbitMQ's generated decoder does.

    Fields that do not exactly fill the payload (truncated, or trailing octets) raise
    ``501 FRAME_ERROR - cannot decode <<...>>`` with the method's ids; a shortstr that is
    not UTF-8 raises ``501 FRAME_ERROR - Malformed UTF-8 in shortstr`` (except in
    basic.publish, whose names RabbitMQ does not check); an unknown method raises
    COMMAND_INVALID. Nothing else escapes: any decoding failure becomes a ConnectionError.
    """
    mid = method_id(payload)
    if mid == BASIC_PUBLISH:
        return decode_publish(payload)
    if mid in (BASIC_ACK, BASIC_NACK, BASIC_REJECT):
        if len(payload) != 13:
            raise _cannot_decode(mid, payload)
        tag, bits = ACK_FIELDS.unpack_from(payload, 4)
        if mid == BASIC_REJECT:
            return Ack(mid, tag, False, bool(bits & 1))
        return Ack(mid, tag, bool(bits & 1), bool(bits & 2))
    method_class = commands.INDEX_MAPPING.get(mid)
    if method_class is None:
        raise UnknownMethodError(COMMAND_INVALID, f"unknown method class {mid >> 16} method {mid & 0xFFFF}")
    return _decode_fields(method_class, mid, payload)


# Decoded basic.publish methods by payload: a publisher sends the same few again and again.
publish_cache: dict[bytes, Publish] = {}
PUBLISH_CACHE_SIZE = 1024


def decode_publish(payload: bytes) -> Publish:
    """basic.publish (``payload`` has its method id), from the cache when seen before.

    Publish objects are never changed once made, so one serves every publish with the same
    payload.
    """
    publish = publish_cache.get(payload)
    if publish is not None:
        return publish
    # reserved-1 short, exchange shortstr, routing-key shortstr, bits
    size = len(payload)
    if size < 9:
        raise _cannot_decode(BASIC_PUBLISH, payload)
    offset = 7 + payload[6]
    if offset >= size:
        raise _cannot_decode(BASIC_PUBLISH, payload)
    bits_at = offset + 1 + payload[offset]
    if bits_at != size - 1:
        raise _cannot_decode(BASIC_PUBLISH, payload)
    bits = payload[bits_at]
    publish = Publish(
        _lenient_str(payload[7:offset]),
        _lenient_str(payload[offset + 1 : bits_at]),
        bool(bits & 1),
        bool(bits & 2),
        payload[6:bits_at],
    )
    if len(publish_cache) >= PUBLISH_CACHE_SIZE:
        publish_cache.clear()
    publish_cache[payload] = publish
    return publish


_layouts: dict[type, tuple[tuple[str, str], ...]] = {}
_fixed_fields = {"octet": (1, ">B"), "short": (2, ">H"), "long": (4, ">I"), "longlong": (8, ">Q"), "timestamp": (8, ">Q")}


def _decode_fields(method_class: type[PamqpMethod], mid: int, payload: bytes) -> PamqpMethod:
    layout = _layouts.get(method_class)
    if layout is None:
        layout = _layouts[method_class] = tuple(
            (name, method_class.amqp_type(name)) for name in method_class.__slots__
        )
    values: dict[str, Any] = {}
    shortstrs: list[tuple[str, bytes]] = []
    tables: list[tuple[str, int, int]] = []
    size = len(payload)
    pos = 4
    bit_byte = bit_pos = -1
    for name, kind in layout:
        if kind == "bit":
            if bit_byte < 0 or bit_pos == 8:
                if pos >= size:
                    raise _cannot_decode(mid, payload)
                bit_byte, bit_pos = payload[pos], 0
                pos += 1
            values[name] = bool(bit_byte >> bit_pos & 1)
            bit_pos += 1
            continue
        bit_byte = -1
        if kind == "shortstr":
            if pos >= size:
                raise _cannot_decode(mid, payload)
            end = pos + 1 + payload[pos]
            if end > size:
                raise _cannot_decode(mid, payload)
            shortstrs.append((name, payload[pos + 1 : end]))
            pos = end
        elif kind in ("longstr", "table"):
            if pos + 4 > size:
                raise _cannot_decode(mid, payload)
            end = pos + 4 + _long.unpack_from(payload, pos)[0]
            if end > size:
                raise _cannot_decode(mid, payload)
            if kind == "table":
                tables.append((name, pos + 4, end))
            else:
                raw = payload[pos + 4 : end]
                try:
                    values[name] = raw.decode()
                except UnicodeDecodeError:
                    values[name] = raw  # pamqp's convention: bytes when not UTF-8
            pos = end
        else:
            width, fmt = _fixed_fields[kind]
            if pos + width > size:
                raise _cannot_decode(mid, payload)
            values[name] = struct.unpack_from(fmt, payload, pos)[0]
            pos += width
    if pos != size:
        raise _cannot_decode(mid, payload)
    for name, raw in shortstrs:
        try:
            values[name] = raw.decode()
        except UnicodeDecodeError:
            raise _malformed_utf8() from None
    for name, start, end in tables:
        try:
            values[name] = _table(payload, start, end, 0)
        except (_Malformed, IndexError, struct.error, RecursionError) as exc:
            raise _cannot_decode(mid, payload) from exc
    method = method_class.__new__(method_class)
    for name, value in values.items():
        setattr(method, name, value)
    return method


# ---------------------------------------------------------------------------------------------
# Field tables (RabbitMQ's rabbit_binary_parser: the same types, the same strictness)

_long = struct.Struct(">I")
# Nesting deeper than this is refused rather than risking Python's recursion limit.
MAX_TABLE_DEPTH = 100

_fixed_values: dict[int, tuple[int, Any]] = {
    ord("t"): (1, decode.boolean),
    ord("b"): (1, decode.short_short_int),
    ord("B"): (1, decode.short_short_uint),
    ord("s"): (2, decode.short_int),
    ord("u"): (2, decode.short_uint),
    ord("I"): (4, decode.long_int),
    ord("i"): (4, decode.long_uint),
    ord("l"): (8, decode.long_long_int),
    ord("L"): (8, decode.long_long_int),
    ord("f"): (4, decode.floating_point),
    ord("d"): (8, decode.double),
    ord("D"): (5, decode.decimal),
}
_T, _S, _X, _F, _A, _V, _D_FLOAT, _F_FLOAT = (ord(c) for c in "TSxFAVdf")
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


def _timestamp(seconds: int) -> datetime.datetime | int:
    """pamqp's reading of a timestamp (values past 2106 taken as milliseconds).

    A value no datetime can hold is kept as the integer: RabbitMQ accepts any 64-bit value.
    """
    value: float = seconds / 1000.0 if seconds > 0xFFFFFFFF else seconds
    try:
        return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    except (OverflowError, ValueError, OSError):
        return seconds


def _value(data: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
    kind = data[pos]
    pos += 1
    fixed = _fixed_values.get(kind)
    if fixed is not None:
        width, decoder = fixed
        if pos + width > end:
            raise _Malformed("field value truncated")
        value = decoder(data[pos : pos + width])[1]
        if kind in (_D_FLOAT, _F_FLOAT) and not math.isfinite(value):
            # Erlang's float matching refuses NaN and infinities, and so does RabbitMQ.
            raise _Malformed("not a finite float")
        return value, pos + width
    if kind == _T:
        if pos + 8 > end:
            raise _Malformed("timestamp truncated")
        return _timestamp(struct.unpack_from(">Q", data, pos)[0]), pos + 8
    if kind == _V:
        return None, pos
    if kind not in (_S, _X, _F, _A):
        raise _Malformed(f"unknown field type {kind}")
    if pos + 4 > end:
        raise _Malformed("field length truncated")
    start = pos + 4
    stop = start + _long.unpack_from(data, pos)[0]
    if stop > end:
        raise _Malformed("field value truncated")
    if kind == _S:
        raw = data[start:stop]
        try:
            return raw.decode(), stop
        except UnicodeDecodeError:
            return raw, stop
    if kind == _X:
        return bytearray(data[start:stop]), stop
    if kind == _F:
        return _table(data, start, stop, depth + 1), stop
    return _array(data, start, stop, depth + 1), stop


def _table(data: bytes, pos: int, end: int, depth: int) -> dict[str, Any]:
    if depth > MAX_TABLE_DEPTH:
        raise _Malformed("field tables nested too deeply")
    table: dict[str, Any] = {}
    while pos < end:
        key_end = pos + 1 + data[pos]
        if key_end >= end:
            raise _Malformed("field table entry truncated")
        key = _lenient_str(data[pos + 1 : key_end])
        table[key], pos = _value(data, key_end, end, depth)
    return table


def _array(data: bytes, pos: int, end: int, depth: int) -> list[Any]:
    if depth > MAX_TABLE_DEPTH:
        raise _Malformed("field arrays nested too deeply")
    items = []
    while pos < end:
        item, pos = _value(data, pos, end, depth)
        items.append(item)
    return items


_defaults: dict[type, dict[str, Any]] = {}


_EMPTY_FIELD: dict[str, Any] = {"table": {}, "shortstr": "", "longstr": "", "bit": False}


def build(method_class: type[PamqpMethod], **fields: Any) -> PamqpMethod:
    """Instantiate a pamqp method without its validation (see encode_method_payload)."""
    defaults = _defaults.get(method_class)
    if defaults is None:
        params = inspect.signature(method_class.__init__).parameters
        defaults = _defaults[method_class] = {
            name: param.default for name, param in params.items() if name != "self"
        }
    method = method_class.__new__(method_class)
    for name in method_class.__slots__:
        value = fields[name] if name in fields else defaults.get(name)
        if value is None:  # pamqp leaves some defaults unset; AMQP has no null field
            value = _EMPTY_FIELD.get(method.amqp_type(name), 0)
        setattr(method, name, value)
    return method


def encode_method_payload(method: PamqpMethod) -> bytes:
    """Marshal a pamqp method without pamqp's validation.

    pamqp refuses names outside ``[a-zA-Z0-9-_.:@#,/+ ]``, but RabbitMQ allows up to 255 bytes
    of UTF-8 in exchange and queue names, and we echo whatever name the client used.
    """
    out = [_method_id.pack(method.index)]
    bits = -1
    bit_offset = 0
    for attribute in method.__slots__:
        data_type = method.amqp_type(attribute)
        value = getattr(method, attribute, 0)
        if data_type == "bit":
            if bits < 0:
                bits, bit_offset = 0, 0
            if value:
                bits |= 1 << bit_offset
            bit_offset += 1
            if bit_offset == 8:
                out.append(bytes((bits,)))
                bits = -1
            continue
        if bits >= 0:
            out.append(bytes((bits,)))
            bits = -1
        if data_type == "shortstr":
            out.append(short_str(value or ""))
        elif data_type == "longstr":
            value = value.encode() if isinstance(value, str) else bytes(value or b"")
            out.append(struct.pack(">I", len(value)) + value)
        elif data_type == "table":
            out.append(encode_table(value or {}))
        elif data_type == "longlong":
            # Unsigned, as AMQP has it (pamqp packs it signed and refuses tags >= 2**63).
            out.append(struct.pack(">Q", value or 0))
        else:
            out.append(encode.by_type(value, data_type))
    if bits >= 0:
        out.append(bytes((bits,)))
    return b"".join(out)


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return _frame_header.pack(frame_type, channel, len(payload)) + payload + FRAME_END_BYTE


def _open_method_frame(channel: int, payload: bytes) -> bytes:
    """A method frame without its frame-end byte: content_frames() supplies it."""
    return _frame_header.pack(FRAME_METHOD, channel, len(payload)) + payload


def encode_method(channel: int, method: PamqpMethod) -> bytes:
    return frame(FRAME_METHOD, channel, encode_method_payload(method))


def short_str(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")  # see field_types.text
    if len(raw) > 255:
        raise ValueError("short string longer than 255 bytes")
    return bytes((len(raw),)) + raw


def encode_ack(channel: int, method_id_: int, delivery_tag: int, multiple: bool) -> bytes:
    """basic.ack / basic.nack from the server (publisher confirms)."""
    payload = _method_id.pack(method_id_) + ACK_FIELDS.pack(delivery_tag, 1 if multiple else 0)
    return frame(FRAME_METHOD, channel, payload)


# ---------------------------------------------------------------------------------------------
# Content


def decode_content_header(payload: bytes) -> tuple[int, int]:
    """``(class_id, body_size)`` of a content header payload that follows basic.publish.

    The reader guarantees 12 octets. A non-zero weight is RabbitMQ's "non content header"
    case; a payload without property flags cannot hold properties (RabbitMQ: 541).
    """
    if len(payload) < 12:
        raise ConnectionError(FRAME_ERROR, frame_error_text(FRAME_HEADER, payload, "unknown_frame"))
    class_id, weight, body_size = CONTENT_HEADER_FIXED.unpack_from(payload)
    if weight:
        raise ConnectionError(
            UNEXPECTED_FRAME,
            f"expected content header for class {BASIC_CLASS}, got non content header frame instead",
            (BASIC_CLASS, 40),
        )
    if len(payload) < 14:
        raise _bad_properties()
    return class_id, body_size


def content_frames(channel: int, header: bytes, body: bytes, frame_max: int) -> list[bytes]:
    """The header and body frames for content, as byte chunks ready to write.

    The first chunk starts with the frame-end byte of the method frame before it, so the
    method frame is written without its own (one fewer bytes object per message).
    ``header`` is the raw content-header payload as the publisher sent it.
    """
    out = [_end_and_header.pack(FRAME_END, FRAME_HEADER, channel, len(header)), header]
    body_len = len(body)
    if body_len == 0:
        out.append(FRAME_END_BYTE)
        return out
    chunk = frame_max - FRAME_OVERHEAD
    if body_len <= chunk:
        out.append(_end_and_header.pack(FRAME_END, FRAME_BODY, channel, body_len))
        out.append(body)
        out.append(FRAME_END_BYTE)
        return out
    view = memoryview(body)
    for start in range(0, body_len, chunk):
        part = view[start : start + chunk]
        out.append(_end_and_header.pack(FRAME_END, FRAME_BODY, channel, len(part)))
        out.append(part)
    out.append(FRAME_END_BYTE)
    return out


def encode_deliver(
    channel: int,
    consumer_tag_prefix: bytes,
    delivery_tag: int,
    redelivered: bool,
    exchange_and_key: bytes,
    header: bytes,
    body: bytes,
    frame_max: int,
) -> list[bytes]:
    """basic.deliver plus its content, as chunks.

    ``consumer_tag_prefix`` is the precomputed class/method id and consumer-tag shortstr;
    ``exchange_and_key`` the precomputed exchange and routing-key shortstrs of the message.
    """
    size = len(consumer_tag_prefix) + 9 + len(exchange_and_key)
    body_len = len(body)
    if 0 < body_len <= frame_max - FRAME_OVERHEAD:  # one body frame: all chunks in one list
        return [
            _frame_header.pack(FRAME_METHOD, channel, size),
            consumer_tag_prefix,
            _deliver_tail.pack(delivery_tag, redelivered),
            exchange_and_key,
            _end_and_header.pack(FRAME_END, FRAME_HEADER, channel, len(header)),
            header,
            _end_and_header.pack(FRAME_END, FRAME_BODY, channel, body_len),
            body,
            FRAME_END_BYTE,
        ]
    out = [
        _frame_header.pack(FRAME_METHOD, channel, size),
        consumer_tag_prefix,
        _deliver_tail.pack(delivery_tag, redelivered),
        exchange_and_key,
    ]
    out += content_frames(channel, header, body, frame_max)
    return out


def deliver_prefix(consumer_tag: str) -> bytes:
    return _method_id.pack(BASIC_DELIVER) + short_str(consumer_tag)


def encode_get_ok(
    channel: int,
    delivery_tag: int,
    redelivered: bool,
    exchange_and_key: bytes,
    message_count: int,
    header: bytes,
    body: bytes,
    frame_max: int,
) -> list[bytes]:
    payload = (
        _method_id.pack(BASIC_GET_OK)
        + _deliver_tail.pack(delivery_tag, redelivered)
        + exchange_and_key
        + struct.pack(">I", message_count)
    )
    return [_open_method_frame(channel, payload), *content_frames(channel, header, body, frame_max)]


def encode_return(
    channel: int,
    reply_code: int,
    reply_text: str,
    exchange_and_key: bytes,
    header: bytes,
    body: bytes,
    frame_max: int,
) -> list[bytes]:
    payload = (
        _method_id.pack(BASIC_RETURN) + _short.pack(reply_code) + short_str(reply_text) + exchange_and_key
    )
    return [_open_method_frame(channel, payload), *content_frames(channel, header, body, frame_max)]


# ---------------------------------------------------------------------------------------------
# Properties and tables


_PROPERTIES = (
    ("content_type", 0x8000, "shortstr"),
    ("content_encoding", 0x4000, "shortstr"),
    ("headers", 0x2000, "table"),
    ("delivery_mode", 0x1000, "octet"),
    ("priority", 0x0800, "octet"),
    ("correlation_id", 0x0400, "shortstr"),
    ("reply_to", 0x0200, "shortstr"),
    ("expiration", 0x0100, "shortstr"),
    ("message_id", 0x0080, "shortstr"),
    ("timestamp", 0x0040, "timestamp"),
    ("message_type", 0x0020, "shortstr"),
    ("user_id", 0x0010, "shortstr"),
    ("app_id", 0x0008, "shortstr"),
    ("cluster_id", 0x0004, "shortstr"),
)


def decode_properties(header: bytes) -> dict[str, Any]:
    """All properties of a content header payload, as a dict of the ones present.

    Names and value types are pamqp's (``message_type`` for AMQP's ``type``). Decoding is as
    strict as RabbitMQ's, which refuses a published message whose properties do not parse
    with ``541 INTERNAL_ERROR``: missing flags, the flag-continuation bit (RabbitMQ does not
    support it), a truncated value, a bad field table or octets after the last property.
    Shortstr properties are not checked for UTF-8 (RabbitMQ does not either).
    """
    size = len(header)
    if size < 14:
        raise _bad_properties()
    flags = header[12] << 8 | header[13]
    if not flags:
        if size != 14:
            raise _bad_properties()
        return {}
    if flags & 1:
        raise _bad_properties()
    props: dict[str, Any] = {}
    pos = 14
    try:
        for name, bit, kind in _PROPERTIES:
            if not flags & bit:
                continue
            if kind == "shortstr":
                end = pos + 1 + header[pos]
                if end > size:
                    raise _Malformed("shortstr truncated")
                props[name] = _lenient_str(header[pos + 1 : end])
            elif kind == "octet":
                props[name] = header[pos]
                end = pos + 1
            elif kind == "timestamp":
                end = pos + 8
                if end > size:
                    raise _Malformed("timestamp truncated")
                props[name] = _timestamp(struct.unpack_from(">Q", header, pos)[0])
            else:
                end = pos + 4 + _long.unpack_from(header, pos)[0]
                if end > size:
                    raise _Malformed("table truncated")
                props[name] = _table(header, pos + 4, end, 0)
            pos = end
    except (_Malformed, IndexError, struct.error, RecursionError) as exc:
        raise _bad_properties() from exc
    if pos != size:
        raise _bad_properties()
    return props


def _bad_properties() -> ConnectionError:
    return ConnectionError(INTERNAL_ERROR, "could not decode the content header properties")


def headers_span(header: bytes) -> tuple[int, int] | None:
    """``(start, end)`` of the headers table's entries in a content header payload, if present.

    The table's 4-octet length sits just before ``start``. Assumes properties that decode.
    """
    if len(header) < 14 or not header[12] & 0x20:
        return None
    pos = 14
    if header[12] & 0x80:  # content-type
        pos += 1 + header[pos]
    if header[12] & 0x40:  # content-encoding
        pos += 1 + header[pos]
    return pos + 4, pos + 4 + _long.unpack_from(header, pos)[0]


def table_entries(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """``(key, type octet, entry start, entry end)`` of each entry of a well-formed table."""
    entries = []
    pos = start
    while pos < end:
        key_end = pos + 1 + data[pos]
        kind = data[key_end]
        _, value_end = _value(data, key_end, end, 0)
        entries.append((data[pos + 1 : key_end], kind, pos, value_end))
        pos = value_end
    return entries


def encode_table(table: dict[str, Any]) -> bytes:
    """A field table with its length, for any value decode_table produces.

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


def decode_table(data: bytes) -> dict[str, Any]:
    """A field table with its 4-octet length prefix; raises ValueError if malformed."""
    if len(data) < 4:
        raise _Malformed("field table length truncated")
    end = 4 + _long.unpack_from(data)[0]
    if end != len(data):
        raise _Malformed("field table length does not match the data")
    try:
        return _table(data, 4, end, 0)
    except (IndexError, struct.error, RecursionError) as exc:
        raise _Malformed("malformed field table") from exc
