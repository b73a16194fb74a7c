"""Queues across nodes (docs/clustering.md, "Queues across nodes"): three broker processes on
loopback; a queue lives on the node that declared it and pika clients of every node publish
to it, consume from it (prefetch, acks, requeues, redelivery), get from it and purge it; when
its home node is killed the other nodes answer as RabbitMQ does and the durable queue comes
back with its messages when the node returns; every node killed in turn under metadata churn
loses no answered change.

The tests run in order on one cluster (module fixture); the last two kill and restart nodes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
import pytest
import requests
from conftest import Node, free_port
from helpers import wait_until
from pika.exceptions import ChannelClosedByBroker

NAMES = [f"rabbit-{i}@localhost" for i in range(3)]


class Member:
    def __init__(self, index: int, base: Path, ports: list[int], cookie: Path) -> None:
        self.index = index
        self.data_dir = base / f"node{index}"
        self.base = base
        config = base / f"node{index}.conf"
        config.write_text(
            "".join(
                f"cluster_formation.classic_config.nodes.{n} = {NAMES[j]}:{ports[j]}\n"
                for n, j in enumerate(j for j in range(3) if j != index)
            )
        )
        self.args = ["--node-name", NAMES[index], "--cluster-port", str(ports[index]), "--cookie-file", str(cookie),
                     "--config", str(config), "--log-level", "warning"]  # fmt: skip
        self.amqp_port = free_port()
        self.management_port = free_port()
        self.args += ["--management-port", str(self.management_port)]  # (the last one given counts)
        self.process: Node | None = None

    def start(self) -> Member:
        self.process = Node(self.data_dir, self.base, "--port", str(self.amqp_port), "--host", "127.0.0.1", *self.args,
                            port=self.amqp_port)  # fmt: skip
        return self

    def connect(self) -> pika.BlockingConnection:
        assert self.process is not None
        return self.process.connect()


@contextmanager
def three_members(base: Path) -> Iterator[list[Member]]:
    """Three clustered broker processes under ``base``, listening; killed on the way out."""
    cookie = base / "cookie"
    cookie.write_text(f"{base.name} cookie\n")
    ports = [free_port() for _ in range(3)]
    nodes = [Member(i, base, ports, cookie).start() for i in range(3)]
    try:
        for node in nodes:
            assert node.process is not None
            node.process.wait_listening(30)
        yield nodes
    finally:
        for node in nodes:
            if node.process is not None and node.process.process.returncode is None:
                node.process.kill()


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Member]]:
    with three_members(tmp_path_factory.mktemp("cross")) as nodes:
        yield nodes


def declare_when_reachable(node: Member, name: str) -> pika.frame.Method:
    """A passive declare on ``node``, retried until the queue's metadata and its home node's
    counters have reached it (metadata commits before it is applied everywhere)."""

    found: list[pika.frame.Method] = []

    def attempt() -> bool:
        with node.connect() as connection:
            try:
                found.append(connection.channel().queue_declare(name, passive=True))
            except ChannelClosedByBroker:
                return False
        return True

    wait_until(None, attempt, 10, f"queue {name} not reachable from node {node.index}")
    return found[0]


def test_publish_on_one_node_consume_on_another(members: list[Member]) -> None:
    home, publisher_node, consumer_node = members
    with home.connect() as connection:
        connection.channel().queue_declare("xq", durable=True)
    declare_when_reachable(publisher_node, "xq")
    declare_when_reachable(consumer_node, "xq")
    with publisher_node.connect() as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(200):  # each confirmed by the home node (persistent: on its disk)
            channel.basic_publish("", "xq", str(i).encode(), pika.BasicProperties(delivery_mode=2), mandatory=True)
        ok = channel.queue_declare("xq", passive=True)
        assert ok.method.message_count == 200
    with consumer_node.connect() as connection:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=10)
        received: list[bytes] = []

        def on_message(ch, method, properties, body) -> None:  # type: ignore[no-untyped-def]
            received.append(body)
            assert properties.delivery_mode == 2
            ch.basic_ack(method.delivery_tag)
            if len(received) == 200:
                ch.stop_consuming()

        channel.basic_consume("xq", on_message)
        connection.call_later(20, channel.stop_consuming)
        channel.start_consuming()
        assert received == [str(i).encode() for i in range(200)]
    with home.connect() as connection:
        assert connection.channel().queue_declare("xq", passive=True).method.message_count == 0


def test_get_purge_and_counts_from_another_node(members: list[Member]) -> None:
    home, other, _ = members
    with home.connect() as connection:
        channel = connection.channel()
        channel.queue_declare("gq")
        for body in (b"a", b"b", b"c", b"d"):
            channel.basic_publish("", "gq", body)
    declare_when_reachable(other, "gq")
    with other.connect() as connection:
        channel = connection.channel()
        method, _, body = channel.basic_get("gq", auto_ack=True)
        assert body == b"a" and method.message_count == 3
        method, _, body = channel.basic_get("gq")
        assert body == b"b" and not method.redelivered
        channel.basic_nack(method.delivery_tag, requeue=True)
        method, _, body = channel.basic_get("gq")
        assert body == b"b" and method.redelivered
        channel.basic_ack(method.delivery_tag)
        assert channel.queue_purge("gq").method.message_count == 2
        assert channel.basic_get("gq") == (None, None, None)
        ok = channel.queue_declare("gq", passive=True)
        assert (ok.method.message_count, ok.method.consumer_count) == (0, 0)


def test_unacked_messages_of_a_closed_channel_are_redelivered(members: list[Member]) -> None:
    home, first, second = members
    with home.connect() as connection:
        channel = connection.channel()
        channel.queue_declare("rq")
        for i in range(5):
            channel.basic_publish("", "rq", str(i).encode())
    declare_when_reachable(first, "rq")
    connection = first.connect()
    channel = connection.channel()
    channel.basic_qos(prefetch_count=3)
    held = []
    for _ in range(3):  # the prefetch window: three deliveries and no more
        method, _, body = next(channel.consume("rq", inactivity_timeout=10))
        held.append(body)
    assert held == [b"0", b"1", b"2"]
    connection.close()  # unacked: requeued at the home node
    with second.connect() as connection:
        channel = connection.channel()
        bodies = []
        for method, _, body in channel.consume("rq", auto_ack=True, inactivity_timeout=5):
            if method is None:
                break
            bodies.append((body, method.redelivered))
        assert bodies == [(b"0", True), (b"1", True), (b"2", True), (b"3", False), (b"4", False)]


def test_an_exclusive_consumer_is_refused_across_nodes(members: list[Member]) -> None:
    home, other, _ = members
    with home.connect() as connection:
        channel = connection.channel()
        channel.queue_declare("eq")
        channel.basic_consume("eq", lambda *a: None, exclusive=True)
        declare_when_reachable(other, "eq")
        with other.connect() as other_connection:
            with pytest.raises(ChannelClosedByBroker) as refused:
                other_connection.channel().basic_consume("eq", lambda *a: None)
            assert refused.value.reply_code == 403
            assert refused.value.reply_text == "ACCESS_REFUSED - queue 'eq' in vhost '/' in exclusive use"


def queue_item(node: Member, name: str) -> dict:
    response = requests.get(f"http://127.0.0.1:{node.management_port}/api/queues/%2F/{name}", auth=("guest", "guest"))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def home_of(node: Member, name: str) -> str:
    return str(queue_item(node, name)["node"])


def test_queue_master_locator_places_queues(members: list[Member]) -> None:
    first, second, third = members
    with second.connect() as connection:
        channel = connection.channel()
        channel.queue_declare("local-q")  # client-local, the default
        # The first node is home to every queue so far; the other two to none but local-q.
        channel.queue_declare("min-q", arguments={"x-queue-master-locator": "min-masters"})
        channel.confirm_delivery()
        channel.basic_publish("", "min-q", b"placed")  # the home node has it when declare-ok came
    assert home_of(first, "local-q") == NAMES[1]
    assert home_of(first, "min-q") == NAMES[2]
    with first.connect() as connection:
        channel = connection.channel()
        channel.exclusive = channel.queue_declare("", exclusive=True, arguments={"x-queue-master-locator": "random"})
        assert home_of(first, channel.exclusive.method.queue) == NAMES[0]  # exclusive: always local
        # The home node's counters reach the other nodes (the HTTP API of the first node here).
        wait_until(None, lambda: queue_item(first, "min-q")["messages"] == 1, 5, "counters not reported")
        method, _, body = channel.basic_get("min-q", auto_ack=True)
        assert body == b"placed"


def test_home_node_down_and_back(members: list[Member]) -> None:
    home, other, _ = members
    with home.connect() as connection:
        channel = connection.channel()
        channel.queue_declare("hq", durable=True)
        channel.queue_declare("tq")  # transient: gone with its node, as in RabbitMQ
        channel.confirm_delivery()
        for i in range(3):
            channel.basic_publish("", "hq", str(i).encode(), pika.BasicProperties(delivery_mode=2))
    declare_when_reachable(other, "hq")
    watcher = other.connect()
    watch = watcher.channel()
    cancelled: list[str] = []
    watch.basic_qos(prefetch_count=1)
    watch.basic_consume("hq", lambda ch, m, p, b: None, consumer_tag="watcher")
    watch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    assert home.process is not None
    home.process.kill()
    deadline = time.monotonic() + 15
    while not cancelled and time.monotonic() < deadline:
        watcher.process_data_events(0.2)
    assert cancelled == ["watcher"]  # basic.cancel: the queue's node went away
    assert watcher.is_open  # the connection to the other node stays up
    watcher.close()
    with other.connect() as connection:
        with pytest.raises(ChannelClosedByBroker) as absent:
            connection.channel().queue_declare("hq", passive=True)
        assert absent.value.reply_code == 404
        assert absent.value.reply_text == (
            "NOT_FOUND - home node 'rabbit-0@localhost' of durable queue 'hq' in vhost '/' is down or inaccessible"
        )

    def transient_gone() -> bool:
        with other.connect() as connection:
            try:
                connection.channel().queue_declare("tq", passive=True)
            except ChannelClosedByBroker as exc:
                return exc.reply_text == "NOT_FOUND - no queue 'tq' in vhost '/'"
        return False

    wait_until(None, transient_gone, 15, "the transient queue of the node that went down is still there")
    home.start()
    home.process.wait_listening(30)
    ok = declare_when_reachable(other, "hq")
    assert ok.method.message_count == 3  # back with its messages
    with other.connect() as connection:
        channel = connection.channel()
        bodies = [channel.basic_get("hq", auto_ack=True)[2] for _ in range(3)]
        assert bodies == [b"0", b"1", b"2"]


def exchanges_of(node: Member) -> set[str]:
    done = subprocess.run([sys.executable, "-m", "amqp_server.ctl", "--data-dir", str(node.data_dir),
                           "list_exchanges", "-q", "name"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {line for line in done.stdout.splitlines() if line.startswith("churn-")}


def test_each_node_killed_in_turn_under_metadata_churn(members: list[Member]) -> None:
    """kill -9 of every node in turn (so of the leader, whichever it is) while a client of
    another node declares exchanges: every declare that was answered is on every node at the
    end, and all nodes hold the same metadata."""
    answered: list[str] = []
    stop = threading.Event()
    target = [1]

    def churn() -> None:
        number = 0
        while not stop.is_set():
            try:
                with members[target[0]].connect() as connection:
                    channel = connection.channel()
                    while not stop.is_set():
                        number += 1
                        channel.exchange_declare(f"churn-{number}", durable=True)
                        answered.append(f"churn-{number}")
            except pika.exceptions.AMQPError:  # refused (no leader yet) or the node went: again
                time.sleep(0.05)

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        for victim in range(3):
            target[0] = (victim + 1) % 3
            before = len(answered)
            wait_until(None, lambda before=before: len(answered) > before + 20, 20, "no declares answered")
            node = members[victim]
            assert node.process is not None
            node.process.kill()
            node.start()
            node.process.wait_listening(60)
        wait_until(None, lambda: len(answered) > 100, 20, "too few declares")
    finally:
        stop.set()
        worker.join(30)
    expected = set(answered)
    wait_until(None, lambda: all(exchanges_of(node) == exchanges_of(members[0]) for node in members), 15,
               "the nodes' metadata did not converge")  # fmt: skip
    seen = [exchanges_of(node) for node in members]
    assert expected <= seen[0]  # nothing answered is lost (an unanswered one may be there too)
    assert seen[0] == seen[1] == seen[2]
