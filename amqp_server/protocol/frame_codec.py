"""AMQP 0-9-1 frame codec: bytes in, frames out; values in, bytes out. No I/O.

pamqp handles the rarely used control methods. The frames of the hot path (basic.publish,
basic.deliver, basic.ack/nack/reject, content header and body) are encoded and decoded here
by hand: a published message's content-header payload and body are kept as the raw bytes that
arrived and are written back out unchanged in basic.deliver.

Frame layout: type (octet), channel (short), size (long), payload, frame-end 0xCE.

Decoding is as strict as RabbitMQ's and fails only with ConnectionError, with RabbitMQ's
reply code and text: a bad frame is ``501 FRAME_ERROR - type T, all octets = <<...>>: Error``
(see rabbit_text.frame_error_text), a method whose fields do not fill its payload exactly is
``501 FRAME_ERROR - cannot decode <<...>>``, properties that do not decode are 541.

Field tables are protocol.tables', content-header properties protocol.content's.
"""

from __future__ import annotations

import inspect
import struct
from typing import Any

from pamqp import commands, encode
from pamqp.base import Frame as PamqpMethod

from amqp_server.protocol.content import bad_properties
from amqp_server.protocol.errors import (
    COMMAND_INVALID,
    FRAME_ERROR,
    UNEXPECTED_FRAME,
    ConnectionError,
    FatalFrameError,
    UnknownMethodError,
)
from amqp_server.protocol.field_types import lenient_str, short_str
from amqp_server.protocol.rabbit_text import frame_error_text
from amqp_server.protocol.tables import Malformed, decode_values, encode_table

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
_long = struct.Struct(">I")

# (class_id << 16 | method_id) of the hot-path methods.
BASIC_PUBLISH = 0x003C0028
BASIC_ACK = 0x003C0050
BASIC_REJECT = 0x003C005A
BASIC_NACK = 0x003C0078
BASIC_DELIVER = 0x003C003C
BASIC_GET_OK = 0x003C0047
BASIC_RETURN = 0x003C0032

BASIC_CLASS = 60


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


def _cannot_decode(mid: int, payload: bytes) -> ConnectionError:
    """RabbitMQ's reply when a method's fields do not match its layout (``~w`` of the fields)."""
    fields = payload[4:]
    # The reply text is a 255-octet shortstr: 128 octets (2+ characters each) overflow it.
    text = ",".join(map(str, fields[:128]))
    return ConnectionError(FRAME_ERROR, f"cannot decode <<{text}>>", (mid >> 16, mid & 0xFFFF))


def _malformed_utf8() -> ConnectionError:
    return ConnectionError(FRAME_ERROR, "Malformed UTF-8 in shortstr")


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
        lenient_str(payload[7:offset]),
        lenient_str(payload[offset + 1 : bits_at]),
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
            values[name] = decode_values(payload, start, end)
        except Malformed as exc:
            raise _cannot_decode(mid, payload) from exc
    method = method_class.__new__(method_class)
    for name, value in values.items():
        setattr(method, name, value)
    return method


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
        raise bad_properties()
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
