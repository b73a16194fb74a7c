"""Bounded memory: a queue holds at most ``queue_memory_window`` ready messages in memory and
pages the rest out to the message store. These brokers use a window of 50, so backlogs of a few
thousand messages are mostly on disk: they must drain intact (bodies and properties byte-exact)
and in order, with exact message counts, across a restart for persistent ones, with length
limits, TTL, dead-lettering, purge and fanout."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pytest
from conftest import BrokerHandle, start_broker
from helpers import message_count, queue_stats, wait_until

WINDOW = 50
COUNT = 3000


@contextmanager
def _paged_broker(data_dir: Path) -> Iterator[BrokerHandle]:
    handle = start_broker(data_dir=str(data_dir), queue_memory_window=WINDOW)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def paged(tmp_path: Path) -> Iterator[BrokerHandle]:
    with _paged_broker(tmp_path) as handle:
        yield handle


def _props(i: int, persistent: bool) -> pika.BasicProperties:
    return pika.BasicProperties(
        delivery_mode=2 if persistent else 1,
        content_type="application/octet-stream",
        message_id=f"m{i}",
        headers={"i": i, "tag": "x" * (i % 7)},
    )


def _body(i: int) -> bytes:
    return i.to_bytes(4, "big") + bytes(range(i % 200))


def _publish(channel: Any, queue: str, numbers: range, persistent: Any, exchange: str = "") -> None:
    for i in numbers:
        channel.basic_publish(exchange, queue, _body(i), _props(i, persistent(i) if callable(persistent) else persistent))


def _drain(channel: Any, queue: str, expected: int) -> list[int]:
    """Consume ``expected`` messages (auto-ack), checking each body and its properties."""
    got: list[int] = []
    for method, props, body in channel.consume(queue, auto_ack=True, inactivity_timeout=5):
        if method is None:
            break
        i = int.from_bytes(body[:4], "big")
        assert body == _body(i)
        assert props.message_id == f"m{i}"
        assert props.content_type == "application/octet-stream"
        assert props.headers["i"] == i  # dead-lettered ones carry x-death and friends too
        assert props.headers["tag"] in ("x" * (i % 7), ("x" * (i % 7)).encode())
        got.append(i)
        if len(got) == expected:
            break
    channel.cancel()
    return got


def _in_memory(handle: BrokerHandle, name: str) -> tuple[int, int]:
    """(ready entries held in memory, paged entries) of a queue, read on the broker's loop."""
    stats = queue_stats(handle, name)
    return stats["messages_ready_ram"], stats["messages_paged_out"]


def _rows(data_dir: Path, sql: str) -> int:
    db = sqlite3.connect(data_dir / "messages.db")
    try:
        return db.execute(sql).fetchone()[0]
    finally:
        db.close()


def test_transient_backlog_drains_in_order(paged: BrokerHandle) -> None:
    connection = paged.connect()
    channel = connection.channel()
    channel.queue_declare("durable-q", durable=True)
    channel.queue_declare("plain-q")
    _publish(channel, "durable-q", range(COUNT), False)
    _publish(channel, "plain-q", range(1500), lambda i: i % 3 == 0)  # persistent in a non-durable queue
    assert message_count(channel, "durable-q") == COUNT
    assert message_count(channel, "plain-q") == 1500
    held, tail = _in_memory(paged, "durable-q")
    assert held <= WINDOW and held + tail == COUNT
    stats = queue_stats(paged, "durable-q")
    assert stats["messages_ready"] == COUNT
    assert stats["message_bytes_ready"] == sum(len(_body(i)) for i in range(COUNT))
    assert _drain(channel, "durable-q", COUNT) == list(range(COUNT))
    assert _drain(channel, "plain-q", 1500) == list(range(1500))
    assert message_count(channel, "durable-q") == 0
    assert _in_memory(paged, "plain-q") == (0, 0)
    # Publishing again after the tail is gone: memory first, then paged again, in order.
    _publish(channel, "plain-q", range(1500, 1700), False)
    assert _drain(channel, "plain-q", 200) == list(range(1500, 1700))
    connection.close()


def test_basic_get_through_paged_tail(paged: BrokerHandle) -> None:
    """basic.get right after publishing: the head empties before the background read is
    back, so entries come from disk (or the batch still being written) at once."""
    connection = paged.connect()
    channel = connection.channel()
    channel.queue_declare("get-q")
    for round_ in range(3):
        base = round_ * 500
        _publish(channel, "get-q", range(base, base + 500), False)
        got = []
        while True:
            method, props, body = channel.basic_get("get-q", auto_ack=True)
            if method is None:
                break
            assert method.message_count == 500 - len(got) - 1
            assert props.message_id == f"m{int.from_bytes(body[:4], 'big')}"
            got.append(int.from_bytes(body[:4], "big"))
        assert got == list(range(base, base + 500))
    connection.close()


def test_persistent_backlog_survives_restart(tmp_path: Path) -> None:
    with _paged_broker(tmp_path) as handle:
        connection = handle.connect()
        channel = connection.channel()
        channel.queue_declare("dq", durable=True)
        channel.queue_declare("nq", durable=False)
        # Even numbers persistent, odd transient, interleaved in one durable queue.
        _publish(channel, "dq", range(COUNT), lambda i: i % 2 == 0)
        _publish(channel, "nq", range(500), True)
        assert message_count(channel, "dq") == COUNT
        # A few taken and acked from the head first: they must not come back.
        for _ in range(10):
            method, _props, _body = channel.basic_get("dq")
            channel.basic_ack(method.delivery_tag)
        assert message_count(channel, "dq") == COUNT - 10
        connection.close()
    with _paged_broker(tmp_path) as handle:
        expected = [i for i in range(10, COUNT) if i % 2 == 0]
        held, tail = _in_memory(handle, "dq")
        assert held == WINDOW and held + tail == len(expected)  # only the head was loaded
        connection = handle.connect()
        channel = connection.channel()
        assert message_count(channel, "dq") == len(expected)
        assert "nq" not in handle.broker.vhosts["/"].queues
        assert _drain(channel, "dq", len(expected)) == expected
        assert message_count(channel, "dq") == 0
        connection.close()
    # Everything consumed: no message rows are left behind (refcounts exact).
    assert _rows(tmp_path, "SELECT COUNT(*) FROM entries") == 0
    assert _rows(tmp_path, "SELECT COUNT(*) FROM tentries") == 0
    assert _rows(tmp_path, "SELECT COUNT(*) FROM messages") == 0


def test_restart_drops_transient_tail(tmp_path: Path) -> None:
    with _paged_broker(tmp_path) as handle:
        connection = handle.connect()
        channel = connection.channel()
        channel.queue_declare("tq", durable=True)
        _publish(channel, "tq", range(1000), False)
        assert message_count(channel, "tq") == 1000
        connection.close()
    assert _rows(tmp_path, "SELECT COUNT(*) FROM tentries") == 1000 - WINDOW
    with _paged_broker(tmp_path) as handle:
        connection = handle.connect()
        channel = connection.channel()
        assert message_count(channel, "tq") == 0
        connection.close()
    assert _rows(tmp_path, "SELECT COUNT(*) FROM tentries") == 0
    assert _rows(tmp_path, "SELECT COUNT(*) FROM messages") == 0


def test_length_limit_with_paged_tail(paged: BrokerHandle) -> None:
    connection = paged.connect()
    channel = connection.channel()
    channel.queue_declare("dlx-target")
    channel.queue_declare(
        "limited", arguments={"x-max-length": 1000, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlx-target"}
    )
    _publish(channel, "limited", range(COUNT), False)
    assert message_count(channel, "limited") == 1000
    wait_until(None, lambda: message_count(channel, "dlx-target") == COUNT - 1000, limit=5.0)
    assert _drain(channel, "limited", 1000) == list(range(COUNT - 1000, COUNT))
    assert _drain(channel, "dlx-target", COUNT - 1000) == list(range(COUNT - 1000))
    # reject-publish counts the paged tail too.
    channel.confirm_delivery()
    channel.queue_declare("rejecting", arguments={"x-max-length": 300, "x-overflow": "reject-publish"})
    accepted = 0
    for i in range(400):
        try:
            channel.basic_publish("", "rejecting", _body(i), _props(i, False))
            accepted += 1
        except pika.exceptions.NackError:
            pass
    assert accepted == 300
    assert message_count(channel, "rejecting") == 300
    assert _drain(channel, "rejecting", 300) == list(range(300))
    connection.close()


def test_ttl_with_paged_tail(paged: BrokerHandle) -> None:
    connection = paged.connect()
    channel = connection.channel()
    channel.queue_declare("expired")
    channel.queue_declare(
        "ttl-q",
        arguments={"x-message-ttl": 300, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "expired"},
    )
    _publish(channel, "ttl-q", range(2000), False)
    # Everything expires, the paged tail included, dead-lettered in order.
    wait_until(None, lambda: message_count(channel, "ttl-q") == 0, limit=5.0)
    wait_until(None, lambda: message_count(channel, "expired") == 2000, limit=5.0)
    assert _drain(channel, "expired", 2000) == list(range(2000))
    connection.close()


def test_fanout_to_two_paged_queues(paged: BrokerHandle, tmp_path: Path) -> None:
    connection = paged.connect()
    channel = connection.channel()
    channel.exchange_declare("fan", "fanout", durable=True)
    for name in ("fan-a", "fan-b"):
        channel.queue_declare(name, durable=True)
        channel.queue_bind(name, "fan")
    _publish(channel, "", range(COUNT), lambda i: i % 4 != 0, exchange="fan")
    assert message_count(channel, "fan-a") == COUNT
    assert message_count(channel, "fan-b") == COUNT
    assert _drain(channel, "fan-a", COUNT) == list(range(COUNT))
    # Half of b consumed with acks, the rest purged: no rows may be left.
    got = []
    for method, _props, body in channel.consume("fan-b", inactivity_timeout=5):
        got.append(int.from_bytes(body[:4], "big"))
        channel.basic_ack(method.delivery_tag)
        if len(got) == COUNT // 2:
            break
    channel.cancel()
    assert got == list(range(COUNT // 2))
    assert channel.queue_purge("fan-b").method.message_count == COUNT - COUNT // 2
    assert message_count(channel, "fan-b") == 0
    channel.confirm_delivery()
    channel.queue_declare("fan-barrier", durable=True)
    channel.basic_publish("", "fan-barrier", b"x", pika.BasicProperties(delivery_mode=2))
    wait_until(None, lambda: _rows(tmp_path, "SELECT COUNT(*) FROM messages") == 1, limit=5.0)
    assert _rows(tmp_path, "SELECT COUNT(*) FROM entries") == 1
    assert _rows(tmp_path, "SELECT COUNT(*) FROM tentries") == 0
    connection.close()


def test_delete_queue_with_paged_tail(paged: BrokerHandle, tmp_path: Path) -> None:
    connection = paged.connect()
    channel = connection.channel()
    channel.queue_declare("del-q", durable=True)
    _publish(channel, "del-q", range(1000), lambda i: i % 2 == 0)
    channel.confirm_delivery()
    assert channel.queue_delete("del-q").method.message_count == 1000
    channel.queue_declare("del-barrier", durable=True)
    channel.basic_publish("", "del-barrier", b"x", pika.BasicProperties(delivery_mode=2))
    wait_until(None, lambda: _rows(tmp_path, "SELECT COUNT(*) FROM messages") == 1, limit=5.0)
    assert _rows(tmp_path, "SELECT COUNT(*) FROM tentries") == 0
    connection.close()


def test_priority_queue_does_not_page(paged: BrokerHandle) -> None:
    connection = paged.connect()
    channel = connection.channel()
    channel.queue_declare("prio-q", arguments={"x-max-priority": 5})
    for i in range(200):
        props = _props(i, False)
        props.priority = i % 3
        channel.basic_publish("", "prio-q", _body(i), props)
    assert message_count(channel, "prio-q") == 200
    assert _in_memory(paged, "prio-q") == (200, 0)
    got = _drain(channel, "prio-q", 200)
    assert got == sorted(range(200), key=lambda i: (-(i % 3), i))
    connection.close()


def test_unacked_paged_messages_come_back_redelivered(tmp_path: Path) -> None:
    """Delivered but unacked when the broker stopped: after the restart all of them are
    redelivered, those beyond the memory window (read back from disk later) too."""
    with _paged_broker(tmp_path) as handle:
        connection = handle.connect()
        channel = connection.channel()
        channel.queue_declare("unacked-q", durable=True)
        _publish(channel, "unacked-q", range(300), True)
        channel.basic_qos(prefetch_count=0)
        got = []
        for _method, _props, body in channel.consume("unacked-q", inactivity_timeout=5):
            got.append(int.from_bytes(body[:4], "big"))
            if len(got) == 200:
                break
        assert got == list(range(200))
        wait_until(None, lambda: message_count(channel, "unacked-q") == 0, limit=5.0)  # all 300 handed to the consumer
    with _paged_broker(tmp_path) as handle:
        connection = handle.connect()
        channel = connection.channel()
        assert message_count(channel, "unacked-q") == 300
        flags = []
        for method, _props, body in channel.consume("unacked-q", auto_ack=True, inactivity_timeout=5):
            flags.append((int.from_bytes(body[:4], "big"), method.redelivered))
            if len(flags) == 300:
                break
        assert flags == [(i, True) for i in range(300)]
        connection.close()


def test_publishers_paused_while_the_writer_catches_up(paged: BrokerHandle) -> None:
    """Paged messages waiting for the writer past the congestion mark pause the publishing
    connection (reading stops, no connection.blocked); nothing is lost or reordered."""
    paged.call(lambda: setattr(paged.broker.message_store, "congestion_high", 20))
    connection = paged.connect()
    channel = connection.channel()
    channel.queue_declare("flow-q")
    _publish(channel, "flow-q", range(COUNT), False)
    assert message_count(channel, "flow-q") == COUNT
    assert paged.call(lambda: paged.broker.message_store.congestions) > 0
    wait_until(None, lambda: paged.call(lambda: paged.broker.message_store.congested) is False, limit=5.0)
    assert _drain(channel, "flow-q", COUNT) == list(range(COUNT))
    connection.close()


def test_store_of_schema_2_is_migrated(tmp_path: Path) -> None:
    """Schema 2 kept paged transient entries as references to ``messages`` rows; schema 3 holds
    them inline. A version-2 store opens: persistent messages come back, the old transient rows
    (dead at a restart anyway) and the message rows only they referred to are gone."""
    with _paged_broker(tmp_path) as handle:
        connection = handle.connect()
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("mq", durable=True)
        _publish(channel, "mq", range(5), True)
        connection.close()
    db = sqlite3.connect(tmp_path / "messages.db")
    try:
        db.execute("DROP TABLE tentries")
        db.execute(
            "CREATE TABLE tentries (qid INTEGER NOT NULL, seq INTEGER NOT NULL, msg_id INTEGER NOT NULL,"
            " expires REAL, PRIMARY KEY (qid, seq)) WITHOUT ROWID"
        )
        db.execute("INSERT INTO messages VALUES (9999, 1, x'0000', x'003c00000000000000000000', x'')")
        db.execute("INSERT INTO tentries VALUES (1, 1000, 9999, NULL)")
        db.execute("UPDATE schema_version SET version = 2")
        db.commit()
    finally:
        db.close()
    with _paged_broker(tmp_path) as handle:
        connection = handle.connect()
        channel = connection.channel()
        assert _drain(channel, "mq", 5) == list(range(5))
        connection.close()
    assert _rows(tmp_path, "SELECT version FROM schema_version") == 3
    assert _rows(tmp_path, "SELECT COUNT(*) FROM messages") == 0
    assert _rows(tmp_path, "SELECT COUNT(*) FROM pragma_table_info('tentries') WHERE name = 'body'") == 1


def test_transient_paging_alone_needs_no_fsync(paged: BrokerHandle) -> None:
    """Batches that only page transient messages out and back in are committed without an
    fsync (their table is emptied at boot); the first durable write is fsynced again."""
    store = paged.broker.message_store
    connection = paged.connect()
    channel = connection.channel()
    channel.queue_declare("transient-paging")
    before = paged.call(lambda: (store.transactions, store.synced))
    _publish(channel, "transient-paging", range(COUNT), False)
    assert _drain(channel, "transient-paging", COUNT) == list(range(COUNT))
    transactions, synced = paged.call(lambda: (store.transactions, store.synced))
    assert transactions > before[0] and synced == before[1]
    channel.queue_declare("durable-paging", durable=True)
    _publish(channel, "durable-paging", range(3), True)
    wait_until(None, lambda: paged.call(lambda: store.synced) > synced, limit=5.0)
    connection.close()
