"""``amqp-ctl -n name@host:port`` reaches a node other than the data directory's over its cluster
port, authenticated by the cookie (docs/operations.md, "Reaching another node"): two clustered
broker processes on loopback sharing one cookie (the same ``.control_secret`` in both data
directories), amqp-ctl run from node A's data directory against node B.

The tests run in order on one pair of nodes (module fixture); the last one stops node B.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Node, free_port
from helpers import wait_until

from cluster.control_client import cookie_hash

COOKIE = "the cluster's cookie"
NAMES = ("a@localhost", "b@localhost")


class Pair:
    """Nodes A and B and amqp-ctl from A's data directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.ports = [free_port(), free_port()]
        self.nodes: list[Node] = []
        for i, name in enumerate(NAMES):
            data_dir = base / name.partition("@")[0]
            data_dir.mkdir()
            (data_dir / ".control_secret").write_text(COOKIE + "\n")  # the cookie of both
            (data_dir / ".control_secret").chmod(0o600)
            config = base / f"{name}.conf"
            config.write_text(
                f"cluster_formation.classic_config.nodes.1 = {NAMES[1 - i]}:{self.ports[1 - i]}\n"
            )
            self.nodes.append(Node(data_dir, base, "--node-name", name, "--cluster-port", str(self.ports[i]),
                                   "--config", str(config), "--log-level", "warning"))  # fmt: skip

    @property
    def b(self) -> str:
        """Node B as -n names it: its name and cluster port."""
        return f"{NAMES[1]}:{self.ports[1]}"

    def tool(self, tool: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        done = subprocess.run([sys.executable, "-m", tool, "--data-dir", str(self.base / "a"), *args],
                              capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    def ctl(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        return self.tool("amqp_server.ctl", *args, env=env)

    def running_nodes(self) -> list[str]:
        code, out, _ = self.ctl("cluster_status", "--formatter", "json")
        return json.loads(out)["running_nodes"] if code == 0 else []


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    pair = Pair(tmp_path_factory.mktemp("remote"))
    try:
        for node in pair.nodes:
            node.wait_listening(30)
        wait_until(None, lambda: pair.running_nodes() == list(NAMES), 30, "the nodes did not form a cluster")
        yield pair
    finally:
        for node in pair.nodes:
            node.kill()


def test_status_and_cluster_status_of_the_other_node(pair: Pair) -> None:
    code, out, err = pair.ctl("-n", pair.b, "status")
    assert code == 0, err
    assert out.startswith(f"Status of node {NAMES[1]} ...\nRuntime\n\nOS PID: {pair.nodes[1].process.pid}\n")
    assert f"Node name: {NAMES[1]}\n" in out and f"Node data directory: {pair.base / 'b'}\n" in out
    code, out, _ = pair.ctl("-n", pair.b, "status", "--formatter", "json")
    status = json.loads(out)
    assert code == 0 and status["node_name"] == NAMES[1] and status["pid"] == pair.nodes[1].process.pid
    code, out, _ = pair.ctl("-n", pair.b, "cluster_status", "--formatter", "json")
    # the control client is no member: the cluster's nodes are still the two
    assert code == 0 and json.loads(out)["running_nodes"] == list(NAMES) == json.loads(out)["disk_nodes"]
    code, out, _ = pair.ctl("-n", pair.b, "cluster_status")
    assert code == 0 and out.startswith(f"Cluster status of node {NAMES[1]} ...\nBasics\n\nCluster name: ")


def test_queues_and_users_through_the_other_node(pair: Pair) -> None:
    with pair.nodes[1].connect() as connection:
        connection.channel().queue_declare("on-b", durable=True)
        connection.channel().basic_publish("", "on-b", b"m")
    code, out, err = pair.ctl("-n", pair.b, "list_queues", "name", "messages", "type")
    assert code == 0, err
    assert (
        out
        == "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\nname\tmessages\ttype\non-b\t1\tclassic\n"
    )
    code, out, _ = pair.ctl("-n", pair.b, "list_queues", "name", "messages", "--formatter", "json")
    assert code == 0 and json.loads(out) == [{"name": "on-b", "messages": 1}]
    code, out, err = pair.ctl("-n", pair.b, "add_user", "remote-user", "s3cret")
    assert (code, out, err) == (0, 'Adding user "remote-user" ...\nDone. Don\'t forget to grant the user permissions '
                                   "to some virtual hosts! See 'rabbitmqctl help set_permissions' to learn more.\n",
                                "")  # fmt: skip
    assert pair.ctl("-n", pair.b, "set_permissions", "remote-user", ".*", ".*", ".*")[0] == 0
    with pair.nodes[1].connect("remote-user", "s3cret") as connection:  # the user logs in on B
        assert connection.is_open
    code, out, _ = pair.ctl("-n", pair.b, "list_users", "--formatter", "json")
    assert code == 0 and {"user": "remote-user", "tags": []} in json.loads(out)
    code, out, err = pair.ctl("-n", pair.b, "add_user", "remote-user", "again")
    assert code == 70 and err == 'Error:\nUser "remote-user" already exists\n'


def test_plugins_and_diagnostics_of_the_other_node(pair: Pair) -> None:
    code, out, err = pair.tool("amqp_server.plugins_cli", "-n", pair.b, "list")
    assert code == 0, err
    assert f" | Status: * = running on {NAMES[1]}\n" in out
    done = subprocess.run([sys.executable, "-c", "from amqp_server.ctl import diagnostics_main; diagnostics_main()",
                           "--data-dir", str(pair.base / "a"), "-n", pair.b, "check_running"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and NAMES[1] in done.stdout


def test_cookie_options(pair: Pair) -> None:
    """--erlang-cookie, --cookie-file and RABBITMQ_ERLANG_COOKIE give the cookie (here without
    a data directory holding it)."""
    cookie_file = pair.base / "cookie"
    cookie_file.write_text(COOKIE + "\n")
    elsewhere = str(pair.base / "nowhere")
    assert pair.ctl("--data-dir", elsewhere, "-n", pair.b, "ping", "--erlang-cookie", COOKIE)[0] == 0
    assert pair.ctl("--data-dir", elsewhere, "-n", pair.b, "ping", "--cookie-file", str(cookie_file))[0] == 0
    env = {**os.environ, "RABBITMQ_ERLANG_COOKIE": COOKIE}
    assert pair.ctl("--data-dir", elsewhere, "-n", pair.b, "ping", env=env)[0] == 0


def test_wrong_cookie(pair: Pair) -> None:
    code, out, err = pair.ctl("-n", pair.b, "list_queues", "--erlang-cookie", "not the cookie")
    assert (code, out) == (69, "")
    assert err.startswith(f"Error: unable to perform an operation on node '{NAMES[1]}'. Please see diagnostics "
                          "information and suggestions below.\n\nMost common reasons for this are:\n\n"
                          " * Target node is unreachable (e.g. due to hostname resolution, TCP connection or "
                          "firewall issues)\n * CLI tool fails to authenticate with the server (e.g. due to CLI "
                          "tool's Erlang cookie not matching that of the server)\n")  # fmt: skip
    assert (f"{NAMES[1]}:\n  * TCP connection to localhost:{pair.ports[1]} succeeded but the inter-node handshake "
            f"failed: Connection attempt to node {NAMES[1]} refused: invalid challenge reply\n"
            "  * suggestion: check if the Erlang cookie is identical for all server nodes and CLI tools\n") in err  # fmt: skip
    assert "\nCurrent node details:\n * node name: 'rabbitmqcli-" in err
    assert f" * Erlang cookie hash: {cookie_hash('not the cookie')}\n" in err


def test_another_name_at_the_port(pair: Pair) -> None:
    """The node at the address must be the one named."""
    code, _, err = pair.ctl("-n", f"c@localhost:{pair.ports[1]}", "status")
    assert code == 69 and f"to node c@localhost reached node {NAMES[1]} instead" in err


def test_a_stopped_node(pair: Pair) -> None:
    """A port nothing listens on, then node B stopped through amqp-ctl -n: 69."""
    port = free_port()
    code, _, err = pair.ctl("-n", f"c@localhost:{port}", "status")
    assert (
        code == 69
        and f"  * unable to connect to the inter-node port ({port}) on localhost: connection refused\n" in err
    )
    code, out, err = pair.ctl("-n", pair.b, "stop")
    assert code == 0, err
    assert out == f"Stopping and halting node {NAMES[1]} ...\n"
    assert pair.nodes[1].exit_status()[0] == 0
    code, out, err = pair.ctl("-n", pair.b, "list_queues", "--formatter", "json")
    assert (code, out) == (69, "")
    assert err.startswith(f"Error: unable to perform an operation on node '{NAMES[1]}'.")
    assert "on localhost: connection refused\n" in err
