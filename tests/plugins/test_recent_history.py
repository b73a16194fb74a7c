"""rabbitmq_recent_history_exchange through the wire: x-recent-history routes as fanout, keeps
the last messages and gives them to a queue bound later, oldest first."""

from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from conftest import BrokerHandle, start_broker
from helpers import channel_error, drain

PLUGIN = "rabbitmq_recent_history_exchange"


@pytest.fixture(scope="module")
def node() -> Iterator[BrokerHandle]:
    handle = start_broker(plugins=[PLUGIN])
    yield handle
    handle.stop()


@pytest.fixture
def connection(node: BrokerHandle) -> Iterator[pika.BlockingConnection]:
    connection = node.connect()
    yield connection
    connection.close()


@pytest.fixture
def channel(connection: pika.BlockingConnection):
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def _publish(channel, exchange: str, bodies, **properties) -> None:
    for body in bodies:
        channel.basic_publish(exchange, "any", body, pika.BasicProperties(**properties))


def _bind_new_queue(channel, exchange: str, name: str) -> str:
    channel.queue_declare(name, auto_delete=True)
    channel.queue_bind(name, exchange, "whatever")
    return name


def test_a_new_queue_gets_the_last_20_messages_oldest_first(channel, unique):
    channel.exchange_declare(unique, "x-recent-history")
    bodies = [str(i).encode() for i in range(25)]
    _publish(channel, unique, bodies)
    queue = _bind_new_queue(channel, unique, unique)
    assert drain(channel, queue) == bodies[5:]


def test_length_argument_and_fanout_routing(channel, unique):
    channel.exchange_declare(unique, "x-recent-history", arguments={"x-recent-history-length": 3})
    early = _bind_new_queue(channel, unique, f"{unique}-early")
    _publish(channel, unique, [b"a", b"b", b"c", b"d"])
    assert drain(channel, early) == [b"a", b"b", b"c", b"d"]  # every message, whatever the key
    late = _bind_new_queue(channel, unique, f"{unique}-late")
    assert drain(channel, late) == [b"b", b"c", b"d"]
    assert drain(channel, early) == []  # a new binding feeds only its own destination


def test_no_store_header_routes_without_keeping(channel, unique):
    channel.exchange_declare(unique, "x-recent-history")
    early = _bind_new_queue(channel, unique, f"{unique}-early")
    _publish(channel, unique, [b"kept"])
    _publish(channel, unique, [b"secret"], headers={"x-recent-history-no-store": True})
    _publish(channel, unique, [b"not-a-bool"], headers={"x-recent-history-no-store": 1})
    assert drain(channel, early) == [b"kept", b"secret", b"not-a-bool"]
    late = _bind_new_queue(channel, unique, f"{unique}-late")
    assert drain(channel, late) == [b"kept", b"not-a-bool"]


def test_history_goes_through_a_bound_exchange(channel, unique):
    channel.exchange_declare(unique, "x-recent-history")
    _publish(channel, unique, [b"1", b"2"])
    channel.exchange_declare(f"{unique}-fan", "fanout", auto_delete=True)
    queue = _bind_new_queue(channel, f"{unique}-fan", unique)
    channel.exchange_bind(f"{unique}-fan", unique, "")
    assert drain(channel, queue) == [b"1", b"2"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0, "0"), (-1, "-1"), ("abc", '<<"abc">>'), (True, "true"), ({"a": 1}, '[{<<"a">>,signedint,1}]')],
)
def test_length_must_be_a_positive_integer(connection, unique, value, shown):
    arguments = {"x-recent-history-length": value}
    assert channel_error(
        connection, lambda c: c.exchange_declare(unique, "x-recent-history", arguments=arguments)
    ) == (
        406,
        f"PRECONDITION_FAILED - Invalid argument {shown}, 'x-recent-history-length' must be a positive integer",
    )


def test_history_is_kept_in_memory_only(tmp_path: Path, unique):
    """RabbitMQ keeps it in a RAM-only Mnesia table: the durable exchange and its bindings come
    back after a restart, its history does not."""
    handle = start_broker(plugins=[PLUGIN], data_dir=str(tmp_path))
    try:
        connection = handle.connect()
        channel = connection.channel()
        channel.confirm_delivery()
        channel.exchange_declare(unique, "x-recent-history", durable=True)
        _publish(channel, unique, [b"before"], delivery_mode=2)
        connection.close()
    finally:
        handle.stop()
    handle = start_broker(plugins=[PLUGIN], data_dir=str(tmp_path))
    try:
        connection = handle.connect()
        channel = connection.channel()
        channel.exchange_declare(unique, "x-recent-history", passive=True)
        queue = _bind_new_queue(channel, unique, unique)
        assert drain(channel, queue) == []
        connection.close()
    finally:
        handle.stop()
