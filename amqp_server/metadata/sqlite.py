"""The embedded metadata store: durable changes kept in SQLite at ``<data_dir>/metadata.db``.

Rows are generic (kind, vhost, name, record) so that every kind of ``Change`` the broker has,
now or later, is stored the same way: a "put" replaces the row, a "delete" removes it, and the
deletes that cascade in memory (a vhost takes its exchanges, queues, bindings and permissions;
a queue or exchange takes its bindings; a user takes its permissions) cascade here too, so a
restart never brings back a binding whose queue is gone.

Commits are grouped: one writer task drains the pending changes into one transaction and one
fsync, and every caller in the batch is answered when it is on disk. The journal is WAL with
``synchronous=FULL``, so a commit is on disk (WAL fsynced) before it is confirmed; NORMAL would
survive a crash of the process but not of the machine.

The data directory is locked (``flock`` on ``.lock``) against a second broker process, and a
database that is not readable, not a SQLite file, or from a newer version of this broker stops
the start with a ``StoreError``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import fcntl
import json
import logging
import math
import os
import sqlite3
import time
from decimal import Decimal
from typing import Any

import aiosqlite

from amqp_server.metadata.store import Change, MetadataStore
from amqp_server.storage.sqlite_db import Migration, StoreError, open_database

__all__ = ["StoreError", "SqliteStore"]

log = logging.getLogger(__name__)

DB_NAME = "metadata.db"
LOCK_NAME = ".lock"

# Kinds in the order they are applied at boot; kinds not named here (policies, limits,
# parameters...) come after permissions and before exchanges.
_FIRST = ("vhost", "user", "permission", "topic_permission")
_LAST = ("exchange", "queue", "binding")


# -- migrations -----------------------------------------------------------------------------


async def _migrate_to_1(db: aiosqlite.Connection) -> None:
    await db.execute(
        "CREATE TABLE metadata ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " kind TEXT NOT NULL, vhost TEXT, name TEXT NOT NULL, record TEXT NOT NULL)"
    )
    await db.execute("CREATE INDEX metadata_key ON metadata (kind, vhost, name)")


# The cascades of a queue or exchange delete find its bindings through these (partial,
# expression) indexes; without them each delete read every binding's record.
_BINDING_DESTINATION = "json_extract(record, '$.destination_type'), json_extract(record, '$.destination')"
_BINDING_SOURCE = "json_extract(record, '$.source')"


async def _migrate_to_2(db: aiosqlite.Connection) -> None:
    await db.execute(
        f"CREATE INDEX metadata_binding_destination ON metadata (vhost, {_BINDING_DESTINATION})"
        " WHERE kind = 'binding'"
    )
    await db.execute(
        f"CREATE INDEX metadata_binding_source ON metadata (vhost, {_BINDING_SOURCE}) WHERE kind = 'binding'"
    )


async def _migrate_to_3(db: aiosqlite.Connection) -> None:
    # Rows a boot could not apply (Broker.boot), moved here with the reason, for an operator.
    await db.execute(
        "CREATE TABLE set_aside ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, vhost TEXT, name TEXT NOT NULL,"
        " record TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL)"
    )


#: MIGRATIONS[i] takes the schema from version i to i + 1; SCHEMA_VERSION is len(MIGRATIONS).
MIGRATIONS: list[Migration] = [_migrate_to_1, _migrate_to_2, _migrate_to_3]
SCHEMA_VERSION = len(MIGRATIONS)


# -- lossless record encoding -----------------------------------------------------------------

_TAG = "$t"


def encode_value(value: Any) -> Any:
    """A JSON-able form of a record value; types JSON lacks are tagged objects ``{"$t": ...}``.

    Field tables hold bytes, bytearrays (AMQP binary), decimals, timestamps and tuples, and
    equivalence checks compare them by type, so each comes back as the type it went in as.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and _TAG not in value:
            return {key: encode_value(item) for key, item in value.items()}
        return {_TAG: "dict", "v": [[encode_value(k), encode_value(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [encode_value(item) for item in value]
    if isinstance(value, time.struct_time):  # a tuple subclass: before tuple
        return {_TAG: "struct_time", "v": list(value)}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [encode_value(item) for item in value]}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "v": base64.b64encode(value).decode()}
    if isinstance(value, bytearray | memoryview):
        return {_TAG: "bytearray", "v": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, datetime.datetime):
        return {_TAG: "datetime", "v": value.isoformat(), "fold": value.fold}
    raise TypeError(f"cannot store a value of type {type(value).__name__}: {value!r}")


def decode_value(value: Any) -> Any:
    """The inverse of ``encode_value``."""
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {key: decode_value(item) for key, item in value.items()}
    data = value["v"]
    if tag == "dict":
        return {decode_value(k): decode_value(v) for k, v in data}
    if tag == "tuple":
        return tuple(decode_value(item) for item in data)
    if tag == "bytes":
        return base64.b64decode(data)
    if tag == "bytearray":
        return bytearray(base64.b64decode(data))
    if tag == "decimal":
        return Decimal(data)
    if tag == "datetime":
        return datetime.datetime.fromisoformat(data).replace(fold=value.get("fold", 0))
    if tag == "struct_time":
        return time.struct_time(data)
    if tag == "float":
        return float(data)
    raise ValueError(f"unknown tag {tag!r}")


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(encode_value(record), separators=(",", ":"), allow_nan=False)


def loads(text: str) -> dict[str, Any]:
    return decode_value(json.loads(text))


# -- the store --------------------------------------------------------------------------------


def lock_directory(data_dir: str) -> int:
    """Lock ``data_dir`` against a second broker process (``flock`` on ``.lock``); the fd."""
    path = os.path.join(data_dir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open lock file {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(
            f"data directory {data_dir} is in use by another broker process (lock {path} is held)"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock_directory(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class SqliteStore(MetadataStore):
    """Durable metadata in ``<data_dir>/metadata.db``; opened (and locked) on first use."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = os.fspath(data_dir)
        self.path = os.path.join(self.data_dir, DB_NAME)
        self.transactions = 0  # committed write transactions (each one fsync): group commit shows here
        self._db: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._pending: list[tuple[Change, asyncio.Future[None]]] = []
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._open_lock = asyncio.Lock()

    # -- opening ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create and lock the directory, open the database and bring its schema up to date."""
        async with self._open_lock:
            if self._db is None:
                await self._open()

    async def _open(self) -> None:
        self._closing = False
        try:
            os.makedirs(self.data_dir, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data directory {self.data_dir}: {exc.strerror}") from exc
        self._lock()
        self.first_start = not os.path.exists(self.path)
        try:
            self._db = await self._connect()
        except BaseException:
            self._unlock()
            raise
        self._wakeup = asyncio.Event()
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name="metadata-store-writer"
        )

    def _lock(self) -> None:
        self._lock_fd = lock_directory(self.data_dir)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            unlock_directory(self._lock_fd)
            self._lock_fd = None

    async def _connect(self) -> aiosqlite.Connection:
        return await open_database(self.path, "metadata store", MIGRATIONS)

    # -- MetadataStore ----------------------------------------------------------------------

    async def load(self) -> list[Change]:
        """Every stored change, in an order that applies cleanly; bindings whose source or
        destination is not stored are left out."""
        await self.open()
        assert self._db is not None
        return await _stored_changes(self._db, self.path)

    async def commit(self, change: Change) -> None:
        """Return once a persisted change is on disk; any other is not stored."""
        if not change.persisted:
            return
        await self.open()
        if self._closing:
            raise StoreError("metadata store is closed")
        assert self._wakeup is not None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((change, future))
        self._wakeup.set()
        await future

    async def set_aside(self, change: Change, reason: str) -> None:
        """Move the change's row to the ``set_aside`` table (through the writer, in order)."""
        await self.commit(Change(change.kind, "set_aside", change.vhost, change.name, {"reason": reason}))

    async def close(self) -> None:
        """Write what is pending, then close the database and release the lock."""
        if self._db is None:
            return
        self._closing = True
        assert self._wakeup is not None and self._writer is not None
        self._wakeup.set()
        await self._writer
        await self._db.close()
        self._db = None
        self._unlock()

    # -- the writer -------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(0)  # let the rest of this loop tick's commits join the batch
            batch, self._pending = self._pending, []
            if batch:
                await self._write(batch)
            if self._closing and not self._pending:
                return

    async def _write(self, batch: list[tuple[Change, asyncio.Future[None]]]) -> None:
        db = self._db
        assert db is not None
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await _write_changes(db, [change for change, _future in batch])
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        except Exception as exc:
            log.exception("metadata store write failed")
            for _change, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.transactions += 1
        for _change, future in batch:
            if not future.done():
                future.set_result(None)


async def read_changes(data_dir: str) -> list[Change] | None:
    """The metadata a node stored while it ran alone (None: it has no ``metadata.db``), read for
    a caller that holds the directory's lock: a node turned into a cluster's first member
    imports it (cluster.metadata_store)."""
    path = os.path.join(data_dir, DB_NAME)
    if not os.path.exists(path):
        return None
    db = await open_database(path, "metadata store", MIGRATIONS)
    try:
        return await _stored_changes(db, path)
    finally:
        await db.close()


async def _stored_changes(db: aiosqlite.Connection, path: str) -> list[Change]:
    """Every stored change, in an order that applies cleanly; bindings whose source or
    destination is not stored are left out."""
    try:
        async with db.execute("SELECT kind, vhost, name, record FROM metadata ORDER BY seq") as cursor:
            rows = await cursor.fetchall()
        changes = [Change(kind, "put", vhost, name, loads(record)) for kind, vhost, name, record in rows]
    except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"cannot read metadata store {path}: {exc}") from exc
    vhosts = {change.name for change in changes if change.kind == "vhost"}
    exchanges = {(c.vhost, c.name) for c in changes if c.kind == "exchange"}
    queues = {(c.vhost, c.name) for c in changes if c.kind == "queue"}
    kept = []
    for change in changes:
        if change.vhost is not None and change.kind != "vhost" and change.vhost not in vhosts:
            continue
        if change.kind == "binding" and not _binding_ends_exist(change, exchanges, queues):
            continue
        kept.append(change)
    kept.sort(key=lambda change: _rank(change.kind))  # stable: oldest first within a kind
    return kept


_DELETE_ROW = "DELETE FROM metadata WHERE kind = ? AND vhost IS ? AND name = ?"


async def _write_changes(db: aiosqlite.Connection, changes: list[Change]) -> None:
    """Write a batch in order with few statements (each one a round trip to SQLite's thread):
    a run of consecutive changes of one op is one ``executemany`` per statement."""
    start = 0
    while start < len(changes):
        op = changes[start].op
        end = start + 1
        while end < len(changes) and changes[end].op == op:
            end += 1
        await _WRITERS[op](db, changes[start:end])
        start = end


async def _write_puts(db: aiosqlite.Connection, changes: list[Change]) -> None:
    """A put replaces the row. Of a key put twice in the run only the last put stays, in its
    place, as writing them one by one would leave it."""
    last: dict[tuple[str, str | None, str], Change] = {}
    for change in changes:
        key = (change.kind, change.vhost, change.name)
        last.pop(key, None)
        last[key] = change
    rows = [(c.kind, c.vhost, c.name, dumps(c.record)) for c in last.values()]
    await db.executemany(_DELETE_ROW, list(last))
    await db.executemany("INSERT INTO metadata (kind, vhost, name, record) VALUES (?, ?, ?, ?)", rows)


async def _write_deletes(db: aiosqlite.Connection, changes: list[Change]) -> None:
    """Deletes commute, so a run of them is done statement by statement. They take along what
    the broker's deletes take in memory (Broker._apply_*_delete, core.changes._apply_*_delete)."""
    await db.executemany(_DELETE_ROW, [(c.kind, c.vhost, c.name) for c in changes])
    vhosts = [(c.name,) for c in changes if c.kind == "vhost"]
    if vhosts:
        await db.executemany("DELETE FROM metadata WHERE vhost = ?", vhosts)
    users = [(c.name,) for c in changes if c.kind == "user"]
    if users:
        await db.executemany(
            "DELETE FROM metadata WHERE kind IN ('permission', 'topic_permission', 'user_limits') AND name = ?",
            users,
        )
    ends = [(c.vhost, c.kind, c.name) for c in changes if c.kind in ("queue", "exchange")]
    if ends:
        await db.executemany(
            "DELETE FROM metadata WHERE kind = 'binding' AND vhost IS ?"
            " AND json_extract(record, '$.destination_type') = ? AND json_extract(record, '$.destination') = ?",
            ends,
        )
    sources = [(c.vhost, c.name) for c in changes if c.kind == "exchange"]
    if sources:
        await db.executemany(
            "DELETE FROM metadata WHERE kind = 'binding' AND vhost IS ? AND json_extract(record, '$.source') = ?",
            sources,
        )


async def _write_set_asides(db: aiosqlite.Connection, changes: list[Change]) -> None:
    await db.executemany(
        "INSERT INTO set_aside (kind, vhost, name, record, reason, at)"
        " SELECT kind, vhost, name, record, ?, datetime('now') FROM metadata WHERE kind = ? AND vhost IS ? AND name = ?",
        [(c.record["reason"], c.kind, c.vhost, c.name) for c in changes],
    )
    await db.executemany(_DELETE_ROW, [(c.kind, c.vhost, c.name) for c in changes])


_WRITERS = {"put": _write_puts, "delete": _write_deletes, "set_aside": _write_set_asides}


def _binding_ends_exist(
    change: Change, exchanges: set[tuple[str | None, str]], queues: set[tuple[str | None, str]]
) -> bool:
    # amq.* exchanges are never stored: every vhost has them (and clients cannot declare them).
    record = change.record
    source, destination = record.get("source", ""), record.get("destination", "")
    if record.get("destination_type") == "queue":
        destination_exists = (change.vhost, destination) in queues
    else:
        destination_exists = destination.startswith("amq.") or (change.vhost, destination) in exchanges
    return destination_exists and (source.startswith("amq.") or (change.vhost, source) in exchanges)


def _rank(kind: str) -> int:
    if kind in _FIRST:
        return _FIRST.index(kind)
    if kind in _LAST:
        return len(_FIRST) + 1 + _LAST.index(kind)
    return len(_FIRST)
