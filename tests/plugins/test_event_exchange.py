"""rabbitmq_event_exchange through the wire: amq.rabbitmq.event in the default vhost, the
broker's events published to it with RabbitMQ's routing keys, typed headers and properties
(recorded against RabbitMQ 3.10.8)."""

from collections.abc import Iterator

import pytest
from conftest import BrokerHandle, start_broker
from helpers import channel_error, connect_named, get_messages
from integration.rawamqp import RawClient
from pamqp import commands

from amqp_server.protocol.content import FLAG_DELIVERY_MODE, FLAG_HEADERS, FLAG_TIMESTAMP, split_properties
from amqp_server.protocol.tables import decode_entries

EVENTS = "amq.rabbitmq.event"


@pytest.fixture(scope="module")
def node() -> Iterator[BrokerHandle]:
    handle = start_broker(plugins=["rabbitmq_event_exchange"])
    yield handle
    handle.stop()


@pytest.fixture
def connection(node: BrokerHandle, unique: str):
    connection = connect_named(node, unique)
    yield connection
    connection.close()


def _listen(channel, queue: str, key: str) -> str:
    channel.queue_declare(queue)
    channel.queue_bind(queue, EVENTS, key)
    return queue


def test_the_exchange_is_internal_and_durable(connection, unique):
    channel = connection.channel()
    channel.exchange_declare(EVENTS, "topic", passive=True)
    code, text = channel_error(connection, lambda c: c.basic_publish(EVENTS, "x", b"") or c.basic_qos())
    assert (code, text) == (
        403,
        f"ACCESS_REFUSED - cannot publish to internal exchange '{EVENTS}' in vhost '/'",
    )
    code, _ = channel_error(connection, lambda c: c.exchange_declare(EVENTS, "topic", durable=False))
    assert code == 406  # not equivalent: it is durable


def test_events_carry_their_fields_as_headers(connection, unique):
    channel = connection.channel()
    listener = _listen(channel, f"{unique}-events", "queue.*")
    channel.queue_declare(unique, durable=True, arguments={"x-max-length": 10})
    channel.queue_delete(unique)
    (created, properties, body), (deleted, _, _) = get_messages(channel, listener)
    assert (created.routing_key, deleted.routing_key, created.exchange, body) == (
        "queue.created", "queue.deleted", EVENTS, b""
    )  # fmt: skip
    assert properties.delivery_mode == 2
    headers = properties.headers
    assert (headers["name"], headers["vhost"], headers["durable"], headers["auto_delete"]) == (
        unique,
        "/",
        True,
        False,
    )
    # AMQP tables in an event are printed entry by entry, as RabbitMQ's fmt/2 does.
    assert headers["arguments"] == ['{<<"x-max-length">>,signedint,10}']
    assert properties.timestamp == headers["timestamp_in_ms"] // 1000
    assert deleted.routing_key == "queue.deleted"


def test_header_types_and_order_are_rabbitmqs(node: BrokerHandle, connection, unique):
    channel = connection.channel()
    listener = _listen(channel, f"{unique}-events", "user.#")
    node.run(node.admin.add_user(unique, "pw", ["monitoring"]))
    node.run(node.admin.delete_user(unique))
    raw = RawClient.connected(node.port)
    keys, tables = [], []
    for _ in range(2):
        raw.send(1, commands.Basic.Get(queue=listener, no_ack=True))
        keys.append(raw.expect(1, commands.Basic.GetOk).routing_key)
        fields = split_properties(raw.next().payload)  # no body frame: the body is empty
        assert set(fields) == {FLAG_HEADERS, FLAG_DELIVERY_MODE, FLAG_TIMESTAMP}
        table = fields[FLAG_HEADERS]
        tables.append([(key, chr(kind), value) for key, kind, value in decode_entries(table, 4, len(table))])
    raw.close()
    assert keys == ["user.created", "user.deleted"]
    for table in tables:
        assert table[:-1] == [(b"name", "S", unique.encode())]
        assert table[-1][:2] == (b"timestamp_in_ms", "l")  # last, a long


def test_disabling_deletes_the_exchange(node: BrokerHandle, connection, unique):
    """The plugin's stop hook deletes amq.rabbitmq.event (RabbitMQ's cleanup step); this test
    runs last in the module and enables the plugin back."""
    channel = connection.channel()
    node.run(node.broker.plugins.disable("rabbitmq_event_exchange"))
    code, _ = channel_error(connection, lambda c: c.exchange_declare(EVENTS, "topic", passive=True))
    assert code == 404
    node.run(node.broker.plugins.enable("rabbitmq_event_exchange"))
    channel.exchange_declare(EVENTS, "topic", passive=True)


def test_the_exchange_and_its_bindings_survive_a_restart(tmp_path, unique):
    """Stopping the node is not disabling the plugin: amq.rabbitmq.event stays, as in RabbitMQ."""
    handle = start_broker(plugins=["rabbitmq_event_exchange"], data_dir=str(tmp_path))
    try:
        with handle.connect() as connection:
            channel = connection.channel()
            channel.queue_declare(unique, durable=True)
            channel.queue_bind(unique, EVENTS, "user.created")
    finally:
        handle.stop()
    handle = start_broker(plugins=["rabbitmq_event_exchange"], data_dir=str(tmp_path))
    try:
        handle.run(handle.admin.add_user(unique, "pw"))
        with handle.connect() as connection:
            assert [m.routing_key for m, _, _ in get_messages(connection.channel(), unique)] == [
                "user.created"
            ]
    finally:
        handle.stop()
