"""Queue entries and their messages as rows of ``messages.db``, and back.

A persistent message is one ``messages`` row, however many durable queues it reaches; each
queue's place for it is an ``entries`` row. Once paged entries exist, a message's live entry
count is no longer known in memory: the ``refs`` column is the authority. It is written with
the message (the entries live then) and decremented on disk as entries go; ``StoredMessage.refs``
keeps the value read or written, so a message whose count was 1 is deleted outright and any
other is decremented, then deleted at 0.

Expiry: rows keep an entry's absolute expiry (wall clock), so a message TTL keeps counting
across a restart as in RabbitMQ, whose queue index stores the expiry timestamp; in memory it is
event-loop time (``wall_offset`` converts).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from amqp_server.core.message import Message
from amqp_server.protocol.field_types import lenient_str
from queues.base import QueueEntry

# Entry disk states (QueueEntry.disk).
# PENDING_T/WRITTEN_T: a paged entry in ``tentries`` (not durable: emptied at boot).
NOT_STORED, PENDING, WRITTEN, PENDING_T, WRITTEN_T = 0, 1, 2, 3, 4

MessageRow = tuple[int, int, bytes, bytes, bytes]
EntryRow = tuple[int, int, int, float | None]
TentryRow = tuple[int, int, float | None, bytes, bytes, bytes]


class StoredMessage:
    """A stored message's id and its entry count: live, until its row is written; after that,
    the count written or read (the ``refs`` column, decremented on disk, is the authority)."""

    __slots__ = ("id", "refs", "written")

    def __init__(self, message_id: int, refs: int = 0, written: bool = False) -> None:
        self.id = message_id
        self.refs = refs
        self.written = written  # its row is written or in a batch being written


def wall_offset() -> float:
    """Wall clock minus event-loop time: what turns an entry's expiry into a row's, and back."""
    return time.time() - asyncio.get_running_loop().time()


def exchange_and_key(raw: bytes) -> tuple[str, str]:
    """The exchange and routing key from basic.publish's two raw shortstrs."""
    size = raw[0]
    key_size = raw[1 + size]
    return lenient_str(raw[1 : 1 + size]), lenient_str(raw[2 + size : 2 + size + key_size])


def insert_rows(
    inserts: list[QueueEntry], wall: float
) -> tuple[list[MessageRow], list[EntryRow], list[TentryRow]]:
    """The rows of a batch's inserted entries that are still pending (an entry removed since
    is skipped), each message once; they count as written from now on."""
    messages: list[MessageRow] = []
    entries: list[EntryRow] = []
    tentries: list[TentryRow] = []
    for entry in inserts:
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
    return messages, entries, tentries


def tail_entries(queue: Any, rows: list[Any], transient: list[tuple[int, int]]) -> list[QueueEntry]:
    """Entries of ``queue`` from ``tail_reader.TAIL_SQL`` rows. A durable entry stays stored
    (redelivered up to the queue's delivered mark); the key of a ``tentries`` row is added to
    ``transient``: its entry is in memory now and needs no disk."""
    offset = wall_offset()
    mark = queue.delivered_mark
    qid = queue.store_qid
    entries: list[QueueEntry] = []
    for seq, msg_id, expires, refs, eak, header, body in rows:
        exchange, key = exchange_and_key(eak)
        entry = QueueEntry(
            Message(exchange, key, eak, header, body), seq, queue, None if expires is None else expires - offset
        )
        if msg_id is None:  # a tentries row
            transient.append((qid, seq))
        else:
            entry.stored = StoredMessage(msg_id, refs, True)
            entry.disk = WRITTEN
            entry.redelivered = seq <= mark
        entries.append(entry)
    return entries
