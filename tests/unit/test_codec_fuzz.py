"""Property-based tests of the frame codec: whatever bytes a peer sends, the codec either
decodes them or raises an AMQPError (which the connection turns into connection.close);
no other exception may escape, and how the bytes are chunked never matters.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import struct
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp.header import ContentHeader

from amqp_server.core.message import Message
from amqp_server.protocol.content import decode_properties
from amqp_server.protocol.errors import AMQPError
from amqp_server.protocol.frame_codec import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    HEARTBEAT_FRAME,
    Ack,
    FrameReader,
    Publish,
    build,
    decode_content_header,
    decode_method,
    deliver_prefix,
    encode_deliver,
    encode_method,
    frame,
    short_str,
)

FRAME_MAX = 131072
# CODEC_FUZZ_EXAMPLES=5000 runs a longer hunt; the default keeps the file at a few seconds.
EXAMPLES = int(os.environ.get("CODEC_FUZZ_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METHODS = sorted(commands.INDEX_MAPPING.items())

# --------------------------------------------------------------------------- helpers


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def feed_all(chunks: list[bytes], frame_max: int = FRAME_MAX) -> tuple[list[tuple[int, int, bytes]], AMQPError | None]:
    """Frames read before the first error, and that error (a non-AMQPError propagates).

    The good frames before a bad one in the same feed come on the error (``frames``): the
    connection handles them before closing, as RabbitMQ does.
    """
    reader = FrameReader(frame_max)
    frames: list[tuple[int, int, bytes]] = []
    for chunk in chunks:
        try:
            frames += reader.feed(chunk)
        except AMQPError as error:
            return frames + error.frames, error  # type: ignore[attr-defined]
    return frames, None


def decode_everything(frames: list[tuple[int, int, bytes]]) -> None:
    """What the connection and channel do with each frame; only AMQPError may come out."""
    for frame_type, _channel, payload in frames:
        try:
            if frame_type == FRAME_METHOD:
                decode_method(payload)
            elif frame_type == FRAME_HEADER:
                decode_content_header(payload)
                decode_properties(payload)
                message = Message("e", "k", b"\x01e\x01k", payload, b"")
                message.headers  # noqa: B018
                message.user_id  # noqa: B018
                message.check()
        except AMQPError:
            pass


def same_error(a: AMQPError | None, b: AMQPError | None) -> bool:
    if a is None or b is None:
        return a is b
    return (type(a), a.code, a.explanation, a.method) == (type(b), b.code, b.explanation, b.method)


# --------------------------------------------------------------------------- (a) arbitrary bytes


@SETTINGS
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=8), frame_max=st.sampled_from([64, 4096, FRAME_MAX]))
def test_arbitrary_bytes_only_raise_amqp_errors(data: bytes, cuts: list[int], frame_max: int) -> None:
    whole = feed_all([data], frame_max)
    split = feed_all(chunked(data, cuts), frame_max)
    assert split[0] == whole[0] and same_error(split[1], whole[1])
    decode_everything(whole[0])


frame_types = st.sampled_from([FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT, 0, 4, 9, 255])


@st.composite
def plausible_frames(draw: st.DrawFn) -> bytes:
    """Well-delimited frames with arbitrary payloads: exercises the decoders, not just the reader."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        frame_type = draw(frame_types)
        if frame_type == FRAME_METHOD:
            index = draw(st.sampled_from([i for i, _ in METHODS] + [0x003C0028, 0x003C0050, 0x00630001]))
            payload = struct.pack(">I", index) + draw(st.binary(max_size=80))
        elif frame_type == FRAME_HEADER:
            flags = draw(st.integers(0, 0xFFFF))
            payload = struct.pack(">HHQH", 60, draw(st.sampled_from([0, 0, 1])), draw(st.integers(0, 2**64 - 1)), flags)
            payload += draw(st.binary(max_size=80))
        else:
            payload = draw(st.binary(max_size=20))
        end = draw(st.sampled_from([b"\xce"] * 9 + [b"\x00"]))
        out.append(struct.pack(">BHI", frame_type, draw(st.integers(0, 3)), len(payload)) + payload + end)
    return b"".join(out)


@SETTINGS
@given(data=plausible_frames(), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_plausible_frames_only_raise_amqp_errors(data: bytes, cuts: list[int]) -> None:
    whole = feed_all([data])
    split = feed_all(chunked(data, cuts))
    assert split[0] == whole[0] and same_error(split[1], whole[1])
    decode_everything(whole[0])


# --------------------------------------------------------------------------- (b) valid frames round trip

shortstrs = st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255) | st.just("é" * 127 + "x")
longstrs = st.text(max_size=200)
table_keys = st.text(max_size=20).filter(lambda s: len(s.encode()) <= 128)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.builds(lambda m, s: Decimal(m).scaleb(-s), st.integers(0, 2**31 - 1), st.integers(0, 20)),
    longstrs,
    st.datetimes(
        min_value=datetime.datetime(1970, 1, 1),
        max_value=datetime.datetime(2106, 1, 1),
        timezones=st.just(datetime.UTC),
    ).map(lambda d: d.replace(microsecond=0)),
    st.none(),
)
field_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(table_keys, inner, max_size=4),
    max_leaves=12,
)
tables = st.dictionaries(table_keys, field_values, max_size=5)

FIELD_STRATEGIES = {
    "bit": st.booleans(),
    "octet": st.integers(0, 255),
    "short": st.integers(0, 2**16 - 1),
    "long": st.integers(0, 2**32 - 1),
    "longlong": st.integers(0, 2**64 - 1),
    "shortstr": shortstrs,
    "longstr": longstrs,
    "table": tables,
}


@st.composite
def methods(draw: st.DrawFn) -> tuple[int, type, dict[str, Any]]:
    index, method_class = draw(st.sampled_from(METHODS))
    fields = {name: draw(FIELD_STRATEGIES[method_class.amqp_type(name)]) for name in method_class.__slots__}
    return index, method_class, fields


def check_method(decoded: Any, index: int, method_class: type, fields: dict[str, Any]) -> None:
    if isinstance(decoded, Publish):
        assert (decoded.exchange, decoded.routing_key, decoded.mandatory, decoded.immediate) == (
            fields["exchange"],
            fields["routing_key"],
            fields["mandatory"],
            fields["immediate"],
        )
    elif isinstance(decoded, Ack):
        assert (decoded.method_id, decoded.delivery_tag) == (index, fields["delivery_tag"])
        assert decoded.multiple == fields.get("multiple", False)
        assert decoded.requeue == fields.get("requeue", False)
    else:
        assert type(decoded) is method_class
        assert {name: getattr(decoded, name) for name in method_class.__slots__} == fields


property_values = {
    "content_type": shortstrs,
    "content_encoding": shortstrs,
    "headers": tables,
    "delivery_mode": st.integers(0, 255),
    "priority": st.integers(0, 255),
    "correlation_id": shortstrs,
    "reply_to": shortstrs,
    "expiration": shortstrs,
    "message_id": shortstrs,
    "timestamp": st.datetimes(
        min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2106, 1, 1), timezones=st.just(datetime.UTC)
    ).map(lambda d: d.replace(microsecond=0)),
    "message_type": shortstrs,
    "user_id": shortstrs,
    "app_id": shortstrs,
    "cluster_id": shortstrs,
}


@st.composite
def content_headers(draw: st.DrawFn) -> tuple[bytes, int, dict[str, Any]]:
    names = draw(st.sets(st.sampled_from(sorted(property_values))))
    props = {name: draw(property_values[name]) for name in names}
    properties = commands.Basic.Properties()
    for name, value in props.items():
        setattr(properties, name, value)  # no pamqp validation
    body_size = draw(st.integers(0, 2**64 - 1))
    # pamqp leaves out empty strings (and so does every client).
    expected = {k: v for k, v in props.items() if v != ""}
    return ContentHeader(0, body_size, properties).marshal(), body_size, expected


@st.composite
def frame_sequences(draw: st.DrawFn) -> list[tuple[str, int, Any]]:
    items: list[tuple[str, int, Any]] = []
    for _ in range(draw(st.integers(1, 6))):
        channel = draw(st.integers(0, 2**16 - 1))
        kind = draw(st.sampled_from(["method", "method", "header", "body", "heartbeat"]))
        if kind == "method":
            items.append((kind, channel, draw(methods())))
        elif kind == "header":
            items.append((kind, channel, draw(content_headers())))
        elif kind == "body":
            items.append((kind, channel, draw(st.binary(max_size=300))))
        else:
            items.append((kind, 0, None))
    return items


def encode_item(kind: str, channel: int, value: Any) -> bytes:
    if kind == "method":
        _index, method_class, fields = value
        return encode_method(channel, build(method_class, **fields))
    if kind == "header":
        return frame(FRAME_HEADER, channel, value[0])
    if kind == "body":
        return frame(FRAME_BODY, channel, value)
    return HEARTBEAT_FRAME


@settings(max_examples=EXAMPLES * 4 // 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=frame_sequences(), cuts=st.lists(st.integers(0, 10**5), max_size=10))
def test_valid_frame_sequences_round_trip_however_split(items: list[tuple[str, int, Any]], cuts: list[int]) -> None:
    data = b"".join(encode_item(*item) for item in items)
    frames, error = feed_all(chunked(data, cuts))
    assert error is None
    assert len(frames) == len(items)
    for (kind, channel, value), (frame_type, got_channel, payload) in zip(items, frames, strict=True):
        assert got_channel == channel
        if kind == "method":
            assert frame_type == FRAME_METHOD
            check_method(decode_method(payload), *value)
        elif kind == "header":
            header, body_size, expected = value
            assert (frame_type, payload) == (FRAME_HEADER, header)
            assert decode_content_header(payload) == (60, body_size)
            assert decode_properties(payload) == expected
        elif kind == "body":
            assert (frame_type, payload) == (FRAME_BODY, value)
        else:
            assert (frame_type, payload) == (FRAME_HEARTBEAT, b"")


@SETTINGS
@given(
    tag=shortstrs,
    exchange=shortstrs,
    key=shortstrs,
    delivery_tag=st.integers(1, 2**64 - 1),
    redelivered=st.booleans(),
    header=content_headers(),
    body=st.binary(max_size=3000),
    frame_max=st.integers(4096, 4200) | st.sampled_from([FRAME_MAX]),
    cuts=st.lists(st.integers(0, 10**4), max_size=6),
)
def test_deliveries_round_trip(
    tag: str,
    exchange: str,
    key: str,
    delivery_tag: int,
    redelivered: bool,
    header: tuple[bytes, int, dict[str, Any]],
    body: bytes,
    frame_max: int,
    cuts: list[int],
) -> None:
    raw_header = header[0]
    chunks = encode_deliver(
        5, deliver_prefix(tag), delivery_tag, redelivered, short_str(exchange) + short_str(key), raw_header, body, frame_max
    )
    data = b"".join(bytes(c) for c in chunks)
    frames, error = feed_all(chunked(data, cuts), frame_max)
    assert error is None
    deliver = decode_method(frames[0][2])
    assert isinstance(deliver, commands.Basic.Deliver)
    assert (deliver.consumer_tag, deliver.delivery_tag, deliver.redelivered) == (tag, delivery_tag, redelivered)
    assert (deliver.exchange, deliver.routing_key) == (exchange, key)
    assert frames[1] == (FRAME_HEADER, 5, raw_header)
    bodies = [payload for frame_type, _, payload in frames[2:] if frame_type == FRAME_BODY]
    assert len(bodies) == len(frames) - 2
    assert b"".join(bodies) == body
    assert all(0 < len(b) <= frame_max - 8 for b in bodies)


# --------------------------------------------------------------------------- (c) mutated valid frames


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(encode_item(*item) for item in draw(frame_sequences())))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xCE, 0xFF]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            del data[pos : pos + draw(st.integers(1, 4))]
    return bytes(data)


@SETTINGS
@given(data=mutated(), cuts=st.lists(st.integers(0, 10**4), max_size=6))
def test_mutated_frames_only_raise_amqp_errors(data: bytes, cuts: list[int]) -> None:
    whole = feed_all([data])
    split = feed_all(chunked(data, cuts))
    assert split[0] == whole[0] and same_error(split[1], whole[1])
    decode_everything(whole[0])


@SETTINGS
@given(
    method=methods(),
    pos=st.integers(0, 10**4),
    octets=st.binary(min_size=1, max_size=3),
    op=st.sampled_from(["replace", "insert", "truncate"]),
)
def test_mutated_method_payloads_only_raise_amqp_errors(
    method: tuple[int, type, dict[str, Any]], pos: int, octets: bytes, op: str
) -> None:
    _, method_class, fields = method
    payload = bytearray(encode_method(1, build(method_class, **fields))[7:-1])
    pos = 4 + pos % max(1, len(payload) - 3)  # keep the class and method ids
    if op == "replace":
        payload[pos : pos + len(octets)] = octets
    elif op == "insert":
        payload[pos:pos] = octets
    else:
        del payload[pos:]
    with contextlib.suppress(AMQPError):
        decode_method(bytes(payload))


@SETTINGS
@given(header=content_headers(), pos=st.integers(0, 10**4), octets=st.binary(min_size=1, max_size=3))
def test_mutated_properties_only_raise_amqp_errors(header: tuple[bytes, int, dict[str, Any]], pos: int, octets: bytes) -> None:
    raw = bytearray(header[0])
    pos = 12 + pos % max(1, len(raw) - 11)
    raw[pos : pos + len(octets)] = octets
    decode_everything([(FRAME_HEADER, 1, bytes(raw))])
