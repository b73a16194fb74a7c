"""Configuration of an ``amqp-server`` process: a rabbitmq.conf file whose settings the node
really applies (several listeners, the default user, a log file), a mistyped key that stops the
start with one line naming it, RABBITMQ_* environment variables and their precedence
(command line > environment > file > default), and SIGTERM stopping the node cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pika
import pika.exceptions
import pytest
from conftest import Node, free_port
from rawamqp import RawClient

SCRIPT = Path(sys.executable).with_name("amqp-server")
SHUTDOWN = (320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'")


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def _node(nodes: list[Node], tmp_path: Path, text: str, port: int, *args: str, data: str = "data") -> Node:
    """A node started with ``text`` as its config file; ``port`` is the one it listens on."""
    config = tmp_path / "rabbitmq.conf"
    config.write_text(text)
    node = Node(tmp_path / data, tmp_path, "--config", str(config), *args, port=port)
    nodes.append(node)
    return node.wait_listening()


def _refused(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = subprocess.run([str(SCRIPT), *args], cwd=tmp_path, capture_output=True, timeout=30, env=env)
    return result.returncode, result.stderr.decode()


def test_listeners_default_user_and_log_file_from_the_config_file(nodes, tmp_path):
    first, second, third = free_port(), free_port(), free_port()
    log = tmp_path / "logs" / "broker.log"
    text = (
        f"listeners.tcp.default = 127.0.0.1:{first}\n"
        f"listeners.tcp.1 = 127.0.0.1:{second}   # a second listener\n"
        + (f"listeners.tcp.2 = ::1:{third}\n" if _ipv6_loopback() else "")
        + "default_user = admin\n"
        "default_pass = s3cret\n"
        "default_user_tags.monitoring = true\n"
        "default_permissions.configure = ^none$\n"
        "frame_max = 64KB\n"
        f"log.file = {log}\n"
        "log.file.level = debug\n"
        "log.console.level = warning\n"
    )
    node = _node(nodes, tmp_path, text, first)
    for port in (first, second):
        connection = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", port, credentials=pika.PlainCredentials("admin", "s3cret"))
        )
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.queue_declare("not-allowed")  # default_permissions.configure
        assert refused.value.reply_code == 403
        connection.close()
    if _ipv6_loopback():
        pika.BlockingConnection(
            pika.ConnectionParameters("::1", third, credentials=pika.PlainCredentials("admin", "s3cret"))
        ).close()
    raw = RawClient(second)
    try:
        assert raw.handshake("admin", "s3cret", open_vhost=False).frame_max == 65536
    finally:
        raw.close()
    code, err = node.stop(signal.SIGTERM)
    assert code == 0
    written = log.read_text()
    assert f"AMQP listener on 127.0.0.1:{second}, node rabbit@localhost" in written
    assert "AMQP listener" not in err  # the console takes warnings and up only


def test_default_user_tags_in_the_http_api(nodes, tmp_path):
    port = free_port()
    node = _node(
        nodes,
        tmp_path,
        f"listeners.tcp.default = 127.0.0.1:{port}\ndefault_user_tags.monitoring = true\n",
        port,
    )
    args = node.process.args
    api = int(args[args.index("--management-port") + 1])  # (Node passes a free one)
    request = urllib.request.Request(f"http://127.0.0.1:{api}/api/whoami")
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                whoami = json.loads(response.read())
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert whoami["tags"] == ["monitoring"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "heartbeat = 30\nframe_mx = 131072\n",
            "Conf file attempted to set unknown variable: frame_mx (CONF, line 2: unknown setting 'frame_mx', "
            "did you mean 'frame_max'?)",
        ),
        (
            "# comment\n\nlisteners.tcp.default = 5672\nheartbeat = soon\n",
            'Error transforming datatype for: heartbeat: "soon" cannot be converted to a(n) integer '
            "(CONF, line 4: invalid value 'soon')",
        ),
        (
            "log.console.level = loud\n",
            '"loud" is not a valid enum value, acceptable values are: debug, info',
        ),
        ("vm_memory_high_watermark.absolute = 2XB\n", "(CONF, line 1: invalid value '2XB')"),
        ("listeners.tcp.1 = 127.0.0.1\n", "(CONF, line 1: invalid value '127.0.0.1')"),
        (
            "heartbeat\n",
            "Error parsing configuration: Syntax error in CONF on line 1: expected 'key = value'",
        ),
    ],
)
def test_a_bad_config_file_stops_the_start_with_one_line(tmp_path, text, expected):
    config = tmp_path / "rabbitmq.conf"
    config.write_text(text)
    code, err = _refused(tmp_path, "--config", str(config), "--port", str(free_port()))
    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert expected.replace("CONF", str(config)) in err
    assert not (tmp_path / "data").exists()  # refused before anything was made


def test_environment_variables(nodes, tmp_path, monkeypatch):
    """RabbitMQ's variables: the config file (named without .conf), the node name, the data
    directory under RABBITMQ_MNESIA_BASE, the log directory, the AMQP port and address."""
    file_port, env_port = free_port(), free_port()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "rabbitmq.conf").write_text(f"listeners.tcp.default = {file_port}\nheartbeat = 11\n")
    monkeypatch.setenv("RABBITMQ_CONFIG_FILE", str(tmp_path / "etc" / "rabbitmq"))
    monkeypatch.setenv("RABBITMQ_NODENAME", "hare")
    monkeypatch.setenv("RABBITMQ_MNESIA_BASE", str(tmp_path / "mnesia"))
    monkeypatch.setenv("RABBITMQ_LOG_BASE", str(tmp_path / "log"))
    monkeypatch.setenv("RABBITMQ_NODE_PORT", str(env_port))  # over the file's listener
    monkeypatch.setenv("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
    node = Node(None, tmp_path, port=env_port)
    nodes.append(node)
    node.wait_listening()
    raw = RawClient(env_port)
    try:
        assert raw.handshake(open_vhost=False).heartbeat == 11  # the file was read
    finally:
        raw.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", file_port), timeout=1).close()
    code, _err = node.stop(signal.SIGTERM)
    assert code == 0
    assert (tmp_path / "mnesia" / "hare@localhost" / "metadata.db").exists()
    assert (
        f"AMQP listener on 127.0.0.1:{env_port}, node hare@localhost"
        in (tmp_path / "log" / "hare@localhost.log").read_text()
    )


def test_command_line_over_environment_over_file(nodes, tmp_path, monkeypatch):
    cli_port, env_port = free_port(), free_port()
    config = tmp_path / "rabbitmq.conf"
    config.write_text(f"listeners.tcp.default = {free_port()}\ndefault_user = fromfile\ndefault_pass = x\n")
    monkeypatch.setenv("RABBITMQ_NODE_PORT", str(env_port))
    monkeypatch.setenv("RABBITMQ_DEFAULT_USER", "fromenv")
    monkeypatch.setenv("RABBITMQ_NODENAME", "env@localhost")
    node = Node(
        tmp_path / "data", tmp_path, "--config", str(config), "--host", "127.0.0.1", "--port", str(cli_port),
        "--node-name", "cli@localhost", port=cli_port,
    )  # fmt: skip
    nodes.append(node)
    node.wait_listening()
    node.connect("fromenv", "x").close()  # user from the environment, password from the file
    code, err = node.stop(signal.SIGTERM)
    assert code == 0
    assert f"AMQP listener on 127.0.0.1:{cli_port}, node cli@localhost" in err


def test_bad_environment_variable_stops_the_start(tmp_path):
    env = {**os.environ, "RABBITMQ_NODE_PORT": "56x72"}
    code, err = _refused(tmp_path, env=env)
    assert (code, err) == (1, 'Invalid value for $RABBITMQ_NODE_PORT: "56x72"\n')


def test_unopenable_log_file_stops_the_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tmp_path / "rabbitmq.conf"
    config.write_text(f"log.file = {blocker / 'broker.log'}\n")  # under a file: cannot be made
    code, err = _refused(tmp_path, "--config", str(config), "--port", str(free_port()))
    assert code == 1
    assert err.startswith(f"cannot start: failed to open log file at '{blocker / 'broker.log'}', reason: ")
    assert len(err.splitlines()) == 1


def test_sigterm_closes_connections_and_keeps_confirmed_messages(nodes, tmp_path):
    port = free_port()
    node = _node(nodes, tmp_path, f"listeners.tcp.default = 127.0.0.1:{port}\n", port)
    publisher = node.connect()
    channel = publisher.channel()
    channel.confirm_delivery()
    channel.queue_declare("kept", durable=True)
    channel.basic_publish("", "kept", b"persistent", pika.BasicProperties(delivery_mode=2), mandatory=True)
    consumer = node.connect()
    node.process.send_signal(signal.SIGTERM)
    for connection in (publisher, consumer):
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.1)
        assert (closed.value.reply_code, closed.value.reply_text) == SHUTDOWN
    code, err = node.exit_status()
    assert code == 0, err
    again = _node(nodes, tmp_path, f"listeners.tcp.default = 127.0.0.1:{port}\n", port)
    connection = again.connect()
    method, _properties, body = connection.channel().basic_get("kept", auto_ack=True)
    assert body == b"persistent" and method.redelivered is False
    connection.close()


def test_a_failed_start_is_told_on_stderr_with_the_console_off(tmp_path):
    log = tmp_path / "broker.log"
    config = tmp_path / "rabbitmq.conf"
    config.write_text(f"log.console = false\nlog.file = {log}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _refused(
            tmp_path,
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "d"),
        )
    reason = f"cannot start: port {port} on 127.0.0.1 is in use (another broker running?)"
    assert (code, err) == (1, reason + "\n")
    assert reason in log.read_text()


def test_sigterm_as_soon_as_the_port_listens_is_a_clean_stop(nodes, tmp_path):
    """The AMQP port accepts before the HTTP listeners are up: a SIGTERM then still stops the
    node cleanly (exit 0), once it has started."""
    node = Node(tmp_path / "data", tmp_path)
    nodes.append(node)
    node.wait_listening()
    code, err = node.stop(signal.SIGTERM)
    assert code == 0, err
    assert "shutting down" in err


def test_max_message_size_from_the_config_file(nodes, tmp_path):
    """A body over max_message_size is refused with RabbitMQ's 406, whether it came in one body
    frame or in several (pika's frame_max of 4096 splits a 5,000-byte body); one at the limit passes."""
    port = free_port()
    node = _node(nodes, tmp_path, f"listeners.tcp.default = 127.0.0.1:{port}\nmax_message_size = 1000\n", port)
    for frame_max, size in ((131072, 1001), (4096, 5000)):
        connection = node.connect(frame_max=frame_max)
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", "nowhere", b"x" * 1000)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.basic_publish("", "nowhere", b"x" * size)
        assert refused.value.args == (
            406, f"PRECONDITION_FAILED - message size {size} is larger than configured max size 1000"
        )
        connection.close()
