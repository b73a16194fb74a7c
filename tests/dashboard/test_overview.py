"""Overview, Connections and Channels: totals and charts, nodes, a client's connection and
channels as pika opened them, and closing a connection from the UI."""

from __future__ import annotations

import pika
import pytest
from conftest import BrokerHandle
from helpers import connect_named, server_connection
from playwright.sync_api import Page, expect

from .conftest import goto, open_section


def test_overview_shows_totals_charts_and_nodes(logged_in: Page, managed_broker: BrokerHandle, snap) -> None:
    page = logged_in
    expect(page.get_by_role("img", name="Queued messages")).to_be_visible()
    expect(page.get_by_role("img", name="Message rates")).to_be_visible()
    for total in ("Connections", "Channels", "Exchanges", "Queues", "Consumers"):
        expect(page.locator(".count", has_text=f"{total}:")).to_be_visible()
    nodes = page.get_by_role("table", name="Nodes")
    expect(nodes).to_contain_text(managed_broker.broker.node_name)
    expect(page.get_by_text("No alarms in effect.")).to_be_visible()
    open_section(page, "Ports and contexts")
    expect(page.get_by_role("table", name="Listening ports")).to_contain_text(str(managed_broker.port))
    page.evaluate("window.scrollTo(0, 0)")
    snap(page, "overview")


def test_connection_and_channel_pages_and_closing(logged_in: Page, managed_broker: BrokerHandle, unique: str, snap) -> None:
    page = logged_in
    connection = connect_named(managed_broker, unique)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=7)
        local_port = server_connection(managed_broker, unique).peer[1]

        goto(page, "#/connections")
        page.get_by_label("Filter:").fill(f":{local_port} ->")
        link = page.get_by_role("link", name=f"127.0.0.1:{local_port} ->")
        expect(link).to_be_visible()
        expect(page.get_by_text(unique)).to_be_visible()  # the client-provided name
        snap(page, "connections")
        link.click()
        expect(page.get_by_role("heading", level=1)).to_contain_text(f"127.0.0.1:{local_port}")
        channels = page.get_by_role("table", name="Channels")
        expect(channels.get_by_role("row")).to_have_count(2)
        expect(channels).to_contain_text("C")  # confirm mode

        channels.get_by_role("link").first.click()
        expect(page.get_by_role("heading", level=1)).to_contain_text(f"127.0.0.1:{local_port}")
        expect(page.get_by_role("row", name="Prefetch count 7")).to_be_visible()
        page.go_back()

        open_section(page, "Close this connection")
        close = page.get_by_role("form", name="Close this connection")
        close.get_by_label("Reason").fill("closed by the dashboard test")
        close.get_by_role("button", name="Force Close").click()
        expect(page.get_by_role("heading", name="Connections", exact=True)).to_be_visible()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            connection.process_data_events(time_limit=5)
        assert (closed.value.reply_code, closed.value.reply_text) == (320, "CONNECTION_FORCED - closed by the dashboard test")
    finally:
        if connection.is_open:
            connection.close()
