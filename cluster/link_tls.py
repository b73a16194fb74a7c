"""TLS on the links between nodes (rabbitmq.conf ``cluster.ssl`` and ``cluster.ssl_options.*``,
RabbitMQ's ``-proto_dist inet_tls`` with an ``ssl_dist_optfile``; docs/security.md).

TLS comes first on a connection; the link's own handshake (the cookie's) then runs inside it.
``LinkTls`` holds the two contexts of a node's links, built from one ``TlsOptions``: the
listener's (server) and the dialer's (client, which checks the peer's certificate and host
name); ``reload`` builds both again from the files (SIGHUP), for the links made after.

A node whose links are TLS accepts on its own socket (``TlsListener``) and starts TLS with
``loop.connect_accepted_socket``: ``create_server(ssl=...)`` drops a failed handshake without a
word, and an operator must be told why a peer cannot link. A node whose links are plain looks
at an accepted connection's first byte (``PlainAccepted``) and refuses a peer that starts TLS.
Either way the refusal is logged on both sides, and the dialer retries with its backoff.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from amqp_server.tls import TlsOptions, client_context, describe, server_context

if TYPE_CHECKING:
    from cluster.link import Link

log = logging.getLogger(__name__)

#: The first byte of a TLS client's first record (a handshake record).
TLS_RECORD = b"\x16"
#: Hints for the operator, after a failure's reason in the log.
PLAIN_PEER = "the peer does not speak TLS: is its cluster.ssl off?"
CLOSED_IN_TLS = (
    "the peer closed the connection: are its links plain TCP, or does it refuse this node's certificate?"
)
#: A dialed peer closed the connection before the link's handshake began (this node plain, TLS).
CLOSED_BEFORE = {
    False: "a node whose links are TLS closes plain ones: is the peer's cluster.ssl on?",
    True: "does the peer trust this node's certificate?",
}


class LinkTls:
    """The TLS contexts of a node's links, from ``options``; TlsError when they cannot be made."""

    def __init__(self, options: TlsOptions) -> None:
        self.options = options
        self.server, self.client = server_context(options), client_context(options)

    def reload(self) -> None:
        """Build both contexts from the files again (TlsError, and the old ones stay, when they
        do not load): new links use them, established ones keep theirs."""
        self.server, self.client = server_context(self.options), client_context(self.options)

    def server_hostname(self, host: str) -> str:
        return server_hostname(self.options, host)


def server_hostname(options: TlsOptions, host: str) -> str:
    """The name a dialed peer's certificate must carry (and the SNI sent): the host dialed, the
    ``server_name_indication`` configured, or "" (none) with ``disable``. (A node's dialer's,
    and ``amqp-ctl -n``'s: ``cluster.control_client``.)"""
    name = options.server_name_indication
    return "" if name == "disable" else name or host


class TlsListener:
    """The cluster port of a node whose links are TLS: each accepted socket gets TLS, then a new
    link (``new_link()``); a failed TLS handshake is logged and closes it."""

    def __init__(self, tls: LinkTls, new_link: Callable[[], Link], timeout: float) -> None:
        self.tls = tls
        self.new_link = new_link
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the accept loop, handshakes under way

    async def start(self, host: str, port: int) -> int:
        """Listen; the port bound (port 0: the system's choice)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=128)
        self._sock.setblocking(False)
        self._spawn(self._accept(self._sock))
        return self._sock.getsockname()[1]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(sock)
            except OSError as exc:  # (out of file descriptors, say: the next accept may do)
                log.warning("cluster port: cannot accept: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self._spawn(self._secure(conn, f"{address[0]}:{address[1]}"))

    async def _secure(self, conn: socket.socket, where: str) -> None:
        link = self.new_link()
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: link, conn, ssl=self.tls.server, ssl_handshake_timeout=self.timeout
            )
        except OSError as exc:  # (the loop has closed the socket)
            plain = isinstance(exc, ssl.SSLError) and exc.reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST")
            closed = isinstance(exc, (ssl.SSLEOFError, ConnectionResetError))
            hint = f" ({PLAIN_PEER})" if plain else " (the peer closed the connection)" if closed else ""
            log.error("link from %s refused: TLS handshake failed: %s%s", where, describe(exc), hint)
            link.close(f"TLS handshake failed: {describe(exc)}")
        except asyncio.CancelledError:
            link.close("node stopping")
            raise


class PlainAccepted(asyncio.Protocol):
    """An accepted connection of a node whose links are plain: ``link``'s from the start (its
    handshake timeout runs), but its first bytes are looked at here, and a peer that starts TLS
    is refused; then the link reads the connection itself."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.transport: Any = None  # (uvloop's transports are no asyncio.Transport subclasses)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.link.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if data.startswith(TLS_RECORD):
            peer = self.transport.get_extra_info("peername")
            log.error(
                "link from %s:%s refused: the peer starts TLS and this node's links are plain TCP "
                "(cluster.ssl is off)", *peer[:2],
            )  # fmt: skip
            self.link.close("the peer starts TLS")
            return
        self.transport.set_protocol(self.link)
        self.link.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.connection_lost(exc)


async def dial_tls(link: Link, tls: LinkTls, node: str, address: tuple[str, int], timeout: float) -> None:
    """Connect ``link`` to ``address`` over TLS, checking the peer's certificate. OSError when
    it fails; a failed TLS handshake is logged (failing to connect at all is routine: the peer
    is down)."""
    try:
        await asyncio.get_running_loop().create_connection(
            lambda: link, *address, ssl=tls.client, server_hostname=tls.server_hostname(address[0]),
            ssl_handshake_timeout=timeout,
        )  # fmt: skip
    except (ssl.SSLError, ConnectionResetError) as exc:
        hint = f" ({CLOSED_IN_TLS})" if isinstance(exc, (ssl.SSLEOFError, ConnectionResetError)) else ""
        log.error("link to node %s at %s:%s failed: TLS handshake: %s%s", node, *address, describe(exc), hint)
        raise
