"""The tables of ``messages.db`` and the migrations that build them (``sqlite_db.open_database``
runs them).

- ``queues``: one row per durable queue (its id, vhost, name and delivered mark);
- ``messages``: a stored message once, however many queues hold it, with its live entry count;
- ``entries``: a durable queue's place for a message (queue id, sequence number, message id,
  absolute expiry);
- ``tentries``: paged entries that need no durability, their message inline (emptied at boot).
"""

from __future__ import annotations

import aiosqlite

from amqp_server.storage.sqlite_db import Migration

DB_NAME = "messages.db"


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
