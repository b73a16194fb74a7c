"""Where the metadata group's Raft state lives: ``<data-dir>/raft.db`` on a disc node, memory
on a RAM node (which rejoins under a new identity after a restart, docs/clustering.md).

``write`` takes the write parts of several ``Output``s (those that piled up while the previous
transaction ran) and makes them durable in one transaction, one fsync: the group commit. The
last index known committed is stored with them, so that a restarted node applies its own log
up to it at once instead of waiting for a leader.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine
from typing import Any

import aiosqlite

from amqp_server.storage.sqlite_db import open_database, transaction
from cluster.codec import command_plain, config_from, config_plain, entry_from
from cluster.raft.output import Output
from cluster.raft.snapshot import Snapshot
from cluster.raft.storage import DurableState

DB_NAME = "raft.db"


async def _migrate_to_1(db: aiosqlite.Connection) -> None:
    await db.execute(
        "CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, kind TEXT NOT NULL, command TEXT)"
    )
    await db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    await db.execute("CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 0), idx INTEGER NOT NULL,"
                     " term INTEGER NOT NULL, config TEXT NOT NULL, data BLOB NOT NULL)")  # fmt: skip


class MemoryRaftStorage:
    """A RAM node's: nothing survives the process."""

    durable = False

    async def open(self) -> tuple[DurableState | None, int]:
        return None, 0

    async def write(self, outputs: list[Output], commit: int) -> None:
        return None

    async def bootstrap(self, state: DurableState) -> None:
        return None

    async def wipe(self) -> None:
        return None

    async def close(self) -> None:
        return None


class SqliteRaftStorage:
    """A disc node's, in ``<data_dir>/raft.db`` (the caller holds the directory's lock)."""

    durable = True

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.path = os.path.join(data_dir, DB_NAME)
        self.transactions = 0
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()  # one transaction at a time

    async def open(self) -> tuple[DurableState | None, int]:
        """The stored state and commit index; (None, 0) on a node's first start."""
        if self._db is None:
            self._db = await open_database(self.path, "Raft log", [_migrate_to_1])
        db = self._db
        async with db.execute("SELECT key, value FROM state") as cursor:
            state = {key: json.loads(value) for key, value in await cursor.fetchall()}
        if "term" not in state:
            return None, 0
        async with db.execute("SELECT idx, term, config, data FROM snapshot") as cursor:
            row = await cursor.fetchone()
        snapshot = Snapshot(row[0], row[1], config_from(json.loads(row[2])), bytes(row[3])) if row else None
        async with db.execute("SELECT term, idx, kind, command FROM log ORDER BY idx") as cursor:
            entries = [entry_from(t, i, k, json.loads(c)) for t, i, k, c in await cursor.fetchall()]
        assert snapshot is not None, "a stored term without a snapshot"
        return DurableState(state["term"], state["vote"], snapshot, entries), state.get("commit", 0)

    async def write(self, outputs: list[Output], commit: int) -> None:
        # Shielded: a writer cancelled mid-transaction (the node stopping) still ends it, and
        # whatever comes next (wipe, close) waits for it.
        await asyncio.shield(self._locked(self._write_all(outputs, commit)))

    async def _locked(self, work: Coroutine[Any, Any, None]) -> None:
        async with self._lock:
            await work

    async def _write_all(self, outputs: list[Output], commit: int) -> None:
        assert self._db is not None
        db = self._db
        async with transaction(db):
            for out in outputs:
                await self._write(db, out)
            await _put(db, "commit", commit)
        self.transactions += 1

    @staticmethod
    async def _write(db: aiosqlite.Connection, out: Output) -> None:
        snapshot = out.snapshot
        if snapshot is not None:
            await db.execute("DELETE FROM log WHERE idx <= ?", (snapshot.index,))
            await db.execute(
                "INSERT OR REPLACE INTO snapshot VALUES (0, ?, ?, ?, ?)",
                (snapshot.index, snapshot.term, json.dumps(config_plain(snapshot.config)), snapshot.data),
            )
        if out.truncate_from is not None:
            await db.execute("DELETE FROM log WHERE idx >= ?", (out.truncate_from,))
        if out.entries:
            await db.executemany(
                "INSERT OR REPLACE INTO log VALUES (?, ?, ?, ?)",
                [(e.index, e.term, e.kind.value, json.dumps(command_plain(e))) for e in out.entries],
            )
        if out.hard_state is not None:
            await _put(db, "term", out.hard_state[0])
            await _put(db, "vote", out.hard_state[1])

    async def bootstrap(self, state: DurableState) -> None:
        """Store a first state (a founding node's configuration)."""
        assert self._db is not None
        out = Output()
        out.snapshot = state.snapshot
        out.hard_state = (state.term, state.voted_for)
        await self.write([out], 0)

    async def wipe(self) -> None:
        """Forget everything (the node resets or joins another cluster)."""
        assert self._db is not None
        async with self._lock:
            for table in ("log", "state", "snapshot"):
                await self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names

    async def forget(self, node: str) -> None:
        """Take ``node`` (every identity it had: a RAM node's ``name#incarnation`` too) out of
        the snapshot's configuration and every configuration entry of the log, in one
        transaction: the membership this node starts with then lacks it, so that a node whose
        peers are lost can elect itself (forget_cluster_node --offline, the node stopped).
        Raft's safety no longer covers what only the forgotten nodes had."""
        assert self._db is not None
        db = self._db
        async with db.execute("SELECT NULL, config FROM snapshot UNION ALL "
                              "SELECT idx, command FROM log WHERE kind = 'config'") as cursor:  # fmt: skip
            rows = await cursor.fetchall()
        async with self._lock, transaction(db):
            for idx, plain in rows:
                kept = json.dumps([[m for m in g if m.partition("#")[0] != node] for g in json.loads(plain)])  # fmt: skip
                if idx is None:
                    await db.execute("UPDATE snapshot SET config = ?", (kept,))
                else:
                    await db.execute("UPDATE log SET command = ? WHERE idx = ?", (kept, idx))

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                await self._db.close()
                self._db = None


async def _put(db: aiosqlite.Connection, key: str, value: Any) -> None:
    await db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, json.dumps(value)))
