"""The plugins built into the broker (rabbitmq_management, rabbitmq_prometheus and their
rabbitmq_management_agent and rabbitmq_web_dispatch) in amqp-plugins: listed as
rabbitmq-plugins lists them, [E*]/[e*] while the node's configuration runs them (amqp-server:
always), and enabling or disabling them refused, the configuration switches them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Node

from amqp_server import __version__

BUILT_IN = (
    "rabbitmq_management",
    "rabbitmq_management_agent",
    "rabbitmq_prometheus",
    "rabbitmq_web_dispatch",
)
REFUSED = (
    "Error:\n{}: built into this broker and switched by the node's configuration ({}, on in amqp-server), "
    "not by amqp-plugins\n"
)


def run(tool: str, data_dir: Path, *args: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", tool, "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def plugins(data_dir: Path, *args: str) -> tuple[int, str, str]:
    return run("amqp_server.plugins_cli", data_dir, *args)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("builtin")
    node = Node(base / "data", base).wait_listening()
    assert run("amqp_server.ctl", base / "data", "await_startup", "--timeout", "10")[0] == 0
    yield base / "data"
    node.kill()


def test_listed_as_rabbitmq_lists_them(data: Path) -> None:
    code, out, err = plugins(data, "list", "-v", "management|prometheus|web_dispatch")
    assert (code, err) == (0, "")
    assert out.endswith(
        f"[E*] rabbitmq_management\n     Version:     \t{__version__}\n"
        "     Dependencies:\t[rabbitmq_web_dispatch,rabbitmq_management_agent]\n"
        "     Description: \tRabbitMQ Management Console\n"
        f"[e*] rabbitmq_management_agent\n     Version:     \t{__version__}\n     Dependencies:\t[]\n"
        "     Description: \tRabbitMQ Management Agent\n"
        f"[E*] rabbitmq_prometheus\n     Version:     \t{__version__}\n"
        "     Dependencies:\t[rabbitmq_management_agent,rabbitmq_web_dispatch]\n     Description: \t\n"
        f"[e*] rabbitmq_web_dispatch\n     Version:     \t{__version__}\n     Dependencies:\t[]\n"
        "     Description: \tRabbitMQ Web Dispatcher\n"
    )
    code, out, _ = plugins(data, "-q", "list", "-E", "-m")
    assert (code, out) == (0, "rabbitmq_management\nrabbitmq_prometheus\n")
    rows = json.loads(plugins(data, "list", "--formatter", "json")[1])["plugins"]
    states = {row["name"]: (row["enabled"], row["running"]) for row in rows if row["name"] in BUILT_IN}
    assert states == {"rabbitmq_management": ("enabled", True), "rabbitmq_management_agent": ("implicit", True),
                      "rabbitmq_prometheus": ("enabled", True), "rabbitmq_web_dispatch": ("implicit", True)}  # fmt: skip
    assert plugins(data, "is_enabled", "rabbitmq_management", "rabbitmq_prometheus")[0] == 0


def test_enabling_or_disabling_them_is_refused(data: Path) -> None:
    code, out, err = plugins(data, "disable", "rabbitmq_management")
    assert (code, out, err) == (
        70, "Disabling plugins on node rabbit@localhost:\nrabbitmq_management\n",
        REFUSED.format("rabbitmq_management", "BrokerConfig.management"),
    )  # fmt: skip
    code, _, err = plugins(data, "disable", "rabbitmq_web_dispatch")
    assert (code, err) == (70, REFUSED.format("rabbitmq_web_dispatch",
                                              "BrokerConfig.management and BrokerConfig.prometheus"))  # fmt: skip
    # Nothing changed: the HTTP API still listens, no enabled_plugins file was written.
    status = json.loads(run("amqp_server.ctl", data, "status", "--formatter", "json")[1])
    assert "http" in {listener["protocol"] for listener in status["listeners"]}
    assert not (data / "enabled_plugins").exists()
    # Enabling one that runs already changes nothing, as rabbitmq-plugins says.
    code, out, _ = plugins(data, "enable", "rabbitmq_prometheus")
    assert code == 0 and out.endswith("Plugin configuration unchanged.\n")
    assert (data / "enabled_plugins").read_text() == "[].\n"  # (never in the file)


def test_set_and_disable_all_leave_them_running(data: Path) -> None:
    code, out, err = plugins(data, "set", "rabbitmq_random_exchange")
    assert (code, err) == (0, "")
    assert "The following plugins have been configured:\n  rabbitmq_management\n" in out
    assert (data / "enabled_plugins").read_text() == "[rabbitmq_random_exchange].\n"
    code, out, _ = plugins(data, "disable", "--all")
    assert code == 0 and (data / "enabled_plugins").read_text() == "[].\n"
    assert plugins(data, "-q", "list", "-E", "-m")[1] == "rabbitmq_management\nrabbitmq_prometheus\n"


def test_offline_they_are_not_known_to_run_and_cannot_be_enabled(tmp_path: Path) -> None:
    code, out, _ = plugins(tmp_path / "data", "list", "rabbitmq_management$")
    assert code == 0 and out.endswith(f"[  ] rabbitmq_management {__version__}\n")
    code, _, err = plugins(tmp_path / "data", "enable", "rabbitmq_prometheus")
    assert (code, err) == (70, REFUSED.format("rabbitmq_prometheus", "BrokerConfig.prometheus"))
    assert not (tmp_path / "data" / "enabled_plugins").exists()
