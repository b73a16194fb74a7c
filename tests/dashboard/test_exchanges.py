"""The Exchanges tab: adding an exchange, binding it from its page, publishing through it."""

from __future__ import annotations

from conftest import BrokerHandle
from playwright.sync_api import Page, expect

from .conftest import goto, open_section, row


def test_add_exchange_bind_and_publish(logged_in: Page, managed_broker: BrokerHandle, unique: str, snap) -> None:
    page = logged_in
    exchange, queue = f"{unique}-x", f"{unique}-q"
    connection = managed_broker.connect()
    channel = connection.channel()
    channel.queue_declare(queue)
    try:
        goto(page, "#/exchanges")
        open_section(page, "Add a new exchange")
        add = page.get_by_role("form", name="Add a new exchange")
        add.get_by_label("Name").fill(exchange)
        add.get_by_label("Type", exact=True).select_option("topic")
        add.get_by_role("button", name="Add exchange").click()
        page.get_by_label("Filter:").fill(unique)
        expect(row(page, exchange)).to_contain_text("topic")
        snap(page, "exchanges")

        page.get_by_role("link", name=exchange, exact=True).click()
        expect(page.get_by_role("heading", name=f"Exchange: {exchange}")).to_be_visible()
        bind = page.get_by_role("form", name="Add binding from this exchange")
        bind.get_by_label("Destination name").fill(queue)
        bind.get_by_label("Routing key").fill("orders.*")
        bind.get_by_role("button", name="Bind").click()
        expect(row(page, queue)).to_contain_text("orders.*")

        open_section(page, "Publish message")
        publish = page.get_by_role("form", name="Publish message")
        publish.get_by_label("Routing key").fill("orders.new")
        publish.get_by_label("Delivery mode").select_option("2 - Persistent")
        publish.get_by_label("Headers key 1").fill("source")
        publish.get_by_label("Headers value 1").fill("dashboard")
        publish.get_by_label("Payload", exact=True).fill('{"id": 1}')
        publish.get_by_role("button", name="Publish message").click()
        expect(page.get_by_text("Message published.", exact=True)).to_be_visible()
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        assert (method.routing_key, body, properties.delivery_mode, properties.headers) == (
            "orders.new", b'{"id": 1}', 2, {"source": "dashboard"})

        publish.get_by_label("Routing key").fill("invoices.new")
        publish.get_by_label("Payload", exact=True).fill("nobody wants this")
        publish.get_by_role("button", name="Publish message").click()
        expect(page.get_by_text("Message published, but not routed.")).to_be_visible()
        snap(page, "exchange")

        row(page, queue).get_by_role("button", name="Unbind").click()
        expect(row(page, queue)).to_be_hidden()

        open_section(page, "Delete this exchange")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Delete this exchange").click()
        expect(page.get_by_role("heading", name="Exchanges", exact=True)).to_be_visible()
        assert managed_broker.call(lambda: exchange in managed_broker.broker.vhosts["/"].exchanges) is False
    finally:
        channel.queue_delete(queue)
        connection.close()
