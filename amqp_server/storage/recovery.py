"""Boot recovery of ``messages.db``: what the file held when the node started, claimed by the
durable queues that come back, loaded into them in order, and the rest dropped.

At boot a queue stored before keeps its id (``claim``) and ``run`` loads its entries: only its
memory window when it pages, the rest stays on disk, counted. Any other queue gets a fresh id,
so that a queue deleted and declared again never shares rows with its predecessor.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import aiosqlite

from amqp_server.core.message import Message
from amqp_server.storage.records import WRITTEN, StoredMessage, exchange_and_key, wall_offset
from queues.base import QueueEntry

if TYPE_CHECKING:
    from queues.base import QueueType

log = logging.getLogger("amqp_server.storage.message_store")  # one logger for the store's story

# Rows fetched at a time by the cursors of the store's connection (``run`` iterates them).
RECOVERY_CHUNK = 1024


class Recovery:
    """The stored queues of the file, until ``run`` has loaded them into the queues claiming them."""

    def __init__(self) -> None:
        self._stored: dict[tuple[str, str], tuple[int, int]] = {}  # -> (qid, delivered)
        self._claimed: list[tuple[QueueType, int]] = []  # (queue, delivered mark)
        self._started = False  # run() began: stored queue ids are no longer claimable

    async def read(self, db: aiosqlite.Connection) -> tuple[int, int]:
        """At open: paged transient entries go (they die with the node) and the stored queues
        are noted. Answers the next queue id and message id that no row uses."""
        await db.execute("DELETE FROM tentries")
        next_qid = 1
        async with db.execute("SELECT qid, vhost, name, delivered FROM queues ORDER BY qid") as cursor:
            for qid, vhost, name, delivered in await cursor.fetchall():
                self._stored[(vhost, name)] = (qid, delivered)
                next_qid = max(next_qid, qid + 1)
        async with db.execute("SELECT MAX(id) FROM messages") as cursor:
            row = await cursor.fetchone()
        return next_qid, (row[0] or 0) + 1 if row else 1

    def holds(self, vhost: str, name: str) -> bool:
        return not self._started and (vhost, name) in self._stored

    def claim(self, queue: QueueType) -> tuple[int | None, int | None]:
        """A durable queue came into being: ``(qid, stale)``. ``qid``: the id it had, when it is
        recovered under it (``run`` loads its entries), else None (it needs a fresh one);
        ``stale``: an id it had whose rows must go (the recovery had started)."""
        stored = self._stored.pop((queue.vhost, queue.name), None)
        if stored is None:
            return None, None
        qid, delivered = stored
        if self._started:
            return None, qid
        self._claimed.append((queue, delivered))
        return qid, None

    def keep(self, queue: QueueType) -> None:
        """A queue known to the metadata but homed on another node: what the file holds of it
        is neither loaded nor dropped (its home node, back under this directory, has it)."""
        self._stored.pop((queue.vhost, queue.name), None)

    async def run(self, db: aiosqlite.Connection) -> None:
        """Load each claimed queue's entries in order, then drop what no queue holds."""
        self._started = True
        recovering, self._claimed = self._claimed, []
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
        offset = wall_offset()
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
                            names = (*exchange_and_key(eak), eak)
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
        orphans = [(qid,) for qid, _delivered in self._stored.values()]
        self._stored.clear()
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.executemany("DELETE FROM entries WHERE qid = ?", orphans)
            await db.executemany("DELETE FROM queues WHERE qid = ?", orphans)
            await db.execute("DELETE FROM messages WHERE id NOT IN (SELECT msg_id FROM entries)")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        for queue, _delivered in recovering:
            queue.recovered()  # type: ignore[attr-defined]
        if total:
            log.info("recovered %d persistent messages in %d queues", total, len(recovering))
