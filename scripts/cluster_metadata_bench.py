"""Metadata changes per second through the cluster's Raft store (docs/clustering.md, "Metadata
on Raft"): three disc nodes in one process on loopback, exchange declares committed through
``Broker.change`` on the leader and on a follower, one at a time and many at once.

    python scripts/cluster_metadata_bench.py [--changes 2000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from broker_process import free_port

from amqp_server.core.broker import BrokerConfig
from amqp_server.metadata.store import Change
from amqp_server.server import Server
from cluster.metadata_store import RaftMetadataStore


async def run(changes: int, concurrency: int) -> None:
    base = Path(tempfile.mkdtemp())
    (base / "cookie").write_text("bench\n")
    names = [f"bench-{i}@localhost" for i in range(3)]
    ports = [free_port() for _ in names]
    peers = [f"{name}:{port}" for name, port in zip(names, ports, strict=True)]
    servers = [
        Server(
            BrokerConfig(
                host="127.0.0.1",
                port=0,
                data_dir=str(base / name),
                node_name=name,
                cluster_port=port,
                cookie_file=str(base / "cookie"),
                cluster_nodes=peers,
            )
        )  # fmt: skip
        for name, port in zip(names, ports, strict=True)
    ]
    await asyncio.gather(*(server.start() for server in servers))
    try:
        stores = [server.broker.store for server in servers]
        assert all(isinstance(store, RaftMetadataStore) for store in stores)
        leader = next(s for s, store in zip(servers, stores, strict=True) if store.leader == store.member_id)  # type: ignore[union-attr]
        follower = next(server for server in servers if server is not leader)
        for where, server in (("leader", leader), ("follower", follower)):
            for parallel in (1, concurrency):
                broker = server.broker
                prefix = f"{where}-{parallel}"
                semaphore = asyncio.Semaphore(parallel)

                async def declare(i: int, broker=broker, prefix=prefix, semaphore=semaphore) -> None:
                    async with semaphore:
                        await broker.change(
                            Change("exchange", "put", "/", f"{prefix}-{i}", {"type": "direct"})
                        )

                count = changes if parallel > 1 else changes // 10
                store = leader.broker.store
                before = store.storage.transactions  # type: ignore[union-attr]
                started = time.perf_counter()
                await asyncio.gather(*(declare(i) for i in range(count)))
                elapsed = time.perf_counter() - started
                writes = store.storage.transactions - before  # type: ignore[union-attr]
                print(f"{where:8} {parallel:3} at once: {count / elapsed:8.0f} changes/s, "
                      f"{count / max(writes, 1):5.1f} changes per leader transaction")  # fmt: skip
    finally:
        await asyncio.gather(*(server.stop() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(run(args.changes, args.concurrency))


if __name__ == "__main__":
    main()
