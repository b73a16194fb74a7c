"""Memory and disk alarms through the wire: publishers blocked, consumers draining, nothing lost.

RabbitMQ 3.10 blocks a connection only when it publishes while an alarm is on: it sends
connection.blocked (reason "low on memory", "low on disk", or "low on disk & memory" with both)
and stops reading the socket right after that content frame; consuming connections carry on.
When every alarm has cleared, blocked connections get connection.unblocked and the frames they
sent meanwhile are read. Each test runs its own broker (alarms are node-wide) with the memory
store, and moves the thresholds at run time as ``rabbitmqctl set_vm_memory_high_watermark`` /
``set_disk_free_limit`` would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.spec
import pytest
from conftest import BrokerHandle, start_broker
from helpers import connect_named, message_count, message_count_on, server_connection

from amqp_server.cli import read_config_file
from amqp_server.core.alarms import (
    blocked_reason,
    erlang_atom,
    parse_float,
    parse_information_unit,
    total_memory,
)
from amqp_server.core.broker import BrokerConfig

HUGE = 10**18  # more free disk than any machine has


@pytest.fixture
def node() -> Iterator[BrokerHandle]:
    handle = start_broker(data_dir=None)
    yield handle
    handle.stop()


@pytest.fixture
def alarmed_node() -> Iterator[BrokerHandle]:
    """A node whose memory watermark (1 byte) is exceeded from its first check."""
    handle = start_broker(data_dir=None, vm_memory_high_watermark_absolute=1)
    yield handle
    handle.stop()


class Events:
    """connection.blocked / unblocked as a pika client sees them."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.seen: list[Any] = []
        connection.add_on_connection_blocked_callback(lambda _c, frame: self.seen.append(frame.method))
        connection.add_on_connection_unblocked_callback(lambda _c, frame: self.seen.append(frame.method))

    def kinds(self) -> list[str]:
        return [type(method).__name__ for method in self.seen]


def pump(until: Callable[[], bool], *connections: pika.BlockingConnection, limit: float = 5.0) -> None:
    """Process every connection's events until ``until()`` holds (or give up after ``limit``)."""
    deadline = time.monotonic() + limit
    while not until() and time.monotonic() < deadline:
        for connection in connections:
            connection.process_data_events(time_limit=0.02)


def reading_stopped(handle: BrokerHandle, name: str) -> tuple[str, bool]:
    connection = server_connection(handle, name)
    return handle.call(lambda: (connection.state, not connection.transport.is_reading()))


def release(handle: BrokerHandle, *connections: pika.BlockingConnection) -> None:
    """Close the clients even when a test failed with a connection still blocked (a blocked
    connection reads nothing, not even connection.close)."""

    def unblock_all() -> None:
        for connection in handle.broker.connections:
            connection.unblock()

    handle.call(unblock_all)
    for connection in connections:
        if connection.is_open:
            connection.close()


class Consumer:
    def __init__(self, connection: pika.BlockingConnection, queue: str) -> None:
        self.bodies: list[bytes] = []
        self.channel = connection.channel()
        self.channel.basic_qos(prefetch_count=10)
        self.channel.basic_consume(queue, self._on_message)

    def _on_message(self, channel: Any, method: Any, _properties: Any, body: bytes) -> None:
        self.bodies.append(body)
        channel.basic_ack(method.delivery_tag)


# -- blocking a publisher ------------------------------------------------------------------------


def test_alarm_at_boot_blocks_a_new_publisher_until_cleared(alarmed_node, unique):
    handle = alarmed_node
    assert handle.call(lambda: set(handle.broker.alarms.alarms)) == {"memory"}
    observer = connect_named(handle, unique + "-observer")
    publisher = connect_named(handle, unique)
    events = Events(publisher)
    try:
        observer.channel().queue_declare(unique)
        channel = publisher.channel()  # opening a channel is no publish: not blocked yet
        assert reading_stopped(handle, unique) == ("running", False)
        for number in range(20):
            channel.basic_publish("", unique, b"m%d" % number)
        pump(lambda: bool(events.seen), publisher)
        assert events.kinds() == ["Blocked"]
        assert events.seen[0].reason == "low on memory"
        assert reading_stopped(handle, unique) == ("blocked", True)
        # Nothing past the first content header was read: not even the first message is in.
        assert message_count_on(observer, unique) == 0

        handle.call(handle.broker.alarms.set_memory_high_watermark, 0.4)
        pump(lambda: len(events.seen) == 2, publisher)
        assert events.kinds() == ["Blocked", "Unblocked"]
        assert handle.call(lambda: set(handle.broker.alarms.alarms)) == set()
        pump(lambda: message_count_on(observer, unique) == 20, observer)
        assert message_count_on(observer, unique) == 20
        consumer = Consumer(observer, unique)
        pump(lambda: len(consumer.bodies) >= 20, observer)
        observer.process_data_events(time_limit=0.1)
        assert consumer.bodies == [b"m%d" % n for n in range(20)]
    finally:
        release(handle, publisher, observer)


@pytest.mark.parametrize(
    ("raise_alarm", "clear_alarm", "reason"),
    [
        (
            lambda alarms: alarms.set_memory_high_watermark(absolute=1),
            lambda alarms: alarms.set_memory_high_watermark(0.4),
            "low on memory",
        ),
        (
            lambda alarms: alarms.set_disk_free_limit(absolute=HUGE),
            lambda alarms: alarms.set_disk_free_limit(absolute="50MB"),
            "low on disk",
        ),
    ],
    ids=["memory", "disk"],
)
def test_consumers_drain_while_the_publisher_is_blocked_and_nothing_is_lost(
    node, unique, raise_alarm, clear_alarm, reason
):
    handle = node
    publisher = connect_named(handle, unique)
    consuming = connect_named(handle, unique + "-consumer")
    publisher_events, consumer_events = Events(publisher), Events(consuming)
    try:
        channel = publisher.channel()
        channel.queue_declare(unique)
        expected = [b"before-%d" % n for n in range(100)]
        for body in expected:
            channel.basic_publish("", unique, body)
        pump(lambda: message_count_on(consuming, unique) == 100, consuming)

        handle.call(raise_alarm, handle.broker.alarms)
        consumer = Consumer(consuming, unique)
        after = [b"after-%d" % n for n in range(100)]
        for body in after:
            channel.basic_publish("", unique, body)
        pump(lambda: bool(publisher_events.seen), publisher)
        assert publisher_events.kinds() == ["Blocked"]
        assert publisher_events.seen[0].reason == reason
        assert reading_stopped(handle, unique) == ("blocked", True)

        # The consumer's connection keeps working: the backlog drains, acks go through.
        pump(lambda: len(consumer.bodies) >= 100, consuming)
        consuming.process_data_events(time_limit=0.1)
        assert consumer.bodies == expected  # nothing of the blocked publisher's got in
        assert consumer_events.seen == []
        assert message_count_on(consuming, unique) == 0

        handle.call(clear_alarm, handle.broker.alarms)
        pump(lambda: len(publisher_events.seen) == 2, publisher)
        assert publisher_events.kinds() == ["Blocked", "Unblocked"]
        pump(lambda: len(consumer.bodies) >= 200, consuming)
        consuming.process_data_events(time_limit=0.1)
        assert consumer.bodies == expected + after  # every message exactly once, in order
        assert consumer_events.seen == []
        # Unblocked, the publisher publishes as before.
        channel.basic_publish("", unique, b"last")
        pump(lambda: len(consumer.bodies) > 200, consuming)
        assert consumer.bodies[200:] == [b"last"]
        assert reading_stopped(handle, unique) == ("running", False)
    finally:
        release(handle, publisher, consuming)


def test_both_alarms_block_until_both_clear(node, unique):
    handle = node
    alarms = handle.broker.alarms
    publisher = connect_named(handle, unique)
    events = Events(publisher)
    observer = connect_named(handle, unique + "-observer")
    try:
        observer.channel().queue_declare(unique)
        channel = publisher.channel()
        handle.call(alarms.set_memory_high_watermark, None, 1)
        handle.call(alarms.set_disk_free_limit, HUGE)
        assert handle.call(lambda: alarms.reason) == "low on disk & memory"
        channel.basic_publish("", unique, b"one")
        channel.basic_publish("", unique, b"two")
        pump(lambda: bool(events.seen), publisher)
        assert [(type(m).__name__, m.reason) for m in events.seen] == [("Blocked", "low on disk & memory")]

        handle.call(alarms.set_memory_high_watermark, 0.4)  # disk still low: stays blocked
        assert handle.call(lambda: alarms.reason) == "low on disk"
        publisher.process_data_events(time_limit=0.2)
        assert events.kinds() == ["Blocked"]  # no second blocked, no unblocked
        assert reading_stopped(handle, unique) == ("blocked", True)
        assert message_count_on(observer, unique) == 0

        handle.call(alarms.set_disk_free_limit, "50MB")
        pump(lambda: len(events.seen) == 2, publisher)
        assert events.kinds() == ["Blocked", "Unblocked"]
        pump(lambda: message_count_on(observer, unique) == 2, observer)
        assert message_count_on(observer, unique) == 2
    finally:
        release(handle, publisher, observer)


def test_an_alarm_that_clears_before_any_publish_blocks_nothing(node, unique):
    handle = node
    alarms = handle.broker.alarms
    publisher = connect_named(handle, unique)
    events = Events(publisher)
    try:
        channel = publisher.channel()
        channel.queue_declare(unique)
        handle.call(alarms.set_disk_free_limit, HUGE)
        handle.call(alarms.set_disk_free_limit, 50_000_000)
        channel.basic_publish("", unique, b"m")
        assert message_count(channel, unique) == 1
        publisher.process_data_events(time_limit=0.1)
        assert events.seen == []
    finally:
        release(handle, publisher)


def test_alarms_are_logged_with_rabbitmq_wording(node, caplog):
    handle = node
    caplog.set_level(logging.INFO, logger="amqp_server.core.alarms")
    handle.call(handle.broker.alarms.set_memory_high_watermark, None, 1)
    handle.call(handle.broker.alarms.set_memory_high_watermark, 0.4)
    handle.call(handle.broker.alarms.set_disk_free_limit, HUGE)
    handle.call(handle.broker.alarms.set_disk_free_limit, "50MB")
    messages = [r.getMessage() for r in caplog.records if r.name == "amqp_server.core.alarms"]
    banner = "*" * 58
    set_text = "{} resource limit alarm set on node rabbit@localhost.\n\n{}\n{}\n{}"
    middle = "*** Publishers will be blocked until this alarm clears ***"
    for resource in ("memory", "disk"):
        assert set_text.format(resource, banner, middle, banner) in messages
        assert f"{resource} resource limit alarm cleared on node rabbit@localhost" in messages
        assert f"{resource} resource limit alarm cleared across the cluster" in messages
    assert any(
        m.startswith("vm_memory_high_watermark set. Memory used:") and m.endswith(" allowed:1")
        for m in messages
    )
    assert any(m.startswith("vm_memory_high_watermark clear. Memory used:") for m in messages)
    assert any(m.startswith("Free disk space is insufficient. Free bytes: ") for m in messages)
    assert any(m.endswith(f"Limit: {HUGE}") for m in messages)
    assert "Disk free limit set to 50MB" in messages
    assert any(m.startswith("Memory high watermark set to ") and m.endswith(" total") for m in messages)
    records = {r.getMessage(): r.levelno for r in caplog.records}
    assert records["memory resource limit alarm cleared on node rabbit@localhost"] == logging.WARNING


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1073741824", 1073741824),
        ("1GB", 1_000_000_000),
        ("1gb", 1_000_000_000),
        ("1Gb", 1_000_000_000),
        ("512MiB", 512 * 1024**2),
        ("512MIB", 512 * 1024**2),
        ("512mib", 512 * 1024**2),
        ("512M", 512 * 1024**2),
        ("512m", 512 * 1024**2),
        ("50MB", 50_000_000),
        ("50mb", 50_000_000),
        ("50Mb", 50_000_000),
        ("2kB", 2000),
        ("2KB", 2000),
        ("2k", 2048),
        ("2K", 2048),
        ("2KiB", 2048),
        ("2kiB", 2048),
        ("3G", 3 * 1024**3),
        ("3GiB", 3 * 1024**3),
        ("0", 0),
    ],
)
def test_information_units_as_rabbitmq_reads_them(text, size):
    assert parse_information_unit(text) == size


@pytest.mark.parametrize("text", ["", "1.5GB", "1 GB", "-1", "1TB", "1mB", "1gB", "GB", "1B", "1kbytes"])
def test_information_units_rabbitmq_refuses(text):
    with pytest.raises(ValueError):
        parse_information_unit(text)


def test_floats_need_a_decimal_point_as_in_cuttlefish():
    assert parse_float("0.4") == 0.4
    assert parse_float("1.0") == 1.0
    assert parse_float("1.5e-1") == 0.15
    for text in ("1", ".4", "0.4x", "abc"):
        with pytest.raises(ValueError):
            parse_float(text)


def _config(tmp_path, text: str) -> BrokerConfig:
    path = tmp_path / "rabbitmq.conf"
    path.write_text(text)
    config = BrokerConfig()
    read_config_file(str(path), config)
    return config


def test_config_defaults():
    config = BrokerConfig()
    assert (config.vm_memory_high_watermark, config.vm_memory_high_watermark_absolute) == (0.4, None)
    assert (config.disk_free_limit, config.disk_free_limit_relative) == (50_000_000, None)


def test_config_file_resource_keys(tmp_path):
    config = _config(tmp_path, "vm_memory_high_watermark.absolute = 2GB\ndisk_free_limit.absolute = 1GiB\n")
    assert config.vm_memory_high_watermark_absolute == 2_000_000_000
    assert config.disk_free_limit == 1024**3
    config = _config(tmp_path, "vm_memory_high_watermark.relative = 0.6\ndisk_free_limit.relative = 1.5\n")
    assert (config.vm_memory_high_watermark, config.vm_memory_high_watermark_absolute) == (0.6, None)
    assert config.disk_free_limit_relative == 1.5


def test_config_file_relative_wins_over_absolute(tmp_path):
    config = _config(
        tmp_path,
        "vm_memory_high_watermark.relative = 0.5\nvm_memory_high_watermark.absolute = 1GB\n"
        "disk_free_limit.absolute = 1GB\ndisk_free_limit.relative = 2.0\n",
    )
    assert (config.vm_memory_high_watermark, config.vm_memory_high_watermark_absolute) == (0.5, None)
    assert config.disk_free_limit_relative == 2.0


@pytest.mark.parametrize(
    "line",
    [
        "vm_memory_high_watermark.absolute = 1.5GB",
        "vm_memory_high_watermark.relative = 1",
        "disk_free_limit.absolute = lots",
        "disk_free_limit.relative = x",
    ],
)
def test_config_file_bad_resource_values_stop_the_start(tmp_path, line):
    with pytest.raises(SystemExit, match="invalid value"):
        _config(tmp_path, line + "\n")


def test_limits_from_config(node):
    alarms = node.broker.alarms
    config = node.broker.config
    assert node.call(lambda: alarms.memory_limit) == int(total_memory() * 0.4)
    assert node.call(lambda: alarms.disk_limit) == 50_000_000
    node.call(alarms.set_disk_free_limit, None, 0.5)
    assert node.call(lambda: alarms.disk_limit) == int(total_memory() * 0.5)
    node.call(alarms.set_disk_free_limit, "50MB")
    assert config.disk_free_limit_relative is None


def test_reason_and_node_name_formatting():
    assert blocked_reason({"memory"}) == "low on memory"
    assert blocked_reason({"disk"}) == "low on disk"
    assert blocked_reason({"memory", "disk"}) == "low on disk & memory"  # Erlang set order
    assert erlang_atom("rabbit@localhost") == "rabbit@localhost"
    assert erlang_atom("rabbit@my-host") == "'rabbit@my-host'"
