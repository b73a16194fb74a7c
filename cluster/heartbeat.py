"""Failure detection: each node sends its peers a small authenticated UDP heartbeat every
``interval`` and judges each peer by the heartbeats it hears.

A simple suspicion timeout, not phi-accrual (the interval is fixed and the links are a LAN's,
so a fixed silence is as good a signal): a peer silent for ``suspect_after`` seconds is
``SUSPECT``, for ``down_after`` seconds ``DOWN``; any heartbeat makes it ``UP`` again. With the
defaults (1 s, 3 s, 5 s) a lost node is seen down 5 to 5.25 s after its last heartbeat, as
RabbitMQ's ``net_ticktime`` does in a minute. A peer never heard from is ``DOWN``, silently.

Each heartbeat carries the sender's name, its incarnation (``cluster.wire.new_incarnation``:
larger after a restart) and a sequence number, under a truncated HMAC-SHA256 keyed from the
cookie: forged heartbeats are dropped, and so are replayed ones (an older incarnation, or a
sequence number not above the last heard). A heartbeat from a new incarnation of a peer that
was up reports the old one ``DOWN`` ("restarted") and then the new one ``UP``, so a restart
faster than ``down_after`` is still seen.

Packet: ``AQHB``, version (uint8), incarnation and sequence (uint64 each), the node name's
length (uint8) and UTF-8 name, then 16 bytes of HMAC over all that.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

import asyncio_dgram

from cluster.wire import new_incarnation

log = logging.getLogger(__name__)

MAGIC = b"AQHB"
VERSION = 1
_HEADER = struct.Struct(">4sBQQB")
_MAC_BYTES = 16


class Status(enum.Enum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


def heartbeat_key(cookie: bytes) -> bytes:
    """The heartbeats' HMAC key, derived from the cookie (never the cookie itself)."""
    return hmac.new(cookie, b"amqp-server cluster heartbeat", hashlib.sha256).digest()


def pack(key: bytes, node: str, incarnation: int, sequence: int) -> bytes:
    name = node.encode()
    body = _HEADER.pack(MAGIC, VERSION, incarnation, sequence, len(name)) + name
    return body + hmac.new(key, body, hashlib.sha256).digest()[:_MAC_BYTES]


def unpack(key: bytes, data: bytes) -> tuple[str, int, int] | None:
    """``(node, incarnation, sequence)`` of an authentic heartbeat, None for anything else."""
    if len(data) < _HEADER.size + _MAC_BYTES:
        return None
    magic, version, incarnation, sequence, length = _HEADER.unpack_from(data)
    body = data[: _HEADER.size + length]
    if magic != MAGIC or version != VERSION or len(data) != len(body) + _MAC_BYTES:
        return None
    if not hmac.compare_digest(data[len(body) :], hmac.new(key, body, hashlib.sha256).digest()[:_MAC_BYTES]):
        return None
    try:
        return body[_HEADER.size :].decode(), incarnation, sequence
    except UnicodeDecodeError:
        return None


@dataclass(slots=True)
class Peer:
    node: str
    address: tuple[str, int]
    status: Status = Status.DOWN
    incarnation: int = 0  # 0: never heard
    sequence: int = 0
    heard_at: float = 0.0


ChangeCallback = Callable[[str, Status, int], None]


class FailureDetector:
    """Heartbeats to and from this node's peers on UDP ``port`` (the inter-node port's number
    by convention); ``on_change(node, status, incarnation)`` runs on every change of a peer's
    status."""

    def __init__(
        self,
        node: str,
        cookie: bytes | str,
        *,
        port: int,
        host: str = "0.0.0.0",
        incarnation: int | None = None,
        interval: float = 1.0,
        suspect_after: float = 3.0,
        down_after: float = 5.0,
        on_change: ChangeCallback | None = None,
    ) -> None:
        if not interval < suspect_after <= down_after:
            raise ValueError("want interval < suspect_after <= down_after")
        self.node = node
        self.host = host
        self.port = port  # the bound port once started
        self.incarnation = incarnation if incarnation is not None else new_incarnation()
        self.interval = interval
        self.suspect_after = suspect_after
        self.down_after = down_after
        self.on_change = on_change
        self._key = heartbeat_key(cookie.encode() if isinstance(cookie, str) else cookie)
        self._peers: dict[str, Peer] = {}
        self._sequence = 0
        self._stream: asyncio_dgram.aio.DatagramServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._stream = await asyncio_dgram.bind((self.host, self.port))
        self.port = self._stream.sockname[1]
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._receive(), name="heartbeat receiver"),
                       loop.create_task(self._beat(), name="heartbeat sender")]  # fmt: skip

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._stream is not None:
            self._stream.close()
            self._stream = None
            await asyncio.sleep(0)  # the transport closes its socket on the next iteration: port free

    def add_peer(self, node: str, address: tuple[str, int]) -> None:
        """Send heartbeats to ``node`` at ``address`` and watch for its own."""
        peer = self._peers.get(node)
        if peer is None:
            self._peers[node] = Peer(node, address)
        else:
            peer.address = address

    def remove_peer(self, node: str) -> None:
        self._peers.pop(node, None)

    def status(self, node: str) -> Status:
        peer = self._peers.get(node)
        return peer.status if peer is not None else Status.DOWN

    def incarnation_of(self, node: str) -> int:
        """The peer's incarnation last heard (0: never)."""
        peer = self._peers.get(node)
        return peer.incarnation if peer is not None else 0

    # -- the judgement (plain methods of the time given)

    def heard(self, node: str, incarnation: int, sequence: int, now: float) -> None:
        peer = self._peers.get(node)
        if peer is None or incarnation < peer.incarnation:
            return
        if incarnation == peer.incarnation and sequence <= peer.sequence:
            return  # replayed, duplicated or reordered
        if incarnation > peer.incarnation and peer.status is not Status.DOWN:
            self._change(peer, Status.DOWN, "restarted")
        peer.incarnation, peer.sequence, peer.heard_at = incarnation, sequence, now
        if peer.status is not Status.UP:
            self._change(peer, Status.UP, "heartbeat")

    def check(self, now: float) -> None:
        for peer in list(self._peers.values()):
            if peer.status is Status.DOWN:
                continue
            silent = now - peer.heard_at
            if silent >= self.down_after:
                self._change(peer, Status.DOWN, f"no heartbeat for {silent:.1f} s")
            elif silent >= self.suspect_after and peer.status is Status.UP:
                self._change(peer, Status.SUSPECT, f"no heartbeat for {silent:.1f} s")

    def _change(self, peer: Peer, status: Status, why: str) -> None:
        peer.status = status
        log.log(logging.INFO if status is not Status.SUSPECT else logging.WARNING,
                "node %s (incarnation %d) is %s: %s", peer.node, peer.incarnation, status.value, why)  # fmt: skip
        if self.on_change is not None:
            try:
                self.on_change(peer.node, status, peer.incarnation)
            except Exception:  # a callback's bug must not stop failure detection
                log.exception("heartbeat callback failed")

    # -- I/O

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time()
        while True:
            now = loop.time()
            if now >= next_beat:
                next_beat = now + self.interval
                await self._send_all()
            self.check(loop.time())
            await asyncio.sleep(min(self.interval / 4, max(next_beat - loop.time(), 0)))

    async def _send_all(self) -> None:
        assert self._stream is not None
        self._sequence += 1
        packet = pack(self._key, self.node, self.incarnation, self._sequence)
        for peer in list(self._peers.values()):
            try:
                await self._stream.send(packet, peer.address)
            except OSError as exc:  # unreachable now: its silence is what counts
                log.debug("heartbeat to %s at %s failed: %s", peer.node, peer.address, exc)

    async def _receive(self) -> None:
        assert self._stream is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, _ = await self._stream.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError:  # an ICMP error about an earlier send
                continue
            parsed = unpack(self._key, data)
            if parsed is not None:
                self.heard(*parsed, loop.time())
