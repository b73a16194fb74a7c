"""``amqp-ctl -n name@host:port`` reaches a node other than the data directory's over its cluster
port, authenticated by the cookie (docs/operations.md, "Reaching another node"): two clustered
broker processes on loopback sharing one cookie (the same ``.control_secret`` in both data
directories), amqp-ctl run from node A's data directory against node B.

The tests run in order on one pair of nodes (module fixture); ``test_a_stopped_node`` stops node
B. Then a node whose links are TLS (``cluster.ssl``; docs/security.md, "Between cluster nodes"):
amqp-ctl dials it with TLS when given the nodes' config file, and says why it cannot without.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Node, free_port
from helpers import wait_until
from tls_certs import Authority

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


class TlsNode:
    """A node whose links are TLS (its certificate from the cluster's CA), and its config file,
    which amqp-ctl reads too (it holds the node's TLS options, no peers)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        ca = Authority(base, "cluster-ca")
        issued = ca.issue("node", "tls-node", node=True)
        self.cookie = base / "cookie"
        self.cookie.write_text(COOKIE + "\n")
        self.config = base / "tls.conf"
        self.config.write_text(f"cluster.ssl = true\ncluster.ssl_options.cacertfile = {ca.path}\n"
                               f"cluster.ssl_options.certfile = {issued.cert}\n"
                               f"cluster.ssl_options.keyfile = {issued.key}\n")  # fmt: skip
        self.port = free_port()
        self.name = "tls-c@localhost"
        self.node = Node(base / "data", base, "--node-name", self.name, "--cluster-port", str(self.port),
                         "--config", str(self.config), "--cookie-file", str(self.cookie), "--log-level", "warning")  # fmt: skip

    @property
    def n(self) -> str:
        return f"{self.name}:{self.port}"

    def ctl(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
        """amqp-ctl -n this node, with the cookie (no data directory of its); and how long it took."""
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "amqp_server.ctl", "--data-dir", str(self.base / "nowhere"),
                               "-n", self.n, "--cookie-file", str(self.cookie), *args],
                              capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
        return done.returncode, done.stdout, done.stderr, time.monotonic() - started


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    made = TlsNode(tmp_path_factory.mktemp("tls"))
    try:
        made.node.wait_listening(30)
        yield made
    finally:
        made.node.kill()


def test_a_tls_node_through_its_config_file(tls_node: TlsNode) -> None:
    """--config (or $RABBITMQ_CONFIG_FILE) naming the nodes' config: TLS with their options."""
    with tls_node.node.connect() as connection:
        connection.channel().queue_declare("on-tls", durable=True)
    code, out, err, _ = tls_node.ctl("--config", str(tls_node.config), "status", "--formatter", "json")
    assert code == 0, err
    assert json.loads(out)["node_name"] == tls_node.name
    code, out, err, _ = tls_node.ctl("list_queues", "name", "--formatter", "json", "--config", str(tls_node.config))  # fmt: skip
    assert (code, json.loads(out)) == (0, [{"name": "on-tls"}]), err
    env = {**os.environ, "RABBITMQ_CONFIG_FILE": str(tls_node.config.with_suffix(""))}  # (.conf added)
    code, out, err, _ = tls_node.ctl("ping", env=env)
    assert code == 0 and out.endswith("Ping succeeded\n"), err


def test_a_tls_node_without_its_config(tls_node: TlsNode) -> None:
    """A plain dial to a TLS node's cluster port: node-down, saying why, at once."""
    env = {key: value for key, value in os.environ.items() if key != "RABBITMQ_CONFIG_FILE"}
    code, out, err, took = tls_node.ctl("status", env=env)
    assert (code, out) == (69, "") and took < 10
    assert err.startswith(f"Error: unable to perform an operation on node '{tls_node.name}'.")
    assert (f"  * TCP connection to localhost:{tls_node.port} succeeded but the inter-node handshake failed: "
            "the node closed the connection before its handshake (a node whose links are TLS refuses plain "
            "ones: is its cluster.ssl on?)\n") in err  # fmt: skip
    assert "  * suggestion: check if inter-node connections may be configured to use TLS." in err
    assert "  * suggestion: this CLI reads cluster.ssl and cluster.ssl_options from the nodes' config" in err


def test_tls_to_a_plain_node(pair: Pair, tls_node: TlsNode) -> None:
    """The TLS options given, a node whose links are plain (pair's node A): node-down, at once."""
    started = time.monotonic()
    code, out, err = pair.ctl("--data-dir", str(pair.base / "nowhere"), "-n", f"{NAMES[0]}:{pair.ports[0]}",
                              "--erlang-cookie", COOKIE, "--config", str(tls_node.config), "status")  # fmt: skip
    assert (code, out) == (69, "") and time.monotonic() - started < 10
    assert f"  * TCP connection to localhost:{pair.ports[0]} succeeded but the TLS handshake failed: " in err
    assert "is its cluster.ssl off" in err
    assert "  * suggestion: check if inter-node connections may be configured to use TLS." in err


def test_config_file_errors(tls_node: TlsNode) -> None:
    """A config file that cannot be read is 78 (EX_CONFIG); TLS options that make no context
    are node-down, naming the setting."""
    code, _, err, _ = tls_node.ctl("--config", str(tls_node.base / "missing.conf"), "status")
    assert (code, err) == (78, f"Error:\ncannot read config file {tls_node.base / 'missing.conf'}: No such file or "
                               "directory\n")  # fmt: skip
    bad = tls_node.base / "no-certificate.conf"
    bad.write_text("cluster.ssl = true\n")
    code, _, err, _ = tls_node.ctl("--config", str(bad), "status")
    assert code == 69
    assert "  * cannot dial with TLS: cluster.ssl_options.certfile is not set" in err
