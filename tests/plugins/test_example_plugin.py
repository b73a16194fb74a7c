"""The worked third-party example (examples/modulus-hash-exchange) as an operator meets it:
pip-installed (into a directory put on the broker's PYTHONPATH), enabled with amqp-plugins on
a running broker process, then used by a stock client, then disabled."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
from conftest import Node
from helpers import message_count
from test_plugins_cli import plugins, run

EXAMPLE = Path(__file__).parents[2] / "examples" / "modulus-hash-exchange"


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """The example installed with pip into a directory of its own (built from a copy: the
    build leaves files next to its sources)."""
    source = shutil.copytree(EXAMPLE, tmp_path / "source")
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture
def node(installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    monkeypatch.setenv("PYTHONPATH", str(installed))  # (the broker process inherits it)
    node = Node(tmp_path / "data", tmp_path).wait_listening()
    assert run("amqp_server.ctl", tmp_path / "data", "await_startup", "--timeout", "10")[0] == 0
    yield node
    node.kill()


def test_modulus_hash_plugin_installed_enabled_and_routing(node: Node, tmp_path: Path, unique: str) -> None:
    data = tmp_path / "data"
    code, out, _ = plugins(data, "list", "modulus")
    assert code == 0 and out.endswith("[  ] modulus_hash_exchange 1.0.0\n")
    code, out, err = plugins(data, "enable", "modulus_hash_exchange")
    assert (code, err) == (0, "") and out.endswith("started 1 plugins.\n")

    channel = node.connect().channel()
    channel.exchange_declare(unique, "x-modulus-hash")
    queues = [f"{unique}-{i}" for i in range(3)]
    for queue in queues:
        channel.queue_declare(queue, auto_delete=True)
        channel.queue_bind(queue, unique, "")
    channel.confirm_delivery()
    keys = [f"order-{i}" for i in range(30)]
    for key in keys:
        channel.basic_publish(unique, key, key.encode())
    expected = [sum(1 for key in keys if zlib.crc32(key.encode()) % 3 == i) for i in range(3)]
    assert all(expected)
    assert [message_count(channel, queue) for queue in queues] == expected
    for queue in queues:  # each message went where crc32(key) % 3 says
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        assert queues[zlib.crc32(body) % 3] == queue

    # Disabled, its exchange stays as a placeholder that refuses publishes, as RabbitMQ's does.
    code, out, err = plugins(data, "disable", "modulus_hash_exchange")
    assert (code, err) == (0, "") and out.endswith("stopped 1 plugins.\n")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.basic_publish(unique, "order-1", b"x")
        channel.queue_declare(queues[0], passive=True)  # (the refusal arrives by then)
    assert refused.value.args[0] == 406
    assert "exchange type x-modulus-hash not found" in refused.value.args[1]
