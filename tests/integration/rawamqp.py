"""A raw-socket AMQP 0-9-1 client for tests that need frames a real client will not send.

    client = RawClient(broker.port)
    client.handshake()                          # start-ok, tune-ok, open as guest on "/"
    client.send(1, commands.Channel.Open())     # any pamqp method, ContentHeader or ContentBody
    client.expect(1, commands.Channel.OpenOk)   # the next frame (heartbeats aside) must be this
    client.rpc(1, commands.Basic.Qos(), commands.Basic.QosOk)  # send, then expect
    client.publish(1, "", "queue", b"body", mandatory=True)
    frame = client.next()                       # the next frame, whatever it is
    client.send_frame(9, 1, b"abc")             # any frame at all, even a malformed one
    close = client.expect_close()               # connection.close; answered with close-ok
    assert client.wait_eof()
    client.close()

Everything read is a ``Frame(type, channel, payload, value)``: ``value`` is what pamqp makes
of the payload (a method, ContentHeader, ContentBody or Heartbeat), or None when it cannot.
Reads return None at EOF (``client.eof`` is then true) or when ``timeout`` passes.
Encoding uses amqp_server.protocol.frame_codec; decoding uses pamqp, so the two sides are checked by
different code.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any, NamedTuple

from pamqp import commands, encode
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header

from amqp_server.protocol.frame_codec import FRAME_END_BYTE, PROTOCOL_HEADER, build, encode_method, frame

__all__ = ["CAPABILITIES", "Frame", "RawClient", "amqplain", "plain"]

# What pika announces: the server then closes with 403 on a failed login instead of hanging up.
CAPABILITIES = {
    "authentication_failure_close": True,
    "connection.blocked": True,
    "consumer_cancel_notify": True,
    "publisher_confirms": True,
    "basic.nack": True,
}


class Frame(NamedTuple):
    type: int
    channel: int
    payload: bytes
    value: Any


def plain(user: str, password: str) -> bytes:
    """A SASL PLAIN response."""
    return b"\x00" + user.encode() + b"\x00" + password.encode()


def amqplain(user: str, password: str) -> bytes:
    """An AMQPLAIN response: a field table without its length prefix."""
    return encode.field_table({"LOGIN": user, "PASSWORD": password})[4:]


class RawClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""
        self.eof = False
        self.start: commands.Connection.Start | None = None
        self.tune: commands.Connection.Tune | None = None

    @classmethod
    def connected(cls, port: int, *, frame_max: int = 131072, **handshake: Any) -> RawClient:
        """A client past the handshake (as guest on "/", or per ``handshake``) with channel 1 open."""
        client = cls(port)
        opened = client.handshake(frame_max=frame_max, **handshake)
        assert isinstance(opened, commands.Connection.OpenOk), opened
        assert isinstance(client.open_channel(1), commands.Channel.OpenOk)
        return client

    # -- sending -------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, frame_type: int, channel: int, payload: bytes, end: bytes = FRAME_END_BYTE) -> None:
        """Send one frame built by hand; ``end`` replaces the frame-end octet."""
        self.sock.sendall(frame(frame_type, channel, payload)[:-1] + end)

    def send(self, channel: int, value: Any) -> None:
        """Send a pamqp method, ContentHeader, ContentBody or Heartbeat."""
        self.sock.sendall(pamqp_frame.marshal(value, channel))

    def publish(
        self,
        channel: int,
        exchange: str,
        routing_key: str,
        body: bytes = b"x",
        properties: commands.Basic.Properties | None = None,
        **fields: Any,
    ) -> None:
        """basic.publish (``fields``: mandatory, immediate) with its header and (if any) body
        frame, in one write."""
        method = commands.Basic.Publish(exchange=exchange, routing_key=routing_key, **fields)
        data = pamqp_frame.marshal(method, channel)
        header = pamqp_header.ContentHeader(0, len(body), properties or commands.Basic.Properties())
        data += pamqp_frame.marshal(header, channel)
        if body:
            data += frame(3, channel, body)
        self.sock.sendall(data)

    # -- reading -------------------------------------------------------------------------

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return False
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self._buffer += data
        return True

    def read(self, timeout: float = 5.0) -> Frame | None:
        """The next frame, or None at EOF or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buffer) >= 7:
                frame_type, channel, size = struct.unpack_from(">BHI", self._buffer)
                if len(self._buffer) >= size + 8:
                    raw, self._buffer = self._buffer[: size + 8], self._buffer[size + 8 :]
                    try:
                        value = pamqp_frame.unmarshal(raw)[2]
                    except Exception:  # noqa: BLE001 - keep the raw payload for the test to read
                        value = None
                    return Frame(frame_type, channel, raw[7:-1], value)
            remaining = deadline - time.monotonic()
            if self.eof or remaining <= 0:
                return None
            self._fill(remaining)

    def read_raw(self, timeout: float = 1.0) -> bytes:
        """Every byte that arrives until EOF or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._fill(deadline - time.monotonic())
        data, self._buffer = self._buffer, b""
        return data

    def next(self, timeout: float = 5.0) -> Frame:
        """The next frame but heartbeats, which must come within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.read(max(deadline - time.monotonic(), 0))
            assert got is not None, "expected a frame, got EOF/timeout"
            if got.type != 8:
                return got

    def expect(self, channel: int, kind: type, timeout: float = 5.0) -> Any:
        """The next frame (heartbeats skipped), which must be a ``kind`` on ``channel``."""
        got = self.next(timeout)
        assert got.channel == channel and isinstance(got.value, kind), (
            f"expected {kind.__name__} on channel {channel}, got {got.value!r} on channel {got.channel}"
        )
        return got.value

    def rpc(self, channel: int, method: Any, kind: type) -> Any:
        """Send ``method``; the next frame must be a ``kind`` on ``channel``."""
        self.send(channel, method)
        return self.expect(channel, kind)

    def expect_close(self, timeout: float = 5.0, close_ok: bool = True) -> commands.Connection.Close:
        """Read up to the server's connection.close (other frames skipped); answer close-ok."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.read(max(deadline - time.monotonic(), 0))
            assert got is not None, "expected connection.close, got EOF/timeout"
            if got.channel == 0 and isinstance(got.value, commands.Connection.Close):
                if close_ok:
                    self.send(0, commands.Connection.CloseOk())
                return got.value

    def wait_eof(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the socket (frames read meanwhile are dropped)."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self.read(deadline - time.monotonic())
        return self.eof

    # -- the handshake -------------------------------------------------------------------

    def handshake(
        self,
        user: str = "guest",
        password: str = "guest",
        vhost: str = "/",
        *,
        mechanism: str = "PLAIN",
        response: bytes | None = None,
        capabilities: dict[str, Any] | None = CAPABILITIES,
        channel_max: int = 2047,
        frame_max: int = 131072,
        heartbeat: int = 0,
        open_vhost: bool = True,
    ) -> Any:
        """Run the handshake as far as the server lets it go.

        Returns the server's last word: Connection.OpenOk, Connection.Tune (with
        ``open_vhost=False``), a Connection.Close (answered with close-ok), or None at EOF.
        """
        self.send_raw(PROTOCOL_HEADER)
        self.start = self.expect(0, commands.Connection.Start)
        if response is None:
            response = plain(user, password) if mechanism == "PLAIN" else amqplain(user, password)
        properties = {"product": "rawamqp"}
        if capabilities is not None:
            properties["capabilities"] = capabilities
        start_ok = build(
            commands.Connection.StartOk,
            client_properties=properties,
            mechanism=mechanism,
            response=response,
            locale="en_US",
        )
        self.send_raw(encode_method(0, start_ok))
        reply = self._next_on_zero()
        if not isinstance(reply, commands.Connection.Tune):
            return reply
        self.tune = reply
        self.send(0, commands.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max, heartbeat=heartbeat))
        if not open_vhost:
            return reply
        self.send(0, commands.Connection.Open(virtual_host=vhost))
        return self._next_on_zero()

    def _next_on_zero(self) -> Any:
        while True:
            got = self.read()
            if got is None:
                return None
            if got.channel == 0 and got.type == 1:
                if isinstance(got.value, commands.Connection.Close):
                    self.send(0, commands.Connection.CloseOk())
                return got.value

    def open_channel(self, number: int) -> Any:
        """channel.open on ``number``; returns the reply (Channel.OpenOk or a Close)."""
        self.send(number, commands.Channel.Open())
        while True:
            got = self.read()
            assert got is not None, f"no reply to channel.open on {number}"
            if got.channel in (0, number) and got.type == 1:
                return got.value

    def close(self) -> None:
        self.sock.close()
