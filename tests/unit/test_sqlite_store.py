"""The SQLite metadata store on its own: lossless records, put/delete and cascades, boot order,
group commit, the data-directory lock, corruption and schema versions."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amqp_server.metadata.sqlite import (
    SCHEMA_VERSION,
    SqliteStore,
    StoreError,
    dumps,
    encode_value,
    loads,
)
from amqp_server.metadata.store import Change


def _binding(vhost: str, source: str, kind: str, destination: str, key: str = "") -> Change:
    record = {"source": source, "destination_type": kind, "destination": destination, "routing_key": key,
              "arguments": {}}  # fmt: skip
    return Change("binding", "put", vhost, f"{source}>{kind}:{destination}/{key}", record)


def _rows(path: Path) -> list[tuple[str, str | None, str]]:
    with sqlite3.connect(path / "metadata.db") as db:
        return sorted(db.execute("SELECT kind, vhost, name FROM metadata"), key=repr)


# -- encoding -------------------------------------------------------------------------------


def test_record_encoding_keeps_every_field_type():
    record: dict[str, Any] = {
        "longstr": "text",
        "bytes": b"\x00\xff raw",
        "binary": bytearray(b"\x01\x02"),
        "decimal": Decimal("5.00"),
        "decimal-exp": Decimal("1E+2"),
        "utc": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC),
        "naive": datetime.datetime(1999, 12, 31, 23, 59, 59, 123456),
        "struct": time.gmtime(0),
        "tuple": (1, "a", b"b"),
        "array": [1, 2.5, None, True, [b"x"]],
        "nested": {"$t": "looks like a tag", "inner": {"k": Decimal("0.1")}},
        "int-keys": {1: "one"},
        "big": 2**70,
        "flag": False,
        "inf": float("inf"),
        "void": None,
    }
    back = loads(dumps(record))
    assert back == record
    for key, value in record.items():
        assert type(back[key]) is type(value), key
    assert type(back["array"][4][0]) is bytes
    assert back["decimal"].as_tuple() == Decimal("5.00").as_tuple()  # scale kept: 5.00, not 5
    assert back["utc"].tzinfo == datetime.UTC and back["naive"].tzinfo is None
    assert back["flag"] is False and back["array"][3] is True


def test_unknown_type_is_refused_not_mangled():
    with pytest.raises(TypeError, match="cannot store a value of type set"):
        encode_value({"x": {1, 2}})


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
    | st.binary().map(bytearray) | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes(timezones=st.none() | st.just(datetime.UTC)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    | st.lists(inner, max_size=3).map(tuple),
    max_leaves=12,
)  # fmt: skip


@given(_values)
def test_encoding_round_trips(value):
    back = loads(dumps({"v": value}))["v"]
    assert back == value
    assert repr(back) == repr(value)  # same types all the way down (bytes vs bytearray, tuple vs list)


# -- put, delete, load --------------------------------------------------------------------------


async def test_put_replaces_delete_removes_and_restart_keeps(tmp_path):
    store = SqliteStore(tmp_path)
    assert await store.load() == []
    await store.commit(Change("vhost", "put", None, "/", {"description": "one"}))
    await store.commit(Change("vhost", "put", None, "/", {"description": "two"}))
    await store.commit(Change("user", "put", None, "alice", {"password_hash": "x", "tags": []}))
    await store.commit(Change("user", "delete", None, "alice"))
    await store.commit(Change("queue", "put", "/", "transient", {"durable": False}, persisted=False))
    await store.close()
    store = SqliteStore(tmp_path)
    assert await store.load() == [Change("vhost", "put", None, "/", {"description": "two"})]
    await store.close()


async def test_load_order_applies_cleanly(tmp_path):
    store = SqliteStore(tmp_path)
    changes = [
        _binding("v", "x", "queue", "q"),
        Change("queue", "put", "v", "q", {"durable": True}),
        Change("exchange", "put", "v", "x", {"type": "direct"}),
        Change("policy", "put", "v", "p", {"pattern": ".*"}),
        Change("permission", "put", "v", "alice", {}),
        Change("user", "put", None, "alice", {}),
        Change("vhost", "put", None, "v", {}),
    ]
    for change in changes:
        await store.commit(change)
    loaded = await store.load()
    assert [c.kind for c in loaded] == [
        "vhost",
        "user",
        "permission",
        "policy",
        "exchange",
        "queue",
        "binding",
    ]
    assert sorted(loaded, key=repr) == sorted(changes, key=repr)
    await store.close()


async def test_deletes_cascade_like_the_broker(tmp_path):
    store = SqliteStore(tmp_path)
    for change in [
        Change("vhost", "put", None, "v", {}),
        Change("vhost", "put", None, "w", {}),
        Change("user", "put", None, "alice", {}),
        Change("permission", "put", "v", "alice", {}),
        Change("permission", "put", "w", "alice", {}),
        Change("topic_permission", "put", "w", "alice", {}),
        Change("user_limits", "put", None, "alice", {"limits": {"max-channels": 1}}),
        Change("policy", "put", "w", "p", {}),
        Change("vhost_limits", "put", "w", "w", {}),
        Change("exchange", "put", "v", "x", {}),
        Change("exchange", "put", "v", "y", {}),
        Change("queue", "put", "v", "q", {}),
        Change("queue", "put", "v", "r", {}),
        _binding("v", "x", "queue", "q"),
        _binding("v", "x", "queue", "r"),
        _binding("v", "amq.direct", "queue", "q", "k"),
        _binding("v", "y", "exchange", "x"),
        _binding("v", "x", "exchange", "y"),
        Change("queue", "put", "w", "q", {}),
        _binding("w", "amq.fanout", "queue", "q"),
    ]:
        await store.commit(change)
    await store.commit(Change("queue", "delete", "v", "q"))
    assert [row for row in _rows(tmp_path) if row[0] == "binding"] == [
        ("binding", "v", "x>exchange:y/"),
        ("binding", "v", "x>queue:r/"),
        ("binding", "v", "y>exchange:x/"),
        ("binding", "w", "amq.fanout>queue:q/"),
    ]
    await store.commit(Change("exchange", "delete", "v", "x"))
    assert [row for row in _rows(tmp_path) if row[0] == "binding"] == [
        ("binding", "w", "amq.fanout>queue:q/")
    ]
    await store.commit(Change("user", "delete", None, "alice"))
    assert [row for row in _rows(tmp_path) if "permission" in row[0] or row[0] == "user_limits"] == []
    await store.commit(Change("vhost", "delete", None, "w"))
    assert _rows(tmp_path) == [
        ("exchange", "v", "y"),
        ("queue", "v", "r"),
        ("vhost", None, "v"),
    ]
    await store.close()


async def test_load_leaves_out_orphans(tmp_path):
    """Rows whose vhost or binding ends are not stored (written by an older broker, say) are
    not brought back; bindings from or to the amq.* exchanges every vhost has are."""
    store = SqliteStore(tmp_path)
    for change in [
        Change("vhost", "put", None, "v", {}),
        Change("queue", "put", "v", "q", {}),
        Change("queue", "put", "gone", "q", {}),
        _binding("v", "amq.topic", "queue", "q", "a.#"),
        _binding("v", "missing", "queue", "q"),
        _binding("v", "amq.topic", "queue", "missing"),
        _binding("v", "amq.topic", "exchange", "amq.direct"),
    ]:
        await store.commit(change)
    loaded = await store.load()
    assert [(c.kind, c.vhost, c.name) for c in loaded] == [
        ("vhost", None, "v"),
        ("queue", "v", "q"),
        ("binding", "v", "amq.topic>queue:q/a.#"),
        ("binding", "v", "amq.topic>exchange:amq.direct/"),
    ]
    await store.close()


async def test_group_commit_shares_transactions(tmp_path):
    store = SqliteStore(tmp_path)
    await store.load()
    await asyncio.gather(*(store.commit(Change("queue", "put", "/", f"q{i}", {"i": i})) for i in range(200)))
    assert store.transactions <= 5, store.transactions  # one batch per loop tick, not one per change
    assert len(_rows(tmp_path)) == 200
    await store.close()


async def test_commit_is_on_disk_before_close(tmp_path):
    store = SqliteStore(tmp_path)
    await store.commit(Change("vhost", "put", None, "v", {"tags": [b"raw"]}))
    with sqlite3.connect(tmp_path / "metadata.db") as db:  # another reader sees it: committed
        assert db.execute("SELECT record FROM metadata").fetchall() == [(dumps({"tags": [b"raw"]}),)]
    await store.close()


# -- lock, corruption, versions -----------------------------------------------------------------


async def test_second_store_on_the_directory_is_refused(tmp_path):
    first = SqliteStore(tmp_path / "data")
    await first.load()
    second = SqliteStore(tmp_path / "data")
    with pytest.raises(StoreError) as caught:
        await second.load()
    assert str(caught.value) == (
        f"data directory {tmp_path / 'data'} is in use by another broker process "
        f"(lock {tmp_path / 'data' / '.lock'} is held)"
    )
    await first.close()
    assert await second.load() == []  # the lock goes with the first store
    await second.close()


async def test_garbage_file_is_refused(tmp_path):
    (tmp_path / "metadata.db").write_bytes(b"this is not a database, " * 200)
    store = SqliteStore(tmp_path)
    with pytest.raises(StoreError, match=r"cannot read metadata store .*metadata.db: file is not a database"):
        await store.load()
    # Released: the broker is not left holding the directory (a second store gets past the lock
    # to the same damaged file, instead of "in use by another broker process").
    with pytest.raises(StoreError, match=r"cannot read metadata store .*metadata.db: file is not a database"):
        await SqliteStore(tmp_path).load()


async def test_damaged_pages_are_refused(tmp_path):
    store = SqliteStore(tmp_path)
    for i in range(300):
        await store.commit(Change("queue", "put", "/", f"queue-{i}", {"arguments": {"x": "y" * 50}}))
    await store.close()
    with sqlite3.connect(tmp_path / "metadata.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray((tmp_path / "metadata.db").read_bytes())
    data[3 * page_size : 6 * page_size] = b"\xa5" * (3 * page_size)
    (tmp_path / "metadata.db").write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"metadata.db"):
        await SqliteStore(tmp_path).load()


async def test_newer_schema_is_refused(tmp_path):
    store = SqliteStore(tmp_path)
    await store.load()
    await store.close()
    with sqlite3.connect(tmp_path / "metadata.db") as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError) as caught:
        await SqliteStore(tmp_path).load()
    assert str(caught.value) == (
        f"{tmp_path / 'metadata.db'} has schema version {SCHEMA_VERSION + 1}, newer than this broker's "
        f"{SCHEMA_VERSION}: it was written by a newer version"
    )


async def test_version_0_database_is_migrated(tmp_path):
    """A database that got as far as its version table (version 0) is brought up to date."""
    with sqlite3.connect(tmp_path / "metadata.db") as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (0)")
    store = SqliteStore(tmp_path)
    assert await store.load() == []
    await store.commit(Change("vhost", "put", None, "v", {}))
    await store.close()
    with sqlite3.connect(tmp_path / "metadata.db") as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert _rows(tmp_path) == [("vhost", None, "v")]


async def test_foreign_database_is_refused(tmp_path):
    with sqlite3.connect(tmp_path / "metadata.db") as db:
        db.execute("CREATE TABLE something_else (x)")
    with pytest.raises(
        StoreError, match=r"is not a metadata store of this broker \(tables \['something_else'\]\)"
    ):
        await SqliteStore(tmp_path).load()
