"""Throughput and round-trip time of one inter-node link on loopback (docs/clustering.md).

    .venv/bin/python scripts/cluster_link_bench.py [--seconds 3]

Two LinkManagers in one process (so both ends share one core: a floor, not a ceiling). For
each body size, one node sends messages as fast as ``await send`` lets it for the given time;
then a message goes back and forth for the round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

from cluster.link import LinkManager
from cluster.wire import message


@message(65000)
@dataclass(frozen=True, slots=True)
class Payload:
    index: int
    term: int
    body: bytes


async def main(seconds: float) -> None:
    received = 0
    pong: asyncio.Future[None] | None = None

    def on_b(node: str, value: Payload) -> None:
        nonlocal received
        received += 1
        if value.index < 0:  # a ping
            asyncio.ensure_future(b.send(node, value))

    def on_a(node: str, value: Payload) -> None:
        if pong is not None and not pong.done():
            pong.set_result(None)

    a = LinkManager("bench@a", "cookie", port=0, host="127.0.0.1", on_message=on_a)
    b = LinkManager("bench@b", "cookie", port=0, host="127.0.0.1", on_message=on_b)
    await a.start()
    await b.start()
    a.add_peer("bench@b", ("127.0.0.1", b.port))
    while not a.linked("bench@b"):
        await asyncio.sleep(0.01)
    print(f"{'body':>8} {'msgs/s':>10} {'MB/s':>8}")
    for size in (100, 4096, 65536):
        body = bytes(size)
        received = sent = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(100):
                await a.send("bench@b", Payload(sent, 1, body))
                sent += 1
        while received < sent:
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - start
        print(f"{size:>8} {sent / elapsed:>10.0f} {sent * size / elapsed / 1e6:>8.1f}")
    rounds, start = 1000, time.perf_counter()
    for _ in range(rounds):
        pong = asyncio.get_running_loop().create_future()
        await a.send("bench@b", Payload(-1, 1, b"x"))
        await pong
    print(f"round trip: {(time.perf_counter() - start) / rounds * 1e6:.0f} µs")
    await a.stop()
    await b.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    asyncio.run(main(parser.parse_args().seconds))
