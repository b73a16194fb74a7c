"""The opening of a connection, as rabbit_reader runs it: the protocol header, connection.start
and start-ok (authentication with a SASL mechanism from ``sasl.MECHANISMS``, loopback users,
login refusal), tune and tune-ok (negotiating frame_max, channel_max and heartbeat), and
connection.open (the vhost, its connection limits and the user's access to it).

The functions take the ``Connection``; the start-ok, tune-ok and open handlers are what the
connection's channel-0 table calls in the states starting, tuning and opening.
"""

from __future__ import annotations

import logging
import platform
from typing import TYPE_CHECKING, Any

from pamqp import commands

from amqp_server import __version__
from amqp_server.core.access import check_password
from amqp_server.protocol.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
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
    broker = connection.broker
    if mechanism == EXTERNAL:
        # The certificate was verified by the TLS handshake: the user only has to exist.
        username = certificate_user(connection) or ""
        connection.username = username
        if username not in broker.users:
            _login_refused(connection, username, f"user '{username}' - invalid credentials")
            return
    else:
        response = method.response
        raw = response.encode() if isinstance(response, str) else bytes(response or b"")  # str iff UTF-8
        credentials = MECHANISMS[mechanism](raw)
        if credentials is None:
            raise ConnectionError(SYNTAX_ERROR, f"{mechanism} response is malformed", (10, 11))
        username, password = credentials
        connection.username = username
        user = broker.users.get(username)
        if user is None or not check_password(password, user.password_hash, user.hashing_algorithm):
            _login_refused(connection, username, "invalid credentials")
            return
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
    username = connection.username
    if broker.permissions.get((username, vhost.name)) is None:
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
