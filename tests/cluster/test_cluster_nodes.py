"""Three broker processes on loopback form a cluster (docs/clustering.md, "Forming a cluster"):
metadata declared on one node is visible on every node, a partitioned minority refuses
declares while the majority serves them and catches up after healing, a RAM node catches up
after a restart. Every link between two nodes goes through a ``TcpProxy`` of its own (node i
reaches node j at the proxy's port: ``name@host:port`` in its classic_config peers), so a
partition is a few proxies dropping traffic.

The tests run in order on one cluster (module fixture): starting three nodes is most of the
time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import requests
from conftest import Node, free_port
from helpers import wait_until
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker
from proxy import Proxies

NAMES = [f"rabbit-{i}@localhost" for i in range(3)]


class ClusterNode:
    """One node: its process, data directory and the arguments to start it again."""

    def __init__(self, index: int, base: Path, cluster_port: int, proxies: Proxies, cookie: Path) -> None:
        self.index = index
        self.name = NAMES[index]
        self.data_dir = base / f"node{index}"
        self.base = base
        config = base / f"node{index}.conf"
        peers = [f"{NAMES[j]}:{proxies.pairs[index, j].port}" for j in range(3) if j != index]
        config.write_text(
            "".join(f"cluster_formation.classic_config.nodes.{n} = {p}\n" for n, p in enumerate(peers))
        )
        self.args = ["--node-name", self.name, "--cluster-port", str(cluster_port), "--cookie-file", str(cookie),
                     "--config", str(config), "--log-level", "warning"]  # fmt: skip
        self.process: Node | None = None
        self.amqp_port = free_port()

    def start(self) -> ClusterNode:
        self.process = Node(self.data_dir, self.base, "--port", str(self.amqp_port), "--host", "127.0.0.1", *self.args,
                            port=self.amqp_port)  # fmt: skip
        return self

    def connect(self) -> pika.BlockingConnection:
        assert self.process is not None
        return self.process.connect()

    def ctl(self, *args: str) -> tuple[int, str, str]:
        done = subprocess.run([sys.executable, "-m", "amqp_server.ctl", "--data-dir", str(self.data_dir), *args],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    def definitions(self) -> dict[str, Any]:
        """The node's metadata (export_definitions), without what differs between nodes."""
        code, out, err = self.ctl("export_definitions", "-")
        assert code == 0, err
        document = json.loads(out)
        for volatile in ("rabbit_version", "rabbitmq_version", "product_name", "product_version"):
            document.pop(volatile, None)
        return {key: sorted(json.dumps(item, sort_keys=True) for item in value) if isinstance(value, list) else value
                for key, value in document.items()}  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[ClusterNode], Proxies]]:
    base = tmp_path_factory.mktemp("cluster")
    cookie = base / "cookie"
    cookie.write_text("the cluster's cookie\n")
    ports = [free_port() for _ in range(3)]
    proxies = Proxies(ports)
    nodes = [ClusterNode(i, base, ports[i], proxies, cookie).start() for i in range(3)]
    try:
        for node in nodes:
            assert node.process is not None
            node.process.wait_listening(30)
        yield nodes, proxies
    finally:
        for node in nodes:
            if node.process is not None:
                node.process.kill()
        proxies.close()


def passive_queue(node: ClusterNode, name: str) -> bool:
    """Whether ``node`` knows the queue, by a passive declare: on its home node it succeeds; on
    another node it is refused as absent (messages do not cross nodes yet: queues.remote), which
    still says the node has the queue's metadata, unlike "no queue"."""
    connection = node.connect()
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return "is down or inaccessible" in exc.reply_text
    finally:
        if connection.is_open:
            connection.close()


def test_nodes_form_one_cluster(cluster: tuple[list[ClusterNode], Proxies]) -> None:
    nodes, _ = cluster
    code, out, err = nodes[1].ctl("cluster_status", "--formatter", "json")
    assert code == 0, err
    status = json.loads(out)
    assert status["disk_nodes"] == NAMES
    assert status["ram_nodes"] == []
    assert status["running_nodes"] == NAMES
    assert status["partitions"] == {}
    code, out, _ = nodes[2].ctl("cluster_status")
    assert code == 0
    assert "Disk Nodes\n\nrabbit-0@localhost\nrabbit-1@localhost\nrabbit-2@localhost\n\nRunning Nodes" in out


def logs_in(node: ClusterNode, user: str, password: str) -> bool:
    """Whether ``user`` logs in on ``node`` (a change committed on another node is applied
    here a moment later)."""
    try:
        with node.process.connect(user, password):
            return True
    except (pika.exceptions.ProbableAccessDeniedError, pika.exceptions.ProbableAuthenticationError):
        return False


def test_metadata_declared_on_one_node_is_on_every_node(cluster: tuple[list[ClusterNode], Proxies]) -> None:
    nodes, _ = cluster
    with nodes[0].connect() as connection:
        channel = connection.channel()
        channel.exchange_declare("cx", "topic", durable=True)
        channel.queue_declare("cq", durable=True)
        channel.queue_bind("cq", "cx", "a.#")
    assert nodes[0].ctl("add_user", "carol", "s3cret")[0] == 0
    assert nodes[0].ctl("set_permissions", "carol", ".*", ".*", ".*")[0] == 0
    for node in nodes[1:]:
        with node.connect() as connection:
            connection.channel().exchange_declare("cx", "topic", passive=True)
        assert passive_queue(node, "cq")
        code, out, _ = node.ctl("list_bindings", "-q", "source_name", "destination_name", "routing_key")
        assert code == 0 and "cx\tcq\ta.#" in out
        wait_until(None, lambda node=node: logs_in(node, "carol", "s3cret"), 10, "carol cannot log in")


def test_a_declare_on_a_follower_is_visible_there_when_answered(
    cluster: tuple[list[ClusterNode], Proxies],
) -> None:
    nodes, _ = cluster
    with nodes[2].connect() as connection:
        channel = connection.channel()
        for i in range(20):
            channel.exchange_declare(f"follower-{i}")
            channel.exchange_declare(f"follower-{i}", passive=True)  # on the node that answered
    with nodes[0].connect() as connection:
        connection.channel().exchange_declare("follower-19", passive=True)


def declare_refused(node: ClusterNode, name: str) -> tuple[int, str] | None:
    """The close a declare on ``node`` gets (None: it was declared)."""
    try:
        with node.connect() as connection:
            connection.channel().queue_declare(name, durable=True)
    except ConnectionClosedByBroker as exc:
        return exc.reply_code, exc.reply_text
    return None


def test_a_partitioned_minority_refuses_and_heals(cluster: tuple[list[ClusterNode], Proxies]) -> None:
    nodes, proxies = cluster
    proxies.isolate(2)
    try:
        refusal = None

        def refused() -> bool:
            nonlocal refusal
            refusal = declare_refused(nodes[2], "minority-q")
            return refusal is not None

        wait_until(None, refused, 30)
        assert refusal == (
            541,
            "INTERNAL_ERROR - failed to declare queue 'minority-q' in vhost '/' because the operation timed out",
        )
        code, body = http(nodes[2], "PUT", "/api/queues/%2F/minority-http", {"durable": True})
        assert (code, body["error"]) == (503, "service_unavailable")
        # The majority serves declares meanwhile (once it has a leader on its side).
        wait_until(None, lambda: declare_refused(nodes[0], "majority-q") is None, 30)
        assert declare_refused(nodes[1], "majority-q2") is None
        # The minority still serves what it has.
        assert passive_queue(nodes[2], "cq")

        # Its heartbeats stopped: the others see it down (5 s), and it sees them down.
        def running(node: ClusterNode) -> list[str]:
            return json.loads(node.ctl("cluster_status", "--formatter", "json")[1])["running_nodes"]

        wait_until(None, lambda: running(nodes[0]) == NAMES[:2], 10)
        wait_until(None, lambda: running(nodes[2]) == NAMES[2:], 10)
        partitions = json.loads(nodes[2].ctl("cluster_status", "--formatter", "json")[1])["partitions"]
        assert partitions == {NAMES[2]: NAMES[:2]}
    finally:
        proxies.heal()
    wait_until(None, lambda: passive_queue(nodes[2], "majority-q2"), 30)
    assert not passive_queue(nodes[2], "minority-q")
    first = nodes[0].definitions()
    wait_until(None, lambda: all(node.definitions() == first for node in nodes[1:]), 10)


def http(node: ClusterNode, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request to the node's HTTP API (its port from its cluster_status listeners)."""
    listeners = json.loads(node.ctl("cluster_status", "--formatter", "json")[1])["listeners"][node.name]
    port = next(item["port"] for item in listeners if item["protocol"] == "http")
    reply = requests.request(
        method, f"http://127.0.0.1:{port}{path}", json=body, auth=("guest", "guest"), timeout=30
    )
    return reply.status_code, reply.json() if reply.content else None


def test_http_api_lists_every_member(cluster: tuple[list[ClusterNode], Proxies]) -> None:
    nodes, _ = cluster
    code, listed = http(nodes[0], "GET", "/api/nodes")
    assert code == 200
    assert [(n["name"], n["type"], n["running"], n["partitions"]) for n in listed] == [
        (name, "disc", True, []) for name in NAMES
    ]


def test_cli_refusals(cluster: tuple[list[ClusterNode], Proxies]) -> None:
    nodes, _ = cluster
    code, _, err = nodes[0].ctl("join_cluster", NAMES[1])
    assert code != 0 and "rabbit' app to be stopped" in err
    code, _, err = nodes[0].ctl("forget_cluster_node", NAMES[1])
    assert (code, err.strip()) == (
        70,
        "Error:\nRabbitMQ on node rabbit-1@localhost must be stopped with "
        "'rabbitmqctl -n rabbit-1@localhost stop_app' before it can be removed",
    )
    code, _, err = nodes[0].ctl("forget_cluster_node", "rabbit-9@localhost")
    assert "The node selected is not in the cluster." in err


def test_a_ram_node_catches_up_after_a_restart(cluster: tuple[list[ClusterNode], Proxies]) -> None:
    nodes, _ = cluster
    ram = nodes[2]
    assert ram.ctl("stop_app")[0] == 0
    code, out, err = ram.ctl("change_cluster_node_type", "ram")
    assert code == 0, err
    assert out.strip() == "Turning rabbit-2@localhost into a ram node"
    assert ram.ctl("start_app")[0] == 0
    status = json.loads(nodes[0].ctl("cluster_status", "--formatter", "json")[1])
    assert (status["disk_nodes"], status["ram_nodes"]) == (NAMES[:2], NAMES[2:])
    assert passive_queue(ram, "cq")
    assert ram.process is not None
    assert ram.process.stop(signal.SIGTERM)[0] == 0
    with nodes[1].connect() as connection:
        connection.channel().queue_declare("while-ram-down", durable=True)
    ram.start().process.wait_listening(30)
    assert passive_queue(ram, "while-ram-down")  # from the snapshot it rejoined with
    assert ram.definitions() == nodes[0].definitions()
    status = json.loads(ram.ctl("cluster_status", "--formatter", "json")[1])
    assert (status["ram_nodes"], status["running_nodes"]) == (NAMES[2:], NAMES)


def test_reset_leaves_the_cluster_and_join_cluster_joins_it_again(
    cluster: tuple[list[ClusterNode], Proxies],
) -> None:
    nodes, _ = cluster
    node = nodes[2]
    assert node.ctl("stop_app")[0] == 0
    assert node.ctl("reset")[0] == 0
    status = json.loads(nodes[0].ctl("cluster_status", "--formatter", "json")[1])
    assert (status["disk_nodes"], status["ram_nodes"]) == (NAMES[:2], [])
    alone = json.loads(node.ctl("cluster_status", "--formatter", "json")[1])
    assert (alone["disk_nodes"], alone["running_nodes"]) == (NAMES[2:], NAMES[2:])
    code, out, err = node.ctl("join_cluster", "--disc", NAMES[0])
    assert code == 0, err
    assert out.strip() == "Clustering node rabbit-2@localhost with rabbit-0@localhost"
    assert node.ctl("start_app")[0] == 0
    status = json.loads(node.ctl("cluster_status", "--formatter", "json")[1])
    assert (status["disk_nodes"], status["ram_nodes"], status["running_nodes"]) == (NAMES, [], NAMES)
    assert passive_queue(node, "cq")
    assert node.definitions() == nodes[0].definitions()
    code, _, err = node.ctl("join_cluster", NAMES[2])
    assert "app to be stopped" in err


def test_a_node_without_clustering_is_a_cluster_of_one(nodes: list[Node], tmp_path: Path) -> None:
    node = Node(tmp_path / "data", tmp_path)
    nodes.append(node)
    node.wait_listening()
    done = subprocess.run([sys.executable, "-m", "amqp_server.ctl", "--data-dir", str(tmp_path / "data"),
                           "cluster_status", "--formatter", "json"], capture_output=True, text=True, timeout=30)  # fmt: skip
    status = json.loads(done.stdout)
    assert (status["disk_nodes"], status["ram_nodes"], status["running_nodes"]) == (
        ["rabbit@localhost"],
        [],
        ["rabbit@localhost"],
    )
    assert not (tmp_path / "data" / "raft.db").exists()
