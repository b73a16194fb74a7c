"""Unit tests of the sans-IO frame codec (amqp_server.protocol.frame_codec) and Message.

Encoding goes through frame_codec; decoding is checked twice, by frame_codec's own
FrameReader/decode_method/decode_properties and by pamqp, so that the two sides are
checked by different code. Error texts are RabbitMQ 3.10's, recorded from a real broker
with raw sockets (recorded against RabbitMQ 3.10.8).
"""

from __future__ import annotations

import datetime
import struct
from decimal import Decimal
from typing import Any

import pytest
from pamqp import commands, encode
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from amqp_server.core import message as message_module
from amqp_server.core.message import Message
from amqp_server.protocol.content import decode_properties
from amqp_server.protocol.errors import (
    COMMAND_INVALID,
    FRAME_ERROR,
    INTERNAL_ERROR,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    ChannelError,
    ConnectionError,
)
from amqp_server.protocol.frame_codec import (
    BASIC_ACK,
    BASIC_NACK,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    HEARTBEAT_FRAME,
    Ack,
    FrameReader,
    Publish,
    build,
    content_frames,
    decode_content_header,
    decode_method,
    deliver_prefix,
    encode_ack,
    encode_deliver,
    encode_get_ok,
    encode_method,
    encode_method_payload,
    encode_return,
    frame,
    short_str,
)
from amqp_server.protocol.tables import decode_table, encode_table

FRAME_MAX = 131072
UTC = datetime.UTC

# --------------------------------------------------------------------------- helpers


def frame_bounds(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(end offset, type, channel, payload) of each frame, parsed independently of FrameReader."""
    out = []
    pos = 0
    while pos < len(data):
        frame_type, channel, size = struct.unpack_from(">BHI", data, pos)
        end = pos + 7 + size
        assert data[end] == 0xCE
        out.append((end, frame_type, channel, data[pos + 7 : end]))
        pos = end + 1
    assert pos == len(data)
    return out


def feed_bytewise(data: bytes, frame_max: int = FRAME_MAX) -> list[tuple[int, int, bytes]]:
    """Feed ``data`` one byte at a time: nothing may come out before a frame's end octet,
    and exactly that frame must come out with it."""
    reader = FrameReader(frame_max)
    expected = {end: (frame_type, channel, payload) for end, frame_type, channel, payload in frame_bounds(data)}
    frames = []
    for i in range(len(data)):
        out = reader.feed(data[i : i + 1])
        if i in expected:
            assert out == [expected[i]], f"at byte {i}"
            assert reader.buffered == 0
        else:
            assert out == [], f"frame emitted early at byte {i}"
        frames.extend(out)
    assert reader.buffered == 0
    return frames


def pamqp_frames(data: bytes) -> list[tuple[int, Any]]:
    """(channel, pamqp frame object) for each frame in ``data``."""
    out = []
    while data:
        consumed, channel, value = pamqp_frame.unmarshal(data)
        out.append((channel, value))
        data = data[consumed:]
    return out


def raw_frame(frame_type: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def header_payload(body_size: int, flags: int, props: bytes = b"", class_id: int = 60, weight: int = 0) -> bytes:
    return struct.pack(">HHQH", class_id, weight, body_size, flags) + props


def lstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def sstr(data: bytes) -> bytes:
    return bytes([len(data)]) + data


def table(*entries: bytes) -> bytes:
    """A field table (with its length) from raw ``key + type + value`` entries."""
    return lstr(b"".join(entries))


def entry(key: bytes, kind: bytes, value: bytes) -> bytes:
    return sstr(key) + kind + value


def raises(payload_fn: Any, *args: Any) -> ConnectionError:
    with pytest.raises(ConnectionError) as info:
        payload_fn(*args)
    return info.value


# --------------------------------------------------------------------------- methods

SAMPLE_TABLE: dict[str, Any] = {
    "bool": True,
    "byte": -5,
    "short": -300,
    "ushort": 40000,
    "int": -70000,
    "uint": 3_000_000_000,
    "long": -(2**40),
    "float": 1.5,
    "decimal": Decimal("3.14"),
    "str": "ünïcødé ✓",
    "nested": {"list": [1, "two", {"three": None}, []], "empty": {}},
    "ts": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    "void": None,
}

SHORTSTRS = ("naïve-名前.é", "amq.gen-" + "x" * 200, "", "ascii")


def sample_fields(method_class: type, variant: int) -> dict[str, Any]:
    """Non-default values for every field, so that a field decoded from the wrong offset shows."""
    values: dict[str, Any] = {}
    for i, name in enumerate(method_class.__slots__):
        kind = method_class.amqp_type(name)
        if kind == "bit":
            values[name] = (i + variant) % 2 == 0
        elif kind == "octet":
            values[name] = 200 + variant
        elif kind == "short":
            values[name] = 0xBEEF - variant
        elif kind == "long":
            values[name] = 0xDEADBEEF - variant
        elif kind == "longlong":
            values[name] = 2**63 - 2 - variant  # pamqp reads longlong as signed
        elif kind == "shortstr":
            values[name] = SHORTSTRS[(i + variant) % len(SHORTSTRS)]
        elif kind == "longstr":
            values[name] = "long ✓ string " * (variant + 1)
        elif kind == "table":
            values[name] = SAMPLE_TABLE if variant == 0 else {}
        else:  # pragma: no cover - every method field type is listed above
            raise AssertionError(kind)
    return values


ALL_METHODS = sorted(commands.INDEX_MAPPING.items())


@pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")  # pamqp, basic.recover-async
@pytest.mark.parametrize("variant", [0, 1])
@pytest.mark.parametrize(("index", "method_class"), ALL_METHODS, ids=[cls.name for _, cls in ALL_METHODS])
def test_every_method_round_trips(index: int, method_class: type, variant: int) -> None:
    fields = sample_fields(method_class, variant)
    data = encode_method(7, build(method_class, **fields))
    [(frame_type, channel, payload)] = feed_bytewise(data)
    assert (frame_type, channel) == (FRAME_METHOD, 7)
    decoded = decode_method(payload)
    if isinstance(decoded, Publish):
        assert (decoded.exchange, decoded.routing_key) == (fields["exchange"], fields["routing_key"])
        assert (decoded.mandatory, decoded.immediate) == (fields["mandatory"], fields["immediate"])
        assert decoded.exchange_and_key == short_str(fields["exchange"]) + short_str(fields["routing_key"])
    elif isinstance(decoded, Ack):
        assert decoded.method_id == index
        assert decoded.delivery_tag == fields["delivery_tag"]
        assert decoded.requeue == fields.get("requeue", False)
        assert decoded.multiple == fields.get("multiple", False)
    else:
        assert type(decoded) is method_class
        assert {name: getattr(decoded, name) for name in method_class.__slots__} == fields
    # pamqp reads the same bytes the same way.
    [(pamqp_channel, pamqp_method)] = pamqp_frames(data)
    assert pamqp_channel == 7 and type(pamqp_method) is method_class
    assert {name: getattr(pamqp_method, name) for name in method_class.__slots__} == fields


def test_methods_with_unicode_names_up_to_255_bytes() -> None:
    """RabbitMQ allows any UTF-8 up to 255 bytes in names; pamqp's validation would refuse them."""
    name = "é" * 127 + "x"  # 255 bytes of UTF-8
    assert len(name.encode()) == 255
    with pytest.raises(ValueError):
        commands.Exchange.Declare(exchange=name)  # pamqp's own validation
    cases = [
        build(commands.Exchange.Declare, exchange=name, exchange_type="topic", durable=True),
        build(commands.Queue.Declare, queue="队列-" + name[:100], arguments={"x-ñame": name}),
        build(commands.Queue.Bind, queue=name, exchange="交换", routing_key="ключ.*.#"),
        build(commands.Basic.Consume, queue=name, consumer_tag="étiquette"),
        build(commands.Queue.DeclareOk, queue=name, message_count=3, consumer_count=1),
    ]
    data = b"".join(encode_method(1, method) for method in cases)
    frames = feed_bytewise(data)
    for method, (_, _, payload) in zip(cases, frames, strict=True):
        decoded = decode_method(payload)
        assert {s: getattr(decoded, s) for s in decoded.__slots__} == {s: getattr(method, s) for s in method.__slots__}


def test_publish_with_unicode_names_keeps_the_raw_shortstrs() -> None:
    exchange, key = "échange-" + "é" * 100, "clé.ключ." + "z" * 200
    key = key.encode()[:255].decode("utf-8", "ignore")
    payload = encode_method_payload(build(commands.Basic.Publish, exchange=exchange, routing_key=key, mandatory=True))
    publish = decode_method(payload)
    assert isinstance(publish, Publish)
    assert (publish.exchange, publish.routing_key, publish.mandatory, publish.immediate) == (exchange, key, True, False)
    assert publish.exchange_and_key == short_str(exchange) + short_str(key)


def test_publish_names_need_not_be_utf8() -> None:
    """RabbitMQ takes basic.publish's names as opaque bytes (it answers a publish to exchange
    b'\\xff' with 404 "no exchange '\\xff'"), so they decode without an error."""
    payload = struct.pack(">HH", 60, 40) + b"\x00\x00" + sstr(b"\xff") + sstr(b"k\xfe") + b"\x00"
    publish = decode_method(payload)
    assert isinstance(publish, Publish)
    assert publish.exchange == "\ufffd" and publish.routing_key == "k\ufffd"
    assert publish.exchange_and_key == sstr(b"\xff") + sstr(b"k\xfe")


def test_short_string_longer_than_255_bytes_is_refused() -> None:
    assert short_str("é" * 127 + "x") == b"\xff" + ("é" * 127 + "x").encode()
    with pytest.raises(ValueError):
        short_str("é" * 128)


@pytest.mark.parametrize(
    ("method_id_", "multiple"), [(BASIC_ACK, False), (BASIC_ACK, True), (BASIC_NACK, True), (BASIC_NACK, False)]
)
def test_encode_ack(method_id_: int, multiple: bool) -> None:
    data = encode_ack(3, method_id_, 2**64 - 1, multiple)
    [(_, channel, payload)] = feed_bytewise(data)
    ack = decode_method(payload)
    assert isinstance(ack, Ack)
    assert (channel, ack.method_id, ack.delivery_tag, ack.multiple) == (3, method_id_, 2**64 - 1, multiple)
    [(_, method)] = pamqp_frames(data)
    assert method.delivery_tag % 2**64 == 2**64 - 1 and method.multiple == multiple  # pamqp: signed


def test_unsigned_longlong_fields() -> None:
    """Delivery tags are unsigned 64-bit; pamqp's encoder would refuse 2**63 and above."""
    deliver = build(commands.Basic.Deliver, consumer_tag="c", delivery_tag=2**64 - 1, exchange="e", routing_key="r")
    decoded = decode_method(encode_method_payload(deliver))
    assert decoded.delivery_tag == 2**64 - 1


def test_reject_reads_requeue_from_bit_0() -> None:
    payload = struct.pack(">HHQB", 60, 90, 5, 1)
    ack = decode_method(payload)
    assert isinstance(ack, Ack) and ack.name == "Basic.Reject"
    assert (ack.delivery_tag, ack.multiple, ack.requeue) == (5, False, True)
    nack = decode_method(struct.pack(">HHQB", 60, 120, 6, 3))
    assert isinstance(nack, Ack) and nack.name == "Basic.Nack" and nack.multiple and nack.requeue


# --------------------------------------------------------------------------- content

ALL_PROPERTIES: dict[str, Any] = {
    "content_type": "application/json; charset=utf-8",
    "content_encoding": "gzip",
    "headers": SAMPLE_TABLE,
    "delivery_mode": 2,
    "priority": 9,
    "correlation_id": "corrélation",
    "reply_to": "amq.rabbitmq.reply-to",
    "expiration": "60000",
    "message_id": "id-ü-1",
    "timestamp": datetime.datetime(2023, 5, 6, 7, 8, 9, tzinfo=UTC),
    "message_type": "kind",
    "user_id": "guest",
    "app_id": "tests",
    "cluster_id": "cluster",
}


def basic_properties(**props: Any) -> commands.Basic.Properties:
    """pamqp's Basic.Properties without its validation (which refuses a cluster-id)."""
    properties = commands.Basic.Properties()
    for name, value in props.items():
        setattr(properties, name, value)
    return properties


def test_content_header_with_every_property_round_trips() -> None:
    header = ContentHeader(0, 12345, basic_properties(**ALL_PROPERTIES)).marshal()
    data = frame(FRAME_HEADER, 2, header)
    [(frame_type, channel, payload)] = feed_bytewise(data)
    assert (frame_type, channel, payload) == (FRAME_HEADER, 2, header)
    assert decode_content_header(payload) == (60, 12345)
    assert decode_properties(payload) == ALL_PROPERTIES
    [(_, pamqp_header)] = pamqp_frames(data)
    assert pamqp_header.body_size == 12345
    assert {k: getattr(pamqp_header.properties, k) for k in ALL_PROPERTIES} == ALL_PROPERTIES


@pytest.mark.parametrize("name", sorted(ALL_PROPERTIES))
def test_each_property_alone(name: str) -> None:
    header = ContentHeader(0, 1, basic_properties(**{name: ALL_PROPERTIES[name]})).marshal()
    assert decode_properties(header) == {name: ALL_PROPERTIES[name]}


def test_no_properties() -> None:
    header = ContentHeader(0, 0, commands.Basic.Properties()).marshal()
    assert header == header_payload(0, 0)
    assert decode_properties(header) == {}


def test_body_and_heartbeat_frames() -> None:
    data = frame(FRAME_BODY, 9, b"\x00\xce\xff" * 100) + HEARTBEAT_FRAME + frame(FRAME_BODY, 1, b"")
    frames = feed_bytewise(data)
    assert frames == [(FRAME_BODY, 9, b"\x00\xce\xff" * 100), (FRAME_HEARTBEAT, 0, b""), (FRAME_BODY, 1, b"")]
    parsed = pamqp_frames(data[: -len(frame(FRAME_BODY, 1, b""))])  # pamqp cannot read an empty body
    assert isinstance(parsed[0][1], ContentBody) and parsed[0][1].value == b"\x00\xce\xff" * 100
    assert isinstance(parsed[1][1], Heartbeat)


def content_stream(method_chunks: list[bytes]) -> bytes:
    return b"".join(bytes(chunk) for chunk in method_chunks)


@pytest.mark.parametrize("frame_max", [FRAME_MIN_SIZE, 5000])
@pytest.mark.parametrize("extra", [-1, 0, 1])
@pytest.mark.parametrize("chunks", [0, 1, 2, 3])
def test_body_split_at_frame_max(frame_max: int, chunks: int, extra: int) -> None:
    """Every body frame is at most frame_max octets in total, the last may be short, and an
    empty body has no body frame at all."""
    chunk = frame_max - 8
    size = max(0, chunks * chunk + extra)
    body = bytes(i % 251 for i in range(size))
    header = ContentHeader(0, size, commands.Basic.Properties(content_type="a/b")).marshal()
    prefix = deliver_prefix("ctag-ü")
    exchange_and_key = short_str("ex") + short_str("rk")
    data = content_stream(encode_deliver(4, prefix, 17, True, exchange_and_key, header, body, frame_max))
    frames = feed_bytewise(data, frame_max)
    bodies = [payload for frame_type, _, payload in frames if frame_type == FRAME_BODY]
    assert b"".join(bodies) == body
    assert len(bodies) == -(-size // chunk)  # ceil; 0 for an empty body
    assert all(len(b) + 8 <= frame_max for b in bodies)
    assert all(len(b) == chunk for b in bodies[:-1])
    assert [f[0] for f in frames] == [FRAME_METHOD, FRAME_HEADER] + [FRAME_BODY] * len(bodies)
    assert all(channel == 4 for _, channel, _ in frames)
    parsed = pamqp_frames(data)
    deliver = parsed[0][1]
    assert isinstance(deliver, commands.Basic.Deliver)
    assert (deliver.consumer_tag, deliver.delivery_tag, deliver.redelivered) == ("ctag-ü", 17, True)
    assert (deliver.exchange, deliver.routing_key) == ("ex", "rk")
    assert parsed[1][1].body_size == size and parsed[1][1].properties.content_type == "a/b"


def test_content_frames_chunk_boundaries_exactly() -> None:
    header = header_payload(8, 0)
    for body, expected in [
        (b"", []),
        (b"x" * 8, [b"x" * 8]),
        (b"x" * 9, [b"x" * 8, b"x"]),
        (b"x" * 16, [b"x" * 8, b"x" * 8]),
    ]:
        # content_frames starts with the frame-end octet of the method frame before it.
        chunks = content_frames(1, header, body, 16)
        data = content_stream(chunks)
        assert data[:1] == b"\xce"
        frames = feed_bytewise(data[1:], 16)
        assert frames == [(FRAME_HEADER, 1, header)] + [(FRAME_BODY, 1, part) for part in expected]


def test_encode_get_ok() -> None:
    header = ContentHeader(0, 5, commands.Basic.Properties(headers={"k": "v"}, delivery_mode=2)).marshal()
    exchange_and_key = short_str("交换") + short_str("ключ")
    data = content_stream(encode_get_ok(2, 99, False, exchange_and_key, 7, header, b"hello", FRAME_MAX))
    frames = feed_bytewise(data)
    method = decode_method(frames[0][2])
    assert isinstance(method, commands.Basic.GetOk)
    assert (method.delivery_tag, method.redelivered, method.message_count) == (99, False, 7)
    assert (method.exchange, method.routing_key) == ("交换", "ключ")
    assert frames[1] == (FRAME_HEADER, 2, header)
    assert frames[2] == (FRAME_BODY, 2, b"hello")
    assert decode_properties(frames[1][2]) == {"headers": {"k": "v"}, "delivery_mode": 2}
    [(_, get_ok), (_, content_header), (_, body)] = pamqp_frames(data)
    assert get_ok.message_count == 7 and content_header.body_size == 5 and body.value == b"hello"


def test_encode_return() -> None:
    header = header_payload(0, 0)
    exchange_and_key = short_str("") + short_str("no-route-é")
    data = content_stream(encode_return(1, 312, "NO_ROUTE", exchange_and_key, header, b"", FRAME_MAX))
    frames = feed_bytewise(data)
    assert len(frames) == 2  # no body frame for an empty body
    method = decode_method(frames[0][2])
    assert isinstance(method, commands.Basic.Return)
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key) == (
        312,
        "NO_ROUTE",
        "",
        "no-route-é",
    )
    [(_, returned), (_, content_header)] = pamqp_frames(data)
    assert returned.reply_code == 312 and content_header.body_size == 0


def test_many_frames_in_one_feed_and_split_anywhere() -> None:
    data = (
        encode_method(1, build(commands.Basic.Qos, prefetch_count=10))
        + HEARTBEAT_FRAME
        + content_stream(encode_deliver(1, deliver_prefix("t"), 1, False, b"\x00\x01k", header_payload(3, 0), b"abc", 4096))
    )
    whole = FrameReader(FRAME_MAX).feed(data)
    assert len(whole) == 5
    for cut in range(len(data) + 1):
        reader = FrameReader(FRAME_MAX)
        assert reader.feed(data[:cut]) + reader.feed(data[cut:]) == whole


# --------------------------------------------------------------------------- frame errors


def frame_error(data: bytes, frame_max: int = FRAME_MAX) -> ConnectionError:
    reader = FrameReader(frame_max)
    with pytest.raises(ConnectionError) as info:
        reader.feed(data)
    assert reader.buffered == 0
    assert info.value.code == FRAME_ERROR and info.value.method == (0, 0)
    return info.value


# (frame, RabbitMQ 3.10.8's reply text), recorded with raw sockets against a real broker.
RABBITMQ_FRAME_ERRORS = [
    (
        raw_frame(1, 1, encode_method_payload(commands.Basic.Qos(prefetch_count=1)), b"\x00"),
        "FRAME_ERROR - type 1, all octets = <<0,60,0,10,0,0,0,0,0,1,0>>: {invalid_frame_end_marker,0}",
    ),
    (raw_frame(8, 0, b"", b"\xff"), "FRAME_ERROR - type 8, all octets = <<>>: {invalid_frame_end_marker,255}"),
    (
        raw_frame(3, 1, b'a"b\\c\nd', b"\x01"),
        'FRAME_ERROR - type 3, all octets = <<"a\\"b\\\\c\\nd">>: {invalid_frame_end_marker,1}',
    ),
    (
        raw_frame(3, 1, b"a\t\x0b\x08\x0c\x1b\r", b"\x00"),
        'FRAME_ERROR - type 3, all octets = <<"a\\t\\v\\b\\f\\e\\r">>: {invalid_frame_end_marker,0}',
    ),
    (raw_frame(3, 1, b"a\x7f", b"\x00"), "FRAME_ERROR - type 3, all octets = <<97,127>>: {invalid_frame_end_marker,0}"),
    (
        raw_frame(3, 1, b"abcdefghijklmnopq", b"\x01"),
        'FRAME_ERROR - type 3, first 16 octets = <<"abcdefghijklmnop">>: {invalid_frame_end_marker,1}',
    ),
    # ~p wraps at 80 columns: the binary, then the error tuple, go onto an indented line.
    (
        raw_frame(1, 1, b"\x80" * 16, b"\x00"),
        "FRAME_ERROR - type 1, all octets = <<128,128,128,128,128,128,128,128,128,128,128,128,128,128,\n"
        + " " * 23
        + "128,128>>: {invalid_frame_end_marker,0}",
    ),
    (
        raw_frame(100, 1, b"\x80" * 17, b"\x00"),
        "FRAME_ERROR - type 100, first 16 octets = <<128,128,128,128,128,128,128,128,128,128,128,128,\n"
        + " " * 30
        + "128,128,128,128>>: {invalid_frame_end_marker,0}",
    ),
    (
        raw_frame(1, 1, b"\x07" * 16, b"\x00"),
        "FRAME_ERROR - type 1, all octets = <<7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7>>: {invalid_frame_end_marker,\n"
        + " " * 59
        + "0}",
    ),
    (
        raw_frame(1, 1, b"\x80" * 13, b"\x00"),
        "FRAME_ERROR - type 1, all octets = <<128,128,128,128,128,128,128,128,128,128,128,128,128>>: "
        "{invalid_frame_end_marker,\n" + " " * 79 + "0}",
    ),
    (
        raw_frame(255, 1, b"\xc8" * 15 + b"\x00"),
        "FRAME_ERROR - type 255, all octets = <<200,200,200,200,200,200,200,200,200,200,200,200,200,\n"
        + " " * 25
        + "200,200,0>>: unknown_frame",
    ),
    # The frame-end octet is checked before the frame type.
    (raw_frame(9, 1, b"abc", b"\x00"), 'FRAME_ERROR - type 9, all octets = <<"abc">>: {invalid_frame_end_marker,0}'),
    (raw_frame(9, 1, b"abc"), 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame'),
    (raw_frame(0, 1, b"\x00\x00\x00"), "FRAME_ERROR - type 0, all octets = <<0,0,0>>: unknown_frame"),
    (raw_frame(9, 0, b""), "FRAME_ERROR - type 9, all octets = <<>>: unknown_frame"),
    # Payloads too short for their type, and a heartbeat with a payload, are unknown frames.
    (raw_frame(8, 0, b"ab"), 'FRAME_ERROR - type 8, all octets = <<"ab">>: unknown_frame'),
    (raw_frame(8, 0, b"x" * 20), 'FRAME_ERROR - type 8, first 16 octets = <<"xxxxxxxxxxxxxxxx">>: unknown_frame'),
    (raw_frame(1, 1, b"\x00"), "FRAME_ERROR - type 1, all octets = <<0>>: unknown_frame"),
    (raw_frame(1, 1, b"\x00\x3c\x00"), "FRAME_ERROR - type 1, all octets = <<0,60,0>>: unknown_frame"),
    (raw_frame(1, 1, b""), "FRAME_ERROR - type 1, all octets = <<>>: unknown_frame"),
    (raw_frame(2, 1, b"\x00\x3c" + b"\x00" * 9), "FRAME_ERROR - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0>>: unknown_frame"),
]


@pytest.mark.parametrize(("data", "text"), RABBITMQ_FRAME_ERRORS)
def test_frame_errors_have_rabbitmq_texts(data: bytes, text: str) -> None:
    assert frame_error(data).reply_text == text


def test_printable_latin1_octets_print_as_a_string() -> None:
    # RabbitMQ sends these octets raw (latin-1); a str reply text carries the same characters.
    error = frame_error(raw_frame(3, 1, b"ab\xe9\xa0", b"\x01"))
    assert error.explanation == 'type 3, all octets = <<"ab\xe9\xa0">>: {invalid_frame_end_marker,1}'
    error = frame_error(raw_frame(3, 1, b"a\x9f", b"\x01"))
    assert error.explanation == "type 3, all octets = <<97,159>>: {invalid_frame_end_marker,1}"


@pytest.mark.parametrize(("frame_max", "size"), [(FRAME_MAX, 131073), (4096, 4097), (4096, 5000), (4096, 2**32 - 1)])
def test_frame_too_large_is_refused_from_its_header_alone(frame_max: int, size: int) -> None:
    """The size is checked as soon as the 7-octet header is in, before any payload arrives."""
    reader = FrameReader(frame_max)
    assert reader.feed(b"\x03\x00\x01") == []
    with pytest.raises(ConnectionError) as info:
        reader.feed(struct.pack(">I", size))
    assert info.value.code == FRAME_ERROR and info.value.method == (0, 0)
    assert info.value.reply_text == (
        f"FRAME_ERROR - type 3, all octets = <<>>: {{frame_too_large,{size},{frame_max - 8}}}"
    )
    assert reader.buffered == 0


@pytest.mark.parametrize("frame_max", [FRAME_MIN_SIZE, FRAME_MAX])
def test_payload_up_to_frame_max_is_accepted(frame_max: int) -> None:
    """RabbitMQ refuses a payload larger than frame_max, not a frame: it tolerates 8 octets
    more than the negotiated frame size (recorded: a 131072-octet payload is accepted)."""
    for size in (frame_max - 8, frame_max - 7, frame_max):
        assert FrameReader(frame_max).feed(raw_frame(3, 1, b"x" * size)) == [(3, 1, b"x" * size)]
    assert frame_error(raw_frame(1, 1, b"\x00" * (frame_max + 1)), frame_max).reply_text.endswith(
        f"{{frame_too_large,{frame_max + 1},{frame_max - 8}}}"
    )


def test_frame_max_can_grow_after_tune() -> None:
    reader = FrameReader(FRAME_MIN_SIZE)
    assert reader.feed(raw_frame(3, 1, b"x" * 4096)) == [(3, 1, b"x" * 4096)]
    reader.frame_max = FRAME_MAX
    assert reader.feed(raw_frame(3, 1, b"y" * 100000)) == [(3, 1, b"y" * 100000)]


def test_error_after_good_frames_in_the_same_feed() -> None:
    reader = FrameReader(FRAME_MAX)
    with pytest.raises(ConnectionError):
        reader.feed(HEARTBEAT_FRAME + raw_frame(1, 1, b"\x00" * 4, b"\x00"))
    assert reader.buffered == 0


# --------------------------------------------------------------------------- method decoding errors


def method_error(payload: bytes) -> ConnectionError:
    with pytest.raises(ConnectionError) as info:
        decode_method(payload)
    return info.value


# (method payload, RabbitMQ 3.10.8's reply text, class id, method id)
RABBITMQ_METHOD_ERRORS = [
    (struct.pack(">HH", 50, 10) + b"\x00", "FRAME_ERROR - cannot decode <<0>>", 50, 10),
    (struct.pack(">HH", 60, 10) + b"\x00" * 7 + b"\xff", "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,255>>", 60, 10),
    (struct.pack(">HH", 60, 40) + b"\x00\x00\x03ab", "FRAME_ERROR - cannot decode <<0,0,3,97,98>>", 60, 40),
    (struct.pack(">HH", 60, 40) + b"\x00" * 6, "FRAME_ERROR - cannot decode <<0,0,0,0,0,0>>", 60, 40),
    (struct.pack(">HH", 60, 40) + b"\x00" * 4, "FRAME_ERROR - cannot decode <<0,0,0,0>>", 60, 40),
    (struct.pack(">HH", 60, 80) + b"\x00" * 3, "FRAME_ERROR - cannot decode <<0,0,0>>", 60, 80),
    (struct.pack(">HH", 60, 80) + b"\x00" * 10, "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,0,0,0>>", 60, 80),
    (struct.pack(">HH", 20, 41) + b"\x00", "FRAME_ERROR - cannot decode <<0>>", 20, 41),
    (
        struct.pack(">HH", 50, 10) + b"\x00\x00\x00\x00\x00\x00\x00\x09\x01aV",
        "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,9,1,97,86>>",
        50,
        10,
    ),
    (
        struct.pack(">HH", 60, 10) + bytes(range(200, 230)),
        "FRAME_ERROR - cannot decode <<" + ",".join(map(str, range(200, 230))) + ">>",
        60,
        10,
    ),
    # Shortstrs must be UTF-8 everywhere but in basic.publish.
    (struct.pack(">HH", 50, 10) + b"\x00\x00\x02\xff\xfe\x04\x00\x00\x00\x00", "FRAME_ERROR - Malformed UTF-8 in shortstr", 0, 0),
    (
        struct.pack(">HH", 60, 20) + b"\x00\x00\x00\x01\xff\x00\x00\x00\x00\x00",
        "FRAME_ERROR - Malformed UTF-8 in shortstr",
        0,
        0,
    ),
    (struct.pack(">HH", 20, 40) + b"\x00\xc8\x01\xff\x00\x00\x00\x00", "FRAME_ERROR - Malformed UTF-8 in shortstr", 0, 0),
    (
        struct.pack(">HH", 40, 10) + b"\x00\x00\x02\xc0\x80\x06direct\x00\x00\x00\x00\x00",
        "FRAME_ERROR - Malformed UTF-8 in shortstr",
        0,
        0,
    ),
]


@pytest.mark.parametrize(("payload", "text", "class_id", "method_id_"), RABBITMQ_METHOD_ERRORS)
def test_method_errors_have_rabbitmq_texts(payload: bytes, text: str, class_id: int, method_id_: int) -> None:
    error = method_error(payload)
    assert (error.code, error.reply_text, error.method) == (FRAME_ERROR, text, (class_id, method_id_))


def test_unknown_method_is_command_invalid() -> None:
    # RabbitMQ drops the connection without a close frame here; the closest reply is 503.
    for payload in (struct.pack(">HH", 99, 1), struct.pack(">HH", 60, 999), struct.pack(">HH", 10, 999) + b"xyz"):
        assert method_error(payload).code == COMMAND_INVALID


def test_method_payload_shorter_than_its_ids() -> None:
    error = method_error(b"\x00\x3c")
    assert error.reply_text == "FRAME_ERROR - type 1, all octets = <<0,60>>: unknown_frame"


def test_bits_take_any_octet_value() -> None:
    qos = decode_method(struct.pack(">HHIHB", 60, 10, 0, 0, 0xFF))
    assert isinstance(qos, commands.Basic.Qos) and qos.global_ is True


def test_longstr_that_is_not_utf8_stays_bytes() -> None:
    payload = encode_method_payload(build(commands.Connection.StartOk, mechanism="PLAIN", response=b"\x00g\xff\x00p"))
    start_ok = decode_method(payload)
    assert start_ok.response == b"\x00g\xff\x00p"
    assert start_ok.mechanism == "PLAIN"


@pytest.mark.parametrize(
    "arguments",
    [
        table(entry(b"a", b"Z", b"12")),  # unknown type (RabbitMQ: connection dropped)
        table(entry(b"a", b"S", b"\x00\x00\x00\x09x")),  # value longer than the table
        table(entry(b"a", b"V", b"")) + b"",  # fine, see below
        lstr(b"\x01aS\x00"),  # truncated value length
        table(entry(b"a", b"\x00", b"")),  # type 0 (pamqp reads it as void, RabbitMQ refuses)
        table(entry(b"a", b"d", struct.pack(">d", float("nan")))),  # Erlang has no NaN
    ],
)
def test_bad_argument_tables(arguments: bytes) -> None:
    payload = struct.pack(">HH", 50, 10) + b"\x00\x00\x01q\x00" + arguments
    if arguments == table(entry(b"a", b"V", b"")):
        assert decode_method(payload).arguments == {"a": None}
        return
    error = method_error(payload)
    assert error.code == FRAME_ERROR and error.method == (50, 10)
    assert error.explanation.startswith("cannot decode <<")


def test_deeply_nested_table_is_an_amqp_error_not_a_recursion_error() -> None:
    value = b"V"
    for _ in range(3000):
        value = b"A" + lstr(value)
    payload = struct.pack(">HH", 50, 10) + b"\x00\x00\x01q\x00" + table(entry(b"a", b"A", value[1:]))
    assert method_error(payload).code == FRAME_ERROR
    nested = b"V"
    for _ in range(20):
        nested = b"A" + lstr(nested)
    ok = struct.pack(">HH", 50, 10) + b"\x00\x00\x01q\x00" + table(entry(b"a", b"A", nested[1:]))
    expected: Any = None
    for _ in range(20):
        expected = [expected]
    assert decode_method(ok).arguments["a"] == expected


def test_every_truncation_of_every_method_is_an_amqp_error() -> None:
    for _, method_class in ALL_METHODS:
        payload = encode_method_payload(build(method_class, **sample_fields(method_class, 0)))
        for cut in range(len(payload)):
            with pytest.raises(ConnectionError):  # no strict prefix of a method is one
                decode_method(payload[:cut])
        with pytest.raises(ConnectionError):
            decode_method(payload + b"\x00")  # trailing octet


# --------------------------------------------------------------------------- content header errors


def test_content_header_weight_must_be_zero() -> None:
    with pytest.raises(ConnectionError) as info:
        decode_content_header(header_payload(1, 0, weight=5))
    assert (info.value.code, info.value.method) == (UNEXPECTED_FRAME, (60, 40))
    assert info.value.reply_text == (
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
    )


def test_content_header_without_flags() -> None:
    with pytest.raises(ConnectionError) as info:
        decode_content_header(header_payload(1, 0)[:12])
    assert info.value.code == INTERNAL_ERROR


@pytest.mark.parametrize(
    "header",
    [
        header_payload(1, 0x8001, b"\x00\x00\x03a/b"),  # flag continuation: RabbitMQ 541
        header_payload(1, 0x8000, b"\x03a/bXYZ"),  # octets after the last property
        header_payload(1, 0, b"XYZ"),
        header_payload(1, 0x8000, b"\x05abc"),  # truncated shortstr
        header_payload(1, 0x2000, table(entry(b"a", b"Z", b"12"))),  # unknown field type
        header_payload(1, 0x2000, lstr(b"\x01aS\x00\x00\x00\x09x")),  # value overruns the table
        header_payload(1, 0x2000, lstr(b"\x01aV\x00")),  # junk inside the table
        header_payload(1, 0x2000, table(entry(b"a", b"U", b"\x00\x01"))),  # 'U' is not a RabbitMQ type
        header_payload(1, 0x2000, table(entry(b"a", b"f", struct.pack(">f", float("inf"))))),
        header_payload(1, 0x0040, b"\x00" * 7),  # truncated timestamp
        header_payload(1, 0x1000),  # missing delivery-mode octet
        header_payload(1, 0xFFFC, b"\x05abc"),
        header_payload(1, 0, b"")[:13],
    ],
)
def test_bad_properties_are_internal_error(header: bytes) -> None:
    """RabbitMQ answers a publish whose properties do not decode with 541 INTERNAL_ERROR."""
    with pytest.raises(ConnectionError) as info:
        decode_properties(header)
    assert info.value.code == INTERNAL_ERROR


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        # Accepted by RabbitMQ (recorded): reserved flag bits, cluster-id, any shortstr octets,
        # any delivery-mode octet at this level, huge timestamps, every RabbitMQ field type.
        (header_payload(1, 0x0002), {}),
        (header_payload(1, 0x0004, b"\x02ci"), {"cluster_id": "ci"}),
        (header_payload(1, 0x8000, b"\x02\xff\xfe"), {"content_type": "\ufffd\ufffd"}),
        (header_payload(1, 0x1000, b"\x07"), {"delivery_mode": 7}),
        (header_payload(1, 0x0040, b"\xff" * 8), {"timestamp": 2**64 - 1}),
        (header_payload(1, 0x2000, lstr(b"\x01ab\x01\x01ab\x02")), {"headers": {"a": 2}}),
        (header_payload(1, 0x2000, table(entry(b"\xff", b"V", b""))), {"headers": {"\ufffd": None}}),
        (header_payload(1, 0x2000, table(entry(b"", b"V", b""))), {"headers": {"": None}}),
        (header_payload(1, 0x2000, table(entry(b"a", b"S", lstr(b"\xff")))), {"headers": {"a": b"\xff"}}),
        (header_payload(1, 0x2000, table(entry(b"a", b"x", lstr(b"Q")))), {"headers": {"a": bytearray(b"Q")}}),
        (header_payload(1, 0x2000, table(entry(b"a", b"t", b"\x02"))), {"headers": {"a": True}}),
        (header_payload(1, 0x2000, table(entry(b"a", b"u", b"\xff\xff"))), {"headers": {"a": 65535}}),
        (header_payload(1, 0x2000, table(entry(b"a", b"B", b"\xff"))), {"headers": {"a": 255}}),
        (header_payload(1, 0x2000, table(entry(b"a", b"i", b"\xff" * 4))), {"headers": {"a": 2**32 - 1}}),
        (header_payload(1, 0x2000, table(entry(b"a", b"L", b"\xff" * 8))), {"headers": {"a": -1}}),
        (header_payload(1, 0x2000, table(entry(b"a", b"D", b"\x02\x00\x00\x01\x3b"))), {"headers": {"a": Decimal("3.15")}}),
        (
            header_payload(1, 0x2000, table(entry(b"a", b"T", struct.pack(">Q", 1700000000)))),
            {"headers": {"a": datetime.datetime.fromtimestamp(1700000000, tz=UTC)}},
        ),
    ],
)
def test_properties_rabbitmq_accepts(props: bytes, expected: dict[str, Any]) -> None:
    assert decode_properties(props) == expected


def test_encode_table_round_trips_whatever_decode_table_makes() -> None:
    raw = table(
        entry(b"double", b"d", struct.pack(">d", 0.1)),
        entry(b"notutf8", b"S", lstr(b"\xff\xfe")),
        entry(b"bin", b"x", lstr(b"\x00\x01")),
        entry(b"arr", b"A", lstr(b"S" + lstr(b"\xff") + b"d" + struct.pack(">d", 2.5) + b"V")),
        entry(b"nested", b"F", table(entry(b"b", b"t", b"\x01"))),
    )
    decoded = decode_table(raw)
    assert decoded == {
        "double": 0.1,
        "notutf8": b"\xff\xfe",
        "bin": bytearray(b"\x00\x01"),
        "arr": [b"\xff", 2.5, None],
        "nested": {"b": True},
    }
    assert decode_table(encode_table(decoded)) == decoded


def test_encode_table_matches_pamqp_for_ordinary_tables() -> None:
    """Server tables (connection.start's server-properties) are encoded as pamqp did."""
    ordinary = {"product": "amqp-server", "capabilities": {"publisher_confirms": True, "x": 1}, "n": -70000}
    assert encode_table(ordinary) == encode.field_table(ordinary)
    start = build(commands.Connection.Start, server_properties=ordinary, mechanisms="PLAIN", locales="en_US")
    assert decode_method(encode_method_payload(start)).server_properties == ordinary


def test_decode_table_checks_its_length() -> None:
    assert decode_table(encode_table(SAMPLE_TABLE)) == SAMPLE_TABLE
    for bad in (b"\x00\x00", b"\x00\x00\x00\x05\x01aV", b"\x00\x00\x00\x02\x01aV"):
        with pytest.raises(ValueError):
            decode_table(bad)


# --------------------------------------------------------------------------- Message


def message(header: bytes, routing_key: str = "rk") -> Message:
    return Message("ex", routing_key, short_str("ex") + short_str(routing_key), header, b"body")


def props_header(**props: Any) -> bytes:
    return ContentHeader(0, 4, commands.Basic.Properties(**props)).marshal()


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The header payloads ``Message`` decodes properties from, in order."""
    seen: list[bytes] = []

    def counting(header: bytes) -> dict[str, Any]:
        seen.append(header)
        return decode_properties(header)

    monkeypatch.setattr(message_module, "decode_properties", counting)
    return seen


def test_properties_are_decoded_lazily_and_once(decodes: list[bytes]) -> None:
    msg = message(props_header(content_type="text/plain", headers={"a": 1}, user_id="guest"))
    assert msg.flags == 0x8000 | 0x2000 | 0x0010
    assert decodes == []
    assert msg.properties == {"content_type": "text/plain", "headers": {"a": 1}, "user_id": "guest"}
    assert msg.properties is msg.properties
    assert msg.headers == {"a": 1} and msg.user_id == "guest"
    assert decodes == [msg.header]


def test_absent_headers_and_user_id_need_no_decoding(decodes: list[bytes]) -> None:
    msg = message(header_payload(4, 0x8000, b"\xff"))  # malformed, but never decoded
    assert msg.headers is None and msg.user_id is None
    assert msg.routing_keys == ("rk",)
    assert decodes == []
    assert message(b"short").flags == 0
    with pytest.raises(ConnectionError):  # it is malformed: decoding it would have failed
        msg.properties  # noqa: B018


def test_cc_and_bcc_add_routing_keys_and_bcc_is_stripped() -> None:
    header = props_header(content_type="a/b", headers={"CC": ["c1", "c2"], "BCC": ["b1"], "x": 1}, priority=3)
    msg = message(header)
    assert msg.routing_keys == ("rk", "c1", "c2", "b1")
    # RabbitMQ removes BCC before delivery; everything else stays byte for byte.
    assert msg.headers == {"CC": ["c1", "c2"], "x": 1}
    assert msg.header == props_header(content_type="a/b", headers={"CC": ["c1", "c2"], "x": 1}, priority=3)
    assert msg.properties["priority"] == 3 and msg.properties["content_type"] == "a/b"
    # Asked again (exchange-to-exchange routing), the BCC keys are still there.
    assert msg.routing_keys == ("rk", "c1", "c2", "b1")


def test_only_bcc_leaves_an_empty_table() -> None:
    msg = message(props_header(headers={"BCC": ["b"]}))
    assert msg.routing_keys == ("rk", "b")
    assert msg.properties == {"headers": {}}  # as RabbitMQ delivers it: headers = {}


def test_cc_keeps_only_longstr_elements() -> None:
    raw = table(
        entry(
            b"CC",
            b"A",
            lstr(b"S" + lstr(b"k1") + b"I\x00\x00\x00\x05" + b"x" + lstr(b"k2") + b"S" + lstr(b"k\xff")),
        )
    )
    msg = message(header_payload(4, 0x2000, raw))
    assert msg.routing_keys == ("rk", "k1", "k\ufffd")


@pytest.mark.parametrize(
    ("value", "kind"),
    [(b"S" + lstr(b"q"), "longstr"), (b"I\x00\x00\x00\x05", "signedint"), (b"t\x01", "bool"), (b"F" + lstr(b""), "table")],
)
def test_cc_that_is_not_an_array_is_refused(value: bytes, kind: str) -> None:
    msg = message(header_payload(4, 0x2000, lstr(sstr(b"CC") + value)))
    with pytest.raises(ChannelError) as info:
        msg.routing_keys  # noqa: B018
    assert (info.value.code, info.value.method) == (PRECONDITION_FAILED, (60, 40))
    assert info.value.reply_text == f'PRECONDITION_FAILED - invalid message: {{unacceptable_type_in_header,"CC",{kind}}}'


@pytest.mark.parametrize("mode", [0, 3, 7, 255])
def test_check_refuses_unknown_delivery_mode(mode: int) -> None:
    msg = message(header_payload(4, 0x1000, bytes([mode])))
    with pytest.raises(ChannelError) as info:
        msg.check()
    assert info.value.reply_text == f"PRECONDITION_FAILED - invalid message: {{delivery_mode_unknown,{mode}}}"
    assert info.value.method == (60, 40)


def test_check_accepts_good_messages_and_strips_bcc() -> None:
    for mode in (1, 2):
        message(header_payload(4, 0x1000, bytes([mode]))).check()
    msg = message(props_header(headers={"BCC": ["b"], "k": "v"}))
    msg.check()
    assert msg.properties == {"headers": {"k": "v"}}


def test_check_refuses_bad_properties_with_541() -> None:
    with pytest.raises(ConnectionError) as info:
        message(header_payload(4, 0x8000, b"\x09ab")).check()
    assert info.value.code == INTERNAL_ERROR


def test_user_id_and_body_size() -> None:
    msg = message(props_header(user_id="güest"))
    assert msg.user_id == "güest" and msg.body_size == 4
