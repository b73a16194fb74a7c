"""rabbitmq_random_exchange through the wire: x-random sends each message to one bound
destination, whatever its routing key."""

from collections.abc import Iterator

import pytest
from conftest import BrokerHandle, start_broker
from helpers import message_count


@pytest.fixture(scope="module")
def node() -> Iterator[BrokerHandle]:
    handle = start_broker(plugins=["rabbitmq_random_exchange"])
    yield handle
    handle.stop()


@pytest.fixture
def channel(node: BrokerHandle):
    connection = node.connect()
    yield connection.channel()
    connection.close()


def test_each_message_goes_to_exactly_one_bound_queue(channel, unique):
    channel.exchange_declare(unique, "x-random")
    queues = [f"{unique}-{i}" for i in range(3)]
    for index, queue in enumerate(queues):
        channel.queue_declare(queue, auto_delete=True)
        channel.queue_bind(queue, unique, f"key-{index}")  # binding keys play no part
    channel.confirm_delivery()
    for i in range(300):
        channel.basic_publish(unique, f"any-{i}", b"x")
    counts = [message_count(channel, queue) for queue in queues]
    assert sum(counts) == 300
    assert all(count > 0 for count in counts)  # each is missed with probability (2/3)**300


def test_a_single_binding_takes_everything_and_none_drops(channel, unique):
    channel.exchange_declare(unique, "x-random")
    channel.confirm_delivery()
    channel.basic_publish(unique, "k", b"dropped")  # no binding: routed nowhere, as RabbitMQ
    channel.queue_declare(unique, auto_delete=True)
    channel.queue_bind(unique, unique, "")
    for _ in range(5):
        channel.basic_publish(unique, "k", b"x")
    assert message_count(channel, unique) == 5
