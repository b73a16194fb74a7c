"""Reading queues' paged tails back from ``messages.db``.

A paging queue holds at most a window of entries as Python objects; the ones published beyond
it go to disk only (``MessageStore.page_out``) and come back in sequence order as the head
drains: an async read on a second, read-only connection, or a synchronous one on a third when
the head is empty and an entry is needed at once. A persistent message of a durable queue is
paged as an ordinary stored entry (``entries``); any other paged entry goes to ``tentries``
with its message inline (one row: no ``messages`` row, no reference count; a message paged by
two queues is written twice), written in the same group commit but never waited for by a
confirm, and emptied at every boot.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import aiosqlite

# A paged tail's next entries, in sequence order, with their messages (both tables: one
# statement, so one snapshot: the rows are a prefix of what is committed).
TAIL_SQL = (
    "SELECT e.seq, e.msg_id, e.expires, m.refs, m.exchange_and_key, m.header, m.body FROM entries e"
    " JOIN messages m ON m.id = e.msg_id WHERE e.qid = ?1 AND e.seq >= ?2"
    " UNION ALL SELECT seq, NULL, expires, 0, exchange_and_key, header, body FROM tentries"
    " WHERE qid = ?1 AND seq >= ?2 ORDER BY 1 LIMIT ?3"
)


class TailReader:
    """The read-only connections paged entries are read back through (``TAIL_SQL`` rows)."""

    def __init__(self) -> None:
        self._reader: aiosqlite.Connection | None = None  # reads in the background
        self._sync_reader: sqlite3.Connection | None = None  # reads when the head is empty

    async def open(self, path: str) -> None:
        """Connect to ``path`` (raises ``sqlite3.Error``; ``close`` then closes what opened)."""
        self._reader = await aiosqlite.connect(path, isolation_level=None)
        await self._reader.execute("PRAGMA query_only=1")
        self._sync_reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._sync_reader.execute("PRAGMA query_only=1")

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._sync_reader is not None:
            self._sync_reader.close()
            self._sync_reader = None

    async def read(self, qid: int, from_seq: int, limit: int) -> list[Any] | None:
        """Up to ``limit`` committed rows of queue ``qid`` from ``from_seq`` on; None when closed."""
        reader = self._reader
        if reader is None:
            return None
        async with reader.execute(TAIL_SQL, (qid, from_seq, limit)) as cursor:
            return list(await cursor.fetchall())

    def read_now(self, qid: int, from_seq: int, limit: int) -> list[Any]:
        """As ``read``, blocking the loop for it; no rows when closed."""
        reader = self._sync_reader
        return reader.execute(TAIL_SQL, (qid, from_seq, limit)).fetchall() if reader else []
