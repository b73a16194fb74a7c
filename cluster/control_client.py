"""How ``amqp-ctl -n name@host[:port]`` reaches a node that is not the local data directory's:
a control client's link to the node's cluster port (25672 by default), as rabbitmqctl reaches
any node through Erlang distribution and the cookie.

Blocking, for a short-lived CLI: the dialer's side of ``cluster.wire``'s handshake with
``control`` set (the cookie proven, never sent), then one ``ControlRequest`` and its
``ControlReply``; ticks go out while the node works on it, so that the link stays up however
long the command takes. Failures are ``Unreachable``, whose lines are rabbitmqctl's
diagnostics for the case.

With ``tls`` (the nodes' ``cluster.ssl_options``, when their ``cluster.ssl`` is on), TLS comes
first, as a node dials its peers (``cluster.link_tls``): the same client context, certificate
and peer checks; as rabbitmqctl, the CLI must use the nodes' inter-node TLS settings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import time
from typing import Any

from amqp_server.tls import TlsError, TlsOptions, client_context, describe
from cluster.link_tls import TLS_RECORD, server_hostname
from cluster.wire import (
    FRAME_MAX,
    HANDSHAKE,
    MESSAGE,
    TICK,
    ControlReply,
    ControlRequest,
    FrameReader,
    Handshake,
    HandshakeError,
    Role,
    WireError,
    decode,
    frame,
    message_frame,
    new_incarnation,
)

TICK_EVERY = 3.0  # seconds; a node closes a link silent for its tick time (15 s by default)
_TICK_FRAME = frame(TICK)
# rabbitmqctl's suggestions when TCP connects but distribution fails (a wrong cookie above all).
HANDSHAKE_SUGGESTIONS = [
    "suggestion: check if the Erlang cookie is identical for all server nodes and CLI tools",
    "suggestion: check if all server nodes and CLI tools use consistent hostnames when addressing each other",
    "suggestion: check if inter-node connections may be configured to use TLS. If so, all nodes and CLI "
    "tools must do that",
]
#: The first byte of a TLS record: a handshake's, or an alert's (a TLS server refusing what it read).
TLS_RECORDS = (TLS_RECORD, b"\x15")
#: The TLS one alone, for failures a cookie cannot cause.
TLS_SUGGESTION = HANDSHAKE_SUGGESTIONS[2]
#: Where this CLI finds the nodes' TLS settings (amqp_server.ctl).
CONFIG_HINT = "this CLI reads cluster.ssl and cluster.ssl_options from the nodes' config file (--config or " \
              "$RABBITMQ_CONFIG_FILE)"  # fmt: skip


class Unreachable(Exception):
    """The node could not be asked; ``lines`` say why (rabbitmqctl's DIAGNOSTICS items)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def client_name(node: str) -> str:
    """The name this client gives itself, rabbitmqctl's ``rabbitmqcli-<n>-<node>``."""
    return f"rabbitmqcli-{os.getpid()}-{node}"


def cookie_hash(cookie: str) -> str:
    """rabbitmqctl's "Erlang cookie hash": base64 of the cookie's MD5, to compare cookies by."""
    return base64.b64encode(hashlib.md5(cookie.encode()).digest()).decode()


def call(
    node: str, address: tuple[str, int], cookie: str, request: dict[str, Any], timeout: float = 60,
    tls: TlsOptions | None = None,
) -> Any:  # fmt: skip
    """Send ``request`` (a control-socket request without its secret) to ``node`` at
    ``address``, over TLS with ``tls``; its JSON reply, decoded."""
    host, port = address
    deadline = time.monotonic() + timeout
    context = None
    if tls is not None:
        try:
            context = client_context(tls)
        except TlsError as exc:  # (its text names the ssl_options key)
            raise Unreachable([f"cannot dial with TLS: cluster.{exc}", f"suggestion: {CONFIG_HINT}"]) from None  # fmt: skip
    try:
        sock = socket.create_connection(address, timeout=min(timeout, 15))
    except OSError as exc:
        raise Unreachable([f"unable to connect to the inter-node port ({port}) on {host}: {_reason(exc)}",
                           "suggestion: start the node, with clustering on (a node without a cluster port "
                           "has no inter-node listener)"]) from None  # fmt: skip
    if context is not None:
        assert tls is not None
        sock = _secure(sock, context, server_hostname(tls, host), address)
    with sock:
        sock.settimeout(TICK_EVERY)
        handshake = Handshake(Role.DIAL, client_name(node), cookie.encode(), incarnation=new_incarnation(),
                              expected=node, control=True)  # fmt: skip
        reader = FrameReader()
        first = True  # (its first bytes are looked at: how a node refuses a connection is telling)
        try:
            _send(sock, handshake.start())
            while not handshake.done:
                kind, payload = _next(sock, reader, deadline, first=first, tls=context is not None)
                first = False
                if kind != HANDSHAKE:
                    raise HandshakeError("a frame other than the handshake's before it")
                _send(sock, handshake.receive(payload))
        except (WireError, OSError) as exc:
            hint = [f"suggestion: {CONFIG_HINT}"] if isinstance(exc, Refused) else []
            raise Unreachable([f"TCP connection to {host}:{port} succeeded but the inter-node handshake failed: "
                               f"{_reason(exc)}", *HANDSHAKE_SUGGESTIONS, *hint]) from None  # fmt: skip
        reader.max_payload = FRAME_MAX
        try:
            _send(sock, [message_frame(ControlRequest(1, json.dumps(request)))])
            while True:
                kind, payload = _next(sock, reader, deadline)
                if kind == MESSAGE:
                    reply = decode(payload)
                    if isinstance(reply, ControlReply) and reply.id == 1:
                        return json.loads(reply.reply)
        except (WireError, OSError, ValueError) as exc:
            raise Unreachable([f"the link to node {node} failed before its answer: {_reason(exc)}"]) from None


def _secure(sock: socket.socket, context: ssl.SSLContext, name: str, address: tuple[str, int]) -> ssl.SSLSocket:  # fmt: skip
    """TLS on the connected ``sock`` (its timeout bounds the handshake), the node's certificate
    checked against ``name`` (none: "")."""
    try:
        return context.wrap_socket(sock, server_hostname=name or None)
    except OSError as exc:  # (SSLError, a reset, a timeout; the socket is closed)
        sock.close()
        closed = isinstance(exc, (ssl.SSLEOFError, ConnectionError)) or (
            isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER"
        )
        hint = (" (the node does not speak TLS on its cluster port, or refuses this CLI's certificate: is its "
                "cluster.ssl off, or does it not trust cluster.ssl_options.certfile?)" if closed else "")  # fmt: skip
        raise Unreachable([f"TCP connection to {address[0]}:{address[1]} succeeded but the TLS handshake failed: "
                           f"{describe(exc)}{hint}", TLS_SUGGESTION, f"suggestion: {CONFIG_HINT}"]) from None  # fmt: skip


def _send(sock: socket.socket, frames: list[bytes]) -> None:
    for data in frames:
        sock.sendall(data)


def _next(
    sock: socket.socket, reader: FrameReader, deadline: float, first: bool = False, tls: bool = False
) -> tuple[int, bytes]:
    """The next handshake or message frame (ticks skipped), ticking while waiting. ``first``:
    the connection's first frame, Refused when the node closes it without a word (or answers a
    plain one in TLS): a node whose links are TLS refuses so a plain connection, and a TLS one
    whose certificate it does not trust (TLS 1.3 checks it after the client's handshake)."""
    while True:
        item = reader.next()
        if item is not None:
            if item[0] != TICK:
                return item
            continue
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        try:
            data = sock.recv(65536)
        except TimeoutError:
            sock.sendall(_TICK_FRAME)
            continue
        except ConnectionResetError:
            if first:
                raise Refused.of("reset the connection before its handshake", tls) from None
            raise
        if first and not data:
            raise Refused.of("closed the connection before its handshake", tls)
        if first and not tls and data[:1] in TLS_RECORDS:
            raise Refused.of("answered in TLS", tls)
        first = False
        if not data:
            raise ConnectionError("connection closed by the node")
        reader.append(data)


class Refused(ConnectionError):
    """The node refused the connection before its handshake (see ``_next``)."""

    @classmethod
    def of(cls, what: str, tls: bool) -> Refused:
        why = ("does it trust this CLI's certificate, cluster.ssl_options.certfile?" if tls else
               "a node whose links are TLS refuses plain ones: is its cluster.ssl on?")  # fmt: skip
        return cls(f"the node {what} ({why})")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):  # (an alert from the node, over TLS)
        return describe(exc)
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
