"""Persistent messages across restarts: a persistent message (delivery_mode 2) in a durable
queue is stored once however many queues it reaches, confirmed only once it is on disk, and
comes back after a stop (SIGTERM) or a crash (SIGKILL) in order, the delivered-but-unacked ones
marked redelivered; transient messages and non-durable queues never reach the store; acks,
purges and queue deletions take the rows away; confirms are group-committed."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from itertools import accumulate
from pathlib import Path

import pika
import pytest
from conftest import BrokerHandle, Node, start_broker
from helpers import drain_acked, message_count, restart_node
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from rawamqp import RawClient

from amqp_server.protocol.frame_codec import frame

PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)


def _rows(data_dir: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(data_dir / "messages.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _count(data_dir: Path, table: str) -> int:
    return _rows(data_dir, f"SELECT COUNT(*) FROM {table}")[0][0]


def _barrier(channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
    """Publish a confirmed persistent message to a durable queue: its confirm means the store
    committed everything the channel did before it (acks and deliveries included)."""
    channel.queue_declare("barrier", durable=True)
    channel.basic_publish("", "barrier", b"barrier", PERSISTENT)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_persistent_messages_survive_and_transient_do_not(tmp_path, nodes, sig):
    data_dir = tmp_path / "data"
    node = Node(data_dir, tmp_path).wait_listening()
    nodes.append(node)
    channel = node.connect().channel()
    channel.confirm_delivery()
    channel.queue_declare("durable-q", durable=True)
    channel.queue_declare("transient-q", durable=False)
    for i in range(20):
        channel.basic_publish("", "durable-q", f"p{i}".encode(), PERSISTENT)
        channel.basic_publish("", "durable-q", f"t{i}".encode(), TRANSIENT)
        channel.basic_publish("", "durable-q", f"n{i}".encode())  # no delivery mode: transient
        channel.basic_publish("", "transient-q", f"x{i}".encode(), PERSISTENT)
    # Only the persistent messages of the durable queue reached the store.
    assert _count(data_dir, "entries") == 20
    assert _count(data_dir, "messages") == 20

    node = restart_node(node, sig, data_dir, tmp_path, nodes)
    channel = node.connect().channel()
    assert drain_acked(channel, "durable-q") == [(f"p{i}", False) for i in range(20)]
    channel.queue_declare("transient-q", passive=False, durable=False)
    assert message_count(channel, "transient-q") == 0


def test_fanout_stores_a_message_once_and_the_last_ack_removes_it(tmp_path, nodes):
    data_dir = tmp_path / "data"
    node = Node(data_dir, tmp_path).wait_listening()
    nodes.append(node)
    channel = node.connect().channel()
    channel.confirm_delivery()
    channel.exchange_declare("fan", "fanout", durable=True)
    for name in ("f1", "f2", "f3"):
        channel.queue_declare(name, durable=True)
        channel.queue_bind(name, "fan")
    channel.queue_declare("f-transient", durable=False)  # a non-durable queue takes it too
    channel.queue_bind("f-transient", "fan")
    for i in range(5):
        channel.basic_publish("fan", "", f"m{i}".encode(), PERSISTENT)
    assert _count(data_dir, "messages") == 5
    assert _count(data_dir, "entries") == 15
    assert _rows(data_dir, "SELECT DISTINCT refs FROM messages") == [(3,)]

    assert len(drain_acked(channel, "f1")) == 5
    assert len(drain_acked(channel, "f2")) == 5
    _barrier(channel)
    assert _count(data_dir, "messages") == 6  # five still in f3, and the barrier
    assert _count(data_dir, "entries") == 6
    assert len(drain_acked(channel, "f3")) == 5
    drain_acked(channel, "barrier")
    _barrier(channel)
    assert _count(data_dir, "messages") == 1
    assert _rows(data_dir, "SELECT body FROM messages") == [(b"barrier",)]

    # After a crash the shared message comes back once into each queue.
    channel.basic_publish("fan", "", b"shared", PERSISTENT)
    node = restart_node(node, signal.SIGKILL, data_dir, tmp_path, nodes)
    channel = node.connect().channel()
    for name in ("f1", "f2", "f3"):
        assert drain_acked(channel, name) == [("shared", False)]
    channel.confirm_delivery()
    drain_acked(channel, "barrier")
    _barrier(channel)
    assert _count(data_dir, "messages") == 1  # only the new barrier


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_acked_gone_unacked_redelivered_order_kept(tmp_path, nodes, sig):
    data_dir = tmp_path / "data"
    node = Node(data_dir, tmp_path).wait_listening()
    nodes.append(node)
    connection = node.connect()
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("work", durable=True)
    for i in range(10):
        channel.basic_publish("", "work", f"m{i}".encode(), PERSISTENT)
    for i in range(3):  # m0-m2 acked
        method, _props, body = channel.basic_get("work")
        assert body == f"m{i}".encode()
        channel.basic_ack(method.delivery_tag)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=2)
    held = []  # m3 and m4 delivered to a consumer, never acked
    for _method, _props, body in consumer.consume("work"):
        held.append(body)
        if len(held) == 2:
            break
    assert held == [b"m3", b"m4"]
    _barrier(channel)

    node = restart_node(node, sig, data_dir, tmp_path, nodes)
    channel = node.connect().channel()
    assert drain_acked(channel, "work") == [
        ("m3", True),
        ("m4", True),
        *[(f"m{i}", False) for i in range(5, 10)],
    ]


def test_purge_and_delete_remove_rows_and_requeued_keep_their_place(tmp_path, nodes):
    data_dir = tmp_path / "data"
    node = Node(data_dir, tmp_path).wait_listening()
    nodes.append(node)
    connection = node.connect()
    channel = connection.channel()
    channel.confirm_delivery()
    channel.exchange_declare("fan2", "fanout", durable=True)
    for name in ("keep", "purged", "deleted"):
        channel.queue_declare(name, durable=True)
        channel.queue_bind(name, "fan2")
    for i in range(4):
        channel.basic_publish("fan2", "", f"m{i}".encode(), PERSISTENT)
    assert _count(data_dir, "entries") == 12
    # One message is held unacked from the queue being deleted; its row stays until settled.
    other = connection.channel()
    method, _props, body = other.basic_get("deleted")
    assert body == b"m0"
    assert channel.queue_purge("purged").method.message_count == 4
    channel.queue_delete("deleted")
    _barrier(channel)
    assert _rows(data_dir, "SELECT name FROM queues ORDER BY name") == [("barrier",), ("keep",), ("purged",)]
    assert _count(data_dir, "entries") == 5  # keep's four and the barrier
    other.basic_ack(method.delivery_tag)
    # A requeued message goes back to its place and comes back marked redelivered.
    method, _props, body = other.basic_get("keep")
    assert body == b"m0"
    other.basic_nack(method.delivery_tag, requeue=True)
    _barrier(channel)
    assert _count(data_dir, "messages") == 6  # m0-m3, two barriers

    node = restart_node(node, signal.SIGKILL, data_dir, tmp_path, nodes)
    channel = node.connect().channel()
    assert drain_acked(channel, "keep") == [("m0", True), ("m1", False), ("m2", False), ("m3", False)]
    assert drain_acked(channel, "purged") == []


def _publish_frames(routing_key: str, body: bytes, persistent: bool) -> bytes:
    method = commands.Basic.Publish(exchange="", routing_key=routing_key)
    properties = commands.Basic.Properties(delivery_mode=2 if persistent else 1)
    header = pamqp_header.ContentHeader(0, len(body), properties)
    return pamqp_frame.marshal(method, 1) + pamqp_frame.marshal(header, 1) + frame(3, 1, body)


def _confirm_run(handle: BrokerHandle, data_dir: Path, queue: str, modes: list[bool]) -> None:
    """Publish len(modes) messages (persistent where True) in confirm mode over a raw socket
    all at once, and read the confirms. Each confirm must cover only messages already stored:
    when a multiple ack confirms up to T, or a single ack a persistent T, every persistent
    message up to T is in the database. Every seq is confirmed, none nacked."""
    client = RawClient.connected(handle.port)
    client.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    client.rpc(1, commands.Queue.Declare(queue=queue, durable=True), commands.Queue.DeclareOk)
    data = b"".join(_publish_frames(queue, str(i).encode(), mode) for i, mode in enumerate(modes))
    persistent_upto = list(accumulate(modes))  # persistent messages among seqs 1..T
    sender = threading.Thread(target=client.send_raw, args=(data,))
    sender.start()
    confirmed: set[int] = set()
    try:
        while len(confirmed) < len(modes):
            received = client.next(timeout=10)
            assert isinstance(received.value, commands.Basic.Ack), received
            tag = received.value.delivery_tag
            if received.value.multiple:
                confirmed.update(range(1, tag + 1))
            else:
                assert tag not in confirmed
                confirmed.add(tag)
                if not modes[tag - 1]:
                    continue  # a transient message alone: confirmed without the disk
            assert _count(data_dir, "entries") >= persistent_upto[tag - 1]
    finally:
        sender.join()
        client.close()
    assert _count(data_dir, "entries") == persistent_upto[-1]


def test_confirms_follow_the_commit_and_are_group_committed(tmp_path, handles):
    """20k persistent publishes in confirm mode: every confirmed message is already in the
    database, and far fewer transactions than messages were needed."""
    data_dir = tmp_path / "data"
    handle = start_broker(data_dir=str(data_dir))
    handles.append(handle)
    store = handle.broker.message_store
    assert store is not None
    before = handle.call(lambda: store.transactions)
    _confirm_run(handle, data_dir, "group", [True] * 20_000)
    transactions = handle.call(lambda: store.transactions) - before
    assert 0 < transactions < 20_000 // 20


def test_confirm_multiple_never_covers_a_message_waiting_for_disk(tmp_path, handles):
    """Transient publishes are confirmed at once, persistent ones wait for the store: no
    multiple-ack (nor single one) runs ahead of the disk, and every seq is confirmed."""
    data_dir = tmp_path / "data"
    handle = start_broker(data_dir=str(data_dir))
    handles.append(handle)
    _confirm_run(handle, data_dir, "mixed", [i % 3 == 0 for i in range(6000)])


def test_no_data_dir_means_no_message_store(broker):
    assert broker.broker.message_store is None


def test_message_ttl_survives_a_restart(tmp_path, handles):
    """The stored expiry is absolute: a recovered message keeps its deadline, not a fresh TTL.

    Both kinds of TTL: the queue's x-message-ttl and a message's expiration (in a queue whose
    own TTL is far longer). The broker is down for half the TTL; after the restart each message
    is still there, and it is gone midway between its deadline and the deadline a fresh TTL from
    the restart would give (seconds of margin either way)."""
    ttl = 12.0  # seconds
    down = ttl / 2  # how long after the publishes the broker comes back
    data_dir = tmp_path / "data"
    handle = start_broker(data_dir=str(data_dir))
    handles.append(handle)
    channel = handle.connect().channel()
    channel.confirm_delivery()
    channel.queue_declare("ttl", durable=True, arguments={"x-message-ttl": int(ttl * 1000)})
    channel.queue_declare("expiration", durable=True, arguments={"x-message-ttl": 600_000})
    published = time.monotonic()  # the deadlines are at most ttl after this ...
    channel.basic_publish("", "ttl", b"a", PERSISTENT)
    channel.basic_publish(
        "", "expiration", b"b", pika.BasicProperties(delivery_mode=2, expiration=str(int(ttl * 1000)))
    )
    confirmed = time.monotonic()  # ... and at least ttl after this
    handle.stop()

    time.sleep(max(0.0, published + down - time.monotonic()))
    restarted = time.monotonic()  # a fresh TTL would run out no earlier than ttl after this
    again = start_broker(data_dir=str(data_dir))
    handles.append(again)
    channel = again.connect().channel()
    assert (message_count(channel, "ttl"), message_count(channel, "expiration")) == (1, 1)
    # still before the deadlines, or the check above proved nothing
    assert time.monotonic() < published + ttl - 1, "the restart took too long to tell"

    check = (confirmed + restarted) / 2 + ttl  # (restarted - confirmed) / 2 seconds either side
    time.sleep(max(0.0, check - time.monotonic()))
    assert (message_count(channel, "ttl"), message_count(channel, "expiration")) == (0, 0)
    assert time.monotonic() < restarted + ttl - 1, "too slow to tell an absolute deadline from a fresh TTL"
