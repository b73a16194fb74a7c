"""How ``amqp-ctl -n name@host[:port]`` reaches a node that is not the local data directory's:
a control client's link to the node's cluster port (25672 by default), as rabbitmqctl reaches
any node through Erlang distribution and the cookie.

Blocking, for a short-lived CLI: the dialer's side of ``cluster.wire``'s handshake with
``control`` set (the cookie proven, never sent), then one ``ControlRequest`` and its
``ControlReply``; ticks go out while the node works on it, so that the link stays up however
long the command takes. Failures are ``Unreachable``, whose lines are rabbitmqctl's
diagnostics for the case.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
from typing import Any

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
    node: str, address: tuple[str, int], cookie: str, request: dict[str, Any], timeout: float = 60
) -> Any:
    """Send ``request`` (a control-socket request without its secret) to ``node`` at
    ``address``; its JSON reply, decoded."""
    host, port = address
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection(address, timeout=min(timeout, 15))
    except OSError as exc:
        raise Unreachable([f"unable to connect to the inter-node port ({port}) on {host}: {_reason(exc)}",
                           "suggestion: start the node, with clustering on (a node without a cluster port "
                           "has no inter-node listener)"]) from None  # fmt: skip
    with sock:
        sock.settimeout(TICK_EVERY)
        handshake = Handshake(Role.DIAL, client_name(node), cookie.encode(), incarnation=new_incarnation(),
                              expected=node, control=True)  # fmt: skip
        reader = FrameReader()
        try:
            _send(sock, handshake.start())
            while not handshake.done:
                kind, payload = _next(sock, reader, deadline)
                if kind != HANDSHAKE:
                    raise HandshakeError("a frame other than the handshake's before it")
                _send(sock, handshake.receive(payload))
        except (WireError, OSError) as exc:
            raise Unreachable([f"TCP connection to {host}:{port} succeeded but the inter-node handshake failed: "
                               f"{_reason(exc)}", *HANDSHAKE_SUGGESTIONS]) from None  # fmt: skip
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


def _send(sock: socket.socket, frames: list[bytes]) -> None:
    for data in frames:
        sock.sendall(data)


def _next(sock: socket.socket, reader: FrameReader, deadline: float) -> tuple[int, bytes]:
    """The next handshake or message frame (ticks skipped), ticking while waiting."""
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
        if not data:
            raise ConnectionError("connection closed by the node")
        reader.append(data)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
