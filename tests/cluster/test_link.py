"""Links between LinkManagers on 127.0.0.1: one connection per pair, messages in order, the
cookie, a cut link reconnected, back-pressure, a restarted peer told apart."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from eventually import eventually
from proxy import TcpProxy

from cluster import control_client
from cluster.link import LinkDown, LinkManager
from cluster.wire import ControlReply, ControlRequest, PeerInfo, message


@message(60100)
@dataclass(frozen=True)
class Note:
    sender: str
    number: int
    body: bytes = b""


@dataclass
class Node:
    """A LinkManager with what its callbacks reported."""

    manager: LinkManager
    received: dict[str, list[Any]] = field(default_factory=dict)
    ups: list[PeerInfo] = field(default_factory=list)
    downs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.manager.node

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.manager.port)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Any]]:
    nodes: list[Node] = []

    async def start(name: str, cookie: str = "cookie", port: int = 0, **options: Any) -> Node:
        node = Node(LinkManager(name, cookie, port=port, host="127.0.0.1", **options))
        manager = node.manager
        manager.on_message = lambda peer, value: node.received.setdefault(peer, []).append(value)
        manager.on_peer_up = node.ups.append
        manager.on_peer_down = lambda peer, reason: node.downs.append((peer, reason))
        await manager.start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        await node.manager.stop()


async def test_three_nodes_link_once_per_pair_and_exchange_messages_in_order(
    make: Callable[..., Any],
) -> None:
    nodes = [await make(f"rabbit@n{i}", ports={"amqp": 5670 + i}) for i in range(3)]
    for node in nodes:  # every node dials every other: each pair races
        for other in nodes:
            if other is not node:
                node.manager.add_peer(other.name, other.address)
    await eventually(lambda: all(len(n.manager.peers) == 2 for n in nodes), message="not all linked")
    for node in nodes:
        for other in nodes:
            if other is not node:
                mine, theirs = node.manager.link(other.name), other.manager.link(node.name)
                assert mine is not None and theirs is not None
                local, remote = mine.addresses
                assert theirs.addresses == (remote, local)  # the same TCP connection
        assert sorted(p.node for p in node.manager.peers) == sorted(o.name for o in nodes if o is not node)
    peer = {p.node: p for p in nodes[0].manager.peers}["rabbit@n1"]
    assert (peer.ports["amqp"], peer.ports["cluster"], peer.incarnation) == (5671, nodes[1].manager.port,
                                                                             nodes[1].manager.incarnation)  # fmt: skip

    for node in nodes:
        for other in nodes:
            if other is not node:
                for number in range(200):
                    await node.manager.send(other.name, Note(node.name, number, bytes([number]) * number))
    await eventually(
        lambda: all(sum(map(len, n.received.values())) == 400 for n in nodes), message="not all received"
    )
    for node in nodes:
        for sender, notes in node.received.items():
            assert notes == [Note(sender, number, bytes([number]) * number) for number in range(200)]
    assert not any(node.downs for node in nodes)


async def test_a_wrong_cookie_is_refused_and_logged_as_rabbitmq_does(
    make: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cluster")
    good = await make("rabbit@good")
    intruder = await make("rabbit-x@bad", cookie="guess")
    intruder.manager.add_peer(good.name, good.address)
    rejected = "** Connection attempt from node 'rabbit-x@bad' rejected. Invalid challenge reply. **"
    await eventually(lambda: rejected in caplog.messages, message="no rejection logged")
    record = next(r for r in caplog.records if r.getMessage() == rejected)
    assert record.levelno == logging.ERROR
    await eventually(
        lambda: "Connection attempt to node rabbit@good refused: invalid challenge reply" in caplog.messages
    )
    assert not good.manager.peers and not intruder.manager.peers and not good.received
    with pytest.raises(LinkDown):
        await intruder.manager.send(good.name, Note("x", 1))


async def test_a_cut_link_is_seen_down_on_both_sides_and_dialed_again(make: Callable[..., Any]) -> None:
    a, b = await make("rabbit@a", backoff=(0.02, 0.2)), await make("rabbit@b")
    proxy = await TcpProxy(b.address).start()
    try:
        a.manager.add_peer(b.name, proxy.address)  # only a dials, through the proxy
        await eventually(lambda: a.manager.linked(b.name) and b.manager.linked(a.name))
        await a.manager.send(b.name, Note(a.name, 1))
        await eventually(lambda: b.received.get(a.name) == [Note(a.name, 1)])

        proxy.cut()
        await eventually(lambda: a.downs and b.downs, message="the cut was not seen")
        assert a.downs[0][0] == b.name and b.downs[0][0] == a.name
        await eventually(lambda: len(a.ups) == 2 and len(b.ups) == 2, message="not linked again")
        assert proxy.connections == 2
        await a.manager.send(b.name, Note(a.name, 2))
        await b.manager.send(a.name, Note(b.name, 3))
        await eventually(
            lambda: b.received[a.name][-1:] == [Note(a.name, 2)] and a.received == {b.name: [Note(b.name, 3)]}
        )
    finally:
        await proxy.close()


async def test_a_peer_that_does_not_read_holds_the_sender(make: Callable[..., Any]) -> None:
    a = await make("rabbit@a", send_buffer=64 * 1024, tick_time=60.0)
    b = await make("rabbit@b", tick_time=60.0)
    proxy = await TcpProxy(b.address).start()
    writable: list[str] = []
    a.manager.on_writable = writable.append
    try:
        a.manager.add_peer(b.name, proxy.address)
        await eventually(lambda: a.manager.linked(b.name))
        proxy.drop()  # b reads nothing more: the kernels' buffers fill, then a's
        body = bytes(32 * 1024)
        sent = 0
        while a.manager.try_send(b.name, Note(a.name, sent, body)):
            sent += 1
            await asyncio.sleep(0)  # let the batch go to the socket
            assert sent < 10_000, "the send buffer never filled"
        assert not a.manager.writable(b.name)
        held = asyncio.ensure_future(a.manager.send(b.name, Note(a.name, sent, body)))
        await asyncio.sleep(0.2)
        assert not held.done()  # waiting for room, not failed

        proxy.heal()
        await asyncio.wait_for(held, 10)
        await eventually(lambda: len(b.received.get(a.name, [])) == sent + 1, message="not all delivered")
        assert [n.number for n in b.received[a.name]] == list(range(sent + 1))
        assert writable and writable[0] == b.name
    finally:
        await proxy.close()


async def test_a_restarted_peer_replaces_its_old_link(make: Callable[..., Any]) -> None:
    a = await make("rabbit@a", backoff=(0.02, 0.2))
    b = await make("rabbit@b")
    a.manager.add_peer(b.name, b.address)
    await eventually(lambda: a.manager.linked(b.name))
    first = a.ups[0].incarnation
    port = b.manager.port
    await b.manager.stop()
    await eventually(lambda: a.downs, message="the stop was not seen")
    b2 = await make("rabbit@b", port=port)
    await eventually(lambda: len(a.ups) == 2, message="not linked to the new b")
    assert a.ups[1].incarnation == b2.manager.incarnation != first
    await a.manager.send(b.name, Note(a.name, 1))
    await eventually(lambda: b2.received == {a.name: [Note(a.name, 1)]})


async def test_a_large_message_right_behind_the_handshake_arrives(make: Callable[..., Any]) -> None:
    a, b = await make("rabbit@a"), await make("rabbit@b")
    big = Note(b.name, 1, bytes(1024 * 1024))  # over the handshake's frame limit
    b.manager.on_peer_up = lambda peer: asyncio.ensure_future(b.manager.send(peer.node, big))
    a.manager.add_peer(b.name, b.address)
    await eventually(lambda: a.received.get(b.name) == [big], message="the message did not arrive")
    assert not a.downs


async def test_a_stranger_speaking_nonsense_is_closed_and_nothing_else_changes(
    make: Callable[..., Any],
) -> None:
    a, b = await make("rabbit@a"), await make("rabbit@b")
    a.manager.add_peer(b.name, b.address)
    await eventually(lambda: a.manager.linked(b.name))
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"\x00\x00\x00\x05\x02hello", b"\x00\x00\x00\x02\x01{}"):
        reader, writer = await asyncio.open_connection(*b.address)
        writer.write(garbage)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, unanswered
        writer.close()
    assert b.manager.linked(a.name) and len(b.ups) == 1 and not b.downs and not b.received


async def test_a_disconnected_peer_is_dialed_again(make: Callable[..., Any]) -> None:
    a, b = await make("rabbit@a", backoff=(0.02, 0.2)), await make("rabbit@b")
    a.manager.add_peer(b.name, b.address)
    await eventually(lambda: a.manager.linked(b.name))
    a.manager.disconnect(b.name, "heartbeats stopped")
    assert a.downs == [(b.name, "heartbeats stopped")] and not a.manager.linked(b.name)
    await eventually(lambda: len(a.ups) == 2 and len(b.ups) == 2, message="not linked again")
    assert [down[0] for down in b.downs] == [a.name]


async def test_a_control_client_is_answered_and_never_a_peer(make: Callable[..., Any]) -> None:
    """amqp-ctl -n's link (cluster.control_client): its requests go to on_control, whose reply
    goes back on its link; it is no peer. A manager without on_control refuses it."""
    node = await make("rabbit@a")
    requests: list[ControlRequest] = []

    def answer(request: Any, reply: Callable[[Any], None]) -> None:
        requests.append(request)
        command = json.loads(request.request)["command"]
        reply(ControlReply(request.id, json.dumps({"ok": True, "result": command})))

    node.manager.on_control = answer
    ask = functools.partial(control_client.call, "rabbit@a", node.address, "cookie", {"command": "ping"})
    assert await asyncio.to_thread(ask) == {"ok": True, "result": "ping"}
    assert [json.loads(r.request) for r in requests] == [{"command": "ping"}]
    assert node.ups == [] and node.manager.peers == [] and node.downs == []
    node.manager.on_control = None
    with pytest.raises(control_client.Unreachable, match="refused: control clients are not accepted"):
        await asyncio.to_thread(ask)
