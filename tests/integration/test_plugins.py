"""Exchange-type plugins through the wire: the bundled x-consistent-hash plugin (found through
its entry point, as a third-party one is, and enabled as RabbitMQ's is: it is off by default)
and a type registered in-process."""

from collections.abc import Iterable

import pika
import pytest
from conftest import start_broker
from helpers import message_count, wait_until

from amqp_server.plugin_api import (
    Binding,
    Destination,
    ExchangeType,
    PluginContext,
    RoutableMessage,
    new_message,
)
from exchanges.registry import load_exchange_types, register, unregister


@pytest.fixture(scope="module")
def broker():
    """This module's broker: rabbitmq_consistent_hash_exchange enabled at boot."""
    handle = start_broker(plugins=["rabbitmq_consistent_hash_exchange"])
    yield handle
    handle.stop()


def _declare_ring(channel, exchange, weights, arguments=None):
    channel.exchange_declare(exchange, "x-consistent-hash", arguments=arguments)
    queues = []
    for index, weight in enumerate(weights):
        queue = f"{exchange}-{index}"
        channel.queue_declare(queue, auto_delete=True)
        channel.queue_bind(queue, exchange, str(weight))
        queues.append(queue)
    return queues


def _counts(channel, queues):
    return [message_count(channel, q) for q in queues]


def test_each_message_reaches_exactly_one_queue_in_proportion_to_weight(channel, unique):
    queues = _declare_ring(channel, unique, [1, 1, 2])
    channel.confirm_delivery()
    for i in range(2000):
        channel.basic_publish(unique, f"key-{i}", b"x")
    counts = _counts(channel, queues)
    assert sum(counts) == 2000
    assert all(count > 250 for count in counts)
    assert counts[2] > max(counts[0], counts[1])


def test_same_key_always_lands_on_the_same_queue(channel, unique):
    queues = _declare_ring(channel, unique, [1, 1, 1])
    channel.confirm_delivery()
    for _ in range(30):
        channel.basic_publish(unique, "sticky", b"x")
    assert sorted(_counts(channel, queues)) == [0, 0, 30]


def test_hash_header_argument(channel, unique):
    queues = _declare_ring(channel, unique, [1, 1], arguments={"hash-header": "user"})
    channel.confirm_delivery()
    for i in range(20):
        props = pika.BasicProperties(headers={"user": "alice"})
        channel.basic_publish(unique, f"varying-{i}", b"x", props)
    assert sorted(_counts(channel, queues)) == [0, 20]


def test_binding_key_must_be_a_weight(connection, unique):
    channel = connection.channel()
    channel.exchange_declare(unique, "x-consistent-hash")
    channel.queue_declare(unique, auto_delete=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        channel.queue_bind(unique, unique, "heavy")
    assert raised.value.reply_code == 406
    assert "must be a positive integer" in raised.value.reply_text


class LastWordExchange(ExchangeType):
    """Routes to queues bound with the last dot-separated word of the routing key."""

    name = "x-test-last-word"

    def __init__(self, exchange_name, arguments):
        super().__init__(exchange_name, arguments)
        self.by_word: dict[str, set[Destination]] = {}

    def add_binding(self, binding: Binding) -> None:
        self.by_word.setdefault(binding.routing_key, set()).add(binding.destination)

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
            self.by_word.get(binding.routing_key, set()).discard(binding.destination)

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        return self.by_word.get(message.routing_keys[0].rsplit(".", 1)[-1], ())


def test_in_process_registered_type_routes(broker, channel, unique):
    register(LastWordExchange)
    try:
        # The broker reads the registry at start; a running broker is refreshed explicitly.
        broker.broker.exchange_types = load_exchange_types()
        channel.exchange_declare(unique, "x-test-last-word")
        channel.queue_declare(unique, auto_delete=True)
        channel.queue_bind(unique, unique, "tail")
        channel.confirm_delivery()
        channel.basic_publish(unique, "a.b.tail", b"hit")
        channel.basic_publish(unique, "a.tail.b", b"miss")
        method, _props, body = channel.basic_get(unique, auto_ack=True)
        assert body == b"hit" and method.message_count == 0
    finally:
        unregister("x-test-last-word")
        broker.broker.exchange_types = load_exchange_types()


def test_unknown_exchange_type_is_a_connection_error(broker, unique):
    connection = broker.connect()
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as raised:
        channel.exchange_declare(unique, "x-no-such-type")
    assert raised.value.reply_code == 503
    assert raised.value.reply_text == "COMMAND_INVALID - unknown exchange type 'x-no-such-type'"


class DelayedExchange(ExchangeType):
    """A test plugin written against amqp_server.plugin_api only: holds each message back for
    its x-delay header (ms) and then delivers it to every bound destination."""

    name = "x-test-delayed"

    def __init__(self, exchange_name, arguments):
        super().__init__(exchange_name, arguments)
        self.destinations: list[Destination] = []

    def add_binding(self, binding: Binding) -> None:
        self.destinations.append(binding.destination)

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
            self.destinations.remove(binding.destination)

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        delay = (message.headers or {}).get("x-delay", 0)
        held = self.context.state.setdefault("held", 0)
        self.context.state["held"] = held + 1
        self.context.call_later(delay / 1000, self._release, message)
        return ()

    def _release(self, message) -> None:
        self.context.state["held"] -= 1
        self.context.deliver(list(self.destinations), message)


def test_plugin_context_delivers_later(unique):
    register(DelayedExchange)
    broker = start_broker()  # (exchange types are found when a broker starts)
    try:
        channel = broker.connect().channel()
        channel.exchange_declare(unique, "x-test-delayed")
        channel.queue_declare(unique, auto_delete=True)
        channel.queue_bind(unique, unique)
        channel.basic_publish(unique, "", b"late", pika.BasicProperties(headers={"x-delay": 300}))
        assert message_count(channel, unique) == 0
        router = broker.call(lambda: broker.broker.vhosts["/"].exchanges[unique].router)
        assert router.context.state["held"] == 1
        wait_until(None, lambda: message_count(channel, unique) != 0, 5, "the held message never arrived")
        _, _, body = channel.basic_get(unique, auto_ack=True)
        assert body == b"late" and router.context.state["held"] == 0
    finally:
        unregister("x-test-delayed")
        broker.stop()


def test_plugin_publishes_a_message_of_its_own(broker, channel, unique):
    """new_message + PluginContext.publish: routed like a publish through an exchange."""
    channel.queue_declare(unique, auto_delete=True)
    message = new_message("", unique, b"from a plugin", {"content_type": "text/plain", "delivery_mode": 2})
    context = PluginContext(broker.broker, "/", "test")
    assert broker.call(context.publish, "", message) == 1
    assert broker.call(context.publish, "no-such-exchange", message) == 0
    _, properties, body = channel.basic_get(unique, auto_ack=True)
    assert body == b"from a plugin" and properties.content_type == "text/plain" and properties.delivery_mode == 2
