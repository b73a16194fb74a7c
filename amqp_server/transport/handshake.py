"""The opening of a connection, as rabbit_reader runs it: the protocol header, connection.start
and start-ok (authentication with a SASL mechanism from ``sasl.MECHANISMS`` through the backend
chain ``broker.auth``, loopback users, login refusal), tune and tune-ok (negotiating frame_max,
channel_max and heartbeat), and connection.open (the vhost, its connection limits and the
user's access to it); then the user's credential: its expiry and connection.update-secret.

The functions take the ``Connection``; the start-ok, tune-ok, open and update-secret handlers
are what the connection's channel-0 table calls in the states starting, tuning, opening and
running. A backend that has to be waited for pauses the reading of the connection meanwhile.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from pamqp import commands

from amqp_server import __version__
from amqp_server.auth.backend import ConnectionInfo, Refusal
from amqp_server.auth.chain import Login
from amqp_server.protocol.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    NOT_ALLOWED,
    SYNTAX_ERROR,
    ConnectionError,
)
from amqp_server.protocol.frame_codec import FRAME_METHOD, FRAME_MIN_SIZE, PROTOCOL_HEADER, build, frame
from amqp_server.tls import certificate_login
from amqp_server.transport.heartbeat import Heartbeats
from amqp_server.transport.limits import check_connection_limits
from amqp_server.transport.sasl import EXTERNAL, MECHANISM_NAMES, MECHANISMS
from amqp_server.transport.states import DEAD, HANDSHAKING, OPENING, RUNNING, STARTING, TUNING

if TYPE_CHECKING:
    from amqp_server.core.vhost import VirtualHost
    from amqp_server.transport.connection import Connection

log = logging.getLogger("amqp_server.transport.connection")  # one logger for the connection's story

# connection.start server-properties capabilities, in RabbitMQ's order.
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
# "AMQP" 1 1 0 9 is the 0-9 header; RabbitMQ treats it as 0-9-1.
PROTOCOL_HEADER_0_9 = b"AMQP\x01\x01\x00\x09"
LOGIN_REFUSED = "Login was refused using authentication mechanism {}. For details see the broker logfile."


def server_properties(cluster_name: str) -> dict[str, Any]:
    """connection.start server-properties, keys sorted as RabbitMQ sends them."""
    return {
        "capabilities": CAPABILITIES,
        "cluster_name": cluster_name,
        "copyright": "Copyright (c) the amqp-server authors",
        "information": "Licensed under the MPL 2.0",
        "platform": f"Python {platform.python_version()}",
        "product": "amqp-server",
        "version": __version__,
    }


def _table(table: dict[str, Any]) -> bytes:
    """A field table of strings, booleans and tables, keys in the given order (pamqp
    would sort them; RabbitMQ sends capabilities in its own order)."""
    out = []
    for key, value in table.items():
        out.append(bytes((len(key),)) + key.encode())
        if isinstance(value, bool):
            out.append(b"t\x01" if value else b"t\x00")
        elif isinstance(value, dict):
            out.append(b"F" + _table(value))
        else:
            raw = str(value).encode()
            out.append(b"S" + len(raw).to_bytes(4, "big") + raw)
    body = b"".join(out)
    return len(body).to_bytes(4, "big") + body


_start_frames: dict[tuple[str, tuple[str, ...]], bytes] = {}


def start_frame(cluster_name: str, offered: tuple[str, ...]) -> bytes:
    """connection.start as RabbitMQ 3.10 lays it out (0-9-1, the SASL mechanisms, en_US)."""
    cached = _start_frames.get((cluster_name, offered))
    if cached is None:
        mechanisms = " ".join(offered).encode()
        payload = (
            b"\x00\x0a\x00\x0a\x00\x09"  # class 10 method 10, version 0-9
            + _table(server_properties(cluster_name))
            + len(mechanisms).to_bytes(4, "big")
            + mechanisms
            + b"\x00\x00\x00\x05en_US"
        )
        cached = _start_frames[(cluster_name, offered)] = frame(FRAME_METHOD, 0, payload)
    return cached


def certificate_user(connection: Connection) -> str | None:
    """The user a TLS connection's verified client certificate names, or None."""
    if connection.tls is None:
        return None
    return certificate_login(connection.tls.getpeercert(), connection.broker.config.ssl_cert_login_from)


def offered_mechanisms(connection: Connection) -> tuple[str, ...]:
    """The configured mechanisms (``auth_mechanisms``) this connection may use: EXTERNAL only
    with a verified client certificate, as rabbit_auth_mechanism_ssl:should_offer decides."""
    allowed = connection.broker.config.auth_mechanisms
    return tuple(
        name for name in MECHANISM_NAMES
        if name in allowed and (name != EXTERNAL or certificate_user(connection) is not None)
    )  # fmt: skip


def protocol_header(connection: Connection, data: bytes) -> bytes:
    """Take the protocol header off the first octets read and send connection.start; what
    follows it is returned (nothing while the header is incomplete or refused)."""
    data = connection._header_buffer + data
    if len(data) < 8:
        connection._header_buffer = data  # RabbitMQ waits for 8 octets (or the handshake timeout)
        return b""
    connection._header_buffer = b""
    if data[:8] != PROTOCOL_HEADER and data[:8] != PROTOCOL_HEADER_0_9:
        # Any other protocol (0-8, 0-10, 1.0, HTTP...): answer with ours and hang up.
        log.warning("closing %s: bad protocol header %r", connection._describe(), data[:8])
        transport = connection.transport
        assert transport is not None
        transport.write(PROTOCOL_HEADER)
        connection.state = DEAD
        connection.closed = True
        transport.close()
        return b""
    connection.state = STARTING
    connection.write(start_frame(connection.broker.cluster_name, offered_mechanisms(connection)))
    return data[8:]


def handshake_timeout(connection: Connection) -> None:
    """The handshake_timeout passed: a connection not yet open is dropped."""
    connection._handshake_timer = None
    if connection.state in HANDSHAKING:
        log.warning("closing %s: handshake_timeout", connection._describe())
        connection._abort()


def on_start_ok(connection: Connection, method: commands.Connection.StartOk) -> None:
    mechanism = method.mechanism
    if mechanism not in offered_mechanisms(connection):
        raise ConnectionError(COMMAND_INVALID, f"unknown authentication mechanism '{mechanism}'", (10, 11))
    connection.mechanism = mechanism
    connection.client_properties = method.client_properties or {}
    capabilities = connection.client_properties.get("capabilities")
    connection.capabilities = capabilities if isinstance(capabilities, dict) else {}
    password: str | None = None
    if mechanism == EXTERNAL:
        # The certificate was verified by the TLS handshake: the user only has to exist.
        username = certificate_user(connection) or ""
    else:
        response = method.response
        raw = response.encode() if isinstance(response, str) else bytes(response or b"")  # str iff UTF-8
        credentials = MECHANISMS[mechanism](raw)
        if credentials is None:
            raise ConnectionError(SYNTAX_ERROR, f"{mechanism} response is malformed", (10, 11))
        username, password = credentials
    connection.username = username
    peer_host = connection.peer[0] if connection.peer else ""
    result = connection.broker.auth.login(username, password, ConnectionInfo(peer_host))
    if isinstance(result, Login | Refusal):
        _logged_in(connection, username, result)
    else:  # a backend has to be waited for: the client waits for tune meanwhile
        _later(connection, _login_later(connection, username, result))


def _later(connection: Connection, step: Coroutine[Any, Any, None]) -> None:
    """Run a handshake step that waits for a backend; nothing more is read meanwhile (reading
    resumes after it, also when it closed the connection: close-ok is still to be read)."""
    connection.pause_reading("auth")
    connection.broker.spawn(_then_read(connection, step))


async def _then_read(connection: Connection, step: Coroutine[Any, Any, None]) -> None:
    try:
        await step
    finally:
        connection.resume_reading("auth")


async def _login_later(connection: Connection, username: str, pending: Awaitable[Login | Refusal]) -> None:
    try:
        result = await pending
    except Exception as exc:  # noqa: BLE001 - a backend failing is a refusal, as in RabbitMQ
        log.exception("authentication backend failed")
        result = Refusal(f"User '{username}' authentication failed with internal error: {exc}")
    if not connection.closed:
        _logged_in(connection, username, result)


def _logged_in(connection: Connection, username: str, result: Login | Refusal) -> None:
    """The chain's answer: refused, or the user (named by the backend, e.g. a token's client id)."""
    if isinstance(result, Refusal):
        _login_refused(connection, username, result.reason)
        return
    broker = connection.broker
    username = connection.username = result.name
    connection.user = result
    peer_host = connection.peer[0] if connection.peer else ""
    if username in broker.config.loopback_users and not is_loopback(peer_host):
        _login_refused(connection, username, f"user '{username}' can only connect via localhost")
        return
    broker.events.emit("user.authentication.success", None, name=username, **_auth_fields(connection))
    connection.state = TUNING
    config = broker.config
    connection.write_method(
        0,
        build(
            commands.Connection.Tune,
            channel_max=config.channel_max,
            frame_max=config.frame_max,
            heartbeat=config.heartbeat,
        ),
    )


def _login_refused(connection: Connection, username: str, reason: str) -> None:
    """RabbitMQ's auth_fail: connection.close 403 only for clients that asked for it, then
    the closed state until close-ok, for at most rabbit_reader's timeout before tune-ok
    (3 s, as the silent-close delay)."""
    mechanism = connection.mechanism
    log.warning("%s login of user '%s' from %s refused: %s", mechanism, username, connection._describe(), reason)
    connection.broker.events.emit(
        "user.authentication.failure", None, name=username, error=reason, **_auth_fields(connection)
    )
    if connection.capabilities.get("authentication_failure_close") is True:
        connection.write_method(
            0,
            build(
                commands.Connection.Close,
                reply_code=ACCESS_REFUSED,
                reply_text=f"ACCESS_REFUSED - {LOGIN_REFUSED.format(mechanism)}",
                class_id=0,
                method_id=0,
            ),
        )
    connection._enter_closed(connection.broker.config.silent_close_delay)


def _auth_fields(connection: Connection) -> dict[str, Any]:
    """What RabbitMQ's user.authentication.* events say about the connection."""
    return {"auth_mechanism": connection.mechanism, "connection_name": connection.name, "connection_type": "network",
            "peer_host": connection.peer[0], "peer_port": connection.peer[1], "protocol": "AMQP 0-9-1", "ssl": connection.tls is not None}  # fmt: skip


def is_loopback(host: str) -> bool:
    """rabbit_access_control's loopback rule: 127.0.0.0/8, ::1 and IPv4-mapped 127.x."""
    return host == "::1" or host.startswith("127.") or host.startswith("::ffff:127.") or host == "localhost"


def on_tune_ok(connection: Connection, method: commands.Connection.TuneOk) -> None:
    config = connection.broker.config
    _negotiate("frame_max", FRAME_MIN_SIZE, method.frame_max, config.frame_max)
    _negotiate("channel_max", 1, method.channel_max, config.channel_max)
    connection.frame_max = method.frame_max or config.frame_max
    connection.channel_max = method.channel_max or config.channel_max
    connection.heartbeat = method.heartbeat
    connection.reader.frame_max = connection.frame_max
    connection.state = OPENING
    if connection.heartbeat:  # rabbit_heartbeat starts at tune-ok
        connection._heartbeats = Heartbeats(connection)


def _negotiate(field: str, minimum: int, client: int, server: int) -> None:
    """rabbit_reader's validate_negotiated_integer_value (0 means "no limit")."""
    if client != 0 and client < minimum:
        raise ConnectionError(
            NOT_ALLOWED, f"negotiated {field} = {client} is lower than the minimum allowed value ({minimum})", (10, 31)
        )
    if server != 0 and (client == 0 or client > server):
        detail = " (no limit)" if field == "channel_max" and client == 0 else ""
        raise ConnectionError(
            NOT_ALLOWED,
            f"negotiated {field} = {client}{detail} is higher than the maximum allowed value ({server})",
            (10, 31),
        )


def on_open(connection: Connection, method: commands.Connection.Open) -> None:
    name = method.virtual_host
    broker = connection.broker
    vhost = broker.vhosts.get(name)
    if vhost is None:
        raise ConnectionError(NOT_ALLOWED, f"vhost {name} not found", (10, 40))
    check_connection_limits(connection, name)
    user = connection.user
    assert user is not None
    if user.internal:  # today's path: no backend to ask
        allowed: bool | Awaitable[bool] = (connection.username, vhost.name) in broker.permissions
    else:
        allowed = user.check_vhost(vhost.name, connection.peer[0] if connection.peer else "")
    if isinstance(allowed, bool):
        _open(connection, vhost, allowed)
    else:
        _later(connection, _open_later(connection, vhost, allowed))


async def _open_later(connection: Connection, vhost: VirtualHost, pending: Awaitable[bool]) -> None:
    allowed = await pending
    if connection.closed:
        return
    try:
        _open(connection, vhost, allowed)
    except ConnectionError as error:
        connection.close_with(error)


def _open(connection: Connection, vhost: VirtualHost, allowed: bool) -> None:
    broker = connection.broker
    username = connection.username
    if not allowed:
        raise ConnectionError(NOT_ALLOWED, f"access to vhost '{vhost.name}' refused for user '{username}'", (10, 40))
    connection.vhost = vhost
    connection.state = RUNNING
    if connection._handshake_timer is not None:
        connection._handshake_timer.cancel()
        connection._handshake_timer = None
    connection.write_method(0, commands.Connection.OpenOk())
    broker.events.emit(
        "connection.created", connection, **connection.identity(), user=username, vhost=vhost.name,
        connected_at=connection.connected_at, auth_mechanism=connection.mechanism, protocol="AMQP 0-9-1",
        type="network", ssl=connection.tls is not None, peer_host=connection.peer[0], peer_port=connection.peer[1],
        host=connection.sockname[0], port=connection.sockname[1], channel_max=connection.channel_max,
        frame_max=connection.frame_max, timeout=connection.heartbeat,
    )  # fmt: skip
    log.info(
        "connection %s: user '%s' authenticated and granted access to vhost '%s'",
        connection._describe(),
        username,
        vhost.name,
    )
    _watch_expiry(connection)


def _watch_expiry(connection: Connection) -> None:
    """rabbit_reader's credential expiry timer: a connection whose credential (a token)
    expires is closed, 320 CONNECTION_FORCED - credential expired."""
    if connection.credential_timer is not None:
        connection.credential_timer.cancel()
        connection.credential_timer = None
    user = connection.user
    expires_at = user.expires_at() if user is not None else None
    if expires_at is not None:
        delay = max(0.0, expires_at - time.time())
        connection.credential_timer = connection.loop.call_later(delay, _credential_expired, connection)


def _credential_expired(connection: Connection) -> None:
    connection.credential_timer = None
    if connection.open:
        log.warning("closing AMQP connection %s of user '%s': credential has expired", connection._describe(), connection.username)
        connection.close_with(ConnectionError(CONNECTION_FORCED, "credential expired"))


def on_update_secret(connection: Connection, method: commands.Connection.UpdateSecret) -> None:
    """connection.update-secret (rabbit_reader): the backends whose state can expire take the new
    secret; a refusal closes the connection 530 NOT_ALLOWED."""
    user = connection.user
    assert user is not None
    secret = method.new_secret
    secret = secret.decode(errors="replace") if isinstance(secret, bytes) else secret
    log.debug("connection %s: user '%s' asked to update secret, reason: %s", connection._describe(), user.name, method.reason)
    result = user.update_secret(secret)
    if isinstance(result, Login | Refusal):
        _secret_updated(connection, result)
    else:
        _later(connection, _update_secret_later(connection, result))


async def _update_secret_later(connection: Connection, pending: Awaitable[Login | Refusal]) -> None:
    result = await pending
    if connection.closed:
        return
    try:
        _secret_updated(connection, result)
    except ConnectionError as error:
        connection.close_with(error)


def _secret_updated(connection: Connection, result: Login | Refusal) -> None:
    if isinstance(result, Refusal):
        log.error("Secret update was refused for user '%s': %s", connection.username, result.reason)
        raise ConnectionError(NOT_ALLOWED, "New secret was refused by one of the backends", (10, 70))
    connection.user = result
    for channel in connection.channels.values():
        channel.forget_checks()  # the new credential's permissions apply from now on
    connection.write_method(0, commands.Connection.UpdateSecretOk())
    log.info("connection %s: user '%s' updated secret", connection._describe(), result.name)
    _watch_expiry(connection)
