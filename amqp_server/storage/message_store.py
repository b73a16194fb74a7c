"""The persistent-message store: persistent messages of durable queues in ``<data_dir>/messages.db``.

What is stored: a message published with delivery_mode 2 that reaches a durable queue. Its raw
content header, body and basic.publish exchange/routing-key shortstrs go into ``messages`` once,
however many durable queues it reaches; each queue's place for it is a row of ``entries``
(queue id, the queue's sequence number, message id, absolute expiry). A message row goes when
its last entry goes. Otherwise, transient messages and non-durable queues touch the store only
when a queue pages them out.

``MessageStore`` is what queues, the broker and channels use; it gathers every change into the
batch now gathering and owns the parts, one module each:

- ``batch``: the changes of one group commit, their rows and the transaction writing them
  (and the queues' redelivery marks);
- ``group_commit``: the writer task, one transaction and one fsync per batch. A publish that
  stored a message gets the batch's ``Settlement`` from its queue (``settlement``, ``pending``),
  settled when the batch holding its insert is committed;
- ``records``: entries and messages as rows and back (reference counts, absolute expiry);
- ``tail_reader``: paging, queues' paged-out tails read back;
- ``recovery``: boot, the stored queues claimed and loaded back;
- ``schema``: the tables and their migrations.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiosqlite

from amqp_server.storage.batch import Batch
from amqp_server.storage.group_commit import GroupCommit
from amqp_server.storage.records import (
    NOT_STORED,
    PENDING,
    PENDING_T,
    WRITTEN_T,
    StoredMessage,
    tail_entries,
)
from amqp_server.storage.recovery import RECOVERY_CHUNK, Recovery
from amqp_server.storage.schema import DB_NAME, MIGRATIONS
from amqp_server.storage.sqlite_db import StoreError, open_database
from amqp_server.storage.tail_reader import TailReader
from queues.base import QueueEntry, Settlement

if TYPE_CHECKING:
    from queues.base import QueueType

log = logging.getLogger(__name__)

# Flow control: once this many paged entries wait for the writer, publishers stop being read
# (``on_congestion``) until the batch holding them is committed; memory stays bounded when
# publishers outrun the disk.
CONGESTION_HIGH = 50_000


def is_persistent(header: bytes) -> bool:
    """delivery_mode == 2, read from the raw content header without decoding the properties.

    The delivery-mode octet follows content-type and content-encoding (shortstrs) and the
    headers table (a 32-bit length and the table) when they are present.
    """
    flags = header[12]
    if not flags & 0x10:
        return False
    pos = 14
    if flags & 0x80:
        pos += 1 + header[pos]
    if flags & 0x40:
        pos += 1 + header[pos]
    if flags & 0x20:
        pos += 4 + int.from_bytes(header[pos : pos + 4], "big")
    return pos < len(header) and header[pos] == 2


class MessageStore:
    """Persistent messages of durable queues and paged-out messages; one writer task, group commit."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = os.fspath(data_dir)
        self.path = os.path.join(self.data_dir, DB_NAME)
        self._batch = Batch(1)  # the batch now gathering
        # Its settlement, kept here as well: a queue reads it for every persistent publish.
        self.settlement: Settlement = self._batch.settlement
        self._db: aiosqlite.Connection | None = None
        self._writer = GroupCommit(self._take, self._batch_gathered, self._written)
        self._tails = TailReader()
        self._recovery = Recovery()
        # Called with True when paged entries pile up faster than they are written, False
        # once they are (the broker pauses and resumes reading publishers' sockets).
        self.on_congestion: Callable[[bool], None] | None = None
        self.congested = False
        self.congestion_high = CONGESTION_HIGH
        self.congestions = 0  # times publishers were paused (for tests and stats)
        self._next_qid = 1
        self._next_msg_id = 1

    @property
    def transactions(self) -> int:
        """Committed write transactions."""
        return self._writer.transactions

    @property
    def synced(self) -> int:
        """Committed write transactions that were fsynced: those holding anything durable."""
        return self._writer.synced

    # -- opening ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the database (the data directory is already locked by the metadata store)."""
        if self._db is not None:
            return
        db = await open_database(self.path, "message store", MIGRATIONS, iter_chunk_size=RECOVERY_CHUNK)
        try:
            # A big batch grows the WAL; truncate it back after checkpoints.
            await db.execute("PRAGMA journal_size_limit=67108864")
            next_qid, self._next_msg_id = await self._recovery.read(db)
        except sqlite3.Error as exc:
            await db.close()
            raise StoreError(f"cannot read message store {self.path}: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        self._next_qid = max(self._next_qid, next_qid)
        self._db = db
        try:
            await self._tails.open(self.path)
        except sqlite3.Error as exc:
            await self._tails.close()
            await db.close()
            self._db = None
            raise StoreError(f"cannot open message store {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Write what is pending, then close."""
        if self._db is None:
            return
        await self._writer.close()
        await self._tails.close()
        await self._db.close()
        self._db = None

    async def recover(self) -> None:
        """Load each recovered durable queue's entries in order (only its memory window when it
        pages: the rest stays on disk, counted), then drop what no queue holds."""
        db = self._db
        assert db is not None
        await self._recovery.run(db)
        # The writer starts only now: recovery's own transaction must not meet a batch's
        # (the queues replayed before it may already have gathered rows).
        self._writer.start(db)
        if self._batch.gathered():
            self._writer.wake()

    # -- queues -----------------------------------------------------------------------------

    def attach(self, queue: QueueType) -> None:
        """A durable queue came into being (declared, or replayed at boot): give it its id,
        the one it had when it is recovered (``Recovery.claim``), else a fresh one."""
        qid, stale = self._recovery.claim(queue)
        if qid is None:
            batch = self._batch
            if stale is not None:  # not a boot: the old rows are stale
                batch.queue_deletes.append((stale,))
            qid = self.transient_qid()
            batch.queue_puts.append((qid, queue.vhost, queue.name))  # the row makes it durable
            self._writer.wake()
        queue.attach_store(self, qid)  # type: ignore[attr-defined]

    def holds(self, vhost: str, name: str) -> bool:
        """Whether the file held rows of that queue at boot that no queue claimed yet."""
        return self._recovery.holds(vhost, name)

    def keep(self, queue: QueueType) -> None:
        """A durable queue homed on another node came into being (``queues.remote``): the rows
        this file holds of it stay, neither loaded nor dropped."""
        self._recovery.keep(queue)

    def transient_qid(self) -> int:
        """An id for a queue whose paged entries need no durability (no ``queues`` row)."""
        qid = self._next_qid
        self._next_qid = qid + 1
        return qid

    def queue_deleted(self, qid: int, tail_from: int | None = None) -> None:
        """Its entries and its row go (its messages go as their entries are released; those of
        its paged entries from ``tail_from`` on go with them)."""
        batch = self._batch
        if tail_from is not None:
            batch.tail_drops.append((qid, tail_from))
        batch.queue_deletes.append((qid,))
        batch.marks.pop(qid, None)
        self._writer.wake()

    def mark_delivered(self, qid: int, queue: QueueType) -> None:
        """The queue's delivered mark moved: write it with the next batch."""
        self._batch.marks[qid] = queue
        self._writer.wake()

    # -- entries ----------------------------------------------------------------------------

    def add(self, entry: QueueEntry) -> None:
        """Store ``entry`` (its message once per batch, however many queues it reaches); it is
        on disk when ``settlement`` (the one now) is settled."""
        by_message = self._batch.by_message
        key = id(entry.message)
        stored = by_message.get(key)
        if stored is None:
            stored = by_message[key] = StoredMessage(self._next_msg_id)
            self._next_msg_id += 1
        stored.refs += 1
        entry.stored = stored
        entry.disk = PENDING
        self._gather(entry)

    def page_out(self, entry: QueueEntry, durable: bool) -> None:
        """The entry is beyond its queue's window: it lives on disk only from now on.

        ``durable``: a persistent message of a durable queue, stored as ``add`` stores it (its
        confirm waits for the commit); anything else goes to ``tentries`` and delays nothing.
        """
        if durable:
            self.add(entry)
            return
        entry.disk = PENDING_T
        self._gather(entry)

    def _gather(self, entry: QueueEntry) -> None:
        inserts = self._batch.inserts
        inserts.append(entry)
        if len(inserts) == 1:
            self._writer.wake()
        elif len(inserts) >= self.congestion_high and not self.congested:
            self._congestion(True)

    def _congestion(self, on: bool) -> None:
        self.congested = on
        self.congestions += on
        if self.on_congestion is not None:
            self.on_congestion(on)

    def drop_tail(self, qid: int, tail_from: int) -> None:
        """A queue's paged entries from ``tail_from`` on go (purge), messages with them."""
        self._batch.tail_drops.append((qid, tail_from))
        self._writer.wake()

    def remove(self, entry: QueueEntry, qid: int | None) -> None:
        """The entry left its queue for good; ``qid`` None: its queue's rows are already gone."""
        disk = entry.disk
        if disk in (PENDING_T, WRITTEN_T):  # a paged transient entry: its row only
            entry.disk = NOT_STORED
            if disk == WRITTEN_T and qid is not None:
                self._batch.tentry_deletes.append((qid, entry.seq))
                self._writer.wake()
            return
        stored = entry.stored
        if stored is None:
            return
        entry.stored = None
        entry.disk = NOT_STORED
        if disk == PENDING:
            stored.refs -= 1  # never written: the message row will count one entry less
            return
        batch = self._batch
        if qid is not None:
            batch.entry_deletes.append((qid, entry.seq))
        if stored.refs == 1:
            batch.message_deletes.append((stored.id,))
        else:
            batch.message_decrements.append((stored.id,))
        self._writer.wake()

    # -- paging in --------------------------------------------------------------------------

    def load_tail(self, queue: Any, from_seq: int, limit: int) -> None:
        """Read the next ``limit`` paged entries of ``queue`` in the background; the queue's
        ``tail_loaded(rows)`` gets them (None on failure)."""
        asyncio.get_running_loop().create_task(self._load_tail(queue, from_seq, limit))

    async def _load_tail(self, queue: Any, from_seq: int, limit: int) -> None:
        rows: list[Any] | None = None
        try:
            await self.flushed()  # everything paged so far is committed: no gap in the read
            rows = await self._tails.read(queue.store_qid, from_seq, limit)
        except Exception:
            log.exception("message store: reading the paged entries of queue %s failed", queue.name)
        queue.tail_loaded(rows)

    def load_tail_now(self, queue: Any, from_seq: int, limit: int) -> list[QueueEntry]:
        """The next paged entries at once (the head is empty and one is needed now): committed
        rows read synchronously, then entries of the batches not yet committed."""
        entries = self.entries_from_rows(queue, self._tails.read_now(queue.store_qid, from_seq, limit))
        if len(entries) < limit:
            last = entries[-1].seq if entries else from_seq - 1
            pending = sorted(
                (
                    e
                    for inserts in (self._writer.writing, self._batch.inserts)
                    for e in inserts
                    if e.queue is queue and e.seq > last and e.disk != NOT_STORED
                ),
                key=_entry_seq,
            )
            for entry in pending[: limit - len(entries)]:
                if entry.disk == PENDING_T or entry.disk == WRITTEN_T:
                    self.remove(entry, queue.store_qid)  # in memory now: the row is not needed
                entries.append(entry)
        return entries

    def entries_from_rows(self, queue: Any, rows: list[Any]) -> list[QueueEntry]:
        """Entries from ``tail_reader.TAIL_SQL`` rows (``records.tail_entries``); the rows of
        transient ones go with the next batch."""
        entries = tail_entries(queue, rows, self._batch.tentry_deletes)
        if rows:
            self._writer.wake()
        return entries

    # -- group commit -----------------------------------------------------------------------

    async def flushed(self) -> None:
        """Wait for the commit of the batch now gathering (at once when there is nothing)."""
        if not self._batch.gathered() and not self._writer.writing:
            return
        await self._writer.wait_for(self._batch.number)

    def pending(self) -> Settlement:
        """The settlement of the batch now gathering, which something waits for: write it soon."""
        self._batch.waited = True
        self._writer.wake()
        return self.settlement

    def _take(self) -> Batch:
        """For the writer: the batch gathered so far; a new one gathers from now on."""
        batch = self._batch
        self._batch = Batch(batch.number + 1)
        self.settlement = self._batch.settlement
        return batch

    def _batch_gathered(self) -> bool:
        return self._batch.gathered()

    def _written(self) -> None:
        """A batch is written: publishers paused for its paged entries may go on."""
        if self.congested and len(self._batch.inserts) < self.congestion_high // 2:
            self._congestion(False)


def _entry_seq(entry: QueueEntry) -> int:
    return entry.seq
