"""A minimal asyncio AMQP 0-9-1 client: URI, handshake, channels and RPCs.

pamqp encodes and decodes the methods here (handshake, declares, consume, close). The hot frames
(deliveries, confirms) never reach it: ``Connection.scan`` splits the byte stream into frames and
hands each to ``on_frame``, which the producer and consumer in ``workers.py`` override (or, for
the consumer, ``scan`` itself) with hand-written fast paths.

A connection is an ``asyncio.BufferedProtocol``: the transport reads straight into the
connection's ``bytearray`` (no ``bytes`` object per read, no joining of a partial frame with the
next read), ``scan`` parses it in place, and what is left of an incomplete frame is moved to the
front of the buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import urllib.parse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.base import Frame as Method

from amqp_perf import frames

__all__ = ["AmqpError", "Connection", "Endpoint", "connect", "parse_uri", "run"]

T = TypeVar("T")
#: initial read buffer of a connection, and the free room below which it grows (doubling) so
#: that a read never has to stop short of a whole frame or delivery for lack of space
READ_BUFFER = 256 * 1024
READ_MIN_FREE = 64 * 1024
C = TypeVar("C", bound="Connection")

CAPABILITIES = {
    "authentication_failure_close": True,
    "basic.nack": True,
    "connection.blocked": True,
    "consumer_cancel_notify": True,
    "publisher_confirms": True,
}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    vhost: str
    user: str
    password: str

    def describe(self) -> str:
        return f"{self.host}:{self.port}{self.vhost if self.vhost.startswith('/') else '/' + self.vhost}"


def parse_uri(uri: str) -> Endpoint:
    """``amqp://user:password@host:port/vhost`` (percent-encoded; no path or ``/`` is ``/``)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "amqp":
        raise ValueError(f"unsupported URI scheme {parts.scheme!r} (only amqp://)")
    unquote = urllib.parse.unquote
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return Endpoint(
        host=parts.hostname or "localhost",
        port=parts.port or 5672,
        vhost=unquote(path) if path else "/",
        user=unquote(parts.username) if parts.username is not None else "guest",
        password=unquote(parts.password) if parts.password is not None else "guest",
    )


class AmqpError(Exception):
    """A connection or channel closed by the broker, or the connection lost."""

    def __init__(self, text: str, code: int = 0) -> None:
        super().__init__(text)
        self.code = code


def _close_text(what: str, method: commands.Connection.Close | commands.Channel.Close) -> str:
    return f"{what} closed by the broker: {method.reply_code} {method.reply_text}"


class Connection(asyncio.BufferedProtocol):
    """One AMQP connection. Subclasses override ``on_frame`` / ``scan`` for their hot frames."""

    def __init__(self, endpoint: Endpoint, name: str, frame_max: int = 131072) -> None:
        self.loop = asyncio.get_running_loop()
        self.endpoint = endpoint
        self.name = name
        self.frame_max = frame_max
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = self.loop.create_future()
        self.closing = False
        self.error: str | None = None
        self.blocked = 0
        self.paused = False
        #: the read buffer: ``_buf[:_pending]`` is the start of a frame not yet complete
        self._buf = bytearray(READ_BUFFER)
        self._view = memoryview(self._buf)
        self._pending = 0
        self._drained: asyncio.Future[None] | None = None
        self._waiters: dict[int, tuple[tuple[type, ...], asyncio.Future[Any]]] = {}
        #: called once with the text of the first unexpected close or loss
        self.on_error: Callable[[str], None] | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes read but not handled yet: the start of a frame still incomplete (0 between frames)."""
        return self._pending

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(frames.PROTOCOL_HEADER)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.fail(f"connection lost: {exc}" if exc else "connection closed by the broker")
        error = AmqpError(self.error or "connection closed")
        if not self.opened.done():
            self.opened.set_exception(error)
        for _types, waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._waiters.clear()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    async def drained(self) -> None:
        """Wait until the transport takes writes again."""
        if self.paused:
            if self._drained is None:
                self._drained = self.loop.create_future()
            await self._drained

    def get_buffer(self, sizehint: int) -> memoryview:
        pending = self._pending
        if len(self._buf) - pending < READ_MIN_FREE:
            # a new buffer, never a resize: the transport may still hold a view of the old one
            buf = bytearray(2 * len(self._buf))
            buf[:pending] = self._buf[:pending]
            self._buf, self._view = buf, memoryview(buf)
        return self._view[pending:]

    def buffer_updated(self, nbytes: int) -> None:
        end = self._pending + nbytes
        buf = self._buf
        pos = self.scan(buf, end)
        if pos >= end:
            self._pending = 0
        else:
            if pos:
                buf[: end - pos] = buf[pos:end]  # same size: allowed while the transport has a view
            self._pending = end - pos

    def data_received(self, data: bytes) -> None:
        """The same for bytes from elsewhere (tests, a transport without buffer support)."""
        view = memoryview(data)
        while view:
            room = self.get_buffer(len(view))
            take = min(len(room), len(view))
            room[:take] = view[:take]
            del room
            self.buffer_updated(take)
            view = view[take:]

    # -- frames ----------------------------------------------------------------------------

    def scan(self, data: bytearray, n: int) -> int:
        """Handle every complete frame in ``data[:n]``; return where the incomplete rest
        starts (``n`` after a protocol error)."""
        pos = 0
        header = frames.FRAME.unpack_from
        while n - pos >= 8:
            frame_type, channel, size = header(data, pos)
            end = pos + 7 + size
            if end >= n:
                break
            if data[end] != frames.FRAME_END:
                self.protocol_error("frame end byte missing")
                return n
            self.on_frame(frame_type, channel, data, pos + 7, end)
            pos = end + 1
        return pos

    def on_frame(self, frame_type: int, channel: int, data: bytearray, start: int, end: int) -> None:
        """One frame, payload ``data[start:end]``. Methods are decoded by pamqp; content frames
        are ignored here (subclasses that want content override this)."""
        if frame_type == frames.FRAME_METHOD:
            try:
                _n, _channel, method = pamqp_frame.unmarshal(bytes(data[start - 7 : end + 1]))
            except Exception as exc:  # pamqp raises several types on bad input
                self.protocol_error(f"undecodable method frame: {exc}")
                return
            self.on_method(channel, method)
        elif frame_type == frames.FRAME_HEARTBEAT:
            self.write(frames.HEARTBEAT_FRAME)

    def on_method(self, channel: int, method: Method) -> None:
        if isinstance(method, commands.Connection.Start):
            self._start_ok(method)
        elif isinstance(method, commands.Connection.Tune):
            self._tune_ok(method)
        elif isinstance(method, commands.Connection.OpenOk):
            if not self.opened.done():
                self.opened.set_result(None)
        elif isinstance(method, commands.Connection.Close):
            self.send(0, commands.Connection.CloseOk())
            error = _close_text("connection", method)
            if not self.opened.done():
                self.opened.set_exception(AmqpError(error, method.reply_code))
            self.fail(error)
            self.closing = True
            self._reply(0, AmqpError(error, method.reply_code))
            if self.transport is not None:
                self.transport.close()
        elif isinstance(method, commands.Channel.Close):
            self.send(channel, commands.Channel.CloseOk())
            error = _close_text(f"channel {channel}", method)
            if not self._reply(channel, AmqpError(error, method.reply_code)):
                self.fail(error)
        elif isinstance(method, commands.Connection.Blocked):
            self.blocked += 1
        elif isinstance(method, commands.Basic.Cancel):
            self.on_cancel(channel, method)
        else:
            waiter = self._waiters.get(channel)
            if waiter is not None and isinstance(method, waiter[0]):
                self._reply(channel, method)
            else:
                self.on_other_method(channel, method)

    def on_other_method(self, channel: int, method: Method) -> None:
        """Methods nobody waits for (basic.return, connection.unblocked, ...): ignored."""

    def on_cancel(self, channel: int, method: commands.Basic.Cancel) -> None:
        self.fail(f"consumer {method.consumer_tag} cancelled by the broker")

    def _reply(self, channel: int, value: Any) -> bool:
        waiter = self._waiters.pop(channel, None)
        if waiter is None or waiter[1].done():
            return False
        if isinstance(value, BaseException):
            waiter[1].set_exception(value)
        else:
            waiter[1].set_result(value)
        return True

    def _start_ok(self, start: commands.Connection.Start) -> None:
        mechanisms = start.mechanisms.split() if isinstance(start.mechanisms, str) else []
        if mechanisms and "PLAIN" not in mechanisms:
            self.protocol_error(f"the broker does not offer PLAIN authentication ({start.mechanisms})")
            return
        properties = {
            "product": "amqp-perf",
            "connection_name": self.name,
            "capabilities": CAPABILITIES,
        }
        response = f"\0{self.endpoint.user}\0{self.endpoint.password}"
        self.send(
            0, commands.Connection.StartOk(client_properties=properties, mechanism="PLAIN", response=response)
        )

    def _tune_ok(self, tune: commands.Connection.Tune) -> None:
        if tune.frame_max:
            self.frame_max = min(self.frame_max, tune.frame_max)
        self.send(
            0, commands.Connection.TuneOk(channel_max=tune.channel_max, frame_max=self.frame_max, heartbeat=0)
        )
        self.send(0, commands.Connection.Open(virtual_host=self.endpoint.vhost))

    # -- sending and RPC -------------------------------------------------------------------

    def write(self, data: bytes | bytearray) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, channel: int, method: Method) -> None:
        self.write(pamqp_frame.marshal(method, channel))

    async def rpc(self, channel: int, method: Method, *replies: type, timeout: float = 30.0) -> Any:
        """Send ``method`` and wait for one of ``replies`` on the channel; a channel.close or the
        end of the connection raises ``AmqpError``."""
        if self.error is not None:
            raise AmqpError(self.error)
        waiter: asyncio.Future[Any] = self.loop.create_future()
        self._waiters[channel] = (replies, waiter)
        self.send(channel, method)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            self._waiters.pop(channel, None)
            raise AmqpError(f"no reply to {method.name} within {timeout:g} s") from None

    async def open_channel(self, channel: int = 1) -> None:
        await self.rpc(channel, commands.Channel.Open(), commands.Channel.OpenOk)

    async def close(self, timeout: float = 3.0) -> None:
        """connection.close, wait for close-ok (at most ``timeout``), drop the socket."""
        if self.transport is None or self.transport.is_closing():
            self.closing = True
            return
        self.closing = True
        waiter: asyncio.Future[Any] = self.loop.create_future()
        self._waiters[0] = ((commands.Connection.CloseOk,), waiter)
        self.send(
            0,
            commands.Connection.Close(reply_code=200, reply_text="Normal shutdown", class_id=0, method_id=0),
        )
        try:
            await asyncio.wait_for(waiter, timeout)
        except (TimeoutError, AmqpError):
            pass
        finally:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    # -- errors ----------------------------------------------------------------------------

    def fail(self, text: str) -> None:
        """Record the first error of this connection and tell ``on_error``."""
        if self.error is not None:
            return
        self.error = text
        if self.on_error is not None and not self.closing:
            self.on_error(f"{self.name}: {text}")

    def protocol_error(self, text: str) -> None:
        """Something only a broken stream can explain: record it and drop the connection."""
        self.fail(f"protocol error: {text}")
        self.abort()


async def connect(
    endpoint: Endpoint,
    name: str,
    *,
    frame_max: int = 131072,
    factory: Callable[..., C] = Connection,  # type: ignore[assignment]
    timeout: float = 15.0,
    **kwargs: Any,
) -> C:
    """Open a TCP connection and complete the AMQP handshake with ``factory(endpoint, name,
    frame_max, **kwargs)`` as the protocol."""
    loop = asyncio.get_running_loop()
    make = functools.partial(factory, endpoint, name, frame_max, **kwargs)
    try:
        _transport, conn = await asyncio.wait_for(
            loop.create_connection(make, endpoint.host, endpoint.port), timeout
        )
    except OSError as exc:
        raise AmqpError(f"cannot connect to {endpoint.host}:{endpoint.port}: {exc.strerror or exc}") from None
    except TimeoutError:
        raise AmqpError(f"cannot connect to {endpoint.host}:{endpoint.port}: timed out") from None
    try:
        await asyncio.wait_for(asyncio.shield(conn.opened), timeout)
    except TimeoutError:
        conn.opened.cancel()
        conn.abort()
        raise AmqpError(f"handshake with {endpoint.describe()} timed out") from None
    except AmqpError:
        conn.abort()
        raise
    return conn


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a new event loop, uvloop's when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
