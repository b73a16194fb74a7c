"""The message store's writer: one task writing batches, one transaction and one fsync each.

It takes everything gathered during the loop tick, or while the previous batch was being
written, and writes it as one transaction (WAL, ``synchronous=FULL``; NORMAL for a batch of
paged transient entries alone). A batch's ``Settlement`` is settled when it is committed (and
settled not ok when the write failed): the writer knows nothing of who waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiosqlite

from amqp_server.storage.batch import Batch, write
from amqp_server.storage.records import wall_offset
from queues.base import QueueEntry

log = logging.getLogger("amqp_server.storage.message_store")  # one logger for the store's story


class GroupCommit:
    """Writes what ``take`` hands over (the batch gathered so far, a new one gathering from
    then on) whenever woken; ``gathered`` says whether the batch now gathering holds anything,
    ``after_write`` is called after each write, before the batch's settlement is settled."""

    def __init__(
        self, take: Callable[[], Batch], gathered: Callable[[], bool], after_write: Callable[[], None]
    ) -> None:
        self.transactions = 0  # committed write transactions
        self.synced = 0  # of which were fsynced: those holding anything durable
        self.writing: list[QueueEntry] = []  # inserted entries of the batch being written
        self._take = take
        self._gathered = gathered
        self._after_write = after_write
        self._db: aiosqlite.Connection | None = None
        self._sync_full = True  # the connection's synchronous setting: FULL, or NORMAL
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._closing = False
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []

    def start(self, db: aiosqlite.Connection) -> None:
        """Write through ``db`` (opened with ``synchronous=FULL``) from now on."""
        self._db = db
        self._closing = False
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="message-store-writer")

    def wake(self) -> None:
        """Something was gathered: write it soon (a no-op before ``start``)."""
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.is_set():
            wakeup.set()

    def wait_for(self, number: int) -> asyncio.Future[None]:
        """Done when the batch numbered ``number`` is committed (or failed)."""
        future = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((number, future))
        self.wake()
        return future

    async def close(self) -> None:
        """Write what is gathered, then stop (nothing, when the boot stopped before ``start``)."""
        if self._task is None:
            return
        assert self._wakeup is not None
        self._closing = True
        self._wakeup.set()
        await self._task

    async def _write_loop(self) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        while True:
            await wakeup.wait()
            wakeup.clear()
            await asyncio.sleep(0)  # the rest of this loop tick joins the batch
            try:
                await self._write_batch()
            except Exception:  # never leave confirms waiting on a dead writer
                log.exception("message store writer failed")
            if self._closing and not self._gathered():
                return

    async def _write_batch(self) -> None:
        batch = self._take()
        rows = batch.rows(wall_offset())
        self.writing = batch.inserts
        db = self._db
        assert db is not None
        failure: Exception | None = None
        if any(rows):
            try:
                durable = rows.durable()
                if durable != self._sync_full:
                    await db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                    self._sync_full = durable
                await write(db, rows)
            except Exception as exc:
                log.exception("message store write failed")
                failure = exc
            else:
                self.transactions += 1
                self.synced += durable
        self.writing = []
        self._after_write()
        batch.settlement.settle(failure is None)
        if self._flush_waiters:
            number = batch.number
            still = []
            for wanted, future in self._flush_waiters:
                if wanted <= number:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((wanted, future))
            self._flush_waiters = still
            if still:
                self.wake()
