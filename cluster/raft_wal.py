"""One write-ahead log for every Raft group of a node's replicated queues, as RabbitMQ's Ra
shares one WAL among its quorum queues: ``<data-dir>/queues.raft.db``.

``write`` takes the write parts of the Outputs of any number of groups (those that piled up
while the previous transaction ran) and makes them durable in one transaction, one fsync,
with each group's commit index. Commands are ``cluster.wire`` bytes (message bodies travel
in them unchanged).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine, Iterable
from typing import Any

import aiosqlite

from amqp_server.storage.sqlite_db import open_database, transaction
from cluster.codec import config_from, config_plain
from cluster.raft.log import Entry, EntryKind
from cluster.raft.output import Output
from cluster.raft.snapshot import Snapshot
from cluster.raft.storage import DurableState
from cluster.wire import decode, encode

DB_NAME = "queues.raft.db"


async def _migrate_to_1(db: aiosqlite.Connection) -> None:
    await db.execute(
        "CREATE TABLE log (grp TEXT NOT NULL, idx INTEGER NOT NULL, term INTEGER NOT NULL, kind TEXT NOT NULL,"
        " command BLOB, PRIMARY KEY (grp, idx)) WITHOUT ROWID"
    )
    await db.execute(
        "CREATE TABLE state (grp TEXT PRIMARY KEY, term INTEGER NOT NULL, vote TEXT, commit_index INTEGER NOT NULL)"
    )
    await db.execute("CREATE TABLE snapshot (grp TEXT PRIMARY KEY, idx INTEGER NOT NULL, term INTEGER NOT NULL,"
                     " config TEXT NOT NULL, data BLOB NOT NULL)")  # fmt: skip


def _command_blob(entry: Entry) -> bytes | None:
    if entry.kind is EntryKind.CONFIG:
        return encode(config_plain(entry.command))
    return encode(entry.command) if entry.command is not None else None


def _entry(term: int, index: int, kind: str, blob: bytes | None) -> Entry:
    entry_kind = EntryKind(kind)
    command = decode(blob) if blob is not None else None
    return Entry(term, index, entry_kind, config_from(command) if entry_kind is EntryKind.CONFIG else command)


class RaftWal:
    """The shared log (the caller holds the data directory's lock)."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, DB_NAME)
        self.transactions = 0
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> dict[str, tuple[DurableState, int]]:
        """Every stored group's state and commit index."""
        if self._db is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._db = await open_database(self.path, "queue Raft log", [_migrate_to_1])
        db = self._db
        groups: dict[str, tuple[DurableState, int]] = {}
        async with db.execute("SELECT s.grp, s.term, s.vote, s.commit_index, p.idx, p.term, p.config, p.data"
                              " FROM state s JOIN snapshot p ON p.grp = s.grp") as cursor:  # fmt: skip
            for grp, term, vote, commit, idx, sterm, config, data in await cursor.fetchall():
                snapshot = Snapshot(idx, sterm, config_from(json.loads(config)), bytes(data))
                groups[grp] = (DurableState(term, vote, snapshot, []), commit)
        async with db.execute("SELECT grp, term, idx, kind, command FROM log ORDER BY grp, idx") as cursor:
            async for grp, term, idx, kind, blob in cursor:
                if grp in groups:
                    groups[grp][0].entries.append(_entry(term, idx, kind, blob))
        return groups

    async def write(self, outputs: Iterable[tuple[str, Output]], commits: dict[str, int]) -> None:
        """The groups' Outputs in order and their commit indexes, in one transaction."""
        await asyncio.shield(self._locked(self._write_all(list(outputs), commits)))

    async def _locked(self, work: Coroutine[Any, Any, None]) -> None:
        async with self._lock:
            await work

    async def _write_all(self, outputs: list[tuple[str, Output]], commits: dict[str, int]) -> None:
        assert self._db is not None
        db = self._db
        async with transaction(db):
            for group, out in outputs:
                await self._write(db, group, out)
            await db.executemany(
                "UPDATE state SET commit_index = ? WHERE grp = ?", [(c, g) for g, c in commits.items()]
            )
        self.transactions += 1

    @staticmethod
    async def _write(db: aiosqlite.Connection, group: str, out: Output) -> None:
        snapshot = out.snapshot
        if snapshot is not None:
            await db.execute("DELETE FROM log WHERE grp = ? AND idx <= ?", (group, snapshot.index))
            await db.execute(
                "INSERT OR REPLACE INTO snapshot VALUES (?, ?, ?, ?, ?)",
                (group, snapshot.index, snapshot.term, json.dumps(config_plain(snapshot.config)), snapshot.data),
            )
        if out.truncate_from is not None:
            await db.execute("DELETE FROM log WHERE grp = ? AND idx >= ?", (group, out.truncate_from))
        if out.entries:
            await db.executemany(
                "INSERT OR REPLACE INTO log VALUES (?, ?, ?, ?, ?)",
                [(group, e.index, e.term, e.kind.value, _command_blob(e)) for e in out.entries],
            )
        if out.hard_state is not None:
            term, vote = out.hard_state
            await db.execute(
                "INSERT INTO state VALUES (?, ?, ?, 0) ON CONFLICT (grp) DO UPDATE SET term = ?, vote = ?",
                (group, term, vote, term, vote),
            )

    async def drop(self, group: str) -> None:
        """Forget a group (its queue was deleted)."""
        assert self._db is not None
        async with self._lock, transaction(self._db) as db:
            for table in ("log", "state", "snapshot"):
                await db.execute(f"DELETE FROM {table} WHERE grp = ?", (group,))  # noqa: S608 - fixed names

    async def close(self) -> None:
        if self._db is not None:
            async with self._lock:
                await self._db.close()
            self._db = None
