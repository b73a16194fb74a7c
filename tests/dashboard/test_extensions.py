"""Dashboard extensions of plugins (NodeContext.add_dashboard_extension, /api/extensions): the
shovel and federation plugins' pages come with the plugins and go with them."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BrokerHandle, start_broker
from playwright.sync_api import Page, expect

from .conftest import goto, login, open_section, row

SHOVEL, FEDERATION = "rabbitmq_shovel", "rabbitmq_federation"


def http(handle: BrokerHandle, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    """A request to the broker's management port as guest."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{handle.server.management_port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def plugins(managed_broker: BrokerHandle) -> Iterator[None]:
    """The shovel and federation plugins enabled on the session's broker for one test."""
    managed_broker.run(managed_broker.broker.plugins.enable(SHOVEL, FEDERATION))
    yield
    managed_broker.run(managed_broker.broker.plugins.disable(SHOVEL, FEDERATION))


def shovel_parameters(handle: BrokerHandle) -> dict[tuple[str, str], Any]:
    return handle.call(
        lambda: {(v, n): value for (v, c, n), value in handle.broker.parameters.items() if c == "shovel"}
    )


def test_shovel_status_page_lists_adds_and_deletes(
    plugins, page: Page, managed_broker: BrokerHandle, unique: str, snap
) -> None:
    source, dest = f"{unique}-src", f"{unique}-dest"
    value = {"src-uri": "amqp://", "src-queue": source, "dest-uri": "amqp://", "dest-queue": dest}
    status, _ = http(managed_broker, "PUT", f"/api/parameters/shovel/%2F/{unique}", {"value": value})
    assert status == 201
    assert (
        http(managed_broker, "GET", "/api/extensions")[1].count(b"extensions/rabbitmq_shovel/shovel.js") == 1
    )
    try:
        login(page)
        page.get_by_role("link", name="Shovel Status").click()
        expect(page.get_by_role("heading", name="Shovel Status")).to_be_visible()
        listed = page.get_by_role("row").filter(has_text=unique)
        expect(listed).to_contain_text("running")  # the refresh follows it from starting
        expect(listed).to_contain_text(f"queue: {source}")
        expect(listed).to_contain_text(f"queue: {dest}")
        snap(page, "shovels")

        open_section(page, "Add a new shovel")
        add = page.get_by_role("form", name="Add a new shovel")
        add.get_by_label("Name", exact=True).fill(f"{unique}-2")
        add.get_by_label("Source queue or exchange").fill(dest)
        add.get_by_label("Destination type").select_option("exchange")
        add.get_by_label("Destination queue or exchange").fill("amq.topic")
        add.get_by_label("Destination routing key").fill("shovelled")
        add.get_by_label("Acknowledgement mode").select_option("on-publish")
        add.get_by_role("button", name="Add shovel").click()
        expect(page.get_by_role("row").filter(has_text=f"{unique}-2")).to_contain_text(
            "exchange: amq.topic (shovelled)"
        )
        assert shovel_parameters(managed_broker)[("/", f"{unique}-2")] == {
            "src-protocol": "amqp091", "src-uri": "amqp://", "src-queue": dest, "dest-protocol": "amqp091",
            "dest-uri": "amqp://", "dest-exchange": "amq.topic", "dest-exchange-key": "shovelled",
            "ack-mode": "on-publish", "src-delete-after": "never", "dest-add-forward-headers": False,
        }  # fmt: skip

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("row").filter(has_text=f"{unique}-2").get_by_role("button", name="Delete").click()
        expect(page.get_by_role("row").filter(has_text=f"{unique}-2")).to_be_hidden()
        assert ("/", f"{unique}-2") not in shovel_parameters(managed_broker)
    finally:
        for name in (unique, f"{unique}-2"):
            http(managed_broker, "DELETE", f"/api/parameters/shovel/%2F/{name}")


def test_federation_status_page_lists_links(
    plugins, page: Page, managed_broker: BrokerHandle, unique: str
) -> None:
    exchange = f"{unique}-fed"
    upstream = {
        "value": {"uri": f"amqp://guest:guest@127.0.0.1:{managed_broker.port}", "exchange": f"{unique}-up"}
    }
    policy = {
        "pattern": f"^{exchange}$",
        "apply-to": "exchanges",
        "definition": {"federation-upstream": unique},
    }
    for method, path, body in [
        ("PUT", f"/api/exchanges/%2F/{unique}-up", {"type": "fanout"}),
        ("PUT", f"/api/exchanges/%2F/{exchange}", {"type": "fanout"}),
        ("PUT", f"/api/parameters/federation-upstream/%2F/{unique}", upstream),
        ("PUT", f"/api/policies/%2F/{unique}", policy),
    ]:
        assert http(managed_broker, method, path, body)[0] in (201, 204)
    try:
        login(page)  # (the plugins' pages are there from the login on)
        goto(page, "#/federation")
        expect(page.get_by_role("heading", name="Federation Status")).to_be_visible()
        link = row(page, exchange)
        expect(link).to_contain_text("running")
        expect(link).to_contain_text(f"{unique}-up")  # the upstream exchange, named differently
        page.get_by_role("link", name=exchange, exact=True).click()
        expect(page.get_by_role("heading", name=f"Exchange: {exchange}")).to_be_visible()
    finally:
        for path in (f"/api/policies/%2F/{unique}", f"/api/parameters/federation-upstream/%2F/{unique}",
                     f"/api/exchanges/%2F/{exchange}", f"/api/exchanges/%2F/{unique}-up"):  # fmt: skip
            http(managed_broker, "DELETE", path)


def test_pages_go_with_their_plugin(page: Page, managed_broker: BrokerHandle) -> None:
    broker = managed_broker.broker
    managed_broker.run(broker.plugins.enable(SHOVEL))
    try:
        login(page)
        expect(page.get_by_role("link", name="Shovel Status")).to_be_visible()
        expect(page.get_by_role("link", name="Federation Status")).to_have_count(0)
    finally:
        managed_broker.run(broker.plugins.disable(SHOVEL))
    # Disabled: the module is no longer served or listed; a reload on its page shows the overview.
    assert http(managed_broker, "GET", "/js/extensions/rabbitmq_shovel/shovel.js")[0] == 404
    assert b"shovel" not in http(managed_broker, "GET", "/api/extensions")[1]
    goto(page, "#/shovels")
    page.reload()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("link", name="Shovel Status")).to_have_count(0)


PLUGIN_MODULE = """
from amqp_server.plugin_api import Plugin

def start(ctx):
    ctx.add_dashboard_extension({file!r})

PLUGIN = Plugin({name!r}, start=start)
"""


def test_a_plugins_module_is_served_from_its_package_and_a_missing_one_fails_it(tmp_path: Path) -> None:
    (tmp_path / "page_plugin").mkdir()
    (tmp_path / "page_plugin" / "__init__.py").write_text(
        PLUGIN_MODULE.format(file="ui/page.js", name="page_plugin")
    )
    (tmp_path / "page_plugin" / "ui").mkdir()
    (tmp_path / "page_plugin" / "ui" / "page.js").write_text("export default function register(ui) {}\n")
    (tmp_path / "no_page.py").write_text(PLUGIN_MODULE.format(file="nothere.js", name="no_page"))
    handle = start_broker(plugins_dir=str(tmp_path), plugins=["page_plugin", "no_page"], management=True,
                          management_port=0)  # fmt: skip
    try:
        status, body = http(handle, "GET", "/api/extensions")
        assert (status, json.loads(body)) == (200, [
            {"javascript": "extensions/page_plugin/page.js"},
            {"name": "no_page", "error": f"FileNotFoundError: dashboard extension {tmp_path / 'nothere.js'} not found"},
        ])  # fmt: skip
        status, body = http(handle, "GET", "/js/extensions/page_plugin/page.js")
        assert (status, body) == (200, b"export default function register(ui) {}\n")
        assert http(handle, "GET", "/js/extensions/page_plugin/__init__.py")[0] == 404
        assert http(handle, "GET", "/js/extensions/no_page/nothere.js")[0] == 404
    finally:
        handle.stop()
