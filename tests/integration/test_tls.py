"""AMQPS: pika, aio-pika and kombu over TLS, peer verification (no, untrusted and expired client
certificates refused), EXTERNAL logins from a client certificate, TLS versions, the wrong
protocol on either port refused at once, and certificates reloaded by SIGHUP."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import kombu
import pika
import pika.exceptions
import pytest
from conftest import BrokerHandle, Node, free_port, start_broker
from cryptography import x509
from tls_certs import Authority, Issued

from amqp_server.tls import TlsOptions


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued | Authority]:
    directory = tmp_path_factory.mktemp("pki")
    ca = Authority(directory, "test-ca")
    rogue = Authority(directory, "rogue-ca")
    return {
        "ca": ca,
        "server": ca.issue("server", "localhost", server=True),
        "guest": ca.issue("guest", "guest"),
        "carol": ca.issue("carol", "carol", organization="client"),
        "nobody": ca.issue("nobody", "nobody"),
        "expired": ca.issue("expired", "guest", expired=True),
        "untrusted": rogue.issue("untrusted", "guest"),
    }


def options(pki: dict, **overrides: object) -> TlsOptions:
    return TlsOptions(
        cacertfile=str(pki["ca"].path), certfile=str(pki["server"].cert), keyfile=str(pki["server"].key), **overrides
    )


def client_context(pki: dict, client: str | None = None, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"].path))
    for name, version in versions.items():
        setattr(context, name, version)
    if client is not None:
        context.load_cert_chain(str(pki[client].cert), str(pki[client].key))
    return context


def tls_port(handle: BrokerHandle) -> int:
    return handle.server.tls_listeners[0][1]


def pika_tls(port: int, context: ssl.SSLContext, **kw: object) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters("localhost", port, ssl_options=pika.SSLOptions(context, "localhost"), **kw)
    )


@pytest.fixture(scope="module")
def tls_broker(pki: dict) -> Iterator[BrokerHandle]:
    """Server certificate only (verify_none, RabbitMQ's default)."""
    handle = start_broker(ssl_listeners=[("127.0.0.1", 0)], ssl_options=options(pki))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def mutual_broker(pki: dict) -> Iterator[BrokerHandle]:
    """verify_peer with fail_if_no_peer_cert, and EXTERNAL offered."""
    handle = start_broker(
        ssl_listeners=[("127.0.0.1", 0)],
        ssl_options=options(pki, verify="verify_peer", fail_if_no_peer_cert=True),
        auth_mechanisms=["PLAIN", "AMQPLAIN", "EXTERNAL"],
    )
    yield handle
    handle.stop()


def test_pika_over_tls(pki: dict, tls_broker: BrokerHandle, unique: str) -> None:
    connection = pika_tls(tls_port(tls_broker), client_context(pki))
    channel = connection.channel()
    channel.queue_declare(unique, auto_delete=True)
    channel.basic_publish("", unique, b"secret")
    assert channel.basic_get(unique, auto_ack=True)[2] == b"secret"
    assert tls_broker.call(lambda: sorted(c.tls is not None for c in tls_broker.broker.connections)) == [True]
    connection.close()


async def test_aio_pika_over_tls(pki: dict, tls_broker: BrokerHandle, unique: str) -> None:
    connection = await aio_pika.connect(
        f"amqps://guest:guest@localhost:{tls_port(tls_broker)}/", ssl_context=client_context(pki)
    )
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(unique, auto_delete=True)
        await channel.default_exchange.publish(aio_pika.Message(b"over tls"), routing_key=unique)
        message = await queue.get(timeout=5)
        assert message is not None and message.body == b"over tls"
        await message.ack()


def test_kombu_over_tls(pki: dict, tls_broker: BrokerHandle, unique: str) -> None:
    """kombu (py-amqp, Celery's transport) with its ``ssl`` options as Celery passes them."""
    tls = {"ca_certs": str(pki["ca"].path), "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "localhost"}
    with kombu.Connection(f"amqp://guest:guest@localhost:{tls_port(tls_broker)}//", ssl=tls) as connection:
        queue = connection.SimpleQueue(unique, queue_opts={"auto_delete": True})
        queue.put({"over": "tls"})
        message = queue.get(timeout=5)
        assert message.payload == {"over": "tls"}
        message.ack()
        queue.close()


def test_kombu_with_a_client_certificate_logs_in_by_external(pki: dict, mutual_broker: BrokerHandle) -> None:
    tls = {"ca_certs": str(pki["ca"].path), "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "localhost",
           "certfile": str(pki["guest"].cert), "keyfile": str(pki["guest"].key)}  # fmt: skip
    url = f"amqp://localhost:{tls_port(mutual_broker)}//"
    with kombu.Connection(url, ssl=tls, login_method="EXTERNAL") as connection:
        connection.connect()
        assert connection.connected
        users = mutual_broker.call(lambda: sorted(c.username for c in mutual_broker.broker.connections))
        assert users == ["guest"]


def test_wrong_protocol_on_either_port_is_refused_at_once(pki: dict, tls_broker: BrokerHandle) -> None:
    # Plain AMQP to the TLS port: the "ClientHello" is not one, the handshake fails, the socket closes.
    with socket.create_connection(("127.0.0.1", tls_port(tls_broker)), timeout=5) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        answer = sock.recv(100)
        assert answer == b"" or answer[0] == 0x15  # closed, or a TLS alert record
    # A TLS hello to the plain port: the broker answers with its protocol header and hangs up.
    with socket.create_connection(("127.0.0.1", tls_broker.port), timeout=5) as sock, pytest.raises(ssl.SSLError):
        client_context(pki).wrap_socket(sock, server_hostname="localhost")


def test_client_certificates_are_checked(pki: dict, mutual_broker: BrokerHandle) -> None:
    port = tls_port(mutual_broker)
    for client in (None, "untrusted", "expired"):
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika_tls(port, client_context(pki, client), connection_attempts=1)
    pika_tls(port, client_context(pki, "guest")).close()


def test_external_login_from_the_certificate(pki: dict, mutual_broker: BrokerHandle) -> None:
    port = tls_port(mutual_broker)
    external = pika.credentials.ExternalCredentials()
    connection = pika_tls(port, client_context(pki, "guest"), credentials=external)
    assert mutual_broker.call(lambda: [(c.username, c.mechanism) for c in mutual_broker.broker.connections]) == [
        ("guest", "EXTERNAL")
    ]
    connection.close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):  # no user 'nobody'
        pika_tls(port, client_context(pki, "nobody"), credentials=external, connection_attempts=1)
    # On the plain port no certificate names the user: EXTERNAL is not offered there.
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", mutual_broker.port, credentials=external, connection_attempts=1)
        )


def test_external_login_from_the_distinguished_name(pki: dict) -> None:
    handle = start_broker(
        ssl_listeners=[("127.0.0.1", 0)],
        ssl_options=options(pki, verify="verify_peer"),
        auth_mechanisms=["EXTERNAL"],
        ssl_cert_login_from="distinguished_name",
    )
    try:
        handle.run(handle.admin.add_user("CN=carol,O=client", ""))
        handle.run(handle.admin.set_permissions("CN=carol,O=client", "/", ".*", ".*", ".*"))
        external = pika.credentials.ExternalCredentials()
        connection = pika_tls(tls_port(handle), client_context(pki, "carol"), credentials=external)
        connection.channel().queue_declare("", exclusive=True)
        connection.close()
    finally:
        handle.stop()


def test_tls_versions(pki: dict) -> None:
    handle = start_broker(ssl_listeners=[("127.0.0.1", 0)], ssl_options=options(pki, versions=["tlsv1.2"]))
    try:
        port = tls_port(handle)
        with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError)):  # pika lets this one through
            pika_tls(port, client_context(pki, minimum_version=ssl.TLSVersion.TLSv1_3), connection_attempts=1)
        pika_tls(port, client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2)).close()
    finally:
        handle.stop()


def served_serial(pki: dict, port: int) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        client_context(pki).wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_config_file_listener_and_sighup_reload(pki: dict, tmp_path: Path) -> None:
    plain, secure = free_port(), free_port()
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_bytes(pki["server"].cert.read_bytes())
    key.write_bytes(pki["server"].key.read_bytes())
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(
        f"listeners.tcp.default = 127.0.0.1:{plain}\n"
        f"listeners.ssl.default = 127.0.0.1:{secure}\n"
        f"ssl_options.cacertfile = {pki['ca'].path}\n"
        f"ssl_options.certfile = {cert}\n"
        f"ssl_options.keyfile = {key}\n"
        "ssl_options.versions.1 = tlsv1.3\n"
        "ssl_options.versions.2 = tlsv1.2\n"
    )
    # The TLS listener starts after the plain one: waiting for it waits for both.
    node = Node(tmp_path / "data", tmp_path, "--config", str(conf), port=secure).wait_listening()
    try:
        before = served_serial(pki, secure)
        renewed = pki["ca"].issue("renewed", "localhost", server=True)
        cert.write_bytes(renewed.cert.read_bytes())
        key.write_bytes(renewed.key.read_bytes())
        node.process.send_signal(signal.SIGHUP)
        serial = x509.load_pem_x509_certificate(renewed.cert.read_bytes()).serial_number
        deadline = time.monotonic() + 15  # the signal is handled on one of the node's next loop turns
        while served_serial(pki, secure) != serial and time.monotonic() < deadline:
            time.sleep(0.05)
        assert before != serial and served_serial(pki, secure) == serial
    finally:
        code, err = node.stop(signal.SIGTERM)
    assert code == 0 and "TLS certificates reloaded" in err


def test_a_missing_certificate_stops_the_start(tmp_path: Path) -> None:
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(f"listeners.ssl.default = 127.0.0.1:{free_port()}\nssl_options.certfile = {tmp_path}/none.pem\n")
    node = Node(tmp_path / "data", tmp_path, "--config", str(conf))
    code, err = node.exit_status()
    assert code == 1 and "cannot start: ssl_options: cannot read" in err


def test_http_api_and_metrics_over_https(pki: dict) -> None:
    """management.ssl.* and prometheus.ssl.*: HTTPS only (no *.tcp.port given), client
    certificates checked as for AMQPS."""
    handle = start_broker(
        management=True, management_port=None, management_ssl_port=0,
        management_ssl_options=options(pki, verify="verify_peer", fail_if_no_peer_cert=True),
        prometheus=True, prometheus_port=None, prometheus_ssl_port=0, prometheus_ssl_options=options(pki),
    )  # fmt: skip
    try:
        api = f"https://localhost:{handle.server.management.https_port}/api/overview"
        request = urllib.request.Request(api, headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})  # guest:guest
        with urllib.request.urlopen(request, context=client_context(pki, "guest"), timeout=10) as reply:
            assert json.load(reply)["node"] == handle.broker.node_name
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):  # no client certificate
            urllib.request.urlopen(request, context=client_context(pki), timeout=10).read()
        metrics = f"https://localhost:{handle.server.prometheus.https_port}/metrics"
        with urllib.request.urlopen(metrics, context=client_context(pki), timeout=10) as reply:
            assert b"rabbitmq_connections" in reply.read()
        assert handle.server.management.port == handle.server.management.https_port  # no plain HTTP listener
    finally:
        handle.stop()
