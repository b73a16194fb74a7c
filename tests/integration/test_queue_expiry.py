"""x-expires through the wire: a queue unused (no consumers, no basic.get, no redeclare) for that
long is deleted, messages and all; publishing, purging and binding do not count as use (recorded against RabbitMQ 3.10.8)."""

from __future__ import annotations

import time

import pika
import pytest
from helpers import queue_exists, wait_until
from pika.exceptions import ChannelClosedByBroker


def exists_quietly(broker, name: str) -> bool:
    """Like ``queue_exists`` but by looking at the broker's table: a passive declare would be a use."""
    return broker.call(lambda: name in broker.broker.vhosts["/"].queues)


def wait_gone(broker, connection: pika.BlockingConnection, name: str, limit: float = 2.0) -> None:
    wait_until(connection, lambda: not exists_quietly(broker, name), limit, f"queue {name} was not deleted")


def test_unused_queue_is_deleted_with_its_messages(broker, connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-expires": 200})
    channel.basic_publish("", unique, b"m")
    wait_gone(broker, connection, unique)
    assert not queue_exists(connection, unique)
    with pytest.raises(ChannelClosedByBroker) as raised:
        connection.channel().basic_get(unique)
    assert (raised.value.reply_code, raised.value.reply_text) == (404, f"NOT_FOUND - no queue '{unique}' in vhost '/'")


def test_a_consumer_keeps_it_and_cancel_restarts_the_countdown(broker, connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-expires": 150})
    tag = channel.basic_consume(unique, lambda *a: None)
    connection.sleep(0.4)
    assert exists_quietly(broker, unique)
    channel.basic_cancel(tag)
    wait_gone(broker, connection, unique)


def test_closing_the_consumers_channel_restarts_the_countdown(broker, connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-expires": 150})
    consumer_channel = connection.channel()
    consumer_channel.basic_consume(unique, lambda *a: None)
    connection.sleep(0.3)
    assert exists_quietly(broker, unique)
    consumer_channel.close()
    wait_gone(broker, connection, unique)


@pytest.mark.parametrize("use", ["passive", "redeclare", "get", "get-empty"])
def test_declare_and_get_restart_the_countdown(broker, connection, unique, use):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-expires": 500})
    if use == "get":
        channel.basic_publish("", unique, b"m")
    connection.sleep(0.3)
    if use == "passive":
        channel.queue_declare(unique, passive=True)
    elif use == "redeclare":
        channel.queue_declare(unique, arguments={"x-expires": 500})
    else:
        channel.basic_get(unique, auto_ack=True)
    connection.sleep(0.35)  # 0.65 s after the declare: gone by now without the use
    assert exists_quietly(broker, unique)
    wait_gone(broker, connection, unique)


@pytest.mark.parametrize("action", ["publish", "purge", "bind"])
def test_publish_purge_and_bind_do_not_count_as_use(broker, connection, unique, action):
    channel = connection.channel()
    channel.queue_declare(unique, arguments={"x-expires": 400})
    started = time.monotonic()
    connection.sleep(0.35)
    if action == "publish":
        channel.basic_publish("", unique, b"m")
    elif action == "purge":
        channel.queue_purge(unique)
    else:
        channel.queue_bind(unique, "amq.fanout")
    wait_gone(broker, connection, unique)
    # Deleted by the first countdown (0.4 s), not a restarted one (0.35 + 0.4 s).
    assert time.monotonic() - started < 0.65


def test_policy_expires_applies_to_an_existing_queue(broker, connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique)
    broker.run(broker.admin.set_policy("/", unique, f"^{unique}$", {"expires": 150}, apply_to="queues"))
    try:
        wait_gone(broker, connection, unique)
    finally:
        broker.run(broker.admin.clear_policy("/", unique))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "{value_zero,0}"),
        (-1, "{value_negative,-1}"),
        ("abc", '"expected integer, got longstr"'),
        (True, '"expected integer, got bool"'),
        (315360000001, "{value_too_large,315360000001}"),
    ],
)
def test_invalid_expires_is_refused(connection, unique, value, reason):
    channel = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as raised:
        channel.queue_declare(unique, arguments={"x-expires": value})
    assert (raised.value.reply_code, raised.value.reply_text) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-expires' for queue '{unique}' in vhost '/': {reason}",
    )
