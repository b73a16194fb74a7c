"""A node's cluster service: its links to the other nodes (``cluster.link``) and its failure
detector (``cluster.heartbeat``), under one incarnation, started by the server when a cluster
port or peers are configured (docs/clustering.md, "Forming a cluster").

Peers are named as rabbitmqctl names nodes, ``name@host``; RabbitMQ finds a peer's
distribution port through EPMD, which this broker has not, so a peer listening elsewhere than
25672 is named ``name@host:port`` (in ``cluster_formation.classic_config.nodes.*`` and
``join_cluster``). Addresses given so are this node's own view and win over those the cluster
shares (a proxy between two nodes, say).

Control clients (``amqp-ctl -n`` from another host, ``cluster.link``) have their requests
answered by ``control``, the control socket's own handling (``ControlServer.answer``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from amqp_server.control import BOOTING, read_or_create_secret
from amqp_server.core.broker import BrokerConfig
from cluster.heartbeat import FailureDetector, Status
from cluster.link import DEFAULT_PORT, LinkDown, LinkManager
from cluster.link_tls import LinkTls
from cluster.names import parse
from cluster.wire import ControlReply, ControlRequest, PeerInfo, message_frame, new_incarnation

log = logging.getLogger(__name__)

_PORT = re.compile(r"(.*):([0-9]{1,5})")


def peer_address(text: str) -> tuple[str, tuple[str, int]]:
    """``name@host`` or ``name@host:port``: the node's full name and where to reach it
    (``NodeNameError`` for a name rabbitmqctl refuses)."""
    port = DEFAULT_PORT
    match = _PORT.fullmatch(text)
    if match is not None and int(match[2]) <= 65535:
        text, port = match[1], int(match[2])
    name = parse(text, longnames=True)
    return str(name), (name.host, port)


def read_cookie(config: BrokerConfig) -> str:
    """The cluster's shared secret: the cookie file, by default the control secret (made on
    the node's first start, as RabbitMQ makes its Erlang cookie)."""
    if config.cookie_file:
        with open(config.cookie_file, encoding="utf-8") as handle:
            return handle.read().strip()
    if not config.data_dir:
        raise ValueError("clustering needs a data directory or a cookie file")
    os.makedirs(config.data_dir, exist_ok=True)
    return read_or_create_secret(config.data_dir)


class ClusterService:
    """Links and heartbeats of one node. ``handlers`` maps a message class to what takes it
    (``handler(node, message)``); ``on_peer_up``/``on_peer_down`` are called with node names."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.node = config.node_name
        self.incarnation = new_incarnation()
        self.port = config.cluster_port if config.cluster_port is not None else DEFAULT_PORT
        # Addresses this node was given for its peers (they win over the cluster's).
        # Addresses this node was given for its peers (they win over the cluster's); at start.
        self.configured: dict[str, tuple[str, int]] = {}
        self.handlers: dict[type, Callable[[str, Any], None]] = {}
        self.on_peer_up: Callable[[str], None] | None = None
        self.on_peer_down: Callable[[str], None] | None = None
        self.links: LinkManager | None = None  # made at start
        self.detector: FailureDetector | None = None
        self._resolving: set[asyncio.Task[None]] = set()
        # What answers a control client's request (the server sets it with its control socket).
        self.control: Callable[[bytes], Awaitable[dict[str, Any]]] | None = None
        self._answering: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Read the peers and the cookie, listen on the cluster port (TCP for links, UDP for
        heartbeats). ``NodeNameError`` for a peer's name rabbitmqctl refuses, ``TlsError`` for
        TLS options (``cluster.ssl``) that make no context."""
        given = dict(peer_address(p) for p in self.config.cluster_nodes)
        self.configured = {node: address for node, address in given.items() if node != self.node}
        cookie = read_cookie(self.config)
        host = self.config.host
        tls = LinkTls(self.config.cluster_ssl_options) if self.config.cluster_ssl else None
        if tls is None and self.config.cluster_ssl_options.certfile:
            log.warning("cluster.ssl_options.certfile is set, cluster.ssl is not: links are plain TCP")
        self.links = LinkManager(
            self.node, cookie, port=self.port, host=host, incarnation=self.incarnation,
            on_message=self._message, on_peer_up=self._up, on_peer_down=self._down, tls=tls,
        )  # fmt: skip
        self.links.on_control = self._control
        await self.links.start()
        self.port = self.links.port
        self.detector = FailureDetector(
            self.node, cookie, port=self.port, host=host, incarnation=self.incarnation, on_change=self._status
        )
        await self.detector.start()
        log.info("cluster listener on %s:%s, node %s%s", host, self.port, self.node, " (TLS)" if tls else "")

    async def stop(self) -> None:
        if self.detector is not None:
            await self.detector.stop()
        if self.links is not None:
            await self.links.stop()

    def advertise(self, **ports: int) -> None:
        """Ports the handshake tells peers of (``amqp``, ``management``...)."""
        assert self.links is not None
        self.links.ports.update(ports)

    def add_peer(self, node: str, address: tuple[str, int]) -> None:
        address = self.configured.get(node, address)
        assert self.links is not None
        self.links.add_peer(node, address)
        if self.detector is not None:
            task = asyncio.get_running_loop().create_task(self._watch(node, address))
            self._resolving.add(task)
            task.add_done_callback(self._resolving.discard)

    async def _watch(self, node: str, address: tuple[str, int]) -> None:
        """Heartbeats to ``node``: at its address resolved first (a UDP send under uvloop takes
        no host name), in the family of the detector's socket."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        try:
            found = await asyncio.get_running_loop().getaddrinfo(*address, family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("cannot resolve %s of node %s: %s", address[0], node, exc)
            return
        if self.detector is not None:
            self.detector.add_peer(node, found[0][4][:2])

    def remove_peer(self, node: str) -> None:
        assert self.links is not None
        self.links.remove_peer(node)
        if self.detector is not None:
            self.detector.remove_peer(node)

    def linked(self, node: str) -> bool:
        return self.links is not None and self.links.linked(node)

    def try_send(self, node: str, message: Any) -> bool:
        """Send without waiting (``LinkDown`` without a link; False while its buffer is full)."""
        if self.links is None:
            raise LinkDown("not started")
        return self.links.try_send(node, message)

    async def send(self, node: str, message: Any) -> None:
        if self.links is None:
            raise LinkDown("not started")
        await self.links.send(node, message)

    def post(self, node: str, message: Any) -> None:
        """Send now, past a full send buffer (``LinkDown`` without a link): for messages
        whose flow is bounded elsewhere (cluster.queue_link's credit)."""
        link = self.links.link(node) if self.links is not None else None
        if link is None:
            raise LinkDown(f"no link to node {node}")
        link.send(message_frame(message))

    def writable(self, node: str) -> bool:
        """Whether ``node``'s link has room in its send buffer."""
        return self.links is not None and self.links.writable(node)

    def peers(self) -> list[str]:
        """The nodes linked now."""
        return [peer.node for peer in self.links.peers] if self.links is not None else []

    def running(self, node: str) -> bool:
        """Whether ``node`` is reachable now: linked, or heard by the failure detector."""
        if node == self.node or self.linked(node):
            return True
        return self.detector is not None and self.detector.status(node) is Status.UP

    def peer_info(self, node: str) -> PeerInfo | None:
        link = self.links.link(node) if self.links is not None else None
        return link.peer if link is not None else None

    def _message(self, node: str, message: Any) -> None:
        handler = self.handlers.get(type(message))
        if handler is None:
            log.warning("node %s sent an unexpected %s", node, type(message).__name__)
            return
        try:
            handler(node, message)
        except Exception:  # a bug in one handler must not take the link (and all else) down
            log.exception("handling %s from node %s failed", type(message).__name__, node)

    def _control(self, message: Any, reply: Callable[[Any], None]) -> None:
        if not isinstance(message, ControlRequest):
            log.warning("a control client sent an unexpected %s", type(message).__name__)
            return
        task = asyncio.get_running_loop().create_task(self._answer(message, reply))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, request: ControlRequest, reply: Callable[[Any], None]) -> None:
        if self.control is None:  # booting: the control socket is not up yet
            answer: dict[str, Any] = {"ok": False, "error": BOOTING}
        else:
            answer = await self.control(request.request.encode())
        reply(ControlReply(request.id, json.dumps(answer)))

    def _up(self, peer: PeerInfo) -> None:
        if self.on_peer_up is not None:
            self.on_peer_up(peer.node)

    def _down(self, node: str, reason: str) -> None:
        if self.on_peer_down is not None:
            self.on_peer_down(node)

    def _status(self, node: str, status: Status, incarnation: int) -> None:
        if status is Status.DOWN and self.links is not None:
            peer = self.peer_info(node)
            if peer is not None and peer.incarnation != incarnation:
                return  # the node restarted and linked again: its old incarnation is what went down
            self.links.disconnect(node, "failure detector: down")  # dialed again at once
