"""The persistent-message store: persistent messages of durable queues in ``<data_dir>/messages.db``.

What is stored: a message published with delivery_mode 2 that reaches a durable queue. Its raw
content header, body and basic.publish exchange/routing-key shortstrs go into ``messages`` once,
however many durable queues it reaches; each queue's place for it is a row of ``entries``
(queue id, the queue's sequence number, message id, absolute expiry). A message row goes when
its last entry goes (see Paging below for how its live entry count is kept). Otherwise,
transient messages and non-durable queues touch the store only when a queue pages them out.

Group commit: every change (entry and message inserts, entry deletes on ack, reject, expiry,
overflow drops, purge, queue deletion) is appended to in-memory lists without awaiting. One
writer task takes everything gathered during the loop tick, or while the previous batch was
being written, and writes it as one transaction with one fsync (WAL, ``synchronous=FULL``).
A publish that stored a message gets the batch's ``Settlement`` from its queue, settled when
the batch holding its insert is committed (``settlement``, ``pending``); the store knows
nothing of who waits. An entry removed before its batch was taken is never
written at all (a consumer that acks quickly costs no disk writes for the body).

Redelivery marks: instead of one write per delivery, each queue records the highest sequence
number it has handed out (``queues.delivered``, written with the batch when it moved). A
classic queue delivers from its head in sequence order and requeued messages are already
redelivered, so an entry at or below the mark was delivered before; after a restart it comes
back with redelivered set. (A priority queue delivers out of sequence order, so there the mark
can over-report: a message may come back flagged redelivered without having been delivered,
which AMQP allows, as the flag only says "may have been delivered before".)

Expiry: entries keep their absolute expiry (wall clock), so a message TTL keeps counting across
a restart as in RabbitMQ, whose queue index stores the expiry timestamp.

Paging (bounded memory): a queue holds at most a window of entries as Python objects; the ones
published beyond it go to disk only (``page_out``) and come back in sequence order as the head
drains (``load_tail``, an async read on a second, read-only connection, or ``load_tail_now`` when
the head is empty and an entry is needed at once). A persistent message of a durable queue is
paged as an ordinary stored entry (``entries``); any other paged entry goes to ``tentries``
with its message inline (one row: no ``messages`` row, no reference count; a message paged by
two queues is written twice), written in the same group commit but never waited for by a
confirm, and emptied at every boot. Once paged entries exist, a message's live entry count is no longer known in memory: the
``refs`` column is the authority. It is written with the message (the entries live then) and
decremented on disk as entries go; ``StoredMessage.refs`` keeps the value read or written, so a
message whose count was 1 is deleted outright and any other is decremented, then deleted at 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiosqlite

from amqp_server.core.message import Message
from amqp_server.protocol.field_types import lenient_str
from amqp_server.storage.sqlite_db import Migration, StoreError, open_database
from queues.base import QueueEntry, Settlement

if TYPE_CHECKING:
    from queues.base import QueueType

log = logging.getLogger(__name__)

DB_NAME = "messages.db"
# Entry disk states (QueueEntry.disk).
# PENDING_T/WRITTEN_T: a paged entry in ``tentries`` (not durable: emptied at boot).
NOT_STORED, PENDING, WRITTEN, PENDING_T, WRITTEN_T = 0, 1, 2, 3, 4
RECOVERY_CHUNK = 1024
# Flow control: once this many paged entries wait for the writer, publishers stop being read
# (``on_congestion``) until the batch holding them is committed; memory stays bounded when
# publishers outrun the disk.
CONGESTION_HIGH = 50_000
# A paged tail's next entries, in sequence order, with their messages (both tables: one
# statement, so one snapshot: the rows are a prefix of what is committed).
TAIL_SQL = (
    "SELECT e.seq, e.msg_id, e.expires, m.refs, m.exchange_and_key, m.header, m.body FROM entries e"
    " JOIN messages m ON m.id = e.msg_id WHERE e.qid = ?1 AND e.seq >= ?2"
    " UNION ALL SELECT seq, NULL, expires, 0, exchange_and_key, header, body FROM tentries"
    " WHERE qid = ?1 AND seq >= ?2 ORDER BY 1 LIMIT ?3"
)


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


class StoredMessage:
    """A stored message's id and its entry count: live, until its row is written; after that,
    the count written or read (the ``refs`` column, decremented on disk, is the authority)."""

    __slots__ = ("id", "refs", "written")

    def __init__(self, message_id: int, refs: int = 0, written: bool = False) -> None:
        self.id = message_id
        self.refs = refs
        self.written = written  # its row is written or in a batch being written


# -- migrations -----------------------------------------------------------------------------


async def _migrate_to_1(db: aiosqlite.Connection) -> None:
    await db.execute(
        "CREATE TABLE queues (qid INTEGER PRIMARY KEY, vhost TEXT NOT NULL, name TEXT NOT NULL,"
        " delivered INTEGER NOT NULL DEFAULT -1)"
    )
    await db.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, refs INTEGER NOT NULL,"
        " exchange_and_key BLOB NOT NULL, header BLOB NOT NULL, body BLOB NOT NULL)"
    )
    await db.execute(
        "CREATE TABLE entries (qid INTEGER NOT NULL, seq INTEGER NOT NULL, msg_id INTEGER NOT NULL,"
        " expires REAL, PRIMARY KEY (qid, seq)) WITHOUT ROWID"
    )


async def _migrate_to_2(db: aiosqlite.Connection) -> None:
    """Paged entries that need no durability (transient messages, non-durable queues)."""
    await db.execute(
        "CREATE TABLE tentries (qid INTEGER NOT NULL, seq INTEGER NOT NULL, msg_id INTEGER NOT NULL,"
        " expires REAL, PRIMARY KEY (qid, seq)) WITHOUT ROWID"
    )


async def _migrate_to_3(db: aiosqlite.Connection) -> None:
    """Paged transient entries hold their message inline (one row per entry instead of two).
    Their rows die at every boot anyway; message rows only they referred to go at recovery."""
    await db.execute("DROP TABLE tentries")
    await db.execute(
        "CREATE TABLE tentries (qid INTEGER NOT NULL, seq INTEGER NOT NULL, expires REAL,"
        " exchange_and_key BLOB NOT NULL, header BLOB NOT NULL, body BLOB NOT NULL,"
        " PRIMARY KEY (qid, seq)) WITHOUT ROWID"
    )


MIGRATIONS: list[Migration] = [_migrate_to_1, _migrate_to_2, _migrate_to_3]
SCHEMA_VERSION = len(MIGRATIONS)


class MessageStore:
    """Persistent messages of durable queues; one writer task, group commit."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = os.fspath(data_dir)
        self.path = os.path.join(self.data_dir, DB_NAME)
        self.transactions = 0  # committed write transactions
        self.synced = 0  # of which were fsynced: those holding anything durable
        self._sync_full = True  # the connection's synchronous setting: FULL, or NORMAL
        self.batch = 1  # the batch now gathering
        # Settled when the batch now gathering is on disk: what a publish that stored a message
        # returns (queues.base.Settlement), and what a tx.commit waits for.
        self.settlement = Settlement()
        self.committed = 0  # the last batch on disk
        self._db: aiosqlite.Connection | None = None
        self._writer: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._closing = False
        # The batch being gathered.
        self._inserts: list[QueueEntry] = []
        self._entry_deletes: list[tuple[int, int]] = []
        self._tentry_deletes: list[tuple[int, int]] = []
        self._message_deletes: list[tuple[int]] = []
        self._message_decrements: list[tuple[int]] = []
        self._tail_drops: list[tuple[int, int]] = []  # (qid, from seq): paged entries dropped
        self._writing: list[QueueEntry] = []  # entries of the batch being written
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._reader: aiosqlite.Connection | None = None  # async page-in reads
        self._sync_reader: sqlite3.Connection | None = None  # page-in when the head is empty
        # Called with True when paged entries pile up faster than they are written, False
        # once they are (the broker pauses and resumes reading publishers' sockets).
        self.on_congestion: Callable[[bool], None] | None = None
        self.congested = False
        self.congestion_high = CONGESTION_HIGH
        self.congestions = 0  # times publishers were paused (for tests and stats)
        self._queue_puts: list[tuple[int, str, str]] = []
        self._queue_deletes: list[tuple[int]] = []
        self._marks: dict[int, QueueType] = {}  # qid -> queue whose delivered mark moved
        self._waiting = False  # someone waits for the batch gathering (``pending``)
        self._by_message: dict[int, StoredMessage] = {}  # id(Message) -> record, this batch only
        # Queue ids: next free one, and the stored ones not yet claimed by a recovered queue.
        self._next_qid = 1
        self._next_msg_id = 1
        self._stored_queues: dict[tuple[str, str], tuple[int, int]] = {}  # -> (qid, delivered)
        self._recovering: list[tuple[QueueType, int]] = []  # (queue, delivered mark)
        self._recovered = False  # recover() ran: stored queue ids are no longer claimable

    # -- opening ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the database (the data directory is already locked by the metadata store)."""
        if self._db is not None:
            return
        self._closing = False
        db = await open_database(self.path, "message store", MIGRATIONS, iter_chunk_size=RECOVERY_CHUNK)
        try:
            # A big batch grows the WAL; truncate it back after checkpoints.
            await db.execute("PRAGMA journal_size_limit=67108864")
            await db.execute("DELETE FROM tentries")  # paged transient entries die with the node
            async with db.execute("SELECT qid, vhost, name, delivered FROM queues ORDER BY qid") as cursor:
                for qid, vhost, name, delivered in await cursor.fetchall():
                    self._stored_queues[(vhost, name)] = (qid, delivered)
                    self._next_qid = max(self._next_qid, qid + 1)
            async with db.execute("SELECT MAX(id) FROM messages") as cursor:
                row = await cursor.fetchone()
            self._next_msg_id = (row[0] or 0) + 1 if row else 1
        except sqlite3.Error as exc:
            await db.close()
            raise StoreError(f"cannot read message store {self.path}: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        self._db = db
        try:
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._reader.execute("PRAGMA query_only=1")
            self._sync_reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._sync_reader.execute("PRAGMA query_only=1")
        except sqlite3.Error as exc:
            await self._close_readers()
            await db.close()
            self._db = None
            raise StoreError(f"cannot open message store {self.path}: {exc}") from exc
        self._wakeup = asyncio.Event()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="message-store-writer")

    # -- queues -----------------------------------------------------------------------------

    def attach(self, queue: QueueType) -> None:
        """A durable queue came into being (declared, or replayed at boot): give it its id.

        At boot a queue stored before keeps its id and its entries are loaded by ``recover``;
        any other queue gets a fresh id, so that a queue deleted and declared again never
        shares rows with its predecessor.
        """
        stored = self._stored_queues.pop((queue.vhost, queue.name), None)
        if stored is not None and not self._recovered:
            qid, delivered = stored
            self._recovering.append((queue, delivered))
        else:
            if stored is not None:  # not a boot: the old rows are stale
                self._queue_deletes.append((stored[0],))
            qid = self._next_qid
            self._next_qid = qid + 1
            self._queue_puts.append((qid, queue.vhost, queue.name))
            self._wake()
        queue.attach_store(self, qid)  # type: ignore[attr-defined]

    def transient_qid(self) -> int:
        """An id for a queue whose paged entries need no durability (no ``queues`` row)."""
        qid = self._next_qid
        self._next_qid = qid + 1
        return qid

    def queue_deleted(self, qid: int, tail_from: int | None = None) -> None:
        """Its entries and its row go (its messages go as their entries are released; those of
        its paged entries from ``tail_from`` on go with them)."""
        if tail_from is not None:
            self._tail_drops.append((qid, tail_from))
        self._queue_deletes.append((qid,))
        self._marks.pop(qid, None)
        self._wake()

    def mark_delivered(self, qid: int, queue: QueueType) -> None:
        """The queue's delivered mark moved: write it with the next batch."""
        self._marks[qid] = queue
        self._wake()

    # -- entries ----------------------------------------------------------------------------

    def add(self, entry: QueueEntry) -> None:
        """Store ``entry`` (its message once per batch, however many queues it reaches); it is
        on disk when ``settlement`` (the one now) is settled."""
        self._insert(entry, PENDING)

    def page_out(self, entry: QueueEntry, durable: bool) -> None:
        """The entry is beyond its queue's window: it lives on disk only from now on.

        ``durable``: a persistent message of a durable queue, stored as ``add`` stores it (its
        confirm waits for the commit); anything else goes to ``tentries`` and delays nothing.
        """
        if durable:
            self.add(entry)
            return
        entry.disk = PENDING_T
        self._queue_insert(entry)

    def _insert(self, entry: QueueEntry, disk: int) -> None:
        message = entry.message
        key = id(message)
        stored = self._by_message.get(key)
        if stored is None:
            stored = self._by_message[key] = StoredMessage(self._next_msg_id)
            self._next_msg_id += 1
        stored.refs += 1
        entry.stored = stored
        entry.disk = disk
        self._queue_insert(entry)

    def _queue_insert(self, entry: QueueEntry) -> None:
        inserts = self._inserts
        inserts.append(entry)
        if len(inserts) == 1:
            self._wake()
        elif len(inserts) >= self.congestion_high and not self.congested:
            self._congestion(True)

    def _congestion(self, on: bool) -> None:
        self.congested = on
        self.congestions += on
        if self.on_congestion is not None:
            self.on_congestion(on)

    def drop_tail(self, qid: int, tail_from: int) -> None:
        """A queue's paged entries from ``tail_from`` on go (purge), messages with them."""
        self._tail_drops.append((qid, tail_from))
        self._wake()

    def remove(self, entry: QueueEntry, qid: int | None) -> None:
        """The entry left its queue for good; ``qid`` None: its queue's rows are already gone."""
        disk = entry.disk
        if disk in (PENDING_T, WRITTEN_T):  # a paged transient entry: its row only
            entry.disk = NOT_STORED
            if disk == WRITTEN_T and qid is not None:
                self._tentry_deletes.append((qid, entry.seq))
                self._wake()
            return
        stored = entry.stored
        if stored is None:
            return
        entry.stored = None
        entry.disk = NOT_STORED
        if disk == PENDING:
            stored.refs -= 1  # never written: the message row will count one entry less
            return
        if qid is not None:
            self._entry_deletes.append((qid, entry.seq))
        if stored.refs == 1:
            self._message_deletes.append((stored.id,))
        else:
            self._message_decrements.append((stored.id,))
        self._wake()

    # -- paging in --------------------------------------------------------------------------

    def load_tail(self, queue: Any, from_seq: int, limit: int) -> None:
        """Read the next ``limit`` paged entries of ``queue`` in the background; the queue's
        ``tail_loaded(rows)`` gets them (None on failure)."""
        asyncio.get_running_loop().create_task(self._load_tail(queue, from_seq, limit))

    async def _load_tail(self, queue: Any, from_seq: int, limit: int) -> None:
        rows: list[Any] | None = None
        try:
            await self.flushed()  # everything paged so far is committed: no gap in the read
            reader = self._reader
            if reader is not None:
                async with reader.execute(TAIL_SQL, (queue.store_qid, from_seq, limit)) as cursor:
                    rows = list(await cursor.fetchall())
        except Exception:
            log.exception("message store: reading the paged entries of queue %s failed", queue.name)
        queue.tail_loaded(rows)

    def load_tail_now(self, queue: Any, from_seq: int, limit: int) -> list[QueueEntry]:
        """The next paged entries at once (the head is empty and one is needed now): committed
        rows read synchronously, then entries of the batches not yet committed."""
        reader = self._sync_reader
        rows = reader.execute(TAIL_SQL, (queue.store_qid, from_seq, limit)).fetchall() if reader else []
        entries = self.entries_from_rows(queue, rows)
        if len(entries) < limit:
            last = entries[-1].seq if entries else from_seq - 1
            pending = sorted(
                (
                    e
                    for batch in (self._writing, self._inserts)
                    for e in batch
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
        """Entries from ``TAIL_SQL`` rows. A durable entry stays stored; a ``tentries`` row is
        deleted as its entry comes into memory (transient entries in memory need no disk)."""
        offset = time.time() - asyncio.get_running_loop().time()
        mark = queue.delivered_mark
        qid = queue.store_qid
        entries: list[QueueEntry] = []
        for seq, msg_id, expires, refs, eak, header, body in rows:
            exchange, key = _exchange_and_key(eak)
            entry = QueueEntry(
                Message(exchange, key, eak, header, body), seq, queue, None if expires is None else expires - offset
            )
            if msg_id is None:  # a tentries row
                self._tentry_deletes.append((qid, seq))
            else:
                entry.stored = StoredMessage(msg_id, refs, True)
                entry.disk = WRITTEN
                entry.redelivered = seq <= mark
            entries.append(entry)
        if rows:
            self._wake()
        return entries

    async def flushed(self) -> None:
        """Wait for the commit of the batch now gathering (at once when there is nothing)."""
        if not self._has_pending() and not self._writing:
            return
        future = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((self.batch, future))
        self._wake()
        await future

    def pending(self) -> Settlement:
        """The settlement of the batch now gathering, which something waits for: write it soon."""
        self._waiting = True
        self._wake()
        return self.settlement

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.is_set():
            wakeup.set()

    # -- recovery ---------------------------------------------------------------------------

    async def recover(self) -> None:
        """Load each recovered durable queue's entries in order (only its memory window when it
        pages: the rest stays on disk, counted), then drop what no queue holds."""
        db = self._db
        assert db is not None
        self._recovered = True
        recovering, self._recovering = self._recovering, []
        # Every queue's next sequence number first: recovery may dead-letter (expiry, overflow)
        # into a queue whose own entries are not loaded yet.
        last_seqs: dict[int, int] = {}
        for queue, _delivered in recovering:
            async with db.execute("SELECT MAX(seq) FROM entries WHERE qid = ?", (queue.store_qid,)) as cursor:
                row = await cursor.fetchone()
            if row and row[0] is not None:
                last_seqs[queue.store_qid] = row[0]
                queue.reserve_seqs(row[0] + 1)  # type: ignore[attr-defined]
        shared: dict[int, tuple[StoredMessage, Message]] = {}
        # Exchange/routing key and content headers usually repeat: keep one object of each.
        keys: dict[bytes, tuple[str, str, bytes]] = {}
        headers: dict[bytes, bytes] = {}
        offset = time.time() - asyncio.get_running_loop().time()  # wall clock -> loop time
        total = 0
        for queue, delivered in recovering:
            entries: list[QueueEntry] = []
            window = getattr(queue, "page_window", 0) or -1
            async with db.execute(
                "SELECT e.seq, e.msg_id, e.expires, m.refs, m.exchange_and_key, m.header, m.body"
                " FROM entries e JOIN messages m ON m.id = e.msg_id WHERE e.qid = ? ORDER BY e.seq LIMIT ?",
                (queue.store_qid, window),
            ) as cursor:
                async for seq, msg_id, expires, refs, eak, header, body in cursor:
                    if refs > 1 and msg_id in shared:
                        stored, message = shared[msg_id]
                    else:
                        names = keys.get(eak)
                        if names is None:
                            names = (*_exchange_and_key(eak), eak)
                            if len(keys) < 10_000:
                                keys[eak] = names
                        same = headers.get(header)
                        if same is not None:
                            header = same
                        elif len(headers) < 10_000:
                            headers[header] = header
                        message = Message(names[0], names[1], names[2], header, body)
                        stored = StoredMessage(msg_id, refs, True)
                        if refs > 1:
                            shared[msg_id] = (stored, message)
                    entry = QueueEntry(message, seq, queue, None if expires is None else expires - offset)
                    entry.stored = stored
                    entry.disk = WRITTEN
                    entry.redelivered = seq <= delivered
                    entries.append(entry)
            total += len(entries)
            queue.recover_entries(entries)  # type: ignore[attr-defined]
            if window > 0 and len(entries) == window:
                after = entries[-1].seq
                async with db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(m.body)), 0) FROM entries e"
                    " JOIN messages m ON m.id = e.msg_id WHERE e.qid = ? AND e.seq > ?",
                    (queue.store_qid, after),
                ) as cursor:
                    count, size = await cursor.fetchone() or (0, 0)
                if count:
                    total += count
                    queue.recover_tail(count, size, after + 1)  # type: ignore[attr-defined]
                    # Paged entries read back later are redelivered up to the stored mark (no
                    # higher than the last stored entry: new publishes number after it).
                    mark = min(delivered, last_seqs.get(queue.store_qid, -1))
                    if mark > queue.delivered_mark:
                        queue.delivered_mark = mark
        shared.clear()
        keys.clear()
        headers.clear()
        # Rows no recovered queue holds: queues deleted before a crash let their last
        # entries' messages go only when those were settled.
        orphans = [(qid,) for qid, _delivered in self._stored_queues.values()]
        self._stored_queues.clear()
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.executemany("DELETE FROM entries WHERE qid = ?", orphans)
            await db.executemany("DELETE FROM queues WHERE qid = ?", orphans)
            await db.execute(
                "DELETE FROM messages WHERE id NOT IN (SELECT msg_id FROM entries)"
            )
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        for queue, _delivered in recovering:
            queue.recovered()  # type: ignore[attr-defined]
        if total:
            log.info("recovered %d persistent messages in %d queues", total, len(recovering))

    # -- the writer -------------------------------------------------------------------------

    async def close(self) -> None:
        """Write what is pending, then close."""
        if self._db is None:
            return
        self._closing = True
        assert self._wakeup is not None and self._writer is not None
        self._wakeup.set()
        await self._writer
        await self._close_readers()
        await self._db.close()
        self._db = None

    async def _close_readers(self) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._sync_reader is not None:
            self._sync_reader.close()
            self._sync_reader = None

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
            if self._closing and not self._has_pending():
                return

    def _has_pending(self) -> bool:
        return bool(
            self._inserts
            or self._entry_deletes
            or self._tentry_deletes
            or self._message_deletes
            or self._message_decrements
            or self._tail_drops
            or self._queue_puts
            or self._queue_deletes
            or self._marks
            or self._waiting
        )

    def _take(self) -> tuple[list[Any], ...]:
        """Snapshot the gathered batch into rows (on the loop, so nothing changes under it)."""
        wall = time.time() - asyncio.get_running_loop().time()  # loop time -> wall clock
        messages: list[tuple[int, int, bytes, bytes, bytes]] = []
        entries: list[tuple[int, int, int, float | None]] = []
        tentries: list[tuple[int, int, float | None, bytes, bytes, bytes]] = []
        for entry in self._inserts:
            disk = entry.disk
            if disk == PENDING_T:
                entry.disk = WRITTEN_T
                expires = entry.expires
                message = entry.message
                tentries.append(
                    (
                        entry.queue.store_qid,  # type: ignore[attr-defined]
                        entry.seq,
                        None if expires is None else expires + wall,
                        message.exchange_and_key,
                        message.header,
                        message.body,
                    )
                )
                continue
            if disk != PENDING:
                continue
            entry.disk = WRITTEN
            stored = entry.stored
            assert stored is not None
            if not stored.written:
                stored.written = True
                message = entry.message
                messages.append((stored.id, stored.refs, message.exchange_and_key, message.header, message.body))
            expires = entry.expires
            entries.append((entry.queue.store_qid, entry.seq, stored.id, None if expires is None else expires + wall))  # type: ignore[attr-defined]
        marks = [(queue.delivered_mark, qid) for qid, queue in self._marks.items()]  # type: ignore[attr-defined]
        batch = (
            self._queue_puts,
            messages,
            entries,
            tentries,
            self._entry_deletes,
            self._tentry_deletes,
            self._tail_drops,
            self._queue_deletes,
            self._message_deletes,
            self._message_decrements,
            marks,
        )
        self._writing = self._inserts
        self._inserts = []
        self._entry_deletes = []
        self._tentry_deletes = []
        self._tail_drops = []
        self._message_deletes = []
        self._message_decrements = []
        self._queue_puts = []
        self._queue_deletes = []
        self._marks = {}
        self._by_message = {}
        return batch

    async def _write_batch(self) -> None:
        number = self.batch
        self.batch = number + 1
        settlement, self.settlement = self.settlement, Settlement()
        self._waiting = False
        batch = self._take()
        (
            queue_puts,
            messages,
            entries,
            tentries,
            entry_deletes,
            tentry_deletes,
            tail_drops,
            queue_deletes,
            message_deletes,
            message_decrements,
            marks,
        ) = batch
        db = self._db
        assert db is not None
        failure: Exception | None = None
        if any(batch):
            try:
                # Paged transient entries alone need no fsync: the table is emptied at boot.
                # NORMAL in WAL mode still keeps the database consistent after a crash.
                durable = any((queue_puts, messages, entries, entry_deletes, tail_drops, queue_deletes,
                               message_deletes, message_decrements, marks))  # fmt: skip
                if durable != self._sync_full:
                    await db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                    self._sync_full = durable
                await db.execute("BEGIN IMMEDIATE")
                try:
                    if queue_puts:
                        await db.executemany("INSERT INTO queues (qid, vhost, name) VALUES (?, ?, ?)", queue_puts)
                    if messages:
                        await db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?)", messages)
                    if entries:
                        await db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", entries)
                    if tentries:
                        await db.executemany("INSERT INTO tentries VALUES (?, ?, ?, ?, ?, ?)", tentries)
                    if entry_deletes:
                        await db.executemany("DELETE FROM entries WHERE qid = ? AND seq = ?", entry_deletes)
                    if tentry_deletes:
                        await db.executemany("DELETE FROM tentries WHERE qid = ? AND seq = ?", tentry_deletes)
                    for qid, tail_from in tail_drops:
                        await _drop_range(db, qid, tail_from)
                    if queue_deletes:
                        await db.executemany("DELETE FROM entries WHERE qid = ?", queue_deletes)
                        await db.executemany("DELETE FROM tentries WHERE qid = ?", queue_deletes)
                        await db.executemany("DELETE FROM queues WHERE qid = ?", queue_deletes)
                    if message_deletes:
                        await db.executemany("DELETE FROM messages WHERE id = ?", message_deletes)
                    if message_decrements:
                        await db.executemany("UPDATE messages SET refs = refs - 1 WHERE id = ?", message_decrements)
                        await db.executemany("DELETE FROM messages WHERE id = ? AND refs <= 0", message_decrements)
                    if marks:
                        await db.executemany("UPDATE queues SET delivered = ? WHERE qid = ?", marks)
                    await db.execute("COMMIT")
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise
            except Exception as exc:
                log.exception("message store write failed")
                failure = exc
            else:
                self.transactions += 1
                self.synced += durable
        self.committed = number
        self._writing = []
        if self.congested and len(self._inserts) < self.congestion_high // 2:
            self._congestion(False)
        settlement.settle(failure is None)
        if self._flush_waiters:
            still = []
            for wanted, future in self._flush_waiters:
                if wanted <= number:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((wanted, future))
            self._flush_waiters = still
            if still:
                self._wake()


async def _drop_range(db: aiosqlite.Connection, qid: int, tail_from: int) -> None:
    """Paged entries of ``qid`` from ``tail_from`` on go; their messages lose one ref each."""
    args = (qid, tail_from)
    await db.execute(
        "UPDATE messages SET refs = refs - 1 WHERE id IN (SELECT msg_id FROM entries WHERE qid = ?1 AND seq >= ?2)",
        args,
    )
    await db.execute(
        "DELETE FROM messages WHERE refs <= 0 AND id IN (SELECT msg_id FROM entries WHERE qid = ?1 AND seq >= ?2)",
        args,
    )
    await db.execute("DELETE FROM entries WHERE qid = ? AND seq >= ?", args)
    await db.execute("DELETE FROM tentries WHERE qid = ? AND seq >= ?", args)


def _entry_seq(entry: QueueEntry) -> int:
    return entry.seq


def _exchange_and_key(raw: bytes) -> tuple[str, str]:
    """The exchange and routing key from basic.publish's two raw shortstrs."""
    size = raw[0]
    key_size = raw[1 + size]
    return lenient_str(raw[1 : 1 + size]), lenient_str(raw[2 + size : 2 + size + key_size])
