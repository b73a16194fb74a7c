"""The broker as a process: ``python -m amqp_server`` and the ``amqp-server`` script start,
log to stderr, serve pika, and on SIGTERM or SIGINT close every connection with RabbitMQ's
320 CONNECTION_FORCED before exiting 0. ``--config`` reads rabbitmq.conf syntax."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pika
import pika.exceptions
import pytest
from conftest import Node, free_port
from rawamqp import RawClient

SHUTDOWN_TEXT = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
SCRIPT = Path(sys.executable).with_name("amqp-server")


def _start(nodes: list[Node], tmp_path: Path, *args: str, script: bool = False) -> Node:
    node = Node(tmp_path / "data", tmp_path, *args, script=script)
    nodes.append(node)
    return node.wait_listening()


def _expect_forced_close(connection: pika.BlockingConnection) -> None:
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as caught:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
    assert (caught.value.reply_code, caught.value.reply_text) == (320, SHUTDOWN_TEXT)


@pytest.mark.parametrize(("script", "sig"), [(False, signal.SIGTERM), (True, signal.SIGINT)])
def test_start_serve_and_stop(nodes, tmp_path, script, sig):
    if script:
        assert SCRIPT.exists(), "the amqp-server console script is installed with the package"
    node = _start(nodes, tmp_path, script=script)
    connection = node.connect()
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"hello")
    assert channel.basic_get(queue, auto_ack=True)[2] == b"hello"
    node.process.send_signal(sig)
    _expect_forced_close(connection)
    _out, err = node.process.communicate(timeout=15)
    assert node.process.returncode == 0
    assert f"127.0.0.1:{node.port}" in err.decode()  # it logs to stderr, listener included


def test_stop_closes_every_connection(nodes, tmp_path):
    node = _start(nodes, tmp_path)
    connections = [node.connect() for _ in range(3)]
    node.process.send_signal(signal.SIGTERM)
    for connection in connections:
        _expect_forced_close(connection)
    node.process.communicate(timeout=15)
    assert node.process.returncode == 0


def test_config_file(nodes, tmp_path):
    port = free_port()
    config = tmp_path / "rabbitmq.conf"
    config.write_text(
        "# rabbitmq.conf syntax\n"
        f"listeners.tcp.default = 127.0.0.1:{port}\n"
        "default_user = admin\n"
        "default_pass = s3cret  # trailing comment\n"
        "heartbeat = 7\n"
        "channel_max = 64\n"
        "\n"
    )
    node = Node(tmp_path / "data", tmp_path, "--config", str(config), port=port)
    nodes.append(node)
    node.wait_listening()
    connection = node.connect("admin", "s3cret")
    raw = RawClient(port)
    try:
        tune = raw.handshake("admin", "s3cret", open_vhost=False)
        assert (tune.heartbeat, tune.channel_max, tune.frame_max) == (7, 64, 131072)
    finally:
        raw.close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        node.connect()  # no guest: default_user replaced it
    connection.close()
    code, _err = node.stop(signal.SIGTERM)
    assert code == 0


def test_config_file_with_unknown_key_refuses_to_start(tmp_path):
    config = tmp_path / "rabbitmq.conf"
    config.write_text("no.such.setting = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "amqp_server", "--config", str(config), "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        env={**os.environ},
    )
    assert result.returncode != 0
    assert "unknown setting 'no.such.setting'" in result.stderr.decode()


def _refused(cwd: Path, *args: str) -> str:
    """Run ``amqp-server`` with ``args``, which must make it exit at once with one line on stderr
    saying why; return that line. A hang fails through the timeout."""
    result = subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, timeout=30)
    err = result.stderr.decode()
    assert result.returncode != 0, err
    assert "Traceback" not in err, err
    reasons = [line for line in err.splitlines() if "cannot start: " in line]
    assert len(reasons) == 1, err
    return reasons[0]


def test_port_in_use_refuses_to_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        reason = _refused(tmp_path, "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert reason.endswith(f"cannot start: port {port} on 127.0.0.1 is in use (another broker running?)")


def test_data_dir_that_is_a_file_refuses_to_start(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.write_text("not a directory")  # fails as root too, unlike a permission problem
    reason = _refused(tmp_path, "--port", str(free_port()), "--data-dir", str(data_dir))
    assert reason.endswith(f"cannot start: cannot create data directory {data_dir}: File exists")


def test_locked_data_dir_refuses_to_start(nodes, tmp_path):
    first = _start(nodes, tmp_path, script=True)
    data_dir = tmp_path / "data"
    reason = _refused(tmp_path, "--host", "127.0.0.1", "--port", str(free_port()), "--data-dir", str(data_dir))
    assert reason.endswith(
        f"cannot start: data directory {data_dir} is in use by another broker process (lock {data_dir / '.lock'} is held)"
    )
    first.connect().close()  # the running broker is unaffected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "70000"], "cannot start: port 70000 is out of range (0-65535)"),
        (["--config", "missing.conf"], "cannot read config file missing.conf: No such file or directory"),
    ],
)
def test_bad_option_refuses_to_start(tmp_path, args, expected):
    result = subprocess.run([str(SCRIPT), *args], cwd=tmp_path, capture_output=True, timeout=30)
    assert result.returncode != 0
    assert result.stderr.decode() == expected + "\n"  # nothing else: the broker never booted


def test_unreadable_definitions_file_refuses_to_start(tmp_path):
    config = tmp_path / "rabbitmq.conf"
    config.write_text(f"load_definitions = {tmp_path / 'missing.json'}\n")
    reason = _refused(tmp_path, "--config", str(config), "--port", str(free_port()), "--data-dir", str(tmp_path / "data"))
    assert f"cannot start: cannot read definitions file {tmp_path / 'missing.json'}: " in reason


def _http_get(url: str, auth: tuple[str, str] | None = None) -> bytes:
    """GET ``url``; retried briefly, since the HTTP listeners open just after the AMQP one."""
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.read()
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_the_http_api_and_the_metrics_listen_from_the_command_line(nodes, tmp_path):
    api, metrics = free_port(), free_port()
    node = Node(tmp_path / "data", tmp_path, "--management-port", str(api), "--prometheus-port", str(metrics))
    nodes.append(node)
    node.wait_listening()
    overview = json.loads(_http_get(f"http://127.0.0.1:{api}/api/overview", ("guest", "guest")))
    assert overview["node"] == "rabbit@localhost"
    assert b"\nrabbitmq_connections 0\n" in _http_get(f"http://127.0.0.1:{metrics}/metrics")


@pytest.mark.parametrize("option", ["--management-port", "--prometheus-port"])
def test_http_port_in_use_refuses_to_start(tmp_path, option):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        reason = _refused(
            tmp_path, "--host", "127.0.0.1", "--port", str(free_port()), "--management-port", str(free_port()),
            "--prometheus-port", "0", option, str(port), "--data-dir", str(tmp_path / "data"),
        )  # fmt: skip
    assert reason.endswith(f"cannot start: port {port} on 127.0.0.1 is in use (another broker running?)")
