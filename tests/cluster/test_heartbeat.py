"""Failure detection over UDP on 127.0.0.1: a peer whose heartbeats stop (dropped by a proxy, or
the peer stopped) is suspected then down, and up again with its next heartbeat; restarts are
told apart by incarnation; forged and replayed heartbeats are ignored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncio_dgram
import pytest
from eventually import eventually
from proxy import UdpProxy

from cluster.heartbeat import FailureDetector, Status, heartbeat_key, pack, unpack

FAST = {
    "interval": 0.1,
    "suspect_after": 1.0,
    "down_after": 1.5,
}  # seconds, not minutes; stalls of a loaded machine stay well below

Changes = list[tuple[str, Status, int]]


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Any]]:
    detectors: list[FailureDetector] = []

    async def start(
        name: str, changes: Changes, cookie: str = "cookie", port: int = 0, **options: Any
    ) -> FailureDetector:
        detector = FailureDetector(name, cookie, port=port, host="127.0.0.1", **{**FAST, **options})
        detector.on_change = lambda node, status, incarnation: changes.append((node, status, incarnation))
        await detector.start()
        detectors.append(detector)
        return detector

    yield start
    for detector in detectors:
        await detector.stop()


def address(detector: FailureDetector) -> tuple[str, int]:
    return ("127.0.0.1", detector.port)


def statuses(changes: Changes, node: str) -> list[Status]:
    return [status for name, status, _ in changes if name == node]


async def test_dropped_heartbeats_make_a_peer_suspect_then_down_then_up_again(
    make: Callable[..., Any],
) -> None:
    seen_by_a: Changes = []
    seen_by_b: Changes = []
    a = await make("rabbit@a", seen_by_a)
    b = await make("rabbit@b", seen_by_b)
    a_to_b = await UdpProxy(address(b)).start()
    try:
        a.add_peer("rabbit@b", a_to_b.address)  # a's heartbeats reach b through the proxy
        b.add_peer("rabbit@a", address(a))  # b's reach a directly
        await eventually(lambda: b.status("rabbit@a") is Status.UP and a.status("rabbit@b") is Status.UP)
        assert b.incarnation_of("rabbit@a") == a.incarnation

        a_to_b.drop()
        await eventually(lambda: b.status("rabbit@a") is Status.DOWN, message="not seen down")
        assert statuses(seen_by_b, "rabbit@a") == [Status.UP, Status.SUSPECT, Status.DOWN]
        assert a_to_b.dropped > 0
        assert statuses(seen_by_a, "rabbit@b") == [Status.UP]  # the other way was never cut

        a_to_b.heal()
        await eventually(lambda: b.status("rabbit@a") is Status.UP, message="not seen up again")
        assert statuses(seen_by_b, "rabbit@a") == [Status.UP, Status.SUSPECT, Status.DOWN, Status.UP]
        assert {incarnation for _, _, incarnation in seen_by_b} == {a.incarnation}
    finally:
        await a_to_b.close()


async def test_a_stopped_peer_goes_down_and_its_restart_is_a_new_incarnation(
    make: Callable[..., Any],
) -> None:
    seen: Changes = []
    a = await make("rabbit@a", seen)
    b = await make("rabbit@b", [])
    a.add_peer("rabbit@b", address(b))
    b.add_peer("rabbit@a", address(a))
    await eventually(lambda: a.status("rabbit@b") is Status.UP)
    old, port = b.incarnation, b.port
    await b.stop()
    await eventually(lambda: a.status("rabbit@b") is Status.DOWN, message="the stop was not seen")

    b2 = await make("rabbit@b", [], port=port)
    b2.add_peer("rabbit@a", address(a))
    await eventually(lambda: a.status("rabbit@b") is Status.UP, message="the new b was not seen")
    assert seen[0] == ("rabbit@b", Status.UP, old) and seen[-1] == ("rabbit@b", Status.UP, b2.incarnation)
    assert b2.incarnation > old


async def test_a_restart_faster_than_down_after_is_reported_as_down_then_up(make: Callable[..., Any]) -> None:
    seen: Changes = []
    a = await make("rabbit@a", seen, down_after=30.0, suspect_after=20.0)
    b = await make("rabbit@b", [])
    b.add_peer("rabbit@a", address(a))
    a.add_peer("rabbit@b", address(b))
    await eventually(lambda: a.status("rabbit@b") is Status.UP)
    await b.stop()
    b2 = await make("rabbit@b", [], port=b.port)
    b2.add_peer("rabbit@a", address(a))
    await eventually(
        lambda: a.incarnation_of("rabbit@b") == b2.incarnation, message="the restart was not seen"
    )
    assert seen == [("rabbit@b", Status.UP, b.incarnation), ("rabbit@b", Status.DOWN, b.incarnation),
                    ("rabbit@b", Status.UP, b2.incarnation)]  # fmt: skip


async def test_forged_and_replayed_heartbeats_are_ignored(make: Callable[..., Any]) -> None:
    seen: Changes = []
    a = await make("rabbit@a", seen)
    for peer in ("rabbit@b", "rabbit@c"):
        a.add_peer(peer, ("127.0.0.1", 9))  # neither runs: the test speaks for them
    sender = await asyncio_dgram.connect(address(a))
    key = heartbeat_key(b"cookie")

    async def barrier(sequence: int) -> None:
        """c's heartbeat after the others: once a has c up, it has read them all."""
        await sender.send(pack(key, "rabbit@c", 1, sequence))
        await eventually(lambda: a.status("rabbit@c") is Status.UP)

    try:
        await sender.send(pack(heartbeat_key(b"guess"), "rabbit@b", 5, 1))  # without the cookie
        await barrier(1)
        assert a.status("rabbit@b") is Status.DOWN
        await sender.send(pack(key, "rabbit@b", 5, 2))
        await eventually(lambda: a.status("rabbit@b") is Status.UP)
        await eventually(lambda: a.status("rabbit@b") is Status.DOWN and a.status("rabbit@c") is Status.DOWN)
        for replayed in (
            pack(key, "rabbit@b", 5, 2),
            pack(key, "rabbit@b", 5, 1),
            pack(key, "rabbit@b", 4, 9),
        ):
            await sender.send(replayed)
        await barrier(2)
        assert a.status("rabbit@b") is Status.DOWN
        await sender.send(pack(key, "rabbit@b", 5, 3))  # the next genuine one
        await eventually(lambda: a.status("rabbit@b") is Status.UP)
        assert statuses(seen, "rabbit@b") == [Status.UP, Status.SUSPECT, Status.DOWN, Status.UP]
        assert seen[-1] == ("rabbit@b", Status.UP, 5)
    finally:
        sender.close()


def test_packets_are_authenticated() -> None:
    key = heartbeat_key(b"cookie")
    packet = pack(key, "rabbit@b", 7, 9)
    assert unpack(key, packet) == ("rabbit@b", 7, 9)
    assert unpack(heartbeat_key(b"other"), packet) is None
    assert unpack(key, packet[:-1]) is None and unpack(key, packet + b"x") is None
    assert unpack(key, packet[:10]) is None
    tampered = bytearray(packet)
    tampered[6] ^= 1
    assert unpack(key, bytes(tampered)) is None
    assert b"cookie" not in packet


def test_default_timings_are_a_second_and_five() -> None:
    detector = FailureDetector("rabbit@a", "cookie", port=0)
    assert (detector.interval, detector.suspect_after, detector.down_after) == (1.0, 3.0, 5.0)
    with pytest.raises(ValueError, match="interval < suspect_after <= down_after"):
        FailureDetector("rabbit@a", "cookie", port=0, interval=2.0, suspect_after=1.0)
