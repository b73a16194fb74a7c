"""What the broker refuses, and that a refusal costs it little and answers nothing after it:
commands pipelined with a tx.commit, refused logins, frames sent after a connection-level error,
and a client that publishes without reading what comes back.

Every code, text and class/method id below was recorded from RabbitMQ 3.10.8 with the same bytes;
where we differ it is said (RabbitMQ hangs up with a TCP reset, we close with a FIN).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BrokerHandle, start_broker
from helpers import queue_stats, server_connection, wait_until
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from rawamqp import CAPABILITIES, RawClient, plain

from amqp_server.protocol.frame_codec import PROTOCOL_HEADER, build, encode_method, frame

COMMITTING = "CHANNEL_ERROR - unexpected command while processing 'tx.commit'"
LOGIN_REFUSED = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."


def method(channel: int, value: Any) -> bytes:
    return pamqp_frame.marshal(value, channel)


def content(channel: int, *bodies: bytes, properties: commands.Basic.Properties | None = None) -> bytes:
    """A content header and one body frame per part."""
    size = sum(map(len, bodies))
    header = pamqp_header.ContentHeader(0, size, properties or commands.Basic.Properties())
    return pamqp_frame.marshal(header, channel) + b"".join(frame(3, channel, body) for body in bodies)


def publish(channel: int, exchange: str, routing_key: str, *bodies: bytes, properties: Any = None, **fields: Any) -> bytes:
    """basic.publish and its content (body b"x" by default), as bytes to send in one write."""
    basic_publish = commands.Basic.Publish(exchange=exchange, routing_key=routing_key, **fields)
    return method(channel, basic_publish) + content(channel, *(bodies or (b"x",)), properties=properties)


def replies(raw: RawClient, quiet: float = 0.5) -> list[tuple[Any, ...]]:
    """Every method until ``quiet`` seconds pass without a frame (or EOF): (channel, name), or
    (channel, name, code, text, class id, method id) for a close. connection.close is answered."""
    out: list[tuple[Any, ...]] = []
    while (got := raw.read(quiet)) is not None:
        value = got.value
        if isinstance(value, commands.Connection.Close | commands.Channel.Close):
            out.append((got.channel, type(value).__name__, value.reply_code, value.reply_text, value.class_id, value.method_id))
            if got.channel == 0:
                raw.send(0, commands.Connection.CloseOk())
        elif got.type == 1:
            out.append((got.channel, type(value).__name__))
    return out


@pytest.fixture
def raw(broker: BrokerHandle) -> Iterator[RawClient]:
    client = RawClient.connected(broker.port)
    yield client
    client.close()


# -- commands pipelined with tx.commit ------------------------------------------------------------
#
# rabbit_channel refuses every command but channel.open/close/close-ok while a tx.commit waits
# for the queues it routed messages to; a command sent along with such a commit meets that.


def _transaction(raw: RawClient) -> str:
    """A transaction holding one publish to a new queue; the queue's name."""
    queue = raw.rpc(1, commands.Queue.Declare(queue="", exclusive=True), commands.Queue.DeclareOk).queue
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    raw.send_raw(publish(1, "", queue))
    return queue


@pytest.mark.parametrize(
    ("after", "ids"),
    [
        (commands.Tx.Rollback(), (90, 30)),
        (commands.Tx.Commit(), (90, 20)),
        (commands.Basic.Ack(delivery_tag=1), (60, 80)),
        (commands.Basic.Qos(prefetch_count=1), (60, 10)),
        (commands.Queue.Declare(queue="", exclusive=True), (50, 10)),
    ],
)
def test_a_command_sent_with_a_routing_commit_closes_the_connection(raw, after, ids):
    _transaction(raw)
    raw.send_raw(method(1, commands.Tx.Commit()) + method(1, after))
    assert replies(raw) == [(0, "Close", 504, COMMITTING, *ids)]  # no tx.commit-ok first
    assert raw.eof


def test_a_publish_sent_with_a_routing_commit_is_refused_once_complete(raw):
    queue = _transaction(raw)
    raw.send_raw(method(1, commands.Tx.Commit()) + publish(1, "", queue))
    assert replies(raw) == [(0, "Close", 504, COMMITTING, 60, 40)]


def test_a_publish_completed_after_commit_ok_is_taken(raw):
    queue = _transaction(raw)
    raw.send_raw(method(1, commands.Tx.Commit()) + method(1, commands.Basic.Publish(exchange="", routing_key=queue)))
    raw.expect(1, commands.Tx.CommitOk)
    raw.send_raw(content(1, b"y"))
    raw.rpc(1, commands.Tx.Commit(), commands.Tx.CommitOk)
    assert raw.rpc(1, commands.Queue.Declare(queue=queue, passive=True), commands.Queue.DeclareOk).message_count == 2


def test_channel_close_sent_with_a_routing_commit_closes_the_channel_without_commit_ok(raw):
    _transaction(raw)
    close = commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0)
    raw.send_raw(method(1, commands.Tx.Commit()) + method(1, close))
    assert replies(raw) == [(1, "CloseOk")]
    assert isinstance(raw.open_channel(1), commands.Channel.OpenOk)


@pytest.mark.parametrize("published", [b"", publish(1, "", "nowhere", mandatory=True)])
def test_commands_sent_with_a_commit_that_routed_nothing_are_taken(raw, published):
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    raw.send_raw(published + method(1, commands.Tx.Commit()) + method(1, commands.Tx.Rollback()))
    expected = [(1, "CommitOk"), (1, "RollbackOk")]
    assert replies(raw) == ([(1, "Return")] if published else []) + expected


def test_the_next_command_after_commit_ok_is_taken(raw):
    _transaction(raw)
    raw.rpc(1, commands.Tx.Commit(), commands.Tx.CommitOk)
    raw.rpc(1, commands.Tx.Rollback(), commands.Tx.RollbackOk)


def test_a_message_a_queue_refuses_fails_the_commit(raw):
    arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
    queue = raw.rpc(1, commands.Queue.Declare(queue="", exclusive=True, arguments=arguments), commands.Queue.DeclareOk).queue
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    raw.send_raw(publish(1, "", queue) + publish(1, "", queue) + method(1, commands.Tx.Commit()))
    assert replies(raw) == [(1, "Close", 406, "PRECONDITION_FAILED - partial tx completion", 90, 20)]


def test_a_persistent_commit_refuses_commands_too(tmp_path, handles):
    """A commit that waits for the message store (fsync) is refused the same way."""
    handle = start_broker(data_dir=str(tmp_path / "data"))
    handles.append(handle)
    raw = RawClient.connected(handle.port)
    raw.rpc(1, commands.Queue.Declare(queue="durable-tx", durable=True), commands.Queue.DeclareOk)
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    persistent = commands.Basic.Properties(delivery_mode=2)
    raw.send_raw(publish(1, "", "durable-tx", properties=persistent))
    raw.send_raw(method(1, commands.Tx.Commit()) + method(1, commands.Basic.Qos(prefetch_count=1)))
    assert replies(raw) == [(0, "Close", 504, COMMITTING, 60, 10)]
    raw.close()


# -- refused logins ---------------------------------------------------------------------------------
#
# RabbitMQ sends connection.close 403 (to clients with the authentication_failure_close
# capability) and closes the socket as soon as the client answers close-ok, else after 3 s.


@pytest.fixture(scope="module")
def slow_silence() -> Iterator[BrokerHandle]:
    """A broker whose silent-close delay is far longer than any test waits."""
    handle = start_broker(silent_close_delay=60.0)
    yield handle
    handle.stop()


def _refused_login(port: int, capabilities: dict[str, Any] | None = CAPABILITIES) -> RawClient:
    raw = RawClient(port)
    raw.send_raw(PROTOCOL_HEADER)
    raw.expect(0, commands.Connection.Start)
    properties = {} if capabilities is None else {"capabilities": capabilities}
    start_ok = build(
        commands.Connection.StartOk, client_properties=properties, mechanism="PLAIN", response=plain("guest", "no")
    )
    raw.send_raw(encode_method(0, start_ok))
    return raw


def test_a_refused_login_closes_at_close_ok(slow_silence):
    raw = _refused_login(slow_silence.port)
    close = raw.expect_close(close_ok=False)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (403, LOGIN_REFUSED, 0, 0)
    # Until close-ok nothing is answered and the socket stays open...
    raw.send_frame(8, 0, b"")
    raw.send(1, commands.Channel.Open())
    assert raw.read(timeout=0.3) is None and not raw.eof
    raw.send(0, commands.Connection.CloseOk())
    assert raw.wait_eof(timeout=5)  # ...then it closes at once, not after the 60 s delay
    raw.close()


def test_a_refused_login_without_the_capability_closes_at_close_ok_too(slow_silence):
    raw = _refused_login(slow_silence.port, capabilities=None)
    assert raw.read(timeout=0.3) is None and not raw.eof
    raw.send(0, commands.Connection.CloseOk())
    assert raw.wait_eof(timeout=5)
    raw.close()


def test_many_refused_logins_leave_nothing_behind(slow_silence):
    """A client that answers close-ok (as pika does) is let go at once, however many tries."""
    for _ in range(50):
        raw = _refused_login(slow_silence.port)
        raw.expect_close()
        assert raw.wait_eof(timeout=5)
        raw.close()
    assert slow_silence.call(lambda: len(slow_silence.broker.connections)) == 0


# -- nothing after a connection-level error is answered --------------------------------------------
#
# RabbitMQ's reader assembles every channel's frames itself, at once: a bad frame closes the
# connection before anything sent after it is answered, even while the channel is still busy
# with an earlier command (whose reply still goes out first).

DECLARE = commands.Queue.Declare(queue="", exclusive=True)
AFTER = method(2, commands.Channel.Open()) + method(2, commands.Basic.Qos())
EXPECTED_METHOD = "UNEXPECTED_FRAME - expected method frame, got non method frame instead"


@pytest.mark.parametrize(
    ("bad", "close"),
    [
        (frame(3, 1, b"abc"), (505, EXPECTED_METHOD, 0, 0)),
        (frame(8, 1, b""), (505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0)),
        (
            method(1, commands.Basic.Publish(exchange="", routing_key="q")) + method(1, commands.Basic.Qos()),
            (505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead", 60, 40),
        ),
        (frame(1, 1, b"\x00\x3c"), (501, "FRAME_ERROR - type 1, all octets = <<0,60>>: unknown_frame", 0, 0)),
    ],
)
def test_a_bad_frame_on_a_busy_channel_stops_everything_after_it(raw, bad, close):
    raw.send_raw(method(1, DECLARE) + bad + AFTER)
    assert replies(raw) == [(1, "DeclareOk"), (0, "Close", *close)]
    assert raw.eof


def test_an_unknown_method_on_a_busy_channel_just_hangs_up(raw):
    raw.send_raw(method(1, DECLARE) + frame(1, 1, b"\x00\x3c\x00\x99") + AFTER)
    assert replies(raw) == []
    assert raw.eof


def test_a_publish_sent_with_a_pending_command_is_still_refused_once_complete(raw):
    """immediate=true is refused when the publish is complete, as in rabbit_channel."""
    immediate = method(1, commands.Basic.Publish(exchange="", routing_key="q", immediate=True))
    raw.send_raw(method(1, DECLARE) + immediate + AFTER)
    assert replies(raw) == [(2, "OpenOk"), (2, "QosOk"), (1, "DeclareOk")]
    raw.send_raw(content(1, b"x"))
    assert replies(raw) == [(0, "Close", 540, "NOT_IMPLEMENTED - immediate=true", 60, 40)]


def test_connection_close_answers_nothing_sent_after_it(raw):
    """The channel finishes the commands it took before the close, then close-ok goes out; the
    second close is answered in the closed state. (RabbitMQ answers the same, but its first
    close-ok overtakes the channel's replies, which follow it: a race of its writer processes.)"""
    close = commands.Connection.Close(reply_code=200, reply_text="", class_id=0, method_id=0)
    raw.send_raw(method(1, DECLARE) + method(1, commands.Basic.Qos()) + method(0, close) + AFTER + method(0, close))
    assert replies(raw) == [(1, "DeclareOk"), (1, "QosOk"), (0, "CloseOk"), (0, "CloseOk")]


def test_a_closing_channel_still_assembles_its_frames(raw):
    """After the broker closed a channel, content sent for it is taken and dropped (no
    connection error), and a method that does not decode is still a frame error."""
    raw.send_raw(publish(1, "nosuch-exchange", "a") + publish(1, "nosuch-exchange", "b", b"two", b"frames"))
    assert replies(raw) == [(1, "Close", 404, "NOT_FOUND - no exchange 'nosuch-exchange' in vhost '/'", 60, 40)]
    raw.send_raw(method(1, commands.Channel.CloseOk()) + method(1, commands.Channel.Open()))
    raw.expect(1, commands.Channel.OpenOk)
    raw.send_raw(publish(1, "nosuch-exchange", "a") + frame(1, 1, b"\x00\x3c\x00\x0a\x00") + AFTER)
    assert replies(raw) == [
        (1, "Close", 404, "NOT_FOUND - no exchange 'nosuch-exchange' in vhost '/'", 60, 40),
        (0, "Close", 501, "FRAME_ERROR - cannot decode <<0>>", 60, 10),
    ]


# -- a client that does not read -------------------------------------------------------------------
#
# A publisher of mandatory unroutable messages that never reads its socket: every publish makes
# a basic.return. Once the socket's buffer is over its high-water mark the broker stops reading
# that connection, so what it holds for it stays bounded; once the client reads, all flows again.

HIGH, LOW = 256 * 1024, 64 * 1024  # this test's write-buffer limits (4 MiB / 1 MiB by default)


def _unsent(broker: BrokerHandle, connection: Any) -> int:
    return broker.call(lambda: connection.unsent_bytes)


BASIC_RETURN, BASIC_DELIVER = b"\x00\x3c\x00\x32", b"\x00\x3c\x00\x3c"


def _count_methods(raw: RawClient, method_id: bytes, expected: int) -> int:
    """Read until ``expected`` methods ``method_id`` (class and method, 4 octets) came (frames
    walked by hand: fast)."""
    buffer, returns = b"", 0
    raw.sock.settimeout(10)
    while returns < expected:
        data = raw.sock.recv(1 << 20)
        assert data, "EOF before every method came"
        buffer += data
        offset = 0
        while len(buffer) - offset >= 7:
            frame_type, _channel, size = struct.unpack_from(">BHI", buffer, offset)
            if len(buffer) - offset < size + 8:
                break
            if frame_type == 1 and buffer[offset + 7 : offset + 11] == method_id:
                returns += 1
            offset += size + 8
        buffer = buffer[offset:]
    return returns


def test_a_client_that_does_not_read_costs_bounded_memory(broker, raw):
    connection = server_connection(broker, raw)
    broker.call(lambda: connection.transport.set_write_buffer_limits(HIGH, LOW))
    # Small socket buffers both ways, so that the publisher soon blocks once reading stops.
    server_socket = broker.call(lambda: connection.transport.get_extra_info("socket"))
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    count = 100_000  # about 7 MB of publishes, as many returns
    sender = threading.Thread(target=raw.sock.sendall, args=(publish(1, "", "nowhere", mandatory=True) * count,))
    sender.start()
    deadline = time.monotonic() + 30
    while "output" not in broker.call(lambda: connection.paused_for):
        assert time.monotonic() < deadline, "reading never stopped"
        time.sleep(0.05)
    time.sleep(0.3)
    held = _unsent(broker, connection)
    # The buffer's high-water mark plus the returns of the one read past it, at most.
    assert held < HIGH + 512 * 1024
    time.sleep(0.3)
    assert _unsent(broker, connection) == held and sender.is_alive()  # stopped, not just slow
    # Message store congestion coming and going does not lift this pause.
    broker.call(lambda: broker.broker.store_congested(True))
    broker.call(lambda: broker.broker.store_congested(False))
    assert broker.call(lambda: ("output" in connection.paused_for, connection.transport.is_reading())) == (True, False)
    assert _count_methods(raw, BASIC_RETURN, count) == count
    sender.join(10)
    assert not sender.is_alive()
    raw.rpc(1, commands.Basic.Qos(prefetch_count=1), commands.Basic.QosOk)
    assert broker.call(lambda: connection.paused_for) == set()


def test_a_consumer_that_does_not_read_stops_getting_credit(broker, raw, connection, unique):
    """A no-ack consumer has unlimited credit until its socket's buffer is full: then the queue
    keeps the rest ready instead of pushing it into an unbounded buffer, and delivers it once
    the client reads again."""
    raw_connection = server_connection(broker, raw)
    broker.call(lambda: raw_connection.transport.set_write_buffer_limits(HIGH, LOW))
    server_socket = broker.call(lambda: raw_connection.transport.get_extra_info("socket"))
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    channel = connection.channel()
    channel.queue_declare(unique)
    raw.rpc(1, commands.Basic.Consume(queue=unique, consumer_tag="slow", no_ack=True), commands.Basic.ConsumeOk)
    count, body = 2_000, b"x" * 4096  # about 8 MB, far over the buffer's high-water mark
    channel.confirm_delivery()  # every publish is in the queue when basic_publish returns
    for _ in range(count):
        channel.basic_publish("", unique, body)
    assert "output" in broker.call(lambda: raw_connection.paused_for)
    assert queue_stats(broker, unique)["messages_ready"] > 0
    assert _unsent(broker, raw_connection) < HIGH + 512 * 1024
    assert _count_methods(raw, BASIC_DELIVER, count) == count
    assert queue_stats(broker, unique)["messages_ready"] == 0


# -- found by the wire fuzz, each checked against RabbitMQ 3.10 ----------------------------------


def _until_tune(port: int) -> RawClient:
    """A client that has read connection.tune and answered nothing yet."""
    client = RawClient(port)
    client.send_raw(PROTOCOL_HEADER)
    client.expect(0, commands.Connection.Start)
    start_ok = build(commands.Connection.StartOk, client_properties={"capabilities": CAPABILITIES},
                     mechanism="PLAIN", response=plain("guest", "guest"), locale="en_US")  # fmt: skip
    client.send_raw(encode_method(0, start_ok))
    client.expect(0, commands.Connection.Tune)
    return client


def test_frames_sent_with_tune_ok_are_sized_by_the_frame_max_it_sets(broker: BrokerHandle) -> None:
    """tune-ok raises frame_max from 4096: a 5,000-octet body frame in the same write is fine."""
    client = _until_tune(broker.port)
    body = b"x" * 5000
    header = pamqp_header.ContentHeader(0, len(body), commands.Basic.Properties())
    client.send_raw(
        pamqp_frame.marshal(commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0), 0)
        + pamqp_frame.marshal(commands.Connection.Open(virtual_host="/"), 0)
        + pamqp_frame.marshal(commands.Channel.Open(), 1)
        + pamqp_frame.marshal(commands.Basic.Publish(exchange="", routing_key="nowhere"), 1)
        + pamqp_frame.marshal(header, 1)
        + frame(3, 1, body)
        + pamqp_frame.marshal(commands.Basic.Qos(prefetch_count=1), 1)
    )
    client.expect(0, commands.Connection.OpenOk)
    client.expect(1, commands.Channel.OpenOk)
    client.expect(1, commands.Basic.QosOk)
    client.close()


def test_a_frame_on_a_channel_before_connection_open_is_unexpected(broker: BrokerHandle) -> None:
    """Before open-ok no frame type is looked at: a frame on a channel is 505, whatever it is."""
    client = _until_tune(broker.port)
    client.send(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    client.send_raw(bytes.fromhex("08000500000003") + b"abc\xce")  # a heartbeat with a payload, on channel 5
    close = client.expect_close()
    assert (close.reply_code, close.reply_text) == (505, 'UNEXPECTED_FRAME - type 8, all octets = <<"abc">>')
    client.close()


@pytest.mark.parametrize(
    ("payload", "reply"),
    [
        # connection.close cut short: RabbitMQ's reader crashes on it
        (struct.pack(">HHH", 10, 50, 200), (541, "INTERNAL_ERROR", 0, 0)),
        # a reply text that is not UTF-8
        (struct.pack(">HHHB", 10, 50, 200, 2) + b"\xff\xfe" + struct.pack(">HH", 0, 0),
         (501, "FRAME_ERROR - Malformed UTF-8 in shortstr", 10, 50)),
    ],
)  # fmt: skip
def test_channel_zero_methods_that_do_not_decode(broker: BrokerHandle, payload: bytes, reply: tuple) -> None:
    client = RawClient.connected(broker.port)
    client.send_frame(1, 0, payload)
    close = client.expect_close()
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == reply
    client.close()


def test_close_ok_on_an_open_channel_is_refused_and_frees_its_messages(broker: BrokerHandle, unique: str) -> None:
    """RabbitMQ: 503 unimplemented method. The channel's unacked message goes back to its queue
    (it used to be dropped from the table without being released, its messages stuck)."""
    with broker.connect() as connection:
        channel = connection.channel()
        channel.queue_declare(unique, auto_delete=False)
        for body in (b"1", b"2"):
            channel.basic_publish("", unique, body)
    client = RawClient.connected(broker.port)
    client.rpc(1, commands.Basic.Qos(prefetch_count=1), commands.Basic.QosOk)
    client.rpc(1, commands.Basic.Consume(queue=unique), commands.Basic.ConsumeOk)
    client.expect(1, commands.Basic.Deliver)
    client.send(1, commands.Channel.CloseOk())
    close = client.expect_close()
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        503, "COMMAND_INVALID - unimplemented method", 20, 41)  # fmt: skip
    client.close()
    wait_until(
        None,
        lambda: broker.call(lambda: broker.broker.vhosts["/"].queues[unique].message_count) == 2,
        5,
        "the unacked message was not requeued",
    )
    with broker.connect() as connection:
        connection.channel().queue_delete(unique)


def test_channel_open_ok_carries_an_empty_channel_id(broker: BrokerHandle) -> None:
    client = RawClient.connected(broker.port, frame_max=131072)
    client.send(2, commands.Channel.Open())
    got = client.next()
    assert got.channel == 2 and got.payload == struct.pack(">HHI", 20, 11, 0)  # longstr of length 0
    client.close()
