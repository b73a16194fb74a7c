"""Pre-encoded AMQP 0-9-1 frames for the hot paths and the layout of a test message body.

A publish is one ``bytes`` template per producer: basic.publish method frame, content header
frame and body frame(s), encoded once. ``PublishTemplate.batch`` repeats it ``count`` times and
writes each message's stamp into the body at a fixed offset, so a batch of publishes costs one
buffer and one socket write.

Body layout (big-endian), then filler up to the body size::

    offset 0  u64  send time, time.monotonic_ns() of the producer (same clock in every process)
    offset 8  u32  per-producer sequence number (wraps)
    offset 12 u16  producer id
    offset 14 u16  run tag (random per run: tells our messages from leftovers of other runs)
    offset 16 ...  filler: bytes(range(256)) repeated, checked by the consumer
"""

from __future__ import annotations

import struct

# The wire constants are the broker's own (the tool ships with it).
from amqp_server.protocol.frame_codec import (  # noqa: F401 - re-exported for the tool's modules
    FRAME_BODY,
    FRAME_END,
    FRAME_END_BYTE,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    HEARTBEAT_FRAME,
    PROTOCOL_HEADER,
)

# class id and method id as the 4 bytes that open a method payload
BASIC_PUBLISH = b"\x00\x3c\x00\x28"
BASIC_RETURN = b"\x00\x3c\x00\x32"
BASIC_DELIVER = b"\x00\x3c\x00\x3c"
BASIC_ACK = b"\x00\x3c\x00\x50"
BASIC_NACK = b"\x00\x3c\x00\x78"

BASIC_CLASS = 60
DELIVERY_MODE_FLAG = 0x1000  # basic properties flag bit of delivery-mode
PERSISTENT = 2

#: frame type, channel, payload size
FRAME = struct.Struct(">BHI")
#: a content header frame up to its body size: type, channel, size, class, weight, body size
CONTENT_HEAD = struct.Struct(">BHIHHQ")
#: send time, sequence, producer id, run tag (the first STAMP.size bytes of every body)
STAMP = struct.Struct(">QIHH")
STAMP_SIZE = STAMP.size
#: the bytes of the stamp that differ between messages of one run: send time, sequence, producer
STAMP_VARYING = 14
#: what changes per message: send time and sequence
TIME_SEQ = struct.Struct(">QI")
#: basic.ack frame: header, class, method, delivery tag, multiple, frame end
ACK_FRAME = struct.Struct(">BHIHHQBB")
#: delivery tag and bits of basic.ack / basic.nack
TAG_BITS = struct.Struct(">QB")
U32 = struct.Struct(">I")
SEQ_MASK = 0xFFFFFFFF

_PATTERN = bytes(range(256))


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    """One frame: header, payload, frame end."""
    return FRAME.pack(frame_type, channel, len(payload)) + payload + FRAME_END_BYTE


def short_str(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"short string longer than 255 bytes: {value[:40]!r}...")
    return bytes((len(raw),)) + raw


def filler(size: int) -> bytes:
    """The body bytes after the stamp for a body of ``size`` bytes."""
    length = max(0, size - STAMP_SIZE)
    return (_PATTERN * (length // len(_PATTERN) + 1))[:length]


def body_template(size: int, producer: int, run: int) -> bytes:
    """A body with time and sequence zero."""
    return STAMP.pack(0, 0, producer, run) + filler(size)


def deliver_head(ctag_length: int) -> struct.Struct:
    """A basic.deliver method frame up to its exchange, for consumer tags of ``ctag_length``
    bytes: frame type, channel, size, class+method id, ctag length, ctag, delivery tag, bits."""
    return struct.Struct(f">BHI4sB{ctag_length}sQB")


def encode_ack(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """A basic.ack frame."""
    return ACK_FRAME.pack(
        FRAME_METHOD, channel, 13, BASIC_CLASS, 80, delivery_tag, 1 if multiple else 0, FRAME_END
    )


class PublishTemplate:
    """The frames of one publish, with the stamp of the body at ``stamp_offset``."""

    def __init__(
        self,
        *,
        channel: int,
        exchange: str,
        routing_key: str,
        size: int,
        producer: int,
        run: int,
        persistent: bool = False,
        mandatory: bool = False,
        frame_max: int = 131072,
    ) -> None:
        if size < STAMP_SIZE:
            raise ValueError(f"body size must be at least {STAMP_SIZE} bytes")
        if frame_max < 4096:
            raise ValueError("frame_max below the protocol minimum of 4096")
        method = BASIC_PUBLISH + b"\x00\x00" + short_str(exchange) + short_str(routing_key)
        method += b"\x01" if mandatory else b"\x00"
        if persistent:
            header = struct.pack(">HHQHB", BASIC_CLASS, 0, size, DELIVERY_MODE_FLAG, PERSISTENT)
        else:
            header = struct.pack(">HHQH", BASIC_CLASS, 0, size, 0)
        body = body_template(size, producer, run)
        chunk = frame_max - 8
        parts = [frame(FRAME_METHOD, channel, method), frame(FRAME_HEADER, channel, header)]
        self.stamp_offset = len(parts[0]) + len(parts[1]) + 7
        parts += [frame(FRAME_BODY, channel, body[i : i + chunk]) for i in range(0, size, chunk)]
        self.message = b"".join(parts)
        self.size = size
        self._template = bytearray(self.message)

    def __len__(self) -> int:
        return len(self.message)

    def batch(self, count: int, timestamp_ns: int, first_seq: int) -> bytearray:
        """``count`` publishes, all stamped ``timestamp_ns``, sequence numbers from ``first_seq``.

        A new buffer each time: the transport may keep it until the socket takes it."""
        buf = self._template * count
        pack = TIME_SEQ.pack_into
        offset = self.stamp_offset
        step = len(self.message)
        first = first_seq & SEQ_MASK
        if first + count <= SEQ_MASK:
            for seq in range(first, first + count):
                pack(buf, offset, timestamp_ns, seq)
                offset += step
        else:
            for i in range(count):
                pack(buf, offset, timestamp_ns, (first + i) & SEQ_MASK)
                offset += step
        return buf


def sequence_step(last: int, seq: int) -> int:
    """How far ``seq`` is ahead of ``last`` modulo 2**32: 1 is the next one, 0 or more than
    2**31 means it is a repeat or older (out of order)."""
    return (seq - last) & SEQ_MASK


#: ``sequence_step`` results at or above this are out of order
OUT_OF_ORDER = 1 << 31
