"""The plugin system in a running broker: plugins found in a plugins directory, enabled and
disabled at runtime and at boot, dependencies first, failures reported without taking the
broker down, placeholders for the exchanges of a disabled type, plugin policy keys and HTTP
routes."""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pika
import pytest
from conftest import start_broker
from helpers import closes, message_count

from amqp_server.plugin_host import PluginsNotFound, format_enabled, parse_enabled

# Test plugins, one module each in the plugins directory; they note their start and stop
# hooks in ``phtest_log.EVENTS`` (a module of the same directory: one list for all).
PLUGIN_MODULES = {
    "phtest_log": "EVENTS = []\n",
    "phtest_base": """
from amqp_server.plugin_api import Plugin
from phtest_log import EVENTS
PLUGIN = Plugin("phtest_base", description="Base", start=lambda ctx: EVENTS.append(("start", "phtest_base")),
                stop=lambda ctx: EVENTS.append(("stop", "phtest_base")))
""",
    "phtest_top": """
from amqp_server.plugin_api import Plugin
from phtest_log import EVENTS

async def start(ctx):
    EVENTS.append(("start", "phtest_top"))

PLUGIN = Plugin("phtest_top", description="Needs base", dependencies=("phtest_base",), start=start,
                stop=lambda ctx: EVENTS.append(("stop", "phtest_top")))
""",
    "phtest_broken": "raise RuntimeError('this plugin cannot be imported')\n",
    "phtest_failing": """
from amqp_server.plugin_api import Plugin

def start(ctx):
    raise ValueError("no start today")

PLUGIN = Plugin("phtest_failing", start=start)
""",
    "phtest_needs_failing": """
from amqp_server.plugin_api import Plugin
PLUGIN = Plugin("phtest_needs_failing", dependencies=("phtest_failing",))
""",
    "phtest_future": """
from amqp_server.plugin_api import Plugin
PLUGIN = Plugin("phtest_future", broker_version_requirement=">=99")
""",
    "phtest_policy": """
from amqp_server.plugin_api import Plugin
PLUGIN = Plugin("phtest_policy", policy_keys={
    "x-phtest-level": lambda v: None if isinstance(v, int) else f"{v!r} is not a valid x-phtest-level"})
""",
    "phtest_http": """
from amqp_server.plugin_api import Plugin
from management_ui.resource import Resource

class Echo(Resource):
    async def to_json(self, ctx):
        return {"vhost": ctx.param("vhost"), "plugin": "phtest_http"}

PLUGIN = Plugin("phtest_http", start=lambda ctx: ctx.add_routes([("/phtest/{vhost}", Echo())]))
""",
}


@pytest.fixture(scope="module")
def plugins_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("plugins")
    for name, text in PLUGIN_MODULES.items():
        (directory / f"{name}.py").write_text(text)
    return directory


@pytest.fixture(scope="module")
def node(plugins_dir: Path):
    """A broker with the test plugins directory and the HTTP API; consistent hash enabled."""
    handle = start_broker(
        plugins_dir=str(plugins_dir), management=True, management_port=0,
        plugins=["rabbitmq_consistent_hash_exchange"],
    )  # fmt: skip
    yield handle
    handle.stop()


def events() -> list[tuple[str, str]]:
    return sys.modules["phtest_log"].EVENTS


def http(handle: Any, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{handle.server.management_port}/api{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_enabled_plugins_file_is_rabbitmqs_erlang_term() -> None:
    assert format_enabled(["rabbitmq_shovel", "my-plugin"]) == "[rabbitmq_shovel,'my-plugin'].\n"
    assert parse_enabled("[rabbitmq_shovel,'my-plugin'].\n") == ["rabbitmq_shovel", "my-plugin"]
    assert parse_enabled("[ a ,\n b ] .") == ["a", "b"]
    assert parse_enabled("[].") == []
    for bad in ("[a,b]", "a.", "[Upper].", "[a,,b]."):
        with pytest.raises(ValueError):
            parse_enabled(bad)


def test_dependencies_start_first_and_stop_last(node) -> None:
    host = node.broker.plugins
    events().clear()
    assert node.run(host.enable("phtest_top")) == ["phtest_base", "phtest_top"]
    assert events() == [("start", "phtest_base"), ("start", "phtest_top")]
    assert host.explicit[-1] == "phtest_top" and "phtest_base" not in host.explicit
    listed = {p["name"]: p for p in node.call(host.describe)["plugins"]}
    assert (listed["phtest_top"]["enabled"], listed["phtest_base"]["enabled"]) == ("enabled", "implicit")
    assert listed["phtest_base"]["running"] and listed["phtest_top"]["running"]
    # Disabling the dependency disables what depends on it, that first.
    assert node.run(host.disable("phtest_base")) == ["phtest_top", "phtest_base"]
    assert events()[2:] == [("stop", "phtest_top"), ("stop", "phtest_base")]
    assert "phtest_top" not in host.explicit and "phtest_top" not in host.enabled


def test_unknown_names_change_nothing(node) -> None:
    host = node.broker.plugins
    before = list(host.explicit)
    with pytest.raises(PluginsNotFound) as raised:
        node.run(host.enable("phtest_base", "no_such_plugin"))
    assert str(raised.value) == "{:plugins_not_found, [:no_such_plugin]}"
    assert host.explicit == before and "phtest_base" not in host.enabled


def test_failures_are_reported_and_the_broker_goes_on(node, unique) -> None:
    host = node.broker.plugins
    assert node.run(host.enable("phtest_broken", "phtest_needs_failing", "phtest_future")) == []
    assert host.failed["phtest_broken"] == "RuntimeError: this plugin cannot be imported"
    assert host.failed["phtest_failing"] == "ValueError: no start today"
    assert host.failed["phtest_needs_failing"] == "dependencies not running: phtest_failing"
    assert host.failed["phtest_future"] == "broker version 0.1.0 does not satisfy '>=99'"
    status, extensions = http(node, "/extensions")
    assert status == 200
    assert {"name": "phtest_failing", "error": "ValueError: no start today"} in extensions
    connection = node.connect()  # the broker serves on
    connection.channel().queue_declare(unique, auto_delete=True)
    connection.close()
    node.run(host.disable("phtest_broken", "phtest_failing", "phtest_future"))  # (and what needs them)
    assert host.failed == {} and "phtest_needs_failing" not in host.explicit
    assert http(node, "/extensions") == (200, [])


def test_exchange_of_a_disabled_type_refuses_publishes_until_re_enabled(node, unique) -> None:
    host = node.broker.plugins
    connection = node.connect()
    channel = connection.channel()
    channel.exchange_declare(unique, "x-consistent-hash")
    channel.queue_declare(unique, auto_delete=True)
    channel.queue_bind(unique, unique, "1")
    node.run(host.disable("rabbitmq_consistent_hash_exchange"))
    try:
        code, text = closes(channel, lambda: channel.basic_publish(unique, "k", b"x"))
        assert (code, text) == (
            406,
            f"PRECONDITION_FAILED - Cannot route message through exchange '{unique}' in vhost '/': "
            "exchange type x-consistent-hash not found",
        )
        channel = connection.channel()
        channel.exchange_declare(unique, passive=True)  # it is still there
    finally:
        node.run(host.enable("rabbitmq_consistent_hash_exchange"))
    channel.confirm_delivery()
    channel.basic_publish(unique, "k", b"back")  # its binding came back with it
    assert message_count(channel, unique) == 1
    connection.close()


def test_plugin_policy_keys_are_validated_while_enabled(node, unique) -> None:
    host, admin = node.broker.plugins, node.admin

    def set_policy(value: Any) -> None:
        node.run(admin.set_policy("/", unique, "^x$", {"x-phtest-level": value}, 0, "all"))

    with pytest.raises(
        Exception, match=r"\[\{<<\"x-phtest-level\">>,3\}\] are not recognised policy settings"
    ):
        set_policy(3)
    node.run(host.enable("phtest_policy"))
    try:
        set_policy(3)
        with pytest.raises(Exception, match="'high' is not a valid x-phtest-level"):
            set_policy("high")
    finally:
        node.run(admin.clear_policy("/", unique))
        node.run(host.disable("phtest_policy"))


def test_plugin_http_routes_come_and_go_with_it(node) -> None:
    host = node.broker.plugins
    assert http(node, "/phtest/%2F")[0] == 404
    node.run(host.enable("phtest_http"))
    assert http(node, "/phtest/%2F") == (200, {"vhost": "/", "plugin": "phtest_http"})
    assert "phtest_http" in http(node, "/nodes")[1][0]["enabled_plugins"]
    node.run(host.disable("phtest_http"))
    assert http(node, "/phtest/%2F") == (404, {"error": "Object Not Found", "reason": "Not Found"})


def test_boot_enables_the_files_plugins_else_the_configured(plugins_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "enabled_plugins").write_text("[phtest_top].\n")
    handle = start_broker(data_dir=str(tmp_path), plugins_dir=str(plugins_dir), plugins=["phtest_policy"])
    try:
        assert handle.broker.plugins.enabled == ["phtest_base", "phtest_top"]
        handle.run(handle.broker.plugins.enable("rabbitmq_consistent_hash_exchange"))
        assert (
            tmp_path / "enabled_plugins"
        ).read_text() == "[phtest_top,rabbitmq_consistent_hash_exchange].\n"
    finally:
        handle.stop()
    events().clear()
    (tmp_path / "enabled_plugins").unlink()
    handle = start_broker(data_dir=str(tmp_path), plugins_dir=str(plugins_dir), plugins=["phtest_policy"])
    try:
        assert handle.broker.plugins.enabled == ["phtest_policy"]
    finally:
        handle.stop()


def test_stop_disables_every_plugin_last_first(plugins_dir: Path) -> None:
    handle = start_broker(plugins_dir=str(plugins_dir), plugins=["phtest_top"])
    events().clear()
    handle.stop()
    assert events() == [("stop", "phtest_top"), ("stop", "phtest_base")]


def test_stored_exchange_of_a_disabled_plugin_recovers_as_placeholder(tmp_path: Path, unique: str) -> None:
    handle = start_broker(data_dir=str(tmp_path), plugins=["rabbitmq_consistent_hash_exchange"])
    try:
        channel = handle.connect().channel()
        channel.exchange_declare(unique, "x-consistent-hash", durable=True)
        channel.queue_declare(unique, durable=True)
        channel.queue_bind(unique, unique, "1")
        handle.run(handle.broker.plugins.disable("rabbitmq_consistent_hash_exchange"))
    finally:
        handle.stop()
    handle = start_broker(data_dir=str(tmp_path))  # the file says none: a placeholder at boot
    try:
        channel = handle.connect().channel()
        code, _text = closes(channel, lambda: channel.basic_publish(unique, "k", b"x"))
        assert code == 406
        handle.run(handle.broker.plugins.enable("rabbitmq_consistent_hash_exchange"))
        channel = handle.connect().channel()
        channel.confirm_delivery()
        channel.basic_publish(unique, "k", b"x", pika.BasicProperties(delivery_mode=2))
        assert message_count(channel, unique) == 1
    finally:
        handle.stop()


def test_a_plugin_that_fails_to_import_at_boot_does_not_harm_it(plugins_dir: Path, tmp_path: Path, unique: str) -> None:
    (tmp_path / "enabled_plugins").write_text("[phtest_broken,phtest_top].\n")
    handle = start_broker(data_dir=str(tmp_path), plugins_dir=str(plugins_dir))
    try:
        assert handle.broker.plugins.enabled == ["phtest_base", "phtest_top"]
        assert handle.broker.plugins.failed == {"phtest_broken": "RuntimeError: this plugin cannot be imported"}
        connection = handle.connect()
        connection.channel().queue_declare(unique, auto_delete=True)
        connection.close()
    finally:
        handle.stop()
