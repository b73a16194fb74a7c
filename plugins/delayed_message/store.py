"""The delayed messages on disk: ``delayed.db`` in the plugin's data directory, written by one
task with group commit as the broker's message store is (everything gathered during a loop tick,
or while the previous batch was being written, goes in one transaction).

One table, ``delayed``: a held message (its id gives publish order), when it is due (wall-clock
ms), the vhost and delayed exchange holding it, and the message as published (with ``x-delay``
already swapped). The index on ``(due, id)`` is what paging reads: the next rows after a key.
A read runs after the batches gathered before it was asked for, so it sees every insert made
until then and none made later (the scheduler accounts for those itself).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import NamedTuple

import aiosqlite

from amqp_server.plugin_api import Settlement
from amqp_server.storage.sqlite_db import Migration, open_database

log = logging.getLogger("plugin.rabbitmq_delayed_message_exchange")

DB_NAME = "delayed.db"
#: Rows gathered for the next batch past which publishers are paused until the writer caught up:
#: what keeps memory bounded when messages arrive faster than the disk takes them.
CONGESTED_ROWS = 20_000
#: A position in due order: ``(due, id)``.
Key = tuple[int, int]


class Row(NamedTuple):
    id: int
    due: int
    vhost: str
    exchange: str
    exchange_and_key: bytes
    header: bytes
    body: bytes


async def _migrate_to_1(db: aiosqlite.Connection) -> None:
    await db.execute(
        "CREATE TABLE delayed (id INTEGER PRIMARY KEY, due INTEGER NOT NULL, vhost TEXT NOT NULL,"
        " exchange TEXT NOT NULL, exchange_and_key BLOB NOT NULL, header BLOB NOT NULL, body BLOB NOT NULL)"
    )
    await db.execute("CREATE INDEX delayed_due ON delayed (due, id)")


MIGRATIONS: list[Migration] = [_migrate_to_1]
_COLUMNS = "id, due, vhost, exchange, exchange_and_key, header, body"


class _Batch:
    """The changes of one transaction, gathered on the event loop."""

    __slots__ = ("number", "inserts", "deletes", "purges", "durable", "settlement")

    def __init__(self, number: int) -> None:
        self.number = number
        self.inserts: dict[int, Row] = {}  # by id: a message delivered before it is written never is
        self.deletes: list[tuple[int]] = []
        self.purges: list[tuple[str, str | None]] = []  # (vhost, exchange or None for the whole vhost)
        self.durable = False  # holds a persistent message: fsync (synchronous=FULL)
        self.settlement = Settlement()

    def __bool__(self) -> bool:
        return bool(self.inserts or self.deletes or self.purges)


class DelayedStore:
    """``delayed.db``: what it holds at boot, then inserts, deletes and purges in group commits,
    and reads of the next rows in due order."""

    def __init__(self, directory: str, congested: Callable[[bool], None]) -> None:
        """``congested(True)`` when messages arrive faster than they are written, ``(False)``
        once the writer caught up."""
        self.path = os.path.join(directory, DB_NAME)
        self._congested = congested
        self._throttling = False
        self.transactions = 0
        self._db: aiosqlite.Connection | None = None
        self._gathering = _Batch(1)
        self._written = 0  # number of the last batch written
        self._reads: list[tuple[int, Key, int, asyncio.Future[list[Row]]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._sync_full = True  # the connection's synchronous setting (open_database sets FULL)

    async def open(self) -> tuple[int, dict[tuple[str, str], int]]:
        """Open (or make) the file and start writing; returns the highest id held and the count
        of messages held per (vhost, exchange)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        db = self._db = await open_database(self.path, "delayed message store", MIGRATIONS)
        async with db.execute("SELECT max(id) FROM delayed") as cursor:
            top = (await cursor.fetchone() or (None,))[0] or 0
        async with db.execute(
            "SELECT vhost, exchange, count(*) FROM delayed GROUP BY vhost, exchange"
        ) as cursor:
            counts = {(vhost, exchange): count for vhost, exchange, count in await cursor.fetchall()}
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="delayed-message-writer")
        return top, counts

    async def close(self) -> None:
        """Write what is gathered, then close the file."""
        if self._task is not None:
            self._closing = True
            self._wakeup.set()
            await self._task
            self._task = None
        if self._db is not None:
            await self._db.close()
            self._db = None
        if self._throttling:
            self._throttling = False
            self._congested(False)

    # -- changes, gathered into the next batch -----------------------------------------------

    def insert(self, row: Row, persistent: bool) -> Settlement:
        """Store ``row``; the returned settlement settles when it is on disk."""
        batch = self._gathering
        batch.inserts[row.id] = row
        batch.durable = batch.durable or persistent
        self._wakeup.set()
        if len(batch.inserts) >= CONGESTED_ROWS and not self._throttling:
            self._throttling = True
            self._congested(True)
        return batch.settlement

    def delete(self, message_id: int) -> None:
        """The message was delivered: forget it (never written at all if its batch is not taken yet)."""
        batch = self._gathering
        if batch.inserts.pop(message_id, None) is None:
            batch.deletes.append((message_id,))
            self._wakeup.set()

    def purge(self, vhost: str, exchange: str | None) -> None:
        """Forget every message of ``exchange`` (of the whole vhost when None)."""
        batch = self._gathering
        for message_id, row in list(batch.inserts.items()):
            if row.vhost == vhost and (exchange is None or row.exchange == exchange):
                del batch.inserts[message_id]
        batch.purges.append((vhost, exchange))
        self._wakeup.set()

    def read_after(self, key: Key, limit: int) -> asyncio.Future[list[Row]]:
        """The first ``limit`` rows after ``key`` in due order, read once everything gathered
        until now is written."""
        future: asyncio.Future[list[Row]] = asyncio.get_running_loop().create_future()
        self._reads.append((self._gathering.number, key, limit, future))
        self._wakeup.set()
        return future

    # -- the writer ----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        wakeup = self._wakeup
        while True:
            await wakeup.wait()
            wakeup.clear()
            await asyncio.sleep(0)  # the rest of this loop tick joins the batch
            batch, self._gathering = self._gathering, _Batch(self._gathering.number + 1)
            ok = True
            try:
                await self._write(batch)
            except Exception:  # never leave confirms waiting on a dead writer
                log.exception("delayed message store write failed")
                ok = False
            self._written = batch.number
            batch.settlement.settle(ok)
            if self._throttling and len(self._gathering.inserts) < CONGESTED_ROWS // 2:
                self._throttling = False
                self._congested(False)
            await self._serve_reads()
            if self._closing and not self._gathering and not self._reads:
                return

    async def _write(self, batch: _Batch) -> None:
        if not batch:
            return
        db = self._db
        assert db is not None
        durable = batch.durable or bool(batch.deletes or batch.purges)  # only transient inserts: no fsync
        if durable != self._sync_full:
            await db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._sync_full = durable
        await db.execute("BEGIN")
        try:
            if batch.inserts:
                await db.executemany(f"INSERT INTO delayed ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     batch.inserts.values())  # fmt: skip
            if batch.deletes:
                await db.executemany("DELETE FROM delayed WHERE id = ?", batch.deletes)
            for vhost, exchange in batch.purges:
                if exchange is None:
                    await db.execute("DELETE FROM delayed WHERE vhost = ?", (vhost,))
                else:
                    await db.execute(
                        "DELETE FROM delayed WHERE vhost = ? AND exchange = ?", (vhost, exchange)
                    )
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        self.transactions += 1

    async def _serve_reads(self) -> None:
        db = self._db
        assert db is not None
        ready = [read for read in self._reads if read[0] <= self._written]
        if not ready:
            if self._reads:
                self._wakeup.set()  # the batch they wait for is gathering: write it next
            return
        self._reads = [read for read in self._reads if read[0] > self._written]
        for _number, (due, message_id), limit, future in ready:
            try:
                async with db.execute(
                    f"SELECT {_COLUMNS} FROM delayed WHERE (due, id) > (?, ?) ORDER BY due, id LIMIT ?",
                    (due, message_id, limit),
                ) as cursor:
                    rows = [Row(*row) for row in await cursor.fetchall()]
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(rows)
        if self._reads:
            self._wakeup.set()
