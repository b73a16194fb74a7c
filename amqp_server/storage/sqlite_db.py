"""Opening one of the broker's SQLite files (the metadata store, the message store): WAL with
``synchronous=FULL``, an integrity check, and the file's schema brought up to date by its list
of migrations. A file that cannot be opened, is damaged, is not the broker's, or was written by
a newer version raises ``StoreError``: the node never comes up empty over a file it cannot read.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

#: A step of a file's schema: MIGRATIONS[i] takes it from version i to i + 1.
Migration = Callable[[aiosqlite.Connection], Awaitable[None]]


class StoreError(RuntimeError):
    """A store cannot be opened or read; the broker must not start."""


@asynccontextmanager
async def transaction(db: aiosqlite.Connection, begin: str = "BEGIN") -> AsyncIterator[aiosqlite.Connection]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    await db.execute(begin)
    try:
        yield db
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


async def open_database(
    path: str, what: str, migrations: Sequence[Migration], **connect: Any
) -> aiosqlite.Connection:
    """Open ``path`` (``what``: "metadata store", "message store", for messages) and migrate it."""
    try:
        db = await aiosqlite.connect(path, isolation_level=None, **connect)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {what} {path}: {exc}") from exc
    try:
        async with db.execute("PRAGMA journal_mode=WAL") as cursor:
            mode = (await cursor.fetchone() or ("?",))[0]
        if mode != "wal":  # e.g. a file system without shared memory: still durable, slower
            log.warning("%s %s: journal mode %s, not wal", what, path, mode)
        await db.execute("PRAGMA synchronous=FULL")
        async with db.execute("PRAGMA quick_check") as cursor:
            problems = [row[0] for row in await cursor.fetchall()]
        if problems != ["ok"]:
            raise StoreError(f"{path} is corrupt: {'; '.join(problems[:5])}")
        await _migrate(db, path, what, migrations)
    except sqlite3.Error as exc:
        await db.close()
        raise StoreError(f"cannot read {what} {path}: {exc}") from exc
    except BaseException:
        await db.close()
        raise
    return db


async def _migrate(db: aiosqlite.Connection, path: str, what: str, migrations: Sequence[Migration]) -> None:
    latest = len(migrations)
    async with db.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cursor:
        tables = {row[0] for row in await cursor.fetchall()}
    if "schema_version" in tables:
        async with db.execute("SELECT version FROM schema_version") as cursor:
            rows = await cursor.fetchall()
        if len(rows) != 1 or not isinstance(rows[0][0], int):
            raise StoreError(f"{path} is corrupt: bad schema_version table {rows!r}")
        version = rows[0][0]
    elif tables - {"sqlite_sequence"}:
        raise StoreError(f"{path} is not a {what} of this broker (tables {sorted(tables)})")
    else:
        version = 0
    if version > latest:
        raise StoreError(
            f"{path} has schema version {version}, newer than this broker's {latest}: it was written by a newer version"
        )
    if version == latest:
        return
    await db.execute("BEGIN IMMEDIATE")
    try:
        if "schema_version" not in tables:
            await db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            await db.execute("INSERT INTO schema_version VALUES (0)")
        for step in range(version, latest):
            await migrations[step](db)
            await db.execute("UPDATE schema_version SET version = ?", (step + 1,))
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    log.info("%s %s migrated from schema version %s to %s", what, path, version, latest)
