"""TLS on the links between nodes (docs/security.md, "Between cluster nodes"): node A runs
in-process (asyncio's loop; its log is caplog's), the others are broker processes (uvloop when
installed; their log is their stderr). Two TLS nodes form a cluster and share metadata; a node
whose certificate comes from another CA is refused, a dialer checks the peer's host name, a
plain node cannot link to a TLS node nor a TLS node to a plain one, each side saying why;
SIGHUP's reload gives the listener and the dialer the new certificate; a TLS setting that makes
no context stops the start."""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BrokerHandle, Node, free_port, start_broker
from helpers import wait_until
from pika.exceptions import ChannelClosedByBroker
from tls_certs import Authority, Issued

from amqp_server.config import ConfigError, apply_conf
from amqp_server.core.broker import BrokerConfig
from amqp_server.tls import TlsOptions

A = "tls-a@localhost"  # the lowest name: it founds the cluster, the others join it


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("pki")
    ca = Authority(directory, "cluster-ca")
    rogue = Authority(directory, "rogue-ca")
    return {
        "ca": ca.path,
        "a": ca.issue("a", "tls-a", node=True),
        "a-renewed": ca.issue("a-renewed", "tls-a-renewed", node=True),
        "b": ca.issue("b", "tls-b", node=True),
        "rogue": rogue.issue("rogue", "tls-rogue", node=True),
    }


def conf_lines(pki: dict[str, Any], cert: str) -> str:
    """rabbitmq.conf lines turning TLS on with ``cert`` (verify_peer is the default)."""
    issued: Issued = pki[cert]
    return (f"cluster.ssl = true\ncluster.ssl_options.cacertfile = {pki['ca']}\n"
            f"cluster.ssl_options.certfile = {issued.cert}\ncluster.ssl_options.keyfile = {issued.key}\n")  # fmt: skip


class Stderr:
    """A process's stderr lines, read as they come."""

    def __init__(self, node: Node) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(node,), daemon=True).start()

    def _read(self, node: Node) -> None:
        assert node.process.stderr is not None
        for line in node.process.stderr:
            self.lines.append(line.decode())

    def has(self, *parts: str) -> bool:
        return any(all(part in line for part in parts) for line in list(self.lines))


class Cluster:
    """Node A in-process (TLS links), and what the tests start beside it."""

    def __init__(self, base: Path, pki: dict[str, Any]) -> None:
        self.base, self.pki = base, pki
        self.cookie = base / "cookie"
        self.cookie.write_text("the TLS cluster's cookie\n")
        self.a_files = Issued(base / "a.crt", base / "a.key")  # rotated by the reload test
        shutil.copy(pki["a"].cert, self.a_files.cert)
        shutil.copy(pki["a"].key, self.a_files.key)
        self.a_port = free_port()
        options = TlsOptions(cacertfile=str(pki["ca"]), certfile=str(self.a_files.cert), keyfile=str(self.a_files.key),
                             verify="verify_peer", fail_if_no_peer_cert=True)  # fmt: skip
        self.a = start_broker(data_dir=str(base / "a"), node_name=A, cluster_port=self.a_port,
                              cookie_file=str(self.cookie), cluster_ssl=True, cluster_ssl_options=options)  # fmt: skip
        self.processes: list[Node] = []

    def node(self, name: str, conf: str, peer: str, peer_port: int) -> tuple[Node, Stderr]:
        """A broker process ``name`` with ``conf``, joining ``peer``: its start waits for the
        link, so only a node that links listens for AMQP."""
        short = name.partition("@")[0]
        config = self.base / f"{short}.conf"
        config.write_text(f"{conf}cluster_formation.classic_config.nodes.1 = {peer}:{peer_port}\n")
        node = Node(self.base / short, self.base, "--node-name", name, "--cluster-port", str(free_port()),
                    "--cookie-file", str(self.cookie), "--config", str(config), "--log-level", "warning")  # fmt: skip
        self.processes.append(node)
        return node, Stderr(node)

    def close(self) -> None:
        for node in self.processes:
            end(node)
        self.a.stop()


def end(node: Node) -> None:
    """Kill a node whose stderr a ``Stderr`` reads (``Node.kill`` would read it too)."""
    if node.process.poll() is None:
        node.process.kill()
    node.process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any]) -> Iterator[Cluster]:
    made = Cluster(tmp_path_factory.mktemp("tls-cluster"), pki)
    yield made
    made.close()


def probe(port: int, pki: dict[str, Any], client: str = "b") -> str:
    """The common name of the certificate a node's cluster port presents to a TLS client
    trusting the cluster's CA (with ``client``'s certificate)."""
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(pki[client].cert, pki[client].key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        subject = tls.getpeercert()["subject"]
    return dict(rdn[0] for rdn in subject)["commonName"]


def logged(caplog: pytest.LogCaptureFixture, *parts: str) -> bool:
    return any(all(part in record.getMessage() for part in parts) for record in list(caplog.records))


def test_tls_nodes_form_a_cluster_and_share_metadata(cluster: Cluster, pki: dict[str, Any]) -> None:
    b, _stderr = cluster.node("tls-b@localhost", conf_lines(pki, "b"), A, cluster.a_port)
    b.wait_listening(30)  # (after joining A over a TLS link)
    assert probe(cluster.a_port, pki) == "tls-a"
    with cluster.a.connect() as connection:
        connection.channel().queue_declare("declared-on-a", durable=True)

    def seen_on_b() -> bool:
        with b.connect() as connection:
            try:
                connection.channel().queue_declare("declared-on-a", passive=True)
            except ChannelClosedByBroker:
                return False
        return True

    wait_until(None, seen_on_b, 10, "the queue declared on A never reached B")
    assert cluster.a.call(cluster.a.server.cluster.peers) == ["tls-b@localhost"]


def test_a_certificate_from_another_ca_is_refused(
    cluster: Cluster, pki: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="cluster")
    rogue, stderr = cluster.node("tls-rogue@localhost", conf_lines(pki, "rogue"), A, cluster.a_port)
    wait_until(None, lambda: logged(caplog, "refused: TLS handshake failed", "CERTIFICATE_VERIFY_FAILED"), 15,
               "A did not log the refusal")  # fmt: skip
    wait_until(None, lambda: stderr.has(f"link to node {A}", "does the peer trust this node's certificate?"), 15,
               "the refused node did not log why")  # fmt: skip
    assert "tls-rogue@localhost" not in cluster.a.call(cluster.a.server.cluster.peers)
    end(rogue)


def test_the_dialer_checks_the_peer_host_name(cluster: Cluster, pki: dict[str, Any]) -> None:
    conf = conf_lines(pki, "b") + "cluster.ssl_options.server_name_indication = elsewhere.example\n"
    node, stderr = cluster.node("tls-elsewhere@localhost", conf, A, cluster.a_port)
    wait_until(None, lambda: stderr.has(f"link to node {A}", "not valid for 'elsewhere.example'"), 15,
               "the dialer took a certificate for another host")  # fmt: skip
    assert "tls-elsewhere@localhost" not in cluster.a.call(cluster.a.server.cluster.peers)
    end(node)


def test_a_plain_node_cannot_link_to_a_tls_node(
    cluster: Cluster, pki: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="cluster")
    plain, stderr = cluster.node("tls-plain@localhost", "", A, cluster.a_port)
    wait_until(None, lambda: logged(caplog, "refused: TLS handshake failed", "the peer does not speak TLS"), 15,
               "A did not log the plain peer")  # fmt: skip
    wait_until(None, lambda: stderr.has(f"link to node {A}", "closed before its handshake", "cluster.ssl on?"), 15,
               "the plain node did not log why")  # fmt: skip
    assert "tls-plain@localhost" not in cluster.a.call(cluster.a.server.cluster.peers)
    end(plain)


def test_a_tls_node_cannot_link_to_a_plain_node(
    cluster: Cluster, pki: dict[str, Any], caplog: pytest.LogCaptureFixture, handles: list[BrokerHandle]
) -> None:
    caplog.set_level(logging.ERROR, logger="cluster")
    port = free_port()
    plain = start_broker(data_dir=str(cluster.base / "plain-founder"), node_name="plain-a@localhost",
                         cluster_port=port, cookie_file=str(cluster.cookie))  # fmt: skip
    handles.append(plain)
    node, stderr = cluster.node("tls-z@localhost", conf_lines(pki, "b"), "plain-a@localhost", port)
    wait_until(None, lambda: logged(caplog, "the peer starts TLS and this node's links are plain TCP"), 15,
               "the plain node did not log the TLS peer")  # fmt: skip
    wait_until(None, lambda: stderr.has("link to node plain-a@localhost", "TLS handshake", "are its links plain TCP"),
               15, "the TLS node did not log why")  # fmt: skip
    assert plain.call(plain.server.cluster.peers) == []
    end(node)


class CertificateProbe:
    """A TLS listener trusting the cluster's CA that notes the common name of each client
    certificate presented to it, then closes the connection: where node A is made to dial."""

    def __init__(self, pki: dict[str, Any]) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
        self.context.load_cert_chain(pki["b"].cert, pki["b"].key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.names: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.names.append(dict(rdn[0] for rdn in tls.getpeercert()["subject"])["commonName"])
            except (OSError, ssl.SSLError):
                conn.close()


def test_reload_gives_new_links_the_new_certificate(
    cluster: Cluster, pki: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="amqp_server.server")
    links = cluster.a.server.cluster.links
    assert links is not None
    listener = CertificateProbe(pki)
    cluster.a.call(links.add_peer, "probe@localhost", ("127.0.0.1", listener.port))
    wait_until(None, lambda: "tls-a" in listener.names, 10, "A did not dial the probe")
    assert probe(cluster.a_port, pki) == "tls-a"

    cluster.a_files.cert.write_text("not a certificate")  # a reload that fails keeps the certificate
    cluster.a.call(cluster.a.server.reload_tls)
    assert logged(caplog, "inter-node TLS certificates not reloaded: cluster.ssl_options")
    assert probe(cluster.a_port, pki) == "tls-a"

    shutil.copy(pki["a-renewed"].cert, cluster.a_files.cert)
    shutil.copy(pki["a-renewed"].key, cluster.a_files.key)
    cluster.a.call(cluster.a.server.reload_tls)
    assert logged(caplog, "inter-node TLS certificates reloaded")
    assert probe(cluster.a_port, pki) == "tls-a-renewed"  # the listener's
    cluster.a.call(links.remove_peer, "probe@localhost")
    cluster.a.call(links.add_peer, "probe@localhost", ("127.0.0.1", listener.port))  # dialed at once
    wait_until(None, lambda: "tls-a-renewed" in listener.names, 10, "A's dial kept the old certificate")
    cluster.a.call(links.remove_peer, "probe@localhost")
    listener.sock.close()
    shutil.copy(pki["a"].cert, cluster.a_files.cert)  # (as the other tests expect it)
    shutil.copy(pki["a"].key, cluster.a_files.key)
    cluster.a.call(cluster.a.server.reload_tls)


def test_tls_keys_of_the_config_file() -> None:
    config = BrokerConfig()
    apply_conf(
        "cluster.ssl = true\ncluster.ssl_options.certfile = node.pem\ncluster.ssl_options.verify = verify_none\n"
        "cluster.ssl_options.server_name_indication = disable\ncluster.ssl_options.versions.1 = tlsv1.3\n",
        config,
    )
    assert config.cluster_ssl
    options = config.cluster_ssl_options
    assert (options.certfile, options.verify, options.server_name_indication, options.versions) == (
        "node.pem", "verify_none", "disable", ["tlsv1.3"],
    )  # fmt: skip
    assert BrokerConfig().cluster_ssl_options.verify == "verify_peer"  # the default once TLS is on
    with pytest.raises(ConfigError, match="acceptable values are: tlsv1.2, tlsv1.3"):
        apply_conf("cluster.ssl_options.versions.1 = tlsv1.1\n", BrokerConfig())


def test_tls_without_a_certificate_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "node.conf"
    config.write_text("cluster.ssl = true\n")
    node = Node(tmp_path / "data", tmp_path, "--node-name", "tls-none@localhost", "--cluster-port", str(free_port()),
                "--config", str(config))  # fmt: skip
    code, err = node.exit_status(30)
    assert code == 1
    assert "cannot start: cluster.ssl_options.certfile is not set" in err
