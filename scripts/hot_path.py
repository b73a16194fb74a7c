"""Broker CPU per message on the hot path, measured in-process and repeatably.

    python scripts/hot_path.py [--scenario s1|s2|fanout|backlog] [--messages N] [--repeat R] [--profile]

Two ``Connection`` objects of a real ``Broker`` (metadata in memory) are driven through
``data_received`` with the bytes a client sends, over transports that only count what the
broker writes: a publisher sending basic.publish triples in 64 KiB reads, and a consumer
(no-ack for s1 and fanout, acks every delivery with prefetch 100 for s2). What is timed is
the broker's own CPU (``time.process_time``) from the first read to the last write, so the
figure does not depend on a load generator or on what else the machine runs; it is the
best of ``--repeat`` runs. ``backlog`` has no consumer and a message store in a temporary
directory with a 1000-message window, so nearly every message is paged out; its time includes
the store's writer thread and runs until the last batch is committed. ``--profile`` runs
cProfile over one run instead.
Used to compare changes to the hot path (see docs/performance.md), never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import struct
import tempfile
import time
from typing import Any

from pamqp import commands

from amqp_server.core.broker import Broker, BrokerConfig
from amqp_server.protocol.frame_codec import PROTOCOL_HEADER, build, encode_method, frame
from amqp_server.server import Server
from amqp_server.transport.connection import Connection

CHUNK = 65536


class CountingTransport(asyncio.Transport):
    """Swallows writes, counting them; what a socket's peer would read is not needed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.writes = 0
        self.on_write: Any = None

    def write(self, data: Any) -> None:
        self.written += len(data)
        self.writes += 1
        if self.on_write is not None:
            self.on_write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def method(channel: int, value: Any) -> bytes:
    return encode_method(channel, value)


def handshake() -> bytes:
    return (
        PROTOCOL_HEADER
        + method(0, build(commands.Connection.StartOk, client_properties={}, mechanism="PLAIN", response="\0guest\0guest"))
        + method(0, build(commands.Connection.TuneOk, channel_max=2047, frame_max=131072, heartbeat=0))
        + method(0, build(commands.Connection.Open, virtual_host="/"))
        + method(1, build(commands.Channel.Open))
    )


def publish_triple(exchange: str, routing_key: str, body: bytes) -> bytes:
    names = bytes([len(exchange)]) + exchange.encode() + bytes([len(routing_key)]) + routing_key.encode()
    publish = frame(1, 1, struct.pack(">HHH", 60, 40, 0) + names + b"\x00")
    header = frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0))
    return publish + header + frame(3, 1, body)


async def settle() -> None:
    """Let the broker's tasks (metadata methods, flushes) run."""
    for _ in range(20):
        await asyncio.sleep(0)


async def one_run(scenario: str, messages: int, profile: cProfile.Profile | None) -> float:
    with tempfile.TemporaryDirectory() as data_dir:
        return await _one_run(scenario, messages, profile, data_dir)


async def _one_run(scenario: str, messages: int, profile: cProfile.Profile | None, data_dir: str) -> float:
    loop = asyncio.get_running_loop()
    if scenario == "backlog":
        server = Server(BrokerConfig(host="127.0.0.1", port=0, data_dir=data_dir, queue_memory_window=1000))
        await server.start()
        broker = server.broker
    else:
        broker = Broker(BrokerConfig(data_dir=None))
        await broker.boot()
    publisher, consumer = Connection(broker), Connection(broker)
    ptransport, ctransport = CountingTransport(), CountingTransport()
    for connection, transport in ((publisher, ptransport), (consumer, ctransport)):
        connection.connection_made(transport)
        connection.data_received(handshake())
        await settle()
    queues = ["hp-q"] if scenario != "fanout" else [f"hp-q{i}" for i in range(10)]
    setup = b""
    for name in queues:
        setup += method(1, build(commands.Queue.Declare, queue=name))
    if scenario == "fanout":
        setup += method(1, build(commands.Exchange.Declare, exchange="hp-x", exchange_type="fanout"))
        for name in queues:
            setup += method(1, build(commands.Queue.Bind, queue=name, exchange="hp-x"))
    publisher.data_received(setup)
    await settle()
    no_ack = scenario != "s2"
    subscribe = method(1, build(commands.Basic.Qos, prefetch_count=100)) if not no_ack else b""
    for i, name in enumerate(queues if scenario != "backlog" else ()):
        subscribe += method(1, build(commands.Basic.Consume, queue=name, consumer_tag=f"c{i}", no_ack=no_ack))
    consumer.data_received(subscribe)
    await settle()
    if not no_ack:
        # Ack each delivery as a client would: the acks go back in once per write.
        tags = [0]

        def ack_deliveries(data: bytes) -> None:
            count = data.count(b"\x00\x3c\x00\x3c")  # basic.deliver method ids in this write
            acks = b""
            for _ in range(count):
                tags[0] += 1
                acks += frame(1, 1, struct.pack(">HHQB", 60, 80, tags[0], 0))
            if acks:
                loop.call_soon(consumer.data_received, acks)

        ctransport.on_write = ack_deliveries
    body = b"x" * (16 if scenario != "s2" else 1024)
    exchange, key = ("hp-x", "") if scenario == "fanout" else ("", "hp-q")
    one = publish_triple(exchange, key, body)
    per_chunk = max(1, CHUNK // len(one))
    chunk = one * per_chunk
    reads = max(4, messages // per_chunk // 4 * 4)  # fed four at a time
    deliveries = reads * per_chunk * len(queues)
    if profile is not None:
        profile.enable()
    start = time.process_time()
    done = 0
    while done < reads:
        # Feed a few reads per tick, as a busy socket does, then let flushes and acks run.
        for _ in range(4):
            publisher.data_received(chunk)
            done += 1
        await asyncio.sleep(0)
    queue_objects = [broker.vhosts["/"].queues[name] for name in queues]
    if scenario == "backlog":
        await broker.message_store.flushed()  # type: ignore[union-attr]
    else:
        while any(queue.message_count for queue in queue_objects):  # s2: acks still coming back
            await asyncio.sleep(0)
    await settle()
    elapsed = time.process_time() - start
    if profile is not None:
        profile.disable()
    if scenario == "backlog":
        count = queue_objects[0].message_count
        assert count == reads * per_chunk, f"{count} of {reads * per_chunk} messages queued"
        await server.stop()
    else:
        assert ctransport.written > deliveries * len(body), "deliveries missing"
    return elapsed / (reads * per_chunk) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["s1", "s2", "fanout", "backlog"], default="s1")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.profile:
        profile = cProfile.Profile()
        runner(one_run(args.scenario, args.messages, profile))
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    results = [runner(one_run(args.scenario, args.messages, None)) for _ in range(args.repeat)]
    print(f"{args.scenario}: {min(results):.2f} us of broker CPU per published message (best of {args.repeat}; "
          f"all: {', '.join(f'{r:.2f}' for r in results)})")


if __name__ == "__main__":
    main()
