"""AMQP 0-9-1 frame codec: bytes in, frames out; values in, bytes out. No I/O.

pamqp handles the rarely used control methods. The frames of the hot path (basic.publish,
basic.deliver, basic.ack/nack/reject, content header and body) are encoded and decoded here
by hand: a published message's content-header payload and body are kept as the raw bytes that
arrived and are written back out unchanged in basic.deliver.

Frame layout: type (octet), channel (short), size (long), payload, frame-end 0xCE.
"""

from __future__ import annotations

import inspect
import struct
from typing import Any

from pamqp import commands, decode, encode
from pamqp.base import Frame as PamqpMethod
from pamqp.header import ContentHeader

from amqp_server.errors import COMMAND_INVALID, FRAME_ERROR, SYNTAX_ERROR, ConnectionError

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
_content_header = struct.Struct(">HHQH")
_short = struct.Struct(">H")
_deliver_tail = struct.Struct(">QB")
_ack = struct.Struct(">QB")
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

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        if self._buffer:
            data = self._buffer + data
        frames: list[tuple[int, int, bytes]] = []
        append = frames.append
        offset = 0
        length = len(data)
        unpack_from = _frame_header.unpack_from
        frame_max = self.frame_max
        while length - offset >= 7:
            frame_type, channel, size = unpack_from(data, offset)
            end = offset + 7 + size
            if size + FRAME_OVERHEAD > frame_max:
                self._buffer = b""
                raise ConnectionError(
                    FRAME_ERROR,
                    f"frame size {size + FRAME_OVERHEAD} exceeds frame_max {frame_max}",
                )
            if end >= length:
                break
            if data[end] != FRAME_END:
                self._buffer = b""
                raise ConnectionError(FRAME_ERROR, f"type {frame_type}, invalid frame end byte")
            if frame_type not in (FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT):
                self._buffer = b""
                raise ConnectionError(FRAME_ERROR, f"type {frame_type}, unknown frame type")
            append((frame_type, channel, data[offset + 7 : end]))
            offset = end + 1
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
        raise ConnectionError(FRAME_ERROR, "method frame too short")
    return _method_id.unpack_from(payload)[0]


def _short_str(payload: bytes, offset: int) -> tuple[str, int]:
    size = payload[offset]
    end = offset + 1 + size
    if end > len(payload):
        raise IndexError
    return payload[offset + 1 : end].decode(), end


def decode_method(payload: bytes) -> Publish | Ack | PamqpMethod:
    """Decode a method frame payload; raises ConnectionError(SYNTAX_ERROR/COMMAND_INVALID)."""
    mid = method_id(payload)
    try:
        if mid == BASIC_PUBLISH:
            # reserved-1 short, exchange shortstr, routing-key shortstr, bits
            exchange, offset = _short_str(payload, 6)
            routing_key, offset = _short_str(payload, offset)
            bits = payload[offset]
            return Publish(exchange, routing_key, bool(bits & 1), bool(bits & 2), payload[6:offset])
        if mid in (BASIC_ACK, BASIC_NACK):
            tag, bits = _ack.unpack_from(payload, 4)
            return Ack(mid, tag, bool(bits & 1), bool(bits & 2))
        if mid == BASIC_REJECT:
            tag, bits = _ack.unpack_from(payload, 4)
            return Ack(mid, tag, False, bool(bits & 1))
        method_class = commands.INDEX_MAPPING.get(mid)
        if method_class is None:
            raise ConnectionError(
                COMMAND_INVALID, f"unknown method class {mid >> 16} method {mid & 0xFFFF}"
            )
        method = method_class()
        method.unmarshal(payload[4:])
        return method
    except (struct.error, IndexError, ValueError, TypeError) as exc:
        raise ConnectionError(
            SYNTAX_ERROR, f"could not decode method class {mid >> 16} method {mid & 0xFFFF}",
            (mid >> 16, mid & 0xFFFF),
        ) from exc


_defaults: dict[type, dict[str, Any]] = {}


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
        if value is None and method.amqp_type(name) == "table":
            value = {}
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
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError("short string longer than 255 bytes")
    return bytes((len(raw),)) + raw


def encode_ack(channel: int, method_id_: int, delivery_tag: int, multiple: bool) -> bytes:
    """basic.ack / basic.nack from the server (publisher confirms)."""
    payload = _method_id.pack(method_id_) + _ack.pack(delivery_tag, 1 if multiple else 0)
    return frame(FRAME_METHOD, channel, payload)


# ---------------------------------------------------------------------------------------------
# Content


def decode_content_header(payload: bytes) -> tuple[int, int]:
    """``(class_id, body_size)`` of a content header payload."""
    if len(payload) < 14:
        raise ConnectionError(FRAME_ERROR, "content header frame too short")
    class_id, _weight, body_size, _flags = _content_header.unpack_from(payload)
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


def decode_properties(header: bytes) -> dict[str, Any]:
    """All properties of a content header payload, as a dict of the ones present."""
    content_header = ContentHeader()
    try:
        content_header.unmarshal(header)
    except (struct.error, ValueError, IndexError, TypeError) as exc:
        raise ConnectionError(SYNTAX_ERROR, "could not decode content header properties") from exc
    props = content_header.properties
    return {name: value for name, value in props if value is not None}


def encode_table(table: dict[str, Any]) -> bytes:
    return encode.field_table(table)


def decode_table(data: bytes) -> dict[str, Any]:
    return decode.field_table(data)[1]
