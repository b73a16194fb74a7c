"""One group commit of the message store: the changes gathered on the event loop (``Batch``),
their rows (``Rows``), and the one transaction that writes them (``write``).

Every change (entry and message inserts, entry deletes on ack, reject, expiry, overflow drops,
purge, queue deletion) is appended to the batch now gathering without awaiting. An entry
removed before its batch was taken is never written at all (a consumer that acks quickly costs
no disk writes for the body).

Redelivery marks: instead of one write per delivery, each queue records the highest sequence
number it has handed out (``queues.delivered``, written with the batch when it moved). A
classic queue delivers from its head in sequence order and requeued messages are already
redelivered, so an entry at or below the mark was delivered before; after a restart it comes
back with redelivered set. (A priority queue delivers out of sequence order, so there the mark
can over-report: a message may come back flagged redelivered without having been delivered,
which AMQP allows, as the flag only says "may have been delivered before".)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import aiosqlite

from amqp_server.storage.records import EntryRow, MessageRow, StoredMessage, TentryRow, insert_rows
from queues.base import QueueEntry, Settlement

if TYPE_CHECKING:
    from queues.base import QueueType


class Rows(NamedTuple):
    """What one batch writes, table by table."""

    queue_puts: list[tuple[int, str, str]]
    messages: list[MessageRow]
    entries: list[EntryRow]
    tentries: list[TentryRow]
    entry_deletes: list[tuple[int, int]]
    tentry_deletes: list[tuple[int, int]]
    tail_drops: list[tuple[int, int]]
    queue_deletes: list[tuple[int]]
    message_deletes: list[tuple[int]]
    message_decrements: list[tuple[int]]
    marks: list[tuple[int, int]]

    def durable(self) -> bool:
        """Anything but paged transient entries: those alone need no fsync (their table is
        emptied at boot; NORMAL in WAL mode still keeps the database consistent after a crash)."""
        return any((self.queue_puts, self.messages, self.entries, self.entry_deletes, self.tail_drops,
                    self.queue_deletes, self.message_deletes, self.message_decrements, self.marks))  # fmt: skip


class Batch:
    """The changes gathered for one group commit, numbered, with the settlement of the
    publishes whose messages it stores."""

    __slots__ = (
        "number",
        "settlement",
        "waited",
        "inserts",
        "by_message",
        "entry_deletes",
        "tentry_deletes",
        "message_deletes",
        "message_decrements",
        "tail_drops",
        "queue_puts",
        "queue_deletes",
        "marks",
    )

    def __init__(self, number: int) -> None:
        self.number = number
        # Settled when this batch is on disk: what a publish that stored a message returns
        # (queues.base.Settlement), and what a tx.commit waits for.
        self.settlement = Settlement()
        self.waited = False  # someone waits for the settlement (``MessageStore.pending``)
        self.inserts: list[QueueEntry] = []
        self.by_message: dict[int, StoredMessage] = {}  # id(Message) -> its record, this batch only
        self.entry_deletes: list[tuple[int, int]] = []
        self.tentry_deletes: list[tuple[int, int]] = []
        self.message_deletes: list[tuple[int]] = []
        self.message_decrements: list[tuple[int]] = []
        self.tail_drops: list[tuple[int, int]] = []  # (qid, from seq): paged entries dropped
        self.queue_puts: list[tuple[int, str, str]] = []
        self.queue_deletes: list[tuple[int]] = []
        self.marks: dict[int, QueueType] = {}  # qid -> queue whose delivered mark moved

    def gathered(self) -> bool:
        """Anything to write, or someone waiting for it."""
        return bool(
            self.inserts
            or self.entry_deletes
            or self.tentry_deletes
            or self.message_deletes
            or self.message_decrements
            or self.tail_drops
            or self.queue_puts
            or self.queue_deletes
            or self.marks
            or self.waited
        )

    def rows(self, wall: float) -> Rows:
        """The rows to write (on the loop, so nothing changes under it); ``wall``: see
        ``records.wall_offset``."""
        messages, entries, tentries = insert_rows(self.inserts, wall)
        marks = [(queue.delivered_mark, qid) for qid, queue in self.marks.items()]  # type: ignore[attr-defined]
        return Rows(
            self.queue_puts,
            messages,
            entries,
            tentries,
            self.entry_deletes,
            self.tentry_deletes,
            self.tail_drops,
            self.queue_deletes,
            self.message_deletes,
            self.message_decrements,
            marks,
        )


async def write(db: aiosqlite.Connection, rows: Rows) -> None:
    """Write ``rows`` as one transaction."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        await _each(
            db,
            ("INSERT INTO queues (qid, vhost, name) VALUES (?, ?, ?)", rows.queue_puts),
            ("INSERT INTO messages VALUES (?, ?, ?, ?, ?)", rows.messages),
            ("INSERT INTO entries VALUES (?, ?, ?, ?)", rows.entries),
            ("INSERT INTO tentries VALUES (?, ?, ?, ?, ?, ?)", rows.tentries),
            ("DELETE FROM entries WHERE qid = ? AND seq = ?", rows.entry_deletes),
            ("DELETE FROM tentries WHERE qid = ? AND seq = ?", rows.tentry_deletes),
        )
        for qid, tail_from in rows.tail_drops:
            await _drop_range(db, qid, tail_from)
        await _each(
            db,
            ("DELETE FROM entries WHERE qid = ?", rows.queue_deletes),
            ("DELETE FROM tentries WHERE qid = ?", rows.queue_deletes),
            ("DELETE FROM queues WHERE qid = ?", rows.queue_deletes),
            ("DELETE FROM messages WHERE id = ?", rows.message_deletes),
            ("UPDATE messages SET refs = refs - 1 WHERE id = ?", rows.message_decrements),
            ("DELETE FROM messages WHERE id = ? AND refs <= 0", rows.message_decrements),
            ("UPDATE queues SET delivered = ? WHERE qid = ?", rows.marks),
        )
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


async def _each(db: aiosqlite.Connection, *statements: tuple[str, list[Any]]) -> None:
    """Each statement over its rows, in order; one with no rows costs no round trip."""
    for sql, args in statements:
        if args:
            await db.executemany(sql, args)


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
