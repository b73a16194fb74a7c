"""One client connection: an asyncio Protocol around the frame codec.

Responsibilities, in the order a connection meets them (as RabbitMQ's rabbit_reader lists its
own): check the protocol header; run the handshake (start/start-ok, tune/tune-ok, open) with
authentication and vhost access; send and check heartbeats; route frames to channels; open and
close channels; close the connection on a connection-level error with RabbitMQ's code and text;
batch every write of one event-loop tick into one socket write; stop delivering when the
socket's buffer is full; connection.blocked/unblocked on resource alarms.

States: ``header`` -> ``start`` -> ``tune`` -> ``open`` -> ``running`` -> ``closing`` -> ``closed``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import platform
import socket
import time
from typing import TYPE_CHECKING, Any

from pamqp import commands

from amqp_server import __version__
from amqp_server.access import Permission, check_password
from amqp_server.channel import Channel
from amqp_server.errors import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    NOT_ALLOWED,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    ConnectionError,
)
from amqp_server.frame_codec import (
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    HEARTBEAT_FRAME,
    PROTOCOL_HEADER,
    FrameReader,
    build,
    decode_method,
    decode_table,
    encode_method,
)

if TYPE_CHECKING:
    from amqp_server.broker import Broker
    from amqp_server.vhost import VirtualHost

log = logging.getLogger(__name__)

CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}
WRITE_BUFFER_HIGH = 4 * 1024 * 1024
WRITE_BUFFER_LOW = 1024 * 1024
CLOSE_OK_TIMEOUT = 3.0
CHANNEL_CLOSE_OK = 0x00140029
CHANNEL_CLOSE = 0x00140028
CHANNEL_OPEN = 0x0014000A


def server_properties(cluster_name: str) -> dict[str, Any]:
    return {
        "product": "amqp-server",
        "version": __version__,
        "platform": f"Python {platform.python_version()}",
        "copyright": "Copyright (c) the amqp-server authors",
        "information": "Licensed under the MPL 2.0",
        "cluster_name": cluster_name,
        "capabilities": CAPABILITIES,
    }


class Connection(asyncio.Protocol):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        config = broker.config
        self.id = broker.next_connection_id()
        self.state = "header"
        self.reader = FrameReader(FRAME_MIN_SIZE)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.channels: dict[int, Channel] = {}
        self.channel_max = config.channel_max
        self.frame_max = config.frame_max
        self.heartbeat = config.heartbeat
        self.username = ""
        self.vhost: VirtualHost | None = None
        self.client_properties: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self.last_queue: dict[int, str] = {}
        self.writable = True
        self.closed = False
        self.blocked = False
        self._header_buffer = b""
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._confirming: set[Channel] = set()
        self._read = self._written = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = time.monotonic()
        self._tag_counter = 0
        self._reading_paused = False
        self.loop = asyncio.get_running_loop()

    # -- transport events ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername") or ("", 0)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW)
        self.broker.connections.add(self)
        self._timer = self.loop.call_later(self.broker.config.handshake_timeout, self._handshake_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state = "closed"
        if self._timer is not None:
            self._timer.cancel()
        self.broker.connections.discard(self)
        for channel in list(self.channels.values()):
            channel.release()
        self.channels.clear()
        self._delete_exclusive_queues()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        for channel in list(self.channels.values()):
            channel._dispatch_all()

    def data_received(self, data: bytes) -> None:
        self._read = True
        if self.state == "header":
            data = self._protocol_header(data)
            if not data:
                return
        try:
            frames = self.reader.feed(data)
        except ConnectionError as error:
            self.close_with(error)
            return
        channels = self.channels
        for frame_type, number, payload in frames:
            if self.state == "closing":
                self._while_closing(frame_type, number, payload)
                continue
            try:
                channel = channels.get(number)
                if channel is not None:
                    channel.handle_frame(frame_type, payload)
                elif number == 0:
                    self._connection_frame(frame_type, payload)
                else:
                    self._unopened_channel_frame(frame_type, number, payload)
            except ConnectionError as error:
                self.close_with(error)
                return
            except ChannelError as error:
                channel = channels.get(number)
                if channel is not None:
                    channel.close_with(error)
            if self.closed:
                return

    # -- handshake -----------------------------------------------------------------------

    def _protocol_header(self, data: bytes) -> bytes:
        data = self._header_buffer + data
        if len(data) < 8:
            if not PROTOCOL_HEADER.startswith(data[:8]) and not data.startswith(b"AMQP"[: len(data)]):
                self._refuse_protocol()
            else:
                self._header_buffer = data
            return b""
        if data[:8] != PROTOCOL_HEADER:
            self._refuse_protocol()
            return b""
        self._header_buffer = b""
        self.state = "start"
        self.write_method(
            0,
            build(
                commands.Connection.Start,
                version_major=0,
                version_minor=9,
                server_properties=server_properties(self.broker.cluster_name),
                mechanisms="AMQPLAIN PLAIN",
                locales="en_US",
            ),
        )
        return data[8:]

    def _refuse_protocol(self) -> None:
        assert self.transport is not None
        self.transport.write(PROTOCOL_HEADER)
        self._abort()

    def _handshake_timeout(self) -> None:
        if self.state in ("header", "start", "tune", "open"):
            log.warning("closing %s: handshake timeout", self._describe())
            self._abort()

    def _connection_frame(self, frame_type: int, payload: bytes) -> None:
        if frame_type == FRAME_HEARTBEAT:
            return
        if frame_type != FRAME_METHOD:
            raise ConnectionError(UNEXPECTED_FRAME, "expected method frame, got non method frame instead")
        method = decode_method(payload)
        handler = _CONNECTION_HANDLERS.get((self.state, type(method)))
        if handler is None:
            if isinstance(method, commands.Connection.Close):
                handler = Connection._on_close
            elif isinstance(method, commands.Connection.CloseOk):
                handler = Connection._on_close_ok
            else:
                index = getattr(method, "index", 0)
                raise ConnectionError(
                    COMMAND_INVALID if self.state != "running" else CHANNEL_ERROR,
                    f"expected method on channel 0, got {method.name}"
                    if self.state == "running"
                    else f"unexpected method {method.name} during {self.state}",
                    (index >> 16, index & 0xFFFF),
                )
        handler(self, method)

    def _on_start_ok(self, method: commands.Connection.StartOk) -> None:
        self.client_properties = method.client_properties or {}
        capabilities = self.client_properties.get("capabilities")
        self.capabilities = capabilities if isinstance(capabilities, dict) else {}
        mechanism = method.mechanism
        response = method.response
        raw = response.encode() if isinstance(response, str) else bytes(response or b"")
        if mechanism == "PLAIN":
            parts = raw.split(b"\x00")
            if len(parts) != 3:
                raise ConnectionError(ACCESS_REFUSED, "PLAIN response is malformed", (10, 11))
            username, password = parts[1].decode(errors="replace"), parts[2].decode(errors="replace")
        elif mechanism == "AMQPLAIN":
            try:
                table = decode_table(len(raw).to_bytes(4, "big") + raw)
            except (ValueError, IndexError, TypeError) as exc:
                raise ConnectionError(SYNTAX_ERROR, "AMQPLAIN response is malformed", (10, 11)) from exc
            username, password = str(table.get("LOGIN", "")), str(table.get("PASSWORD", ""))
        else:
            raise ConnectionError(
                COMMAND_INVALID, f"unknown authentication mechanism '{mechanism}'", (10, 11)
            )
        self.username = username
        user = self.broker.users.get(username)
        peer_host = self.peer[0] if self.peer else ""
        loopback_only = username in self.broker.config.loopback_users and not _is_loopback(peer_host)
        if user is None or loopback_only or not check_password(password, user.password_hash, user.hashing_algorithm):
            reason = "not allowed from a non-loopback address" if loopback_only else "invalid credentials"
            log.warning("login of user '%s' from %s refused: %s", username, peer_host, reason)
            error = ConnectionError(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {mechanism}. For details see the broker logfile.",
                (10, 11),
            )
            if self.capabilities.get("authentication_failure_close"):
                self.close_with(error)
            else:
                self._abort()
            return
        self.state = "tune"
        config = self.broker.config
        self.write_method(
            0,
            build(
                commands.Connection.Tune,
                channel_max=config.channel_max,
                frame_max=config.frame_max,
                heartbeat=config.heartbeat,
            ),
        )

    def _on_secure_ok(self, method: commands.Connection.SecureOk) -> None:
        raise ConnectionError(COMMAND_INVALID, "connection.secure-ok unexpected", (10, 21))

    def _on_tune_ok(self, method: commands.Connection.TuneOk) -> None:
        config = self.broker.config
        if method.frame_max and method.frame_max < FRAME_MIN_SIZE:
            raise ConnectionError(
                NOT_ALLOWED, f"frame_max={method.frame_max} < {FRAME_MIN_SIZE} min size", (10, 31)
            )
        if method.frame_max > config.frame_max:
            raise ConnectionError(
                NOT_ALLOWED, f"frame_max={method.frame_max} > {config.frame_max} max size", (10, 31)
            )
        if method.channel_max > config.channel_max:
            raise ConnectionError(
                NOT_ALLOWED, f"channel_max={method.channel_max} > {config.channel_max} max", (10, 31)
            )
        self.frame_max = method.frame_max or config.frame_max
        self.channel_max = method.channel_max or config.channel_max
        self.heartbeat = method.heartbeat
        self.reader.frame_max = self.frame_max
        self.state = "open"

    def _on_open(self, method: commands.Connection.Open) -> None:
        vhost = self.broker.vhosts.get(method.virtual_host)
        if vhost is None:
            raise ConnectionError(NOT_ALLOWED, f"vhost {method.virtual_host} not found", (10, 40))
        permission = self.broker.permissions.get((self.username, vhost.name))
        if permission is None:
            raise ConnectionError(
                NOT_ALLOWED,
                f"access to vhost '{vhost.name}' refused for user '{self.username}'",
                (10, 40),
            )
        self.vhost = vhost
        self.state = "running"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.heartbeat:
            self._last_read = time.monotonic()
            self._timer = self.loop.call_later(self.heartbeat / 2, self._heartbeat_tick)
        self.write_method(0, commands.Connection.OpenOk())
        log.info("connection %s: user '%s' opened vhost '%s'", self._describe(), self.username, vhost.name)

    def _on_update_secret(self, method: commands.Connection.UpdateSecret) -> None:
        self.write_method(0, commands.Connection.UpdateSecretOk())

    def _on_blocked(self, method: Any) -> None:
        """A client may not block a server; RabbitMQ ignores it too."""

    @property
    def permission(self) -> Permission | None:
        """Looked up on each use, so that permission changes apply to open connections."""
        vhost = self.vhost
        return None if vhost is None else self.broker.permissions.get((self.username, vhost.name))

    # -- channels ------------------------------------------------------------------------

    def _unopened_channel_frame(self, frame_type: int, number: int, payload: bytes) -> None:
        if self.state != "running":
            raise ConnectionError(
                COMMAND_INVALID, f"channel {number} used before the connection is open"
            )
        if frame_type != FRAME_METHOD:
            raise ConnectionError(CHANNEL_ERROR, f"expected 'channel.open' on channel {number}, got a content frame")
        method = decode_method(payload)
        if not isinstance(method, commands.Channel.Open):
            if isinstance(method, commands.Channel.CloseOk):
                return  # a late close-ok for a channel we already forgot
            index = getattr(method, "index", 0)
            raise ConnectionError(
                CHANNEL_ERROR,
                "expected 'channel.open'",
                (index >> 16, index & 0xFFFF),
            )
        if number > self.channel_max:
            raise ConnectionError(
                NOT_ALLOWED, f"channel number {number} exceeds channel_max {self.channel_max}", (20, 10)
            )
        if len(self.channels) >= self.channel_max:
            raise ConnectionError(
                NOT_ALLOWED,
                f"number of channels opened ({len(self.channels)}) has reached the negotiated "
                f"channel_max ({self.channel_max})",
                (20, 10),
            )
        self.channels[number] = Channel(self, number)
        self.write_method(number, commands.Channel.OpenOk())

    def channel_closed(self, number: int) -> None:
        self.channels.pop(number, None)
        self.last_queue.pop(number, None)

    def new_consumer_tag(self) -> str:
        self._tag_counter += 1
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
            self.transport.write(b"".join(self._out))
        self._out = []

    # -- heartbeats ----------------------------------------------------------------------

    def _heartbeat_tick(self) -> None:
        now = time.monotonic()
        if self._read:
            self._read = False
            self._last_read = now
        elif now - self._last_read >= self.heartbeat * 2:
            log.warning("closing %s: missed heartbeats from client, timeout: %ss", self._describe(), self.heartbeat)
            self._abort()
            return
        if not self._written:
            self.write(HEARTBEAT_FRAME)
        self._written = False
        self._timer = self.loop.call_later(self.heartbeat / 2, self._heartbeat_tick)

    # -- flow ----------------------------------------------------------------------------

    def block(self, reason: str) -> None:
        """A resource alarm: tell the client and stop reading its publishes."""
        if self.blocked:
            return
        self.blocked = True
        if self.capabilities.get("connection.blocked"):
            self.write_method(0, commands.Connection.Blocked(reason=reason))
        self._pause_reading()

    def unblock(self) -> None:
        if not self.blocked:
            return
        self.blocked = False
        if self.capabilities.get("connection.blocked"):
            self.write_method(0, commands.Connection.Unblocked())
        self.resume_if_drained()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_if_drained(self) -> None:
        if self._reading_paused and not self.blocked and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- closing -------------------------------------------------------------------------

    def close_with(self, error: AMQPError) -> None:
        """Send connection.close with ``error`` and wait (briefly) for close-ok."""
        if self.state in ("closing", "closed"):
            return
        if self.state == "header":
            self._abort()
            return
        log.warning("closing %s: %s", self._describe(), error.reply_text)
        self._release_channels()
        self.state = "closing"
        self.write_method(
            0,
            build(
                commands.Connection.Close,
                reply_code=error.code,
                reply_text=error.reply_text,
                class_id=error.method[0],
                method_id=error.method[1],
            ),
        )
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(CLOSE_OK_TIMEOUT, self._abort)

    def force_close(self, reason: str) -> None:
        """Close from the server side (shutdown, vhost deleted, management)."""
        self.close_with(ConnectionError(CONNECTION_FORCED, reason))

    def _while_closing(self, frame_type: int, number: int, payload: bytes) -> None:
        if number != 0 or frame_type != FRAME_METHOD:
            return
        try:
            method = decode_method(payload)
        except ConnectionError:
            return
        if isinstance(method, commands.Connection.CloseOk | commands.Connection.Close):
            if isinstance(method, commands.Connection.Close):
                self.write_method(0, commands.Connection.CloseOk())
            self._finish_close()

    def _on_close(self, method: commands.Connection.Close) -> None:
        self._release_channels()
        self.write_method(0, commands.Connection.CloseOk())
        self._finish_close()

    def _on_close_ok(self, method: commands.Connection.CloseOk) -> None:
        self._finish_close()

    def _release_channels(self) -> None:
        for channel in list(self.channels.values()):
            channel.release()
        self.channels.clear()

    def _finish_close(self) -> None:
        self.state = "closed"
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _delete_exclusive_queues(self) -> None:
        vhost = self.vhost
        if vhost is None:
            return
        for queue in list(vhost.queues.values()):
            if queue.exclusive_owner == self.id:
                self.broker.spawn(vhost.delete_queue(queue.name))

    def _describe(self) -> str:
        host, port = self.peer[0], self.peer[1] if len(self.peer) > 1 else 0
        return f"{host}:{port} ({self.id})"


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.") or host == "::ffff:127.0.0.1"


def _random_token() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


_CONNECTION_HANDLERS = {
    ("start", commands.Connection.StartOk): Connection._on_start_ok,
    ("start", commands.Connection.SecureOk): Connection._on_secure_ok,
    ("tune", commands.Connection.TuneOk): Connection._on_tune_ok,
    ("open", commands.Connection.Open): Connection._on_open,
    ("running", commands.Connection.UpdateSecret): Connection._on_update_secret,
    ("running", commands.Connection.Blocked): Connection._on_blocked,
    ("running", commands.Connection.Unblocked): Connection._on_blocked,
}
