"""Paging of a classic queue (a broker with a data directory): the tail of its ready messages
lives in the message store.

At most ``window`` ready entries are held in memory (the head); publishes beyond it, and every
publish while paged entries exist (the tail), go to the message store only, so that order is
kept. The tail is counted here (count, body bytes), so message counts, length limits and stats
stay exact; it is read back in batches as the head drains below half the window. Priority
queues do not page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from queues.base import QueueEntry, QueueType

if TYPE_CHECKING:
    from amqp_server.storage.message_store import MessageStore


class PagedTail:
    """The paged-out ready entries of one queue, oldest first from ``seq`` on."""

    __slots__ = ("count", "bytes", "window", "_queue", "_store", "_seq", "_gen", "_loading", "_load_gen")

    def __init__(self, queue: QueueType) -> None:
        self._queue = queue  # the store reads it back for this queue (by its store_qid)
        self._store: MessageStore | None = None
        self.window = 0  # 0: the queue does not page
        self.count = 0
        self.bytes = 0  # body bytes, as the queue's ready bytes
        self._seq = 0  # the first paged entry not read back yet
        self._gen = 0  # bumped when the tail is dropped: a read in flight is stale
        self._loading = False
        self._load_gen = 0  # _gen when the read in flight was asked for

    def enable(self, store: MessageStore, window: int) -> None:
        """Page beyond ``window`` ready entries, into ``store``."""
        self._store = store
        self.window = window

    def page_out(self, entry: QueueEntry, durable: bool) -> None:
        """The entry goes to the tail on disk (``durable``: a persistent message of a durable
        queue); only its size is kept here."""
        if not self.count:
            self._seq = entry.seq
        self.count += 1
        self.bytes += len(entry.message.body)
        self._store.page_out(entry, durable)  # type: ignore[union-attr]

    def check_refill(self, head: int) -> None:
        """The head holds ``head`` entries: below half the window, read the next batch of the
        tail in the background (the queue's ``tail_loaded`` gets it)."""
        if not self._loading and head <= self.window // 2:
            self._loading = True
            self._load_gen = self._gen
            self._store.load_tail(self._queue, self._seq, max(1, self.window // 2))  # type: ignore[union-attr]

    def loaded(self, rows: list[Any] | None) -> list[QueueEntry] | None:
        """The background read finished with ``rows`` (None: it failed): the entries of those
        still in the tail, in order."""
        self._loading = False
        if rows is None:
            return None
        if self._load_gen != self._gen or not self.count:
            return []
        tail_seq = self._seq
        rows = [row for row in rows if row[0] >= tail_seq]  # a synchronous read took the rest
        return self._store.entries_from_rows(self._queue, rows) if rows else []  # type: ignore[union-attr]

    def load_now(self) -> list[QueueEntry]:
        """The next batch of the tail, read at once (the head is empty and an entry is needed
        now); empty only if the tail was miscounted."""
        return self._store.load_tail_now(self._queue, self._seq, max(1, self.window // 2))  # type: ignore[union-attr]

    def take(self, entries: list[QueueEntry], size: int) -> int:
        """``entries`` (the next ones, in order, of ``size`` body bytes) joined the head;
        returns how many are left in the tail."""
        self.count -= len(entries)
        self.bytes -= size
        self._seq = entries[-1].seq + 1
        if not self.count:
            self.bytes = 0
        return self.count

    def recover(self, count: int, size: int, seq: int) -> None:
        """Recovery: ``count`` stored entries of ``size`` body bytes from ``seq`` on stay on disk."""
        self.count = count
        self.bytes = size
        self._seq = seq

    def drop(self, rows: bool) -> int:
        """Forget the paged entries (a read in flight is stale); ``rows``: their rows go with the
        store's next batch (else they go with the queue's, or are not there). Returns the seq
        they started from."""
        self._gen += 1
        self.count = 0
        self.bytes = 0
        if rows:
            self._store.drop_tail(self._queue.store_qid, self._seq)  # type: ignore[union-attr,attr-defined]
        return self._seq
