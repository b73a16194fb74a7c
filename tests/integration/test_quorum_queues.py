"""Quorum queues (``x-queue-type: quorum``) on one node, through the wire with pika and
aio-pika, with RabbitMQ 3.10.8's reply codes, texts and behaviour (each checked against it):
declare refusals, every message on disk and confirmed once there, restart survival, the
delivery limit with ``x-delivery-count`` and dead-lettering, returns to the back of the
queue, overflow (soft reject-publish, reject-publish-dlx as drop-head) and the type shown by
amqp-ctl list_queues and the HTTP API."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

import aio_pika
import aiormq
import pika
import pytest
from conftest import start_broker
from helpers import channel_error, drain, message_count, wait_until

QUORUM = {"x-queue-type": "quorum"}


@pytest.fixture
def quorum(connection, unique: str):  # noqa: ANN001, ANN201
    """Declare the test's quorum queue (with extra arguments); deleted after the test."""

    def declare(name: str = unique, **arguments: Any) -> str:
        connection.channel().queue_declare(name, durable=True, arguments={**QUORUM, **arguments})
        return name

    yield declare
    for name in (unique, f"{unique}-dead"):
        connection.channel().queue_delete(name)


def confirmed(channel: Any, queue: str, *bodies: bytes, **properties: Any) -> list[str]:
    """Publish with confirms: "ack" or "nack" per message."""
    channel.confirm_delivery()
    outcomes = []
    for body in bodies:
        try:
            channel.basic_publish("", queue, body, pika.BasicProperties(**properties))
            outcomes.append("ack")
        except pika.exceptions.NackError:
            outcomes.append("nack")
    return outcomes


def where(name: str) -> str:
    return f"queue '{name}' in vhost '/'"


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        ({"durable": False}, "non-durable"),
        ({"exclusive": True}, "exclusive-owner"),
        ({"auto_delete": True}, "auto-delete"),
        ({"durable": False, "exclusive": True, "auto_delete": True}, "auto-delete"),  # RabbitMQ's order
    ],
)
def test_a_quorum_queue_is_durable_shared_and_kept(connection, unique, flags, refused) -> None:  # noqa: ANN001
    flags = {"durable": True, **flags}
    assert channel_error(connection, lambda ch: ch.queue_declare(unique, arguments=QUORUM, **flags)) == (
        406,
        f"PRECONDITION_FAILED - invalid property '{refused}' for {where(unique)}",
    )


@pytest.mark.parametrize(
    ("argument", "value", "error"),
    [
        ("x-max-priority", 5, "of queue type rabbit_quorum_queue"),
        ("x-queue-mode", "lazy", "of queue type rabbit_quorum_queue"),
        ("x-queue-master-locator", "min-masters", "of queue type rabbit_quorum_queue"),
        ("x-max-age", "1D", "of queue type rabbit_quorum_queue"),
        ("x-initial-cluster-size", 3, "of queue type rabbit_quorum_queue"),
        ("x-dead-letter-strategy", "bogus", ": invalid_dlx_strategy"),
        ("x-quorum-initial-group-size", 0, ": {value_zero,0}"),
        ("x-quorum-initial-group-size", "a", ': "expected integer, got longstr"'),
        ("x-max-in-memory-length", -1, ": {value_negative,-1}"),
        ("x-queue-leader-locator", "bogus", ": invalid_queue_locator_arg"),
    ],
)
def test_arguments_rabbitmq_refuses_for_quorum_queues(connection, unique, argument, value, error) -> None:  # noqa: ANN001
    arguments = {**QUORUM, argument: value}
    code, text = channel_error(
        connection, lambda ch: ch.queue_declare(unique, durable=True, arguments=arguments)
    )
    separator = "" if error.startswith(":") else " "
    assert (code, text) == (
        406,
        f"PRECONDITION_FAILED - invalid arg '{argument}' for {where(unique)}{separator}{error}",
    )


@pytest.mark.parametrize(
    ("arguments", "reported"),
    [
        ({"x-max-priority": 5, "x-expires": 0}, "'x-expires' for {q}: {{value_zero,0}}"),
        ({"x-dead-letter-strategy": "bogus", "x-max-length": -1}, "'x-dead-letter-strategy' for {q}: invalid_dlx_strategy"),
        ({"x-max-in-memory-bytes": -1, "x-overflow": "bogus"}, "'x-max-in-memory-bytes' for {q}: {{value_negative,-1}}"),
        ({"x-quorum-initial-group-size": 0, "x-single-active-consumer": "x"},
         "'x-single-active-consumer' for {q}: {{unacceptable_type,longstr}}"),
    ],
)  # fmt: skip
def test_first_bad_argument_in_rabbitmq_order(connection, unique, arguments, reported) -> None:  # noqa: ANN001
    arguments = {**QUORUM, **arguments}
    assert channel_error(connection, lambda ch: ch.queue_declare(unique, arguments=arguments)) == (
        406,
        "PRECONDITION_FAILED - invalid arg " + reported.format(q=where(unique)),
    )


@pytest.mark.parametrize(
    "arguments",
    [
        {"x-overflow": "reject-publish-dlx"},
        {"x-quorum-initial-group-size": 3, "x-queue-leader-locator": "balanced"},
        {"x-delivery-limit": 2, "x-dead-letter-strategy": "at-least-once"},
        {"x-max-in-memory-length": 5, "x-single-active-consumer": True, "x-expires": 60000},
    ],
)
def test_arguments_quorum_queues_take(quorum, channel, arguments) -> None:  # noqa: ANN001
    queue = quorum(**arguments)
    assert channel.queue_declare(queue, durable=True, arguments={**QUORUM, **arguments}).method.queue == queue


def test_redeclaring_without_the_type_is_inequivalent(quorum, connection) -> None:  # noqa: ANN001
    queue = quorum()
    assert channel_error(connection, lambda ch: ch.queue_declare(queue, durable=True)) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for {where(queue)}: "
        "received none but current is the value 'quorum' of type 'longstr'",
    )


def test_transient_messages_are_confirmed_survive_a_restart_and_list_as_quorum(tmp_path, handles) -> None:  # noqa: ANN001
    data_dir = str(tmp_path / "data")
    handle = start_broker(data_dir=data_dir)
    handles.append(handle)
    connection = handle.connect()
    channel = connection.channel()
    channel.queue_declare("qq", durable=True, arguments=QUORUM)
    assert confirmed(channel, "qq", b"one", b"two", delivery_mode=1) == ["ack", "ack"]
    assert confirmed(channel, "qq", b"three", delivery_mode=2) == ["ack"]
    connection.close()
    handle.stop()

    handle = start_broker(data_dir=data_dir)
    handles.append(handle)
    channel = handle.connect().channel()
    got = [(body, properties.delivery_mode) for _, properties, body in _get_all(channel, "qq")]
    assert got == [(b"one", 1), (b"two", 1), (b"three", 2)]
    listed = subprocess.run(
        [sys.executable, "-m", "amqp_server.ctl", "--data-dir", data_dir, "list_queues", "name", "type", "-q"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert (listed.returncode, listed.stdout) == (0, "name\ttype\nqq\tquorum\n")


def _get_all(channel: Any, queue: str) -> list[tuple[Any, Any, bytes]]:
    got = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((method, properties, body))


def test_delivery_count_header_and_delivery_limit_dead_letters(quorum, channel, unique) -> None:  # noqa: ANN001
    dead = f"{unique}-dead"
    channel.queue_declare(dead, durable=True)
    queue = quorum(**{"x-delivery-limit": 1, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    confirmed(channel, queue, b"x", headers={"k": "v"})
    seen = []
    for _ in range(3):
        method, properties, _body = channel.basic_get(queue)
        if method is None:
            break
        seen.append((method.redelivered, properties.headers))
        channel.basic_nack(method.delivery_tag, requeue=True)
    assert seen == [(False, {"k": "v", "x-delivery-count": 0}), (True, {"k": "v", "x-delivery-count": 1})]
    method, properties, body = channel.basic_get(dead, auto_ack=True)
    assert body == b"x"
    assert properties.headers["k"] == "v"
    assert "x-delivery-count" not in properties.headers  # the stored message, not the delivered copy
    assert properties.headers["x-first-death-reason"] == "delivery_limit"
    assert properties.headers["x-death"][0]["reason"] == "delivery_limit"


@pytest.mark.parametrize("stored", [False, True], ids=["in memory", "on disk"])
def test_at_least_once_dead_letters_wait_until_their_target_takes_them(tmp_path, handles, stored) -> None:  # noqa: ANN001
    handle = start_broker(data_dir=str(tmp_path / "data") if stored else None)
    handles.append(handle)
    channel = handle.connect().channel()
    # A target that refuses once full: at-most-once would lose what it refused.
    channel.queue_declare("dead", durable=True, arguments={**QUORUM, "x-max-length": 1, "x-overflow": "reject-publish"})
    channel.queue_declare("source", durable=True, arguments={
        **QUORUM, "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})  # fmt: skip
    confirmed(channel, "source", b"1", b"2", b"3")
    for _ in range(3):
        method, _, _ = channel.basic_get("source")
        channel.basic_reject(method.delivery_tag, requeue=False)
    # The target took two (its soft limit) and refused the third, which the source keeps.
    wait_until(channel.connection, lambda: message_count(channel, "dead") == 2, 5, "not dead-lettered")
    assert message_count(channel, "source") == 0  # (held back from consumers)
    taken = [channel.basic_get("dead", auto_ack=True)[2] for _ in range(2)]
    assert taken == [b"1", b"2"]
    # Sent again (every 2 s) until the target takes it.
    wait_until(channel.connection, lambda: message_count(channel, "dead") == 1, 10, "the third was lost")
    method, properties, body = channel.basic_get("dead", auto_ack=True)
    assert body == b"3" and properties.headers["x-first-death-reason"] == "rejected"


def test_a_closed_channel_returns_its_messages_and_counts_them(quorum, connection, channel) -> None:  # noqa: ANN001
    queue = quorum(**{"x-delivery-limit": 0})
    confirmed(channel, queue, b"gone", b"kept")
    other = connection.channel()
    method, _, body = other.basic_get(queue)
    assert body == b"gone"
    other.close()  # returned once: over a limit of 0, so dropped (no dead-letter exchange)
    assert drain(channel, queue) == [b"kept"]


def test_returned_messages_go_to_the_back_and_only_they_carry_the_count_to_consumers(
    quorum, connection, channel
) -> None:  # noqa: ANN001
    queue = quorum()
    confirmed(channel, queue, b"a", b"b", b"c")
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    seen = []
    for method, properties, body in consumer.consume(queue, inactivity_timeout=5):
        assert method is not None
        seen.append((body, method.redelivered, properties.headers))
        if body == b"a" and not method.redelivered:
            consumer.basic_nack(method.delivery_tag, requeue=True)
        else:
            consumer.basic_ack(method.delivery_tag)
        if len(seen) == 4:
            break
    consumer.cancel()
    assert seen == [
        (b"a", False, None),
        (b"b", False, None),
        (b"c", False, None),
        (b"a", True, {"x-delivery-count": 1}),
    ]


def test_reject_publish_is_a_soft_limit(quorum, channel) -> None:  # noqa: ANN001
    queue = quorum(**{"x-max-length": 5, "x-overflow": "reject-publish"})
    # The publish that takes it over the limit is still taken; the next is refused ...
    assert confirmed(channel, queue, *[b"%d" % i for i in range(7)]) == ["ack"] * 6 + ["nack"]
    channel.basic_get(queue, auto_ack=True)
    assert confirmed(channel, queue, b"at 5") == ["nack"]  # ... until it is back to 80%
    channel.basic_get(queue, auto_ack=True)
    assert confirmed(channel, queue, b"at 4") == ["ack"]
    assert message_count(channel, queue) == 5


def test_reject_publish_dlx_drops_the_head_as_drop_head_does(quorum, channel, unique) -> None:  # noqa: ANN001
    dead = f"{unique}-dead"
    channel.queue_declare(dead, durable=True)
    arguments = {"x-max-length": 2, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
    queue = quorum(**arguments, **{"x-overflow": "reject-publish-dlx"})
    assert confirmed(channel, queue, b"1", b"2", b"3", b"4") == ["ack"] * 4
    assert drain(channel, queue) == [b"3", b"4"]
    method, properties, body = channel.basic_get(dead, auto_ack=True)
    assert (body, properties.headers["x-death"][0]["reason"]) == (b"1", "maxlen")


def test_type_is_quorum_in_the_http_api(managed_broker, unique) -> None:  # noqa: ANN001
    connection = managed_broker.connect()
    try:
        connection.channel().queue_declare(unique, durable=True, arguments=QUORUM)
        request = urllib.request.Request(
            f"http://127.0.0.1:{managed_broker.server.management_port}/api/queues/%2F/{unique}"
        )
        request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
        with urllib.request.urlopen(request, timeout=10) as response:
            queue = json.load(response)
        assert (queue["type"], queue["durable"]) == ("quorum", True)
    finally:
        connection.channel().queue_delete(unique)
        connection.close()


async def test_aio_pika_confirms_and_redelivery_count(broker, unique) -> None:  # noqa: ANN001
    connection = await aio_pika.connect_robust(broker.url)
    async with connection:
        channel = await connection.channel()  # publisher confirms on by default
        queue = await channel.declare_queue(unique, durable=True, arguments=QUORUM)
        confirmation = await channel.default_exchange.publish(aio_pika.Message(b"hello"), routing_key=unique)
        assert isinstance(confirmation, aiormq.spec.Basic.Ack)
        first = await queue.get(timeout=5)
        assert first.headers.get("x-delivery-count") == 0
        await first.nack(requeue=True)
        again = await queue.get(timeout=5)
        assert (again.body, again.redelivered, again.headers["x-delivery-count"]) == (b"hello", True, 1)
        await again.ack()
        await queue.delete()
