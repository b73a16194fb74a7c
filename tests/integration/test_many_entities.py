"""Many queues and bindings at once: concurrent durable declares, binds and deletes (written to
the metadata store in shared batches) leave exactly the right state after a restart, a store
written before the binding indexes existed is migrated, and the vhost keeps track of each
connection's exclusive queues."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aio_pika
import pika
import pytest
from conftest import BrokerHandle, start_broker


def _state(handle: BrokerHandle) -> tuple[set[str], set[tuple[str, str, str]]]:
    """Queue names and (source, queue, key) bindings of vhost '/', as the broker holds them."""

    def read() -> tuple[set[str], set[tuple[str, str, str]]]:
        vhost = handle.broker.vhosts["/"]
        bindings = {(b.source, b.destination.name, b.routing_key) for b in vhost.bindings.values()}
        return set(vhost.queues), bindings

    return handle.call(read)


async def _build(url: str, names: list[str]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channels = [await connection.channel(publisher_confirms=False) for _ in range(8)]
        direct = await channels[0].declare_exchange("many.direct", aio_pika.ExchangeType.DIRECT, durable=True)
        fanout = await channels[0].declare_exchange("many.fanout", aio_pika.ExchangeType.FANOUT, durable=True)

        async def declare(channel: aio_pika.abc.AbstractChannel, mine: list[str]) -> None:
            for name in mine:
                queue = await channel.declare_queue(name, durable=True)
                await queue.bind(direct, routing_key=name)
                await queue.bind(fanout)

        await asyncio.gather(*(declare(ch, names[i::8]) for i, ch in enumerate(channels)))

        async def delete(channel: aio_pika.abc.AbstractChannel, mine: list[str]) -> None:
            for name in mine:
                await channel.queue_delete(name)

        # Every other queue goes, concurrently (so deletes share store transactions), then a
        # few of them come back unbound, and the fanout exchange goes with its bindings.
        gone = names[::2]
        await asyncio.gather(*(delete(ch, gone[i::8]) for i, ch in enumerate(channels)))
        await asyncio.gather(*(channels[i % 8].declare_queue(name, durable=True) for i, name in enumerate(gone[:5])))
        await channels[0].exchange_delete("many.fanout")


def test_concurrent_durable_changes_survive_a_restart_exactly(tmp_path: Path, handles: list[BrokerHandle]) -> None:
    data_dir = str(tmp_path / "data")
    handle = start_broker(data_dir=data_dir)
    handles.append(handle)
    names = [f"many-{i}" for i in range(200)]
    asyncio.run(_build(handle.url, names))
    kept = set(names[1::2])
    expected_queues = kept | set(names[::2][:5])
    expected_bindings = {("many.direct", name, name) for name in kept}
    assert _state(handle) == (expected_queues, expected_bindings)
    handle.stop()

    again = start_broker(data_dir=data_dir)
    handles.append(again)
    assert _state(again) == (expected_queues, expected_bindings)
    with sqlite3.connect(Path(data_dir) / "metadata.db") as db:
        stored = db.execute("SELECT COUNT(*) FROM metadata WHERE kind = 'binding'").fetchone()[0]
    assert stored == len(expected_bindings)


def _version_1_store(data_dir: Path) -> None:
    """A metadata.db as schema version 1 wrote it: vhost '/', guest, a durable exchange, two
    durable queues and a binding of each."""
    data_dir.mkdir(parents=True)
    with sqlite3.connect(data_dir / "metadata.db") as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1)")
        db.execute(
            "CREATE TABLE metadata (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " kind TEXT NOT NULL, vhost TEXT, name TEXT NOT NULL, record TEXT NOT NULL)"
        )
        db.execute("CREATE INDEX metadata_key ON metadata (kind, vhost, name)")
        rows = [
            ("vhost", None, "/", {}),
            ("user", None, "guest", {"password_hash": "", "tags": ["administrator"]}),
            ("permission", "/", "guest", {}),
            ("exchange", "/", "old.x", {"type": "direct", "durable": True, "auto_delete": False,
                                        "internal": False, "arguments": {}}),
        ]  # fmt: skip
        for name in ("old-a", "old-b"):
            rows.append(("queue", "/", name, {"type": "classic", "durable": True, "auto_delete": False,
                                               "exclusive_owner": None, "arguments": {}}))  # fmt: skip
            record = {"source": "old.x", "destination_type": "queue", "destination": name, "routing_key": name,
                      "arguments": {}}  # fmt: skip
            rows.append(("binding", "/", f"old.x>{name}", record))
        db.executemany(
            "INSERT INTO metadata (kind, vhost, name, record) VALUES (?, ?, ?, ?)",
            [(kind, vhost, name, json.dumps(record)) for kind, vhost, name, record in rows],
        )


def test_a_version_1_store_is_migrated_and_deletes_still_cascade(tmp_path: Path, handles: list[BrokerHandle]) -> None:
    data_dir = tmp_path / "data"
    _version_1_store(data_dir)
    handle = start_broker(data_dir=str(data_dir))
    handles.append(handle)
    assert _state(handle) == ({"old-a", "old-b"}, {("old.x", "old-a", "old-a"), ("old.x", "old-b", "old-b")})
    handle.run(handle.broker.vhosts["/"].delete_queue("old-a"))
    handle.stop()

    again = start_broker(data_dir=str(data_dir))
    handles.append(again)
    assert _state(again) == ({"old-b"}, {("old.x", "old-b", "old-b")})
    with sqlite3.connect(data_dir / "metadata.db") as db:
        assert db.execute("SELECT COUNT(*) FROM metadata WHERE kind = 'binding'").fetchone()[0] == 1
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"metadata_binding_destination", "metadata_binding_source"} <= indexes


def test_exclusive_queues_are_tracked_per_connection(broker: BrokerHandle, unique: str) -> None:
    owner = broker.connect()
    other = broker.connect()
    channel = owner.channel()
    names = [f"{unique}-{i}" for i in range(3)]
    for name in names:
        channel.queue_declare(name, exclusive=True)
    other.channel().queue_declare(f"{unique}-other", exclusive=True)
    vhost = broker.broker.vhosts["/"]

    def owners() -> dict[str, list[str]]:
        found = {}
        for connection in broker.broker.connections:
            queues = vhost.exclusive_queues(connection.id)
            if queues:
                found[connection.id] = queues
        return found

    assert sorted(broker.call(owners).values()) == [names, [f"{unique}-other"]]
    channel.queue_delete(names[1])
    assert sorted(broker.call(owners).values()) == [[names[0], names[2]], [f"{unique}-other"]]
    owner.close()
    deadline = 50
    while deadline and broker.call(lambda: names[0] in vhost.queues):
        broker.run(asyncio.sleep(0.05))
        deadline -= 1
    assert list(broker.call(owners).values()) == [[f"{unique}-other"]]
    probe = broker.connect().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        probe.queue_declare(names[0], passive=True)
    other.close()
