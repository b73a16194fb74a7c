"""The links between nodes: one TCP connection per pair of nodes, carrying ``cluster.wire``
frames, with reconnection, flow control and keepalive ticks.

``LinkManager`` listens on the inter-node port (RabbitMQ's distribution port, 25672 by default)
and dials the peers it is given (``add_peer``), again and again with exponential backoff while
a peer stays unreachable. Any node that passes the handshake (it knows the cookie) may link,
dialed or not. When both nodes of a pair dial each other at once, the acceptor decides: a node
whose own dial is still in its handshake keeps that one if its name is the greater, and
otherwise gives it up for the incoming link, so both ends keep the connection the greater
node dialed. A new link from a peer already linked replaces the old one only when the peer
has restarted (its incarnation changed); otherwise it is refused until the old link is seen
to be dead.

Sending: ``await manager.send(node, message)`` queues the message on the peer's link and
returns at once while the link's send buffer (``send_buffer`` bytes queued in this process,
plus as much again in the transport) has room; when it is full, it waits until the peer has
read enough (back-pressure). ``try_send`` never waits: it returns False instead (for a sans-IO
caller that retries on ``on_writable``). Both raise ``LinkDown`` when the peer has no link:
messages are not kept across links (what a link held when it went down is lost), and the
callers (Raft) resend what they still need when the peer is up again. Messages queued in
one event-loop iteration leave in one write. Messages on one link arrive in the order sent.

TLS (``tls``, a ``cluster.link_tls.LinkTls``): links are TLS both ways, the handshake inside
it; a plain peer is refused, and a TLS one by a plain node (``cluster.link_tls``).

Control clients (``amqp-ctl -n``, a handshake with ``control``, ``cluster.wire``) are admitted
as Erlang admits hidden nodes: only when ``on_control`` is set, never as peers (not in
``peers``, no ``on_peer_up``/``on_peer_down``, not dialed back, not in the one-link-per-pair
rule); their messages go to ``on_control(message, reply)``, ``reply`` sending on their link.

Liveness: a link with nothing else to send sends a ``TICK`` every quarter of ``tick_time``,
and a link that receives nothing for ``tick_time`` is closed, as Erlang's ``net_ticktime``
does (failure detection proper, within seconds, is ``cluster.heartbeat``'s).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable, Mapping
from typing import Any

from amqp_server.core.alarms import erlang_atom
from amqp_server.tls import tidy
from cluster.link_tls import CLOSED_BEFORE, LinkTls, PlainAccepted, TlsListener, dial_tls
from cluster.wire import (
    FRAME_MAX,
    HANDSHAKE,
    HANDSHAKE_MAX,
    MESSAGE,
    TICK,
    DecodeError,
    FrameError,
    FrameReader,
    Handshake,
    HandshakeError,
    PeerInfo,
    Role,
    State,
    decode,
    frame,
    message_frame,
    new_incarnation,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 25672  # RABBITMQ_DIST_PORT's default
#: Refusal reasons of the one-link-per-pair rule: the dialer retries later, nothing is wrong.
ALREADY_CONNECTED = "already connected"
SIMULTANEOUS = "simultaneous connection"
_ROUTINE = (ALREADY_CONNECTED, SIMULTANEOUS)
_TICK_FRAME = frame(TICK)


class LinkDown(ConnectionError):
    """The peer has no link (now)."""


class Link(asyncio.Protocol):
    """One connection to a peer: its handshake, then frames both ways."""

    def __init__(self, manager: LinkManager, handshake: Handshake) -> None:
        self.manager = manager
        self.handshake = handshake
        self.peer: PeerInfo | None = None  # set once the handshake is done
        self.closed = False
        self.reason = ""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.established: asyncio.Future[PeerInfo] = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._reader = FrameReader(HANDSHAKE_MAX)
        self._batch: list[bytes] = []
        self._batched = 0
        self._paused = False  # the transport's buffer is over its high-water mark
        self._room = asyncio.Event()  # set while writable (or closed)
        self._full = False  # was not writable since on_writable last ran
        self._received_at = loop.time()
        self._wrote = False
        self._ticker: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's TCP transports are not asyncio.Transport subclasses: no isinstance check)
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=self.manager.send_buffer)
        self._ticker = self._loop.call_later(self.manager.tick_time / 4, self._tick)
        for data in self.handshake.start():
            transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._received_at = self._loop.time()
        self._reader.append(data)
        while not self.closed:
            try:
                item = self._reader.next()
            except FrameError as exc:
                self.close(str(exc))
                return
            if item is None:
                return
            kind, payload = item
            if self.peer is None:
                self._handshake(kind, payload)
            elif kind == MESSAGE:
                try:
                    value = decode(payload)
                except DecodeError as exc:
                    self.close(f"malformed message: {exc}")
                    return
                if self.peer.control:
                    self.manager._control(self, value)
                else:
                    self.manager._deliver(self.peer.node, value)
            elif kind != TICK:
                self.close("handshake frame after the handshake")

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(str(exc) if exc else "connection closed")

    def pause_writing(self) -> None:
        self._paused = True
        self._full = True
        self._room.clear()

    def resume_writing(self) -> None:
        self._paused = False
        self._update_room()

    @property
    def addresses(self) -> tuple[Any, Any]:
        """(this end's address, the peer's) of the connection."""
        assert self._transport is not None
        return self._transport.get_extra_info("sockname"), self._transport.get_extra_info("peername")

    # -- sending

    @property
    def writable(self) -> bool:
        """Whether a message sent now is within the send buffer (not waiting on the peer)."""
        return not self.closed and not self._paused and self._batched < self.manager.send_buffer

    async def wait_writable(self) -> None:
        while not self.writable:
            if self.closed:
                raise LinkDown(self.reason)
            await self._room.wait()
        if self.closed:
            raise LinkDown(self.reason)

    def send(self, data: bytes) -> None:
        """Queue frame bytes for this iteration's write."""
        if not self._batch:
            self._loop.call_soon(self._flush)
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= self.manager.send_buffer:
            self._full = True
            self._room.clear()

    def _flush(self) -> None:
        if self.closed or not self._batch:
            return
        data = b"".join(self._batch) if len(self._batch) > 1 else self._batch[0]
        self._batch.clear()
        self._batched = 0
        self._wrote = True
        assert self._transport is not None
        self._transport.write(data)  # may pause_writing()
        self._update_room()

    def _update_room(self) -> None:
        if self.writable:
            self._room.set()
            if self._full:
                self._full = False
                self.manager._writable(self)

    # -- the handshake

    def _handshake(self, kind: int, payload: bytes) -> None:
        assert self._transport is not None
        if kind != HANDSHAKE:
            self.close("a frame other than the handshake's before it")
            return
        handshake = self.handshake
        try:
            out = handshake.receive(payload)
        except HandshakeError as exc:
            text = str(exc)
            routine = any(text.endswith(reason) for reason in _ROUTINE)
            log.log(logging.DEBUG if routine else logging.ERROR, "%s", text)
            if exc.reply is not None:
                self._transport.write(exc.reply)
            self.close(text, flush=True)
            return
        for data in out:
            self._transport.write(data)
        if handshake.state is State.AUTHENTICATED:
            refusal = self.manager._admit(self)
            if refusal is not None:
                log.debug(
                    "link from node %s refused: %s", handshake.peer.node if handshake.peer else "?", refusal
                )
                for data in handshake.refuse(refusal):
                    self._transport.write(data)
                self.close(refusal, flush=True)
                return
            for data in handshake.admit():
                self._transport.write(data)
        if handshake.done:
            assert handshake.peer is not None
            self.peer = handshake.peer
            self._reader.max_payload = FRAME_MAX
            self.manager._up(self)
            if not self.established.done():
                self.established.set_result(self.peer)

    # -- liveness and closing

    def _tick(self) -> None:
        if self.closed:
            return
        silent = self._loop.time() - self._received_at
        if silent > self.manager.tick_time:
            what = "peer not responding" if self.peer is not None else "handshake timed out"
            self.close(f"{what} ({silent:.1f} s without data)")
            return
        if self.peer is not None and not self._wrote and not self._batch:
            assert self._transport is not None
            self._transport.write(_TICK_FRAME)  # past the send buffer: it is 5 bytes
        self._wrote = False
        self._ticker = self._loop.call_later(self.manager.tick_time / 4, self._tick)

    def close(self, reason: str, *, flush: bool = False) -> None:
        """Close the link: at once (a dead peer would never take what is buffered), or after
        what is written so far with ``flush`` (a refusal's reason)."""
        if self._transport is not None and not self.closed:
            if flush:
                self._transport.close()
            else:
                self._transport.abort()
        self._ended(reason)

    def _ended(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        if self._ticker is not None:
            self._ticker.cancel()
        self._room.set()  # waiting senders see the link closed
        if not self.established.done():
            self.established.set_exception(LinkDown(reason))
            self.established.exception()  # (retrieved: a dial nobody awaits any more is fine)
        self.manager._ended(self)


MessageCallback = Callable[[str, Any], None]
UpCallback = Callable[[PeerInfo], None]
DownCallback = Callable[[str, str], None]
WritableCallback = Callable[[str], None]
ControlCallback = Callable[[Any, Callable[[Any], None]], None]


class LinkManager:
    """This node's links to its peers. Callbacks run on the event loop: ``on_message(node,
    message)``, ``on_peer_up(peer_info)``, ``on_peer_down(node, reason)`` and
    ``on_writable(node)`` (the peer's send buffer has room again)."""

    def __init__(
        self,
        node: str,
        cookie: bytes | str,
        *,
        port: int = DEFAULT_PORT,
        host: str = "0.0.0.0",
        ports: Mapping[str, int] | None = None,
        incarnation: int | None = None,
        on_message: MessageCallback | None = None,
        on_peer_up: UpCallback | None = None,
        on_peer_down: DownCallback | None = None,
        on_writable: WritableCallback | None = None,
        send_buffer: int = 4 * 1024 * 1024,
        tick_time: float = 15.0,
        backoff: tuple[float, float] = (0.05, 5.0),
        tls: LinkTls | None = None,
    ) -> None:
        self.node = node
        self._cookie = cookie.encode() if isinstance(cookie, str) else cookie
        self.host = host
        self.port = port  # the bound port once started (port 0: the system's choice)
        self.ports = dict(ports or {})  # advertised to peers: {"amqp": 5672, ...}
        self.incarnation = incarnation if incarnation is not None else new_incarnation()
        self.on_message = on_message
        self.on_peer_up = on_peer_up
        self.on_peer_down = on_peer_down
        self.on_writable = on_writable
        self.on_control: ControlCallback | None = None  # admits control clients when set
        self.send_buffer = send_buffer
        self.tick_time = tick_time
        self.backoff = backoff
        self.tls = tls
        self._server: asyncio.Server | None = None
        self._links: dict[str, Link] = {}  # node -> its established link
        self._dialing: dict[str, Link] = {}  # node -> our outgoing link in its handshake
        self._pending: set[Link] = set()  # every link not yet established (to close on stop)
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._unlinked: dict[str, asyncio.Event] = {}  # node -> set while it has no link
        self._clients: set[Link] = set()  # established links of control clients
        self._tls_listener: TlsListener | None = None  # listens instead of _server with TLS

    # -- lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.tls is not None:
            self._tls_listener = TlsListener(self.tls, self._new_link, self.tick_time)
            self.port = await self._tls_listener.start(self.host, self.port)
            return
        self._server = await loop.create_server(self._accepted, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for task in self._dialers.values():
            task.cancel()
        await asyncio.gather(*self._dialers.values(), return_exceptions=True)
        self._dialers.clear()
        if self._tls_listener is not None:
            await self._tls_listener.close()
            self._tls_listener = None
        if self._server is not None:
            self._server.close()
        for link in [*self._links.values(), *self._pending, *self._clients]:
            link.close("node stopping")
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def add_peer(self, node: str, address: tuple[str, int] | None = None) -> None:
        """Keep a link to ``node`` at ``address`` (by default its name's host, port 25672)."""
        if node in self._dialers or node == self.node:
            return
        host = node.partition("@")[2]
        event = self._unlinked[node] = asyncio.Event()
        if node not in self._links:
            event.set()
        self._dialers[node] = asyncio.get_running_loop().create_task(
            self._keep_linked(node, address or (host, DEFAULT_PORT)), name=f"link to {node}"
        )

    def remove_peer(self, node: str) -> None:
        """Stop dialing ``node`` and close its link."""
        task = self._dialers.pop(node, None)
        if task is not None:
            task.cancel()
        self._unlinked.pop(node, None)
        link = self._links.get(node)
        if link is not None:
            link.close("peer removed")

    def disconnect(self, node: str, reason: str = "disconnected") -> None:
        """Close ``node``'s link now (say, the failure detector has it down): a peer still
        given by ``add_peer`` is dialed again."""
        link = self._links.get(node)
        if link is not None:
            link.close(reason)

    # -- state

    @property
    def peers(self) -> list[PeerInfo]:
        """The peers linked now."""
        return [link.peer for link in self._links.values() if link.peer is not None]

    def linked(self, node: str) -> bool:
        return node in self._links

    def link(self, node: str) -> Link | None:
        """The peer's link, if it has one now."""
        return self._links.get(node)

    def writable(self, node: str) -> bool:
        link = self._links.get(node)
        return link is not None and link.writable

    # -- sending

    async def send(self, node: str, message: Any) -> None:
        """Send ``message`` (a registered dataclass) to ``node``, waiting while its send buffer
        is full; ``LinkDown`` if it has no link or loses it meanwhile."""
        data = message_frame(message)
        link = self._link(node)
        await link.wait_writable()
        link.send(data)

    def try_send(self, node: str, message: Any) -> bool:
        """Send without waiting: False (nothing sent) while the send buffer is full."""
        link = self._link(node)
        if not link.writable:
            return False
        link.send(message_frame(message))
        return True

    def _link(self, node: str) -> Link:
        link = self._links.get(node)
        if link is None:
            raise LinkDown(f"no link to node {node}")
        return link

    # -- dialing

    async def _keep_linked(self, node: str, address: tuple[str, int]) -> None:
        delay = self.backoff[0]
        unlinked = self._unlinked[node]
        while True:
            await unlinked.wait()
            if node in self._links:
                unlinked.clear()
                continue
            if await self._dial(node, address):
                delay = self.backoff[0]
                continue
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter: peers do not retry in step
            delay = min(delay * 2, self.backoff[1])

    async def _dial(self, node: str, address: tuple[str, int]) -> bool:
        loop = asyncio.get_running_loop()
        handshake = Handshake(Role.DIAL, self.node, self._cookie, incarnation=self.incarnation,
                              ports={"cluster": self.port, **self.ports}, expected=node)  # fmt: skip
        link = Link(self, handshake)
        self._dialing[node] = link
        self._pending.add(link)
        connected = False
        try:
            async with asyncio.timeout(self.tick_time):
                if self.tls is None:
                    await loop.create_connection(lambda: link, *address)
                else:
                    await dial_tls(link, self.tls, node, address, self.tick_time)
                connected = True
                await link.established
            return True
        except (OSError, TimeoutError, LinkDown) as exc:
            link.close(str(exc) or type(exc).__name__)
            if connected and link.handshake.state is State.CHALLENGE and link.reason != SIMULTANEOUS:
                # Closed by the peer before any word of the handshake: TLS on one side only, or
                # this node's certificate refused.
                log.error("link to node %s at %s:%s closed before its handshake: %s (%s)", node, *address,
                          tidy(link.reason), CLOSED_BEFORE[self.tls is not None])  # fmt: skip
            else:
                log.debug("link to node %s at %s:%s failed: %s", node, *address, link.reason)
            return False
        finally:
            if self._dialing.get(node) is link:
                del self._dialing[node]

    def _accepted(self) -> PlainAccepted:
        return PlainAccepted(self._new_link())

    def _new_link(self) -> Link:
        """The link of a connection accepted now."""
        handshake = Handshake(Role.ACCEPT, self.node, self._cookie, incarnation=self.incarnation,
                              ports={"cluster": self.port, **self.ports})  # fmt: skip
        link = Link(self, handshake)
        self._pending.add(link)
        return link

    # -- what links report

    def _admit(self, link: Link) -> str | None:
        """Whether an authenticated incoming link may stay (None) or why not: one link per pair."""
        peer = link.handshake.peer
        assert peer is not None
        if peer.control:
            return None if self.on_control is not None else "control clients are not accepted"
        if peer.node == self.node:
            return f"node {erlang_atom(peer.node)} is this node's name"
        current = self._links.get(peer.node)
        if current is not None and current.peer is not None:
            if current.peer.incarnation == peer.incarnation:
                return ALREADY_CONNECTED
            current.close(f"node {peer.node} restarted")
        dialing = self._dialing.get(peer.node)
        if dialing is not None:
            if self.node > peer.node:
                return SIMULTANEOUS
            dialing.close(SIMULTANEOUS)
        return None

    def _up(self, link: Link) -> None:
        assert link.peer is not None
        node = link.peer.node
        self._pending.discard(link)
        if link.peer.control:
            self._clients.add(link)
            log.debug("control client %s connected", node)
            return
        if node in self._links:  # (an incoming link was admitted while this dial finished)
            link.close(ALREADY_CONNECTED)
            return
        self._links[node] = link
        unlinked = self._unlinked.get(node)
        if unlinked is not None:
            unlinked.clear()
        log.info("link to node %s up (incarnation %d)", node, link.peer.incarnation)
        self._call(self.on_peer_up, link.peer)

    def _ended(self, link: Link) -> None:
        self._pending.discard(link)
        self._clients.discard(link)
        if link.peer is None or self._links.get(link.peer.node) is not link:
            return
        node = link.peer.node
        del self._links[node]
        unlinked = self._unlinked.get(node)
        if unlinked is not None:
            unlinked.set()
        log.info("link to node %s down: %s", node, link.reason)
        self._call(self.on_peer_down, node, link.reason)

    def _deliver(self, node: str, message: Any) -> None:
        self._call(self.on_message, node, message)

    def _control(self, link: Link, message: Any) -> None:
        def reply(answer: Any) -> None:
            if not link.closed:
                link.send(message_frame(answer))

        self._call(self.on_control, message, reply)

    def _writable(self, link: Link) -> None:
        if link.peer is not None and self._links.get(link.peer.node) is link:
            self._call(self.on_writable, link.peer.node)

    @staticmethod
    def _call(callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # a callback's bug must not take the link down
            log.exception("link callback %r failed", callback)
