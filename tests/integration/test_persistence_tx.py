"""Transactions on a broker with a data directory: as in RabbitMQ, tx.commit-ok goes out only
once the message store has committed what the transaction changed (its persistent publishes to
durable queues and its acks of persistent messages), so a crash (SIGKILL) right after
tx.commit-ok loses nothing committed; what was rolled back or never committed is not stored,
and acks of a transaction never committed do not count after a restart."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pika
from conftest import Node, start_broker
from helpers import drain_acked, message_count, restart_node
from pamqp import commands
from rawamqp import RawClient
from test_confirms_tx import names

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def _stored_bodies(data_dir: Path) -> list[str]:
    """Bodies of the stored entries, in queue order, as a crash right now would leave them
    (SQLite in WAL mode: a reader sees exactly the committed transactions)."""
    db = sqlite3.connect(data_dir / "messages.db")
    try:
        rows = db.execute(
            "SELECT m.body FROM entries e JOIN messages m ON m.id = e.msg_id ORDER BY e.qid, e.seq"
        ).fetchall()
    finally:
        db.close()
    return [row[0].decode() for row in rows]


def test_committed_publishes_survive_a_kill_right_after_commit_ok(tmp_path, nodes):
    data_dir = tmp_path / "data"
    node = Node(data_dir, tmp_path).wait_listening()
    nodes.append(node)
    channel = node.connect().channel()
    channel.queue_declare("txq", durable=True)
    channel.tx_select()
    for i in range(3):
        channel.basic_publish("", "txq", f"r{i}".encode(), PERSISTENT)
    channel.tx_rollback()
    for i in range(20):
        channel.basic_publish("", "txq", f"c{i}".encode(), PERSISTENT)
    channel.tx_commit()
    # tx.commit-ok came after the store committed every message of the transaction.
    assert _stored_bodies(data_dir) == [f"c{i}" for i in range(20)]
    for i in range(3):
        channel.basic_publish("", "txq", f"u{i}".encode(), PERSISTENT)  # never committed
    channel.basic_qos(prefetch_count=0)  # the broker has read the publishes before it
    node = restart_node(node, signal.SIGKILL, data_dir, tmp_path, nodes)

    channel = node.connect().channel()
    assert drain_acked(channel, "txq") == [(f"c{i}", False) for i in range(20)]


def test_committed_acks_stay_acked_after_a_kill_and_uncommitted_ones_do_not(tmp_path, nodes):
    data_dir = tmp_path / "data"
    node = Node(data_dir, tmp_path).wait_listening()
    nodes.append(node)
    connection = node.connect()
    setup = connection.channel()
    setup.confirm_delivery()
    setup.queue_declare("txq", durable=True)
    for i in range(6):
        setup.basic_publish("", "txq", f"m{i}".encode(), PERSISTENT)  # confirmed: on disk

    channel = connection.channel()
    channel.tx_select()
    tags = []
    for _ in range(6):
        method, _props, _body = channel.basic_get("txq")
        tags.append(method.delivery_tag)
    channel.basic_ack(tags[0])
    channel.basic_ack(tags[2], multiple=True)  # m1, m2
    channel.basic_reject(tags[3], requeue=False)  # a discard is a removal too
    channel.tx_commit()
    # tx.commit-ok came after the store removed the settled messages.
    assert _stored_bodies(data_dir) == ["m4", "m5"]
    channel.basic_ack(tags[4])  # never committed
    channel.basic_qos(prefetch_count=0)
    assert _stored_bodies(data_dir) == ["m4", "m5"]
    node = restart_node(node, signal.SIGKILL, data_dir, tmp_path, nodes)

    channel = node.connect().channel()
    # Both were handed out before the crash, so they come back flagged redelivered.
    assert drain_acked(channel, "txq") == [("m4", True), ("m5", True)]


def test_commit_ok_precedes_redeliveries_and_later_frames_wait(tmp_path, handles):
    data_dir = tmp_path / "data"
    handle = start_broker(data_dir=str(data_dir))
    handles.append(handle)
    raw = RawClient.connected(handle.port)
    raw.rpc(1, commands.Queue.Declare(queue="txq", durable=True), commands.Queue.DeclareOk)
    persistent = commands.Basic.Properties(delivery_mode=2)
    for body in (b"a", b"b", b"c"):
        raw.publish(1, "", "txq", body, persistent)
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    raw.send(1, commands.Basic.Consume(queue="txq", consumer_tag="c"))
    assert names([raw.next().value for _ in range(10)]) == [
        "ConsumeOk",
        "Deliver(a)",
        "Deliver(b)",
        "Deliver(c)",
    ]
    raw.send(1, commands.Basic.Ack(delivery_tag=1))
    raw.send(1, commands.Basic.Nack(delivery_tag=3, multiple=True, requeue=True))
    raw.send(1, commands.Tx.Commit())
    raw.send(1, commands.Basic.Qos(prefetch_count=0))  # waits behind the commit
    first = raw.next().value
    assert isinstance(first, commands.Tx.CommitOk)
    assert _stored_bodies(data_dir) == ["b", "c"]  # the ack of a was on disk before commit-ok
    rest = [raw.next().value for _ in range(7)]
    assert sorted(names(rest)) == ["Deliver(b)", "Deliver(c)", "QosOk"]
    assert all(frame.redelivered for frame in rest if isinstance(frame, commands.Basic.Deliver))
    raw.close()


def test_a_transient_transaction_commits_without_the_store(tmp_path, handles):
    data_dir = tmp_path / "data"
    handle = start_broker(data_dir=str(data_dir))
    handles.append(handle)
    connection = handle.connect()
    channel = connection.channel()
    channel.queue_declare("durable-q", durable=True)
    channel.queue_declare("transient-q", durable=False)
    barrier = connection.channel()
    barrier.confirm_delivery()
    barrier.queue_declare("barrier", durable=True)
    barrier.basic_publish("", "barrier", b"b", PERSISTENT)  # confirmed: the store is idle
    transactions = handle.call(lambda: handle.broker.message_store.transactions)
    channel.tx_select()
    channel.basic_publish("", "durable-q", b"t", pika.BasicProperties(delivery_mode=1))
    channel.basic_publish("", "transient-q", b"p", PERSISTENT)
    channel.tx_commit()
    assert handle.call(lambda: handle.broker.message_store.transactions) == transactions
    assert _stored_bodies(data_dir) == ["b"]
    assert message_count(channel, "durable-q") == 1
    assert message_count(channel, "transient-q") == 1
    connection.close()
