"""The Queues tab against a real client: queues appear and their counts change as pika works,
the list pages and filters, and a queue's page publishes, gets, purges and deletes."""

from __future__ import annotations

import pika
import pytest
from conftest import BrokerHandle
from playwright.sync_api import Page, expect

from .conftest import goto, open_section, row


def declare(broker: BrokerHandle, *names: str) -> pika.BlockingConnection:
    connection = broker.connect()
    channel = connection.channel()
    for name in names:
        channel.queue_declare(name)
    return connection


def test_queue_appears_and_its_count_follows_publishes(logged_in: Page, managed_broker: BrokerHandle, unique: str, snap) -> None:
    page = logged_in
    goto(page, "#/queues")
    page.get_by_label("Filter:").fill(unique)
    expect(page.get_by_text("No queues.")).to_be_visible()

    connection = declare(managed_broker, unique)
    try:
        queue_row = row(page, unique)
        expect(queue_row).to_be_visible()  # on the next refresh
        expect(queue_row.get_by_role("cell").nth(7)).to_have_text("0")  # Total
        channel = connection.channel()
        for i in range(3):
            channel.basic_publish("", unique, f"m{i}".encode())
        expect(queue_row.get_by_role("cell").nth(7)).to_have_text("3")
        expect(queue_row.get_by_role("cell").nth(5)).to_have_text("3")  # Ready
        snap(page, "queues")

        page.get_by_role("link", name=unique, exact=True).click()
        expect(page.get_by_role("heading", name=f"Queue {unique}")).to_be_visible()
        expect(page.locator(".messages-total")).to_have_text("3")
        channel.basic_publish("", unique, b"m3")
        expect(page.locator(".messages-total")).to_have_text("4")
        expect(page.get_by_role("img", name="Queued messages")).to_be_visible()
    finally:
        connection.channel().queue_delete(unique)
        connection.close()


def test_queue_list_pages_and_filters(logged_in: Page, managed_broker: BrokerHandle, unique: str) -> None:
    page = logged_in
    names = [f"{unique}-a", f"{unique}-b", f"{unique}-c"]
    connection = declare(managed_broker, *names)
    try:
        goto(page, "#/queues")
        page.get_by_label("Filter:").fill(unique)
        page.get_by_label("page size up to:").fill("2")
        page.get_by_label("page size up to:").press("Enter")
        expect(page.get_by_text("Displaying 2 of 3 queues")).to_be_visible()
        expect(page.get_by_text("of 2", exact=True)).to_be_visible()
        page.get_by_label("Page", exact=True).select_option("2")
        expect(row(page, names[2])).to_be_visible()
        expect(row(page, names[0])).to_be_hidden()

        # Sorted by name, then the other way round (a second click): c, b on page 1, a on page 2.
        by_name = page.get_by_role("columnheader", name="Name")
        by_name.get_by_role("button").click()
        expect(by_name).to_have_attribute("aria-sort", "ascending")
        by_name.get_by_role("button").click()
        expect(by_name).to_have_attribute("aria-sort", "descending")
        page.get_by_label("Page", exact=True).select_option("1")
        listed = page.get_by_role("row").filter(has=page.get_by_role("link", name=unique))
        expect(listed).to_have_count(2)
        expect(listed.first).to_contain_text(names[2])
        expect(listed.last).to_contain_text(names[1])
        page.get_by_label("Page", exact=True).select_option("2")
        expect(row(page, names[0])).to_be_visible()
        expect(row(page, names[2])).to_be_hidden()

        page.get_by_label("Filter:").fill(f"^{unique}-[ab]$")
        page.get_by_label("Regex").check()
        expect(page.get_by_text("Displaying 2 of 2 queues")).to_be_visible()
        expect(row(page, names[2])).to_be_hidden()
        page.get_by_label("Regex").uncheck()
        page.get_by_label("page size up to:").fill("100")
        page.get_by_label("page size up to:").press("Enter")
    finally:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
        connection.close()


def test_add_queue_publish_and_get_from_the_ui(logged_in: Page, managed_broker: BrokerHandle, unique: str, snap) -> None:
    page = logged_in
    goto(page, "#/queues")
    open_section(page, "Add a new queue")
    add = page.get_by_role("form", name="Add a new queue")
    add.get_by_label("Name").fill(unique)
    add.get_by_label("Durability").select_option("Transient")
    add.get_by_role("button", name="x-max-length", exact=True).click()
    add.get_by_label("Arguments value 1").fill("100")
    add.get_by_role("button", name="Add queue").click()
    expect(page.get_by_text(f"Queue {unique} added.")).to_be_visible()
    queue = managed_broker.call(lambda: managed_broker.broker.vhosts["/"].queues[unique])
    assert (queue.durable, queue.arguments) == (False, {"x-max-length": 100})

    goto(page, f"#/queues/%2F/{unique}")
    expect(page.get_by_role("heading", name=f"Queue {unique}")).to_be_visible()
    open_section(page, "Publish message")
    publish = page.get_by_role("form", name="Publish message")
    publish.get_by_label("Properties key 1").fill("content_type")
    publish.get_by_label("Properties value 1").fill("text/plain")
    publish.get_by_label("Payload", exact=True).fill("hello from the dashboard")
    publish.get_by_role("button", name="Publish message").click()
    expect(page.get_by_text("Message published.")).to_be_visible()
    expect(page.locator(".messages-total")).to_have_text("1")

    open_section(page, "Get messages")
    get = page.get_by_role("form", name="Get messages")
    get.get_by_label("Ack Mode").select_option("Automatic ack")
    get.get_by_role("button", name="Get Message(s)").click()
    got = page.locator(".message-box")
    expect(got.locator("pre.payload")).to_have_text("hello from the dashboard")
    expect(got).to_contain_text("content_type: text/plain")
    expect(got).to_contain_text("The server reported 0 messages remaining.")
    got.scroll_into_view_if_needed()
    snap(page, "queue-get")
    expect(page.locator(".messages-total")).to_have_text("0")

    # Read back over AMQP: the message was taken (automatic ack) and the queue is empty.
    connection = managed_broker.connect()
    try:
        channel = connection.channel()
        assert channel.queue_declare(unique, passive=True).method.message_count == 0
        channel.basic_publish("", unique, b"again")
        get.get_by_label("Ack Mode").select_option("Nack message requeue true")
        get.get_by_role("button", name="Get Message(s)").click()
        expect(got.locator("pre.payload")).to_have_text("again")
        assert channel.queue_declare(unique, passive=True).method.message_count == 1  # requeued

        open_section(page, "Purge")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Purge Messages").click()
        expect(page.get_by_text(f"Queue {unique} purged.")).to_be_visible()
        assert channel.queue_declare(unique, passive=True).method.message_count == 0
    finally:
        connection.channel().queue_delete(unique)
        connection.close()


def test_delete_queue(logged_in: Page, managed_broker: BrokerHandle, unique: str) -> None:
    page = logged_in
    declare(managed_broker, unique).close()
    goto(page, f"#/queues/%2F/{unique}")
    open_section(page, "Delete")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Queue").click()
    expect(page.get_by_text(f"Queue {unique} deleted.")).to_be_visible()
    expect(page.get_by_role("heading", name="Queues", exact=True)).to_be_visible()
    connection = managed_broker.connect()
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            connection.channel().queue_declare(unique, passive=True)
        assert closed.value.reply_code == 404
    finally:
        connection.close()


def test_bind_queue_from_its_page(logged_in: Page, managed_broker: BrokerHandle, unique: str) -> None:
    page = logged_in
    connection = declare(managed_broker, unique)
    try:
        goto(page, f"#/queues/%2F/{unique}")
        bind = page.get_by_role("form", name="Add binding to this queue")
        bind.get_by_label("From exchange").fill("amq.topic")
        bind.get_by_label("Routing key").fill("dash.#")
        bind.get_by_role("button", name="Bind").click()
        bound = page.get_by_role("row").filter(has=page.get_by_role("link", name="amq.topic"))
        expect(bound).to_contain_text("dash.#")
        channel = connection.channel()
        channel.basic_publish("amq.topic", "dash.board", b"routed")
        assert channel.queue_declare(unique, passive=True).method.message_count == 1
        bound.get_by_role("button", name="Unbind").click()
        expect(bound).to_be_hidden()
        channel.basic_publish("amq.topic", "dash.board", b"not routed")
        assert channel.queue_declare(unique, passive=True).method.message_count == 1
    finally:
        connection.channel().queue_delete(unique)
        connection.close()
