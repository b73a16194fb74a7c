"""amqp-plugins as a subprocess: rabbitmq-plugins 3.10's texts, JSON and exit codes, with a
broker process running (changes applied at once) and without one (the enabled_plugins file
only, read at the next boot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from conftest import Node
from helpers import closes, message_count

from amqp_server.plugin_host import ENABLED_PLUGINS_ENV

HASH = "rabbitmq_consistent_hash_exchange"
LEGEND = " Configured: E = explicitly enabled; e = implicitly enabled\n"


def run(tool: str, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", tool, "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def plugins(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return run("amqp_server.plugins_cli", data_dir, *args, env=env)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = Node(tmp_path / "data", tmp_path).wait_listening()
    assert run("amqp_server.ctl", tmp_path / "data", "await_startup", "--timeout", "10")[0] == 0
    yield node
    node.kill()


def test_offline_changes_write_the_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out, err = plugins(data, "enable", HASH)
    assert (code, err) == (0, "")
    assert out == (
        f"Enabling plugins on node rabbit@localhost:\n{HASH}\nThe following plugins have been configured:\n"
        f"  {HASH}\nApplying plugin configuration to rabbit@localhost...\n"
        f"The following plugins have been enabled:\n  {HASH}\n\nset 1 plugins.\n"
        "Offline change; changes will take effect at broker restart.\n"
    )
    assert (data / "enabled_plugins").read_text() == f"[{HASH}].\n"
    code, out, _ = plugins(data, "enable", HASH)
    assert out.endswith(
        "Applying plugin configuration to rabbit@localhost...\nPlugin configuration unchanged.\n"
    )
    code, out, _ = plugins(data, "list", "-E")
    assert (code, out) == (0, f'Listing plugins with pattern ".*" ...\n{LEGEND}'
                              " | Status: [failed to contact rabbit@localhost - status not shown]\n |/\n"
                              f"[E ] {HASH} 0.1.0\n")  # fmt: skip
    code, out, _ = plugins(data, "-q", "disable", HASH)
    assert (code, out) == (0, "All plugins have been disabled.\nApplying plugin configuration to rabbit@localhost...\n"
                              f"The following plugins have been disabled:\n  {HASH}\n\nnothing to do.\n"
                              "Offline change; changes will take effect at broker restart.\n")  # fmt: skip
    assert (data / "enabled_plugins").read_text() == "[].\n"


def test_errors_and_exit_codes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out, err = plugins(data, "enable", "foo", "bar")
    assert (code, out, err) == (70, "Enabling plugins on node rabbit@localhost:\nfoo\nbar\n",
                                "Error:\n{:plugins_not_found, [:bar, :foo]}\n")  # fmt: skip
    code, _, err = plugins(data, "set", "foo")
    assert (code, err) == (65, "Error:\nThe following plugins were not found: foo\n")
    code, _, err = plugins(data, "enable")
    assert code == 64 and err.startswith(
        "Error (argument validation): not enough arguments.\nArguments given:\n\t"
    )
    code, _, err = plugins(data, "list", "--offline")
    assert code == 64 and err.startswith(
        "Error (argument validation): Invalid options for this command:\n--offline : \n"
    )
    assert plugins(data, "frobnicate")[0] == 64
    assert not (data / "enabled_plugins").exists()


def test_enabled_plugins_file_from_the_environment(tmp_path: Path) -> None:
    named = tmp_path / "elsewhere" / "my_enabled_plugins"
    env = {**os.environ, ENABLED_PLUGINS_ENV: str(named)}
    assert plugins(tmp_path / "data", "--offline", "set", HASH, env=env)[0] == 0
    assert named.read_text() == f"[{HASH}].\n"
    code, out, _ = plugins(tmp_path / "data", "--formatter", "json", "list", "-e", env=env)
    assert json.loads(out) == {
        "format": "normal", "status": "node_down",
        "plugins": [{"enabled": "enabled", "name": HASH, "running": False, "running_version": None,
                     "version": [ord(c) for c in "0.1.0"]}],
    }  # fmt: skip


def test_is_enabled_and_directories_offline(tmp_path: Path) -> None:
    data, named = tmp_path / "data", tmp_path / "plugins_file"
    # Without a node they answer only with --offline, as rabbitmq-plugins' do.
    code, _, err = plugins(data, "is_enabled", HASH)
    assert code == 64 and err.startswith("Error: this command requires the target node to be running.\n")
    assert plugins(data, "directories", "x")[0] == 64
    assert plugins(data, "--offline", "--enabled-plugins-file", str(named), "set", "rabbitmq_federation")[0] == 0
    code, out, _ = plugins(data, "--offline", "--enabled-plugins-file", str(named), "is_enabled", "rabbitmq_federation")
    assert (code, out) == (0, "Inferring if plugin rabbitmq_federation is from local environment...\n"
                              "Plugin rabbitmq_federation is enabled\n")  # fmt: skip
    code, out, err = plugins(data, "--offline", "--formatter", "json", "is_enabled", HASH)
    assert (code, out, json.loads(err)) == (
        69, "", {"message": f"Plugin {HASH} is not enabled. Enabled plugins and dependencies: ", "result": "error"})  # fmt: skip
    env = {**os.environ, "RABBITMQ_PLUGINS_DIR": str(tmp_path / "more")}
    code, out, _ = plugins(data, "--offline", "--formatter", "json", "directories", env=env)
    assert json.loads(out) == {"enabled_plugins_file": str(data / "enabled_plugins"),
                               "plugins_dir": str(tmp_path / "more"), "plugins_expand_dir": ""}  # fmt: skip


def test_online_changes_apply_at_once_and_last(node: Node, tmp_path: Path, unique: str) -> None:
    data = tmp_path / "data"
    code, out, err = plugins(data, "enable", HASH)
    assert (code, err) == (0, "")
    assert out.endswith(f"The following plugins have been enabled:\n  {HASH}\n\nstarted 1 plugins.\n")
    code, out, _ = plugins(data, "-q", "list", "rabbitmq_consistent")
    assert out == f"[E*] {HASH} 0.1.0\n"
    assert plugins(data, "is_enabled", HASH) == (
        0, f"Asking node rabbit@localhost if plugin {HASH} is enabled...\n"
           f"Plugin {HASH} is enabled on node rabbit@localhost\n", "")  # fmt: skip
    # (the built-in plugins run too)
    assert plugins(data, "is_enabled", "rabbitmq_shovel", "rabbitmq_federation")[::2] == (
        69, "Error:\nPlugins rabbitmq_shovel, rabbitmq_federation are not enabled on node rabbit@localhost. "
            f"Enabled plugins and dependencies: {HASH}, rabbitmq_management, rabbitmq_management_agent, "
            "rabbitmq_prometheus, rabbitmq_web_dispatch\n")  # fmt: skip
    code, out, _ = plugins(data, "directories")
    assert (code, out) == (0, "Listing plugin directories used by node rabbit@localhost\nPlugin archives directory: \n"
                              f"Plugin expansion directory: \nEnabled plugins file: {data / 'enabled_plugins'}\n")  # fmt: skip
    connection = node.connect()
    channel = connection.channel()
    channel.exchange_declare(unique, "x-consistent-hash", durable=True)
    channel.queue_declare(unique, durable=True)
    channel.queue_bind(unique, unique, "1")

    code, out, _ = plugins(data, "--formatter", "json", "disable", HASH)
    built_in = (
        '"rabbitmq_management","rabbitmq_management_agent","rabbitmq_prometheus","rabbitmq_web_dispatch"'
    )
    assert (code, out) == (0, f'[\n[{built_in}]\n,{{"disabled":["{HASH}"],"mode":"online","set":[{built_in}],'
                              f'"started":[],"stopped":["{HASH}"]}}\n]\n')  # fmt: skip
    assert closes(channel, lambda: channel.basic_publish(unique, "k", b"x"))[0] == 406
    connection.close()

    assert plugins(data, "set", HASH)[1].endswith("started 1 plugins.\n")
    node.stop(15)  # SIGTERM; the file brings the plugin back at the next boot
    again = Node(data, tmp_path)
    try:
        again.wait_listening()
        channel = again.connect().channel()
        channel.confirm_delivery()
        channel.basic_publish(unique, "k", b"x", pika.BasicProperties(delivery_mode=2))
        assert message_count(channel, unique) == 1
    finally:
        again.kill()
