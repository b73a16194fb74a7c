"""One client connection: the asyncio Protocol between the socket and the channels.

What it owns, in the order a connection meets it (as RabbitMQ's rabbit_reader lists its own):
routing frames to channels (and to channel 0, and to channels not yet open); opening and
closing channels; closing the connection on a connection-level error with RabbitMQ's code and
text; batching every write of one event-loop tick into one socket write; stopping deliveries
when the socket's buffer is full, and reading while it stays full (so a client that does not
read costs bounded memory). The rest is in its own modules: ``handshake`` (protocol header,
start/tune/open, authentication with the ``sasl`` mechanisms, vhost access, ``limits``),
``heartbeat``, ``flow`` (the read gate, resource alarms, held frames) and ``states``.

How an error ends the connection depends on the state, as in rabbit_reader's handle_exception:
before tune-ok (starting, tuning) the client gets nothing and the socket closes after the silent
delay; a refused login is closed (connection.close 403 first when the client has the
``authentication_failure_close`` capability) and waits that long for close-ok; from tune-ok on
(opening, running, blocked) the client gets connection.close with RabbitMQ's code and text
and we wait for close-ok. Nothing sent after the frame or command that failed is answered.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands

from amqp_server.channel.assembler import ContentAssembler, method_expected
from amqp_server.channel.channel import Channel
from amqp_server.core.access import Permission
from amqp_server.protocol.errors import (
    CHANNEL_ERROR,
    CONNECTION_FORCED,
    FRAME_ERROR,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    ConnectionError,
    FatalFrameError,
    UnknownMethodError,
)
from amqp_server.protocol.frame_codec import (
    BASIC_PUBLISH,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    FrameReader,
    build,
    decode_method,
    encode_method,
)
from amqp_server.protocol.rabbit_text import erlang_binary, frame_error_text
from amqp_server.transport import flow, handshake
from amqp_server.transport.flow import dispatch_throttled
from amqp_server.transport.heartbeat import Heartbeats
from amqp_server.transport.limits import check_channel_limit
from amqp_server.transport.states import (
    BLOCKED,
    CLOSED,
    CLOSING,
    DEAD,
    HANDSHAKE,
    HANDSHAKING,
    OPENING,
    RUNNING,
    STARTING,
    TUNING,
)

if TYPE_CHECKING:
    from amqp_server.auth.chain import Login
    from amqp_server.core.broker import Broker
    from amqp_server.core.vhost import VirtualHost

log = logging.getLogger(__name__)

WRITE_BUFFER_HIGH = 4 * 1024 * 1024
WRITE_BUFFER_LOW = 1024 * 1024
CLOSING_TIMEOUT = 30.0  # rabbit_reader's ?CLOSING_TIMEOUT
CHANNEL_OPEN = 0x0014000A
CONNECTION_CLOSE = 0x000A0032
CONNECTION_CLOSE_OK = 0x000A0033
# Methods followed by content; an unopened channel still assembles it before refusing it.
CONTENT_METHODS = frozenset((BASIC_PUBLISH, 0x003C0032, 0x003C003C, 0x003C0047))
_method_index = struct.Struct(">I").unpack_from


def _index(payload: bytes) -> int:
    return _method_index(payload)[0]


def unexpected_frame(frame_type: int, payload: bytes) -> ConnectionError:
    """RabbitMQ's 505 for a frame the connection cannot take in its state."""
    which, data = ("all", payload) if len(payload) <= 16 else ("first 16", payload[:16])
    prefix = f"type {frame_type}, {which} octets = "
    return ConnectionError(UNEXPECTED_FRAME, prefix + erlang_binary(data, len(prefix)))


def unknown_frame(frame_type: int, payload: bytes) -> ConnectionError:
    """RabbitMQ's 501 for a frame that is no method, header, body or empty heartbeat."""
    return ConnectionError(FRAME_ERROR, frame_error_text(frame_type, payload, "unknown_frame"))


def _ids(index: int) -> tuple[int, int]:
    return index >> 16, index & 0xFFFF


class Connection(asyncio.Protocol):
    """The server side of one AMQP connection (rabbit_reader's job); channels do the rest."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        config = broker.config
        self.id = broker.next_connection_id()
        self.state = HANDSHAKE
        self.reader = FrameReader(FRAME_MIN_SIZE)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.sockname: tuple[str, int] = ("", 0)
        # RabbitMQ's connection name, "127.0.0.1:60918 -> 127.0.0.1:5672" (set once connected).
        self.name = ""
        self.connected_at = 0  # ms since the epoch
        self.channels: dict[int, Channel] = {}
        self.channel_max = config.channel_max
        self.frame_max = config.frame_max
        self.heartbeat = 0
        self.username = ""
        self.user: Login | None = None  # who logged in, and the backends that authorise it
        self.credential_timer: asyncio.TimerHandle | None = None  # closes it when its token expires
        self.mechanism = ""
        self.tls: ssl.SSLObject | None = None  # the TLS session of a connection to an AMQPS listener
        self.vhost: VirtualHost | None = None
        self.client_properties: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self.last_queue: dict[int, str] = {}
        self.writable = True
        self.closed = False  # no more frames are processed (closed or dead)
        self.loop = asyncio.get_running_loop()
        self._header_buffer = b""  # a protocol header read in parts (handshake.py)
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._confirming: set[Channel] = set()
        self._read = self._written = False  # since the last heartbeat tick (heartbeat.py)
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._heartbeats: Heartbeats | None = None  # from tune-ok, if the client agreed to an interval
        # The read gate and resource alarms (flow.py).
        self._paused: set[str] = set()  # why reading is paused (pause_reading); empty: reading
        self._alarm: str | None = None  # connection.blocked reason while a resource alarm is on
        self._blocked_sent = False
        self._held: list[tuple[int, int, bytes]] | None = None  # frames read past a blocking publish or a close
        # Channels that got a content method before channel.open: its content being assembled,
        # as RabbitMQ's command assembler would, before the channel refuses it.
        self._unopened: dict[int, ContentAssembler] = {}
        self._exclusive_cleaned = False
        # Counters for stats(): socket reads/writes and their octets, counted per read and
        # per flush (not per frame); channel counters of closed channels are folded in here.
        self.recv_oct = self.recv_cnt = self.send_oct = self.send_cnt = 0
        self._closed_channel_stats: dict[str, int] = {}

    # -- transport events ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername") or ("", 0)
        self.sockname = transport.get_extra_info("sockname") or ("", 0)
        self.tls = transport.get_extra_info("ssl_object")
        self.name = f"{_address(self.peer)} -> {_address(self.sockname)}"
        self.connected_at = int(time.time() * 1000)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW)
        self.broker.connections.add(self)
        self._handshake_timer = self.loop.call_later(
            self.broker.config.handshake_timeout, handshake.handshake_timeout, self
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state = DEAD
        for timer in (self._handshake_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        if self._heartbeats is not None:
            self._heartbeats.stop()
        self.broker.connections.discard(self)
        self._release_channels()
        self._delete_exclusive_queues()
        self.broker.events.emit("connection.closed", self, **self.identity())

    def pause_writing(self) -> None:
        """The socket's buffer is over WRITE_BUFFER_HIGH: deliveries stop, and so does reading,
        since what the client sends makes more output (returns, confirms, replies)."""
        self.writable = False
        self.pause_reading("output")
        for channel in self.channels.values():
            channel.revoke_credit()

    def resume_writing(self) -> None:
        self.writable = True
        self.resume_reading("output")
        for channel in list(self.channels.values()):
            channel.grant_credit()

    def data_received(self, data: bytes) -> None:
        self._read = True
        self.recv_oct += len(data)
        self.recv_cnt += 1
        if self.state == HANDSHAKE:
            data = handshake.protocol_header(self, data)
            if not data:
                return
        reader = self.reader
        try:
            if self.state == TUNING:
                # tune-ok sets frame_max: the frames after it in this read are sized by the new
                # one, so the frames are taken one by one until it has come.
                frames = reader.feed_one(data)
                while frames:
                    self._take(frames)
                    frames = reader.feed_one(b"") if self.state == TUNING else reader.feed(b"")
                return
            frames = reader.feed(data)
        except ConnectionError as error:
            self._take(getattr(error, "frames", []))  # the good frames before the bad one
            frame = getattr(error, "frame", None)
            if frame is not None and frame[1] and self.state in HANDSHAKING:
                # Before open-ok RabbitMQ's reader looks at no frame's type: one on a channel is
                # unexpected, whatever it is.
                error = unexpected_frame(frame[0], frame[2])
            self._frame_error(error)
            return
        self._take(frames)

    def _take(self, frames: list[tuple[int, int, bytes]]) -> None:
        if self._held is not None:  # blocked, or closing: they wait
            self._held += frames
        elif self._alarm is None:
            self._dispatch(frames)
        else:
            dispatch_throttled(self, frames)

    def _dispatch(self, frames: list[tuple[int, int, bytes]]) -> None:
        """Route frames to their channels. Once the connection closes the channel table is
        empty, so the rest go to the channel-0 and unopened-channel paths, which drop them;
        while it is closing, the rest wait for the closed state (``_held``)."""
        channels = self.channels
        count = len(frames)
        index = 0
        while index < count:
            frame_type, number, payload = frames[index]
            index += 1
            try:
                channel = channels.get(number)
                if channel is not None:
                    # basic.publish (method 60.40) followed by its header and one body frame:
                    # the common case, handled as one event (Channel.publish_whole).
                    if frame_type == FRAME_METHOD and payload[3] == 40 and payload[1] == 60 and index + 1 < count:
                        header = frames[index]
                        body = frames[index + 1]
                        if header[0] == FRAME_HEADER and body[0] == FRAME_BODY and header[1] == body[1] == number:
                            index += 2
                            if channel.publish_whole(payload, header[2], body[2]):
                                continue
                            index -= 2
                    channel.handle_frame(frame_type, payload)
                elif number == 0:
                    self._channel0_frame(frame_type, payload)
                    if self.state == CLOSING:
                        break
                else:
                    self._unopened_channel_frame(frame_type, number, payload)
            except ConnectionError as error:
                self.close_with(error)
                if self.state == CLOSING:
                    break
            except ChannelError as error:
                channel = channels.get(number)
                if channel is not None:
                    channel.close_with(error)
        else:
            return
        self._held += frames[index:]  # type: ignore[operator]  # a list while closing

    def _frame_error(self, error: ConnectionError) -> None:
        if self.state in (CLOSING, CLOSED, DEAD):
            return  # rabbit_reader ignores bad input once it has closed
        self.close_with(error)

    # -- channel 0 (the handshake's methods are handshake.py's) ---------------------------

    def _channel0_frame(self, frame_type: int, payload: bytes) -> None:
        state = self.state
        if state == CLOSED:
            self._while_closed(frame_type, payload)
            return
        if state == DEAD:
            return
        if frame_type == FRAME_METHOD:
            if len(payload) < 4:
                raise unknown_frame(frame_type, payload)
            try:
                method = decode_method(payload)
            except UnknownMethodError:
                raise
            except ConnectionError as error:
                raise _channel0_decode_error(error, payload) from None
            handler = _CONNECTION_HANDLERS.get((state, type(method)))
            if handler is None:
                index = _index(payload)
                raise ConnectionError(CHANNEL_ERROR, f"unexpected method in connection state {state}", _ids(index))
            handler(self, method)
        elif frame_type == FRAME_HEARTBEAT and not payload:
            return
        elif (frame_type == FRAME_HEADER and len(payload) >= 12) or frame_type == FRAME_BODY:
            raise unexpected_frame(frame_type, payload)
        else:
            raise unknown_frame(frame_type, payload)

    # -- state others read ---------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Past connection.open and not closing: what connection limits count."""
        return self.state == RUNNING or self.state == BLOCKED

    def stats(self) -> dict[str, Any]:
        """The connection's counters, named as RabbitMQ's management API names them; message
        counters are the sums over its channels, closed ones included."""
        totals = dict(self._closed_channel_stats)
        unacked = 0
        for channel in self.channels.values():
            channel_stats = channel.stats()
            unacked += channel_stats["messages_unacknowledged"]
            for key, value in channel_stats["message_stats"].items():
                totals[key] = totals.get(key, 0) + value
        return {
            "name": f"{self.peer[0]}:{self.peer[1] if len(self.peer) > 1 else 0}",
            "user": self.username,
            "vhost": self.vhost.name if self.vhost is not None else None,
            "state": self.state,
            "channels": len(self.channels),
            "channel_max": self.channel_max,
            "frame_max": self.frame_max,
            "timeout": self.heartbeat,
            "auth_mechanism": self.mechanism,
            "recv_oct": self.recv_oct,
            "recv_cnt": self.recv_cnt,
            "send_oct": self.send_oct,
            "send_cnt": self.send_cnt,
            "messages_unacknowledged": unacked,
            "message_stats": totals,
        }

    @property
    def permission(self) -> Permission | None:
        """Looked up on each use, so that permission changes apply to open connections."""
        vhost = self.vhost
        return None if vhost is None else self.broker.permissions.get((self.username, vhost.name))

    # -- channels ------------------------------------------------------------------------

    def _unopened_channel_frame(self, frame_type: int, number: int, payload: bytes) -> None:
        """A frame for a channel number that is not open, handled as RabbitMQ does: a channel
        process is made for it (counting against channel_max), its command assembler takes the
        frames, and any complete command but channel.open is refused."""
        state = self.state
        if state != RUNNING and state != BLOCKED:
            if state in HANDSHAKING:
                raise unexpected_frame(frame_type, payload)
            return  # closed or dead: dropped
        if frame_type == FRAME_METHOD:
            if len(payload) < 4:
                raise unknown_frame(frame_type, payload)
        elif frame_type == FRAME_HEADER:
            if len(payload) < 12:
                raise unknown_frame(frame_type, payload)
        elif frame_type == FRAME_HEARTBEAT:
            raise unknown_frame(frame_type, payload) if payload else unexpected_frame(frame_type, payload)
        elif frame_type != FRAME_BODY:
            raise unknown_frame(frame_type, payload)
        content = self._unopened.get(number)
        if content is None:
            count = len(self.channels) + len(self._unopened)
            if self.channel_max and count >= self.channel_max:
                raise ConnectionError(
                    NOT_ALLOWED,
                    f"number of channels opened ({count}) has reached the negotiated channel_max ({self.channel_max})",
                )
            check_channel_limit(self)
            if frame_type != FRAME_METHOD:
                raise method_expected()
            method = decode_method(payload)  # a method that does not decode is refused as such first
            index = _index(payload)
            if index == CHANNEL_OPEN:
                self.channels[number] = channel = Channel(self, number)
                self.broker.events.emit("channel.created", channel, **channel.identity())
                self.write_method(number, build(commands.Channel.OpenOk, channel_id=""))  # (empty, as RabbitMQ)
                return
            if index in CONTENT_METHODS:
                self._unopened[number] = ContentAssembler(method, index, keep=False)
                return
            raise ConnectionError(CHANNEL_ERROR, "expected 'channel.open'", _ids(index))
        try:
            if frame_type == FRAME_HEADER:
                complete = content.header(payload)
            elif frame_type == FRAME_BODY:
                complete = content.body(payload)
            else:
                raise content.expected()
        except ConnectionError:
            del self._unopened[number]
            raise
        if complete is not None:
            del self._unopened[number]
            raise ConnectionError(CHANNEL_ERROR, "expected 'channel.open'", _ids(content.index))

    def channel_closed(self, number: int) -> None:
        channel = self.channels.pop(number, None)
        self.last_queue.pop(number, None)
        if channel is not None:
            totals = self._closed_channel_stats
            for key, value in channel.stats()["message_stats"].items():
                totals[key] = totals.get(key, 0) + value
            self.broker.events.emit("channel.closed", channel, **channel.identity())

    def new_consumer_tag(self) -> str:
        return f"amq.ctag-{_random_token()}"

    def new_queue_name(self) -> str:
        return f"amq.gen-{_random_token()}"

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def write_chunks(self, chunks: list[bytes]) -> None:
        self._out += chunks
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def write_method(self, channel: int, method: Any) -> None:
        self.write(encode_method(channel, method))

    def confirms_pending(self, channel: Channel) -> None:
        self._confirming.add(channel)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._confirming:
            confirming = self._confirming
            self._confirming = set()
            for channel in confirming:
                channel.emit_confirms()
        if self._out and self.transport is not None and not self.transport.is_closing():
            self._written = True
            data = b"".join(self._out)
            self.send_oct += len(data)
            self.send_cnt += 1
            self.transport.write(data)
        self._out = []

    @property
    def unsent_bytes(self) -> int:
        """Output not yet taken by the socket: the transport's buffer and this tick's writes."""
        buffered = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return buffered + sum(map(len, self._out))

    # -- the read gate and resource alarms: flow.py's functions, as methods ------------------

    pause_reading = flow.pause_reading
    resume_reading = flow.resume_reading
    paused_for = property(flow.paused_for)
    block = flow.block
    unblock = flow.unblock

    # -- closing -------------------------------------------------------------------------

    def close_with(self, error: AMQPError) -> None:
        """End the connection on ``error`` as rabbit_reader's handle_exception does."""
        state = self.state
        if state in (CLOSING, CLOSED, DEAD):
            return
        if isinstance(error, UnknownMethodError):
            # RabbitMQ's reader crashes on a method id it does not know: no close, just EOF.
            log.warning("closing %s: %s", self._describe(), error.reply_text)
            self._die()
            self._abort()
            return
        if state in (STARTING, TUNING, HANDSHAKE):
            log.warning("closing %s (state %s): %s", self._describe(), state, error.reply_text)
            self._die()
            return
        log.warning("closing %s: %s", self._describe(), error.reply_text)
        close = build(
            commands.Connection.Close,
            reply_code=error.code,
            reply_text=error.reply_text,
            class_id=error.method[0],
            method_id=error.method[1],
        )
        fatal = isinstance(error, FatalFrameError)
        self._close_after_channels(close, self._enter_closed_out_of_sync if fatal else self._enter_closed)

    def force_close(self, reason: str) -> None:
        """Close from the server side (vhost or user deleted, shutdown): 320 CONNECTION_FORCED
        to a running connection; one still in its handshake is just dropped."""
        if self.state == RUNNING or self.state == BLOCKED:
            self.close_with(ConnectionError(CONNECTION_FORCED, reason))
        elif self.state != CLOSED and self.state != CLOSING:
            self._abort()

    def shutdown(self) -> None:
        """Broker shutdown: connection.close 320, then close the socket without waiting
        for close-ok (RabbitMQ's reader exits right after sending it)."""
        self.force_close("broker forced connection closure with reason 'shutdown'")
        self._abort()

    def _on_close(self, method: commands.Connection.Close) -> None:
        self._close_after_channels(commands.Connection.CloseOk(), self._enter_closed)

    def _close_after_channels(self, reply: Any, then: Callable[[], None]) -> None:
        """rabbit_reader's terminate_channels: the channels first finish the commands they have
        already taken (their replies go out before ``reply``); nothing else is taken meanwhile
        (state closing). Then ``reply`` goes out and ``then`` runs."""
        if not any(channel.busy for channel in self.channels.values()):
            self.write_method(0, reply)
            then()
            return
        self.state = CLOSING
        if self._held is None:
            self._held = []
        self.pause_reading("closing")
        self.broker.spawn(self._close_when_channels_idle(reply, then))

    async def _close_when_channels_idle(self, reply: Any, then: Callable[[], None]) -> None:
        while tasks := [c.task for c in self.channels.values() if c.busy and c.task is not None and not c.task.done()]:
            await asyncio.wait(tasks)
        if self.state == CLOSING and not self.closed:
            self.write_method(0, reply)
            then()

    def _enter_closed(self, timeout: float | None = None) -> None:
        """rabbit_reader's close_connection: drop the channels and exclusive queues, then
        keep the socket until the client closes it, sends close-ok or the closing timeout
        passes (by default the heartbeat interval, at most CLOSING_TIMEOUT). What was read past
        a close or a blocking publish is taken now: only connection.close and close-ok count."""
        self._release_channels()
        self._unopened.clear()
        held, self._held = self._held, None
        self.state = CLOSED
        self.closed = True
        self._delete_exclusive_queues()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        if timeout is None:
            heartbeat = self.heartbeat
            timeout = heartbeat if 0 < heartbeat < CLOSING_TIMEOUT else CLOSING_TIMEOUT
        self._close_timer = self.loop.call_later(timeout, self._abort)
        self.resume_reading("alarm")
        self.resume_reading("closing")
        if held:
            self._dispatch(held)

    def _enter_closed_out_of_sync(self) -> None:
        """After a fatal frame error the stream is out of sync: closed, but nothing more is
        read, and the socket closes after the silent-close delay, close-ok or not."""
        self._enter_closed()
        self._die()

    def _while_closed(self, frame_type: int, payload: bytes) -> None:
        if frame_type != FRAME_METHOD or len(payload) < 4:
            return
        index = _index(payload)
        if index == CONNECTION_CLOSE:  # answer, and keep waiting for close-ok
            self.write_method(0, commands.Connection.CloseOk())
        elif index == CONNECTION_CLOSE_OK:
            self._abort()

    def _release_channels(self) -> None:
        channels = list(self.channels.values())
        self.channels.clear()
        for channel in channels:
            channel.release()
            self.broker.events.emit("channel.closed", channel, **channel.identity())

    def _die(self) -> None:
        """Stop reading; close the socket after the silent-close delay (pending output first)."""
        self._release_channels()
        self._unopened.clear()
        self._held = None
        self.state = DEAD
        self.closed = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        if self._heartbeats is not None:
            self._heartbeats.stop()
        self.pause_reading("dead")
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_timer = self.loop.call_later(self.broker.config.silent_close_delay, self._abort)

    def _abort(self) -> None:
        """Close the socket now, after writing what is pending."""
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _delete_exclusive_queues(self) -> None:
        vhost = self.vhost
        if vhost is None or self._exclusive_cleaned:
            return
        self._exclusive_cleaned = True
        for name in vhost.exclusive_queues(self.id):
            self.broker.spawn(vhost.delete_queue(name))

    def identity(self) -> dict[str, Any]:
        """Who the connection is, as RabbitMQ's connection events carry it."""
        fields: dict[str, Any] = {
            "name": self.name, "node": self.broker.node_name, "client_properties": self.client_properties,
        }  # fmt: skip
        provided = self.client_properties.get("connection_name")
        if provided is not None:
            fields["user_provided_name"] = provided
        return fields

    def _describe(self) -> str:
        host, port = self.peer[0], self.peer[1] if len(self.peer) > 1 else 0
        return f"{host}:{port} ({self.id})"


def _channel0_decode_error(error: ConnectionError, payload: bytes) -> ConnectionError:
    """A channel-0 method that does not decode, as RabbitMQ's reader answers it: fields that do
    not fit the method crash it (a bare 541 INTERNAL_ERROR); a shortstr that is not UTF-8 is a
    501 naming the method."""
    if error.explanation.startswith("cannot decode"):
        return ConnectionError(INTERNAL_ERROR, "")
    return ConnectionError(error.code, error.explanation, _ids(_index(payload)))


def _random_token() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


_CONNECTION_HANDLERS = {
    (STARTING, commands.Connection.StartOk): handshake.on_start_ok,
    (TUNING, commands.Connection.TuneOk): handshake.on_tune_ok,
    (OPENING, commands.Connection.Open): handshake.on_open,
    (RUNNING, commands.Connection.Close): Connection._on_close,
    (BLOCKED, commands.Connection.Close): Connection._on_close,
    (RUNNING, commands.Connection.UpdateSecret): handshake.on_update_secret,
    (BLOCKED, commands.Connection.UpdateSecret): handshake.on_update_secret,
}


def _address(address: tuple[Any, ...]) -> str:
    """host:port as RabbitMQ prints an endpoint (rabbit_misc:ntoab): an IPv6 host in brackets."""
    host = str(address[0]) if address else ""
    port = address[1] if len(address) > 1 else 0
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
