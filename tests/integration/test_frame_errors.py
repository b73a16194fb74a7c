"""Malformed and misplaced frames: each must close the connection with RabbitMQ's code, text
and class/method ids, as recorded from RabbitMQ 3.10.8 with the same bytes.

RabbitMQ's frame-error texts embed the offending payload as an Erlang term
(``type 1, all octets = <<0,60,...>>: {invalid_frame_end_marker,0}``), wrapped by Erlang's
pretty printer at 80 columns; the cases below include wrapped ones.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest
from conftest import BrokerHandle, start_broker
from pamqp import commands
from pamqp import header as pamqp_header
from rawamqp import RawClient

from amqp_server.protocol.frame_codec import encode_method_payload, frame

PUBLISH = b"\x00\x3c\x00\x28\x00\x00\x00\x01q\x00"  # basic.publish to "" with routing key "q"
QOS = commands.Basic.Qos()


@pytest.fixture(scope="module")
def quick() -> Iterator[BrokerHandle]:
    """A broker whose silent-close delay (3 s in RabbitMQ) takes a fifth of a second."""
    handle = start_broker(silent_close_delay=0.2)
    yield handle
    handle.stop()


@pytest.fixture
def client(broker: BrokerHandle) -> Iterator[RawClient]:
    """A raw client, logged in, with channel 1 open."""
    raw = RawClient.connected(broker.port)
    yield raw
    raw.close()


def header(body_size: int, class_id: int = 60, weight: int = 0) -> bytes:
    """A content-header payload without properties."""
    return struct.pack(">HHQH", class_id, weight, body_size, 0)


def closed_with(raw: RawClient, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
    close = raw.expect_close()
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (code, text, class_id, method_id)
    assert raw.wait_eof()


def still_open(raw: RawClient) -> None:
    raw.send(1, QOS)
    raw.expect(1, commands.Basic.QosOk)


# -- frame-level errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame_type", "channel", "payload", "end", "text"),
    [
        (
            1,
            0,
            b"\x00\x3c\x00\x0a\x00\x00\x00\x00\x00\x01\x00",
            b"\x00",
            "type 1, all octets = <<0,60,0,10,0,0,0,0,0,1,0>>: {invalid_frame_end_marker,0}",
        ),
        (8, 0, b"", b"\xff", "type 8, all octets = <<>>: {invalid_frame_end_marker,255}"),
        (
            1,
            1,
            b"\x00\x3c\x00\x28\x00\x00\x05amq.x\x0bhello.world\x00",
            b"\x01",
            "type 1, first 16 octets = <<0,60,0,40,0,0,5,97,109,113,46,120,11,104,101,108>>: "
            "{invalid_frame_end_marker,\n" + " " * 81 + "1}",
        ),
    ],
)
def test_bad_frame_end(quick, frame_type, channel, payload, end, text):
    """Fatal: connection.close, then the socket closes after the silent delay even
    though the client answers close-ok (RabbitMQ stops reading: the stream is out of sync)."""
    raw = RawClient(quick.port)
    try:
        raw.handshake()
        raw.open_channel(1)
        raw.send_frame(frame_type, channel, payload, end=end)
        closed_with(raw, 501, "FRAME_ERROR - " + text)
    finally:
        raw.close()


@pytest.mark.parametrize("size", [131064, 131065, 131072])
def test_body_frames_up_to_frame_max_payload_are_taken(client, size):
    """RabbitMQ lets a payload reach frame_max itself (8 octets over the frame size)."""
    client.send_frame(1, 1, PUBLISH)
    client.send_frame(2, 1, header(size))
    client.send_frame(3, 1, b"x" * size)
    still_open(client)


def test_body_frame_over_frame_max(quick):
    raw = RawClient(quick.port)
    try:
        raw.handshake()
        raw.open_channel(1)
        raw.send_frame(1, 1, PUBLISH)
        raw.send_frame(2, 1, header(131073))
        raw.send_frame(3, 1, b"x" * 131073)
        closed_with(raw, 501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,131073,131064}")
    finally:
        raw.close()


def test_frame_too_large_is_refused_from_its_header(quick):
    """The size is checked as soon as the 7-octet header is in: the payload never comes."""
    raw = RawClient(quick.port)
    try:
        raw.handshake()
        raw.send_raw(struct.pack(">BHI", 1, 1, 140009) + PUBLISH)
        closed_with(raw, 501, "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,140009,131064}")
    finally:
        raw.close()


@pytest.mark.parametrize(("size", "refused"), [(4088, False), (4096, False), (4097, True), (5000, True)])
def test_negotiated_frame_max(quick, size, refused):
    raw = RawClient(quick.port)
    try:
        raw.handshake(frame_max=4096)
        raw.open_channel(1)
        raw.send_frame(1, 1, PUBLISH)
        raw.send_frame(2, 1, header(size))
        raw.send_frame(3, 1, b"x" * size)
        if refused:
            closed_with(raw, 501, f"FRAME_ERROR - type 3, all octets = <<>>: {{frame_too_large,{size},4088}}")
        else:
            still_open(raw)
    finally:
        raw.close()


@pytest.mark.parametrize(("frame_type", "channel"), [(9, 1), (0, 1), (4, 1), (5, 1), (7, 1), (255, 1), (9, 0)])
def test_unknown_frame_type(client, frame_type, channel):
    payload = b"" if channel == 0 else b"abc"
    client.send_frame(frame_type, channel, payload)
    shown = "<<>>" if not payload else '<<"abc">>'
    closed_with(client, 501, f"FRAME_ERROR - type {frame_type}, all octets = {shown}: unknown_frame")


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (
            bytes(range(128, 144)),
            "type 9, all octets = <<128,129,130,131,132,133,134,135,136,137,138,139,140,141,\n"
            + " " * 23
            + "142,143>>: unknown_frame",
        ),
        (
            bytes([127, *range(128, 144)]),
            "type 9, first 16 octets = <<127,128,129,130,131,132,133,134,135,136,137,138,\n"
            + " " * 28
            + "139,140,141,142>>: unknown_frame",
        ),
        (b"defghijklmnopqrstu", 'type 9, first 16 octets = <<"defghijklmnopqrs">>: unknown_frame'),
        (b'a"b\\c\nd\te\x1bf', 'type 9, all octets = <<"a\\"b\\\\c\\nd\\te\\ef">>: unknown_frame'),
    ],
)
def test_frame_error_texts_print_the_payload_as_erlang_does(client, payload, text):
    client.send_frame(9, 1, payload)
    closed_with(client, 501, "FRAME_ERROR - " + text)


def test_method_frame_shorter_than_a_method_id(client):
    client.send_frame(1, 1, b"\x00")
    closed_with(client, 501, "FRAME_ERROR - type 1, all octets = <<0>>: unknown_frame")


def test_heartbeat_frame_with_a_payload(client):
    client.send_frame(8, 0, b"ab")
    closed_with(client, 501, 'FRAME_ERROR - type 8, all octets = <<"ab">>: unknown_frame')


@pytest.mark.parametrize("channel", [1, 5])
def test_heartbeat_on_a_channel(client, channel):
    client.send_frame(8, channel, b"")
    closed_with(client, 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>")


@pytest.mark.parametrize(("channel", "payload"), [(1, b"\x00\x63\x00\x01"), (5, b"\x00\x3c\x03\xe7"), (0, b"\x00\x0a\x03\xe7")])
def test_unknown_method_drops_the_socket(client, channel, payload):
    """RabbitMQ's reader crashes on a method id it does not know: EOF, no connection.close."""
    client.send_frame(1, channel, payload)
    assert client.read_raw(timeout=1) == b""
    assert client.eof


@pytest.mark.parametrize("started", [False, True])
def test_unknown_method_during_the_handshake_drops_the_socket_at_once(broker, started):
    raw = RawClient(broker.port)  # the session broker: 3 s silent delay, which must not apply
    try:
        raw.send_raw(b"AMQP\x00\x00\x09\x01")
        raw.expect(0, commands.Connection.Start)
        if started:
            raw.send(0, commands.Connection.StartOk(client_properties={}, mechanism="PLAIN", response="\x00guest\x00guest"))
            raw.expect(0, commands.Connection.Tune)
        raw.send_frame(1, 0, b"\x00\x0a\x03\xe7")
        assert raw.read_raw(timeout=1) == b""
        assert raw.eof
    finally:
        raw.close()


# -- content frames out of place ----------------------------------------------------------------

EXPECTED_METHOD = "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
EXPECTED_HEADER = "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
EXPECTED_BODY = "UNEXPECTED_FRAME - expected content body, got non content body frame instead"


@pytest.mark.parametrize("frame_type", [2, 3])
def test_content_without_publish(client, frame_type):
    client.send_frame(frame_type, 1, header(1) if frame_type == 2 else b"x")
    closed_with(client, 505, EXPECTED_METHOD)


def test_body_when_header_expected(client):
    client.send_frame(1, 1, PUBLISH)
    client.send_frame(3, 1, b"x")
    closed_with(client, 505, EXPECTED_HEADER, 60, 40)


def test_method_when_header_expected(client):
    client.send_frame(1, 1, PUBLISH)
    client.send(1, QOS)
    closed_with(client, 505, EXPECTED_HEADER, 60, 40)


def test_header_with_nonzero_weight(client):
    client.send_frame(1, 1, PUBLISH)
    client.send_frame(2, 1, header(1, weight=5))
    closed_with(client, 505, EXPECTED_HEADER, 60, 40)


def test_header_of_another_class(client):
    client.send_frame(1, 1, PUBLISH)
    client.send_frame(2, 1, header(1, class_id=50))
    closed_with(
        client, 505, "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead", 60, 40
    )


@pytest.mark.parametrize("next_frame", ["method", "header"])
def test_other_frame_when_body_expected(client, next_frame):
    client.send_frame(1, 1, PUBLISH)
    client.send_frame(2, 1, header(10))
    if next_frame == "method":
        client.send(1, QOS)
    else:
        client.send_frame(2, 1, header(10))
    closed_with(client, 505, EXPECTED_BODY, 60, 40)


def test_body_after_an_empty_message(client):
    client.send_frame(1, 1, PUBLISH)
    client.send_frame(2, 1, header(0))
    client.send_frame(3, 1, b"x")
    closed_with(client, 505, EXPECTED_METHOD)


def test_empty_body_frames_are_allowed(client):
    client.send_frame(1, 1, PUBLISH)
    client.send_frame(2, 1, header(3))
    client.send_frame(3, 1, b"")
    client.send_frame(3, 1, b"abc")
    still_open(client)


def test_body_longer_than_declared_fails_at_the_next_frame(client):
    client.send_frame(1, 1, PUBLISH)
    client.send_frame(2, 1, header(3))
    client.send_frame(3, 1, b"abcdef")
    client.send(1, QOS)
    closed_with(client, 505, EXPECTED_BODY, 60, 40)


def _frames(*frames: tuple[int, bytes]) -> bytes:
    return b"".join(frame(frame_type, 1, payload) for frame_type, payload in frames)


# basic.publish, its header and a body frame in one write reach the broker in one read, where
# they are taken as one event (Channel.publish_whole); whatever is wrong with them must still
# give the reply the frame-by-frame path gives.
@pytest.mark.parametrize(
    ("frames", "code", "text", "ids"),
    [
        ([(1, PUBLISH), (2, header(0)), (3, b"x")], 505, EXPECTED_METHOD, (0, 0)),
        ([(1, PUBLISH), (2, header(0)), (3, b"")], 505, EXPECTED_METHOD, (0, 0)),
        ([(1, PUBLISH), (2, header(1, weight=5)), (3, b"x")], 505, EXPECTED_HEADER, (60, 40)),
        (
            [(1, PUBLISH), (2, header(1, class_id=50)), (3, b"x")],
            505,
            "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead",
            (60, 40),
        ),
        ([(1, PUBLISH), (2, header(3)), (3, b"abcdef"), (1, encode_method_payload(QOS))], 505, EXPECTED_BODY, (60, 40)),
        ([(1, PUBLISH[:-1] + b"\x02"), (2, header(1)), (3, b"x")], 540, "NOT_IMPLEMENTED - immediate=true", (60, 40)),
        ([(1, PUBLISH + b"\x00"), (2, header(1)), (3, b"x")], 501, None, (60, 40)),
        ([(1, PUBLISH), (2, header(1)[:12]), (3, b"x")], 541, None, (0, 0)),
    ],
)
def test_malformed_publish_in_one_read(broker, frames, code, text, ids):
    closes = []
    for together in (True, False):
        raw = RawClient.connected(broker.port)
        if together:
            raw.send_raw(_frames(*frames))
        else:
            for frame_type, payload in frames:
                raw.send_frame(frame_type, 1, payload)
                time.sleep(0.02)  # one read each
        close = raw.expect_close()
        closes.append((close.reply_code, close.reply_text, close.class_id, close.method_id))
        raw.close()
    assert closes[0] == closes[1]
    assert closes[0][0] == code and (closes[0][2], closes[0][3]) == ids
    if text is not None:
        assert closes[0][1] == text


def test_publishes_in_one_read_are_each_delivered(client):
    client.rpc(1, commands.Queue.Declare(queue="one-read"), commands.Queue.DeclareOk)
    one = b"\x00\x3c\x00\x28\x00\x00\x00\x08one-read\x00"
    client.send_raw(_frames((1, one), (2, header(3)), (3, b"abc"), (1, one), (2, header(0)), (1, one), (2, header(2)), (3, b"de")))
    for expected in (b"abc", b"", b"de"):
        client.send(1, commands.Basic.Get(queue="one-read", no_ack=True))
        assert isinstance(client.next().value, commands.Basic.GetOk)
        client.next()  # the content header
        if expected:
            assert client.next().payload == expected
    still_open(client)


# -- channels that are not open -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "ids"),
    [
        (commands.Queue.Declare(queue="q"), (50, 10)),
        (commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0), (20, 40)),
        (commands.Channel.CloseOk(), (20, 41)),
        (commands.Connection.Open(virtual_host="/"), (10, 40)),
    ],
)
def test_method_on_an_unopened_channel(client, method, ids):
    client.send(5, method)
    closed_with(client, 504, "CHANNEL_ERROR - expected 'channel.open'", *ids)


def test_publish_on_an_unopened_channel_is_refused_once_complete(client):
    client.send_frame(1, 5, PUBLISH)
    assert client.read(timeout=0.3) is None and not client.eof  # waits for the content
    client.send_frame(2, 5, header(1))
    client.send_frame(3, 5, b"x")
    closed_with(client, 504, "CHANNEL_ERROR - expected 'channel.open'", 60, 40)


def test_empty_publish_on_an_unopened_channel(client):
    client.send_frame(1, 5, PUBLISH)
    client.send_frame(2, 5, header(0))
    closed_with(client, 504, "CHANNEL_ERROR - expected 'channel.open'", 60, 40)


@pytest.mark.parametrize(
    ("frames", "text"),
    [
        ([(2, header(10)), (1, b"\x00\x3c\x00\x0a\x00\x00\x00\x00\x00\x00\x00")], EXPECTED_BODY),
        ([(1, b"\x00\x3c\x00\x0a\x00\x00\x00\x00\x00\x00\x00")], EXPECTED_HEADER),
        ([(1, b"\x00\x14\x00\x0a\x00")], EXPECTED_HEADER),  # channel.open while content is due
    ],
)
def test_content_assembly_on_an_unopened_channel(client, frames, text):
    client.send_frame(1, 5, PUBLISH)
    for frame_type, payload in frames:
        client.send_frame(frame_type, 5, payload)
    closed_with(client, 505, text, 60, 40)


@pytest.mark.parametrize("frame_type", [2, 3])
def test_content_on_an_unopened_channel(client, frame_type):
    client.send_frame(frame_type, 5, header(1) if frame_type == 2 else b"x")
    closed_with(client, 505, EXPECTED_METHOD)


def test_channel_reopens_after_close(client):
    client.send(1, commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    client.expect(1, commands.Channel.CloseOk)
    assert isinstance(client.open_channel(1), commands.Channel.OpenOk)


def test_second_channel_open(client):
    client.send(1, commands.Channel.Open())
    closed_with(client, 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)


# -- methods on the wrong channel ---------------------------------------------------------------

UNEXPECTED_IN_RUNNING = "CHANNEL_ERROR - unexpected method in connection state running"


@pytest.mark.parametrize(
    ("payload", "ids"),
    [
        (b"\x00\x14\x00\x0a\x00", (20, 10)),  # channel.open
        (b"\x00\x32\x00\x0a\x00\x00\x01q\x00\x00\x00\x00\x00", (50, 10)),  # queue.declare
        (PUBLISH, (60, 40)),  # basic.publish
        (b"\x00\x0a\x00\x33", (10, 51)),  # connection.close-ok, unsolicited
        (b"\x00\x0a\x00\x1e\x07\xff\x00\x02\x00\x00\x00\x00", (10, 30)),  # connection.tune
        (b"\x00\x0a\x00\x1f\x07\xff\x00\x02\x00\x00\x00\x00", (10, 31)),  # connection.tune-ok again
        (b"\x00\x0a\x00\x28\x01/\x00\x00", (10, 40)),  # connection.open again
        (b"\x00\x0a\x00\x3c\x00", (10, 60)),  # connection.blocked from the client
        (b"\x00\x0a\x00\x3d", (10, 61)),  # connection.unblocked from the client
    ],
)
def test_unexpected_method_on_channel_zero(client, payload, ids):
    client.send_frame(1, 0, payload)
    closed_with(client, 504, UNEXPECTED_IN_RUNNING, *ids)


@pytest.mark.parametrize(
    ("frame_type", "payload", "text"),
    [
        (2, header(1), "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,1,0,0>>"),
        (3, b"x", 'UNEXPECTED_FRAME - type 3, all octets = <<"x">>'),
    ],
)
def test_content_on_channel_zero(client, frame_type, payload, text):
    client.send_frame(frame_type, 0, payload)
    closed_with(client, 505, text)


@pytest.mark.parametrize(
    ("method", "ids"),
    [
        (commands.Connection.Open(virtual_host="/"), (10, 40)),
        (commands.Connection.Close(reply_code=200, reply_text="", class_id=0, method_id=0), (10, 50)),
    ],
)
def test_connection_method_on_an_open_channel(client, method, ids):
    client.send(1, method)
    closed_with(client, 503, "COMMAND_INVALID - unimplemented method", *ids)


# -- before the connection is open --------------------------------------------------------------


def test_channel_open_before_connection_open(broker):
    raw = RawClient(broker.port)
    try:
        raw.handshake(open_vhost=False)
        raw.send(1, commands.Channel.Open())
        closed_with(raw, 505, "UNEXPECTED_FRAME - type 1, all octets = <<0,20,0,10,1,48>>")
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("payload", "code", "text", "ids"),
    [
        (b"\x00\x0a\x00\x1f\x07\xff\x00\x02\x00\x00\x00\x00", 504, "CHANNEL_ERROR - unexpected method in connection state opening", (10, 31)),
        (b"\x00\x0a\x00\x32\x00\xc8\x00\x00\x00\x00\x00", 504, "CHANNEL_ERROR - unexpected method in connection state opening", (10, 50)),
    ],
)
def test_unexpected_method_while_opening(broker, payload, code, text, ids):
    raw = RawClient(broker.port)
    try:
        raw.handshake(open_vhost=False)
        raw.send_frame(1, 0, payload)
        closed_with(raw, code, text, *ids)
    finally:
        raw.close()


def test_frame_error_while_opening(broker):
    raw = RawClient(broker.port)
    try:
        raw.handshake(open_vhost=False)
        raw.send_frame(9, 0, b"abc")
        closed_with(raw, 501, 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame')
    finally:
        raw.close()


@pytest.mark.parametrize(
    "frame",
    [
        b"\x01\x00\x01\x00\x00\x00\x05\x00\x14\x00\x0a\x00\xce",  # channel.open before start-ok
        b"\x09\x00\x00\x00\x00\x00\x03abc\xce",  # unknown frame type
        b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0b\x00",  # bad frame end
        b"\x01\x00\x00\x00\x00\x13\x88",  # frame larger than 4096 before tune-ok
        b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1f\x07\xff\x00\x02\x00\x00\x00\x00\xce",  # tune-ok too early
        b"\x01\x00\x00\x00\x00\x00\x0b\x00\x0a\x00\x32\x00\xc8\x00\x00\x00\x00\x00\xce",  # connection.close
    ],
)
def test_errors_before_start_ok_just_hang_up(quick, frame):
    raw = RawClient(quick.port)
    try:
        raw.send_raw(b"AMQP\x00\x00\x09\x01")
        raw.expect(0, commands.Connection.Start)
        raw.send_raw(frame)
        assert raw.read_raw(timeout=4) == b""
        assert raw.eof
    finally:
        raw.close()


def test_heartbeat_before_start_ok_is_fine(broker):
    raw = RawClient(broker.port)
    try:
        raw.send_raw(b"AMQP\x00\x00\x09\x01")
        raw.expect(0, commands.Connection.Start)
        raw.send_frame(8, 0, b"")
        raw.send(0, commands.Connection.StartOk(client_properties={}, mechanism="PLAIN", response="\x00guest\x00guest"))
        raw.expect(0, commands.Connection.Tune)
    finally:
        raw.close()


def test_publish_with_properties_round_trips_after_errors_elsewhere(client, broker, unique):
    """A sanity check that a well-formed publish on the same raw client still works."""
    client.send(1, commands.Queue.Declare(queue=unique, auto_delete=True))
    client.expect(1, commands.Queue.DeclareOk)
    client.send(1, commands.Basic.Publish(exchange="", routing_key=unique))
    client.send(1, pamqp_header.ContentHeader(0, 2, commands.Basic.Properties(content_type="text/plain")))
    client.send_frame(3, 1, b"hi")
    client.send(1, commands.Basic.Get(queue=unique, no_ack=True))
    client.expect(1, commands.Basic.GetOk)
    got = client.read()
    assert got.value.properties.content_type == "text/plain"
    assert client.read().payload == b"hi"


def test_channel_open_instead_of_close_ok_is_a_channel_error(broker: BrokerHandle) -> None:
    """After the server closes a channel, channel.open before close-ok is 504 (RabbitMQ 3.10)."""
    client = RawClient(broker.port)
    try:
        client.handshake()
        client.open_channel(1)
        client.send(1, commands.Queue.Declare(queue="no-such-queue-here", passive=True))
        close = client.expect(1, commands.Channel.Close)
        assert close.reply_code == 404
        client.send(1, commands.Channel.Open())
        close = client.expect_close()
        assert (close.reply_code, close.reply_text) == (504, "CHANNEL_ERROR - second 'channel.open' seen")
        assert (close.class_id, close.method_id) == (20, 10)
    finally:
        client.close()
