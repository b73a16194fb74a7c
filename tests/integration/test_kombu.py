"""kombu (py-amqp transport, what Celery uses) against the broker: Producer.publish with
declare, SimpleQueue, Consumer with drain_events, acks, rejects and QoS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue


@pytest.fixture
def kombu_connection(broker: Any) -> Iterator[Connection]:
    with Connection(f"amqp://guest:guest@127.0.0.1:{broker.port}//") as connection:
        connection.connect()
        yield connection


def drain(connection: Connection, until: Any, limit: int = 50) -> None:
    """drain_events until ``until()`` is true (each wait bounded; no timing asserted)."""
    for _ in range(limit):
        if until():
            return
        try:
            connection.drain_events(timeout=2)
        except TimeoutError:
            break
    assert until(), "the expected messages did not arrive"


def ready_count(connection: Connection, name: str) -> int:
    channel = connection.default_channel
    return channel.queue_declare(name, passive=True).message_count


def test_connection_reports_the_server(kombu_connection):
    properties = kombu_connection.connection.server_properties
    assert properties["capabilities"]["publisher_confirms"] is True
    assert kombu_connection.connected


def test_producer_publish_declares_and_consumer_acks(kombu_connection, unique):
    exchange = Exchange(unique, type="direct", auto_delete=True)
    queue = Queue(unique, exchange, routing_key="task", auto_delete=True)
    producer = Producer(kombu_connection.default_channel)
    for i in range(5):
        producer.publish({"n": i}, exchange=exchange, routing_key="task", declare=[queue], serializer="json")
    assert ready_count(kombu_connection, unique) == 5
    received: list[tuple[Any, str]] = []

    def on_message(body: Any, message: Any) -> None:
        received.append((body, message.content_type))
        message.ack()

    with Consumer(kombu_connection, queues=[queue], callbacks=[on_message], accept=["json"]):
        drain(kombu_connection, lambda: len(received) == 5)
        assert ready_count(kombu_connection, unique) == 0
    assert received == [({"n": i}, "application/json") for i in range(5)]


def test_simple_queue_put_and_get(kombu_connection, unique):
    simple = kombu_connection.SimpleQueue(unique, queue_opts={"auto_delete": True})
    try:
        simple.put({"hello": "world"}, serializer="json")
        simple.put(b"raw bytes", serializer=None, content_type="application/octet-stream")
        first = simple.get(timeout=2)
        assert (first.payload, first.delivery_info["redelivered"]) == ({"hello": "world"}, False)
        first.ack()
        second = simple.get(timeout=2)
        assert second.body == b"raw bytes"
        second.ack()
        with pytest.raises(simple.Empty):
            simple.get_nowait()
        assert len(simple) == 0
    finally:
        simple.close()


def test_rejected_message_is_redelivered(kombu_connection, unique):
    simple = kombu_connection.SimpleQueue(unique, queue_opts={"auto_delete": True})
    try:
        simple.put("job", serializer="json")
        message = simple.get(timeout=2)
        message.requeue()
        again = simple.get(timeout=2)
        assert (again.payload, again.delivery_info["redelivered"]) == ("job", True)
        again.reject()  # not requeued: gone
        with pytest.raises(simple.Empty):
            simple.get_nowait()
    finally:
        simple.close()


def test_consumer_qos_and_topic_routing(kombu_connection, unique):
    exchange = Exchange(unique, type="topic", auto_delete=True)
    queue = Queue(unique, exchange, routing_key="logs.*.error", auto_delete=True)
    producer = Producer(kombu_connection.default_channel, exchange=exchange)
    for key in ("logs.web.error", "logs.web.info", "logs.db.error", "logs.db.error"):
        producer.publish(key, routing_key=key, declare=[queue], serializer="json")
    held: list[Any] = []
    consumer = Consumer(
        kombu_connection, queues=[queue], callbacks=[lambda body, m: held.append(m)], accept=["json"]
    )
    consumer.qos(prefetch_count=2)
    with consumer:
        drain(kombu_connection, lambda: len(held) == 2)
        assert ready_count(kombu_connection, unique) == 1  # the window of 2 is full
        held[0].ack()
        drain(kombu_connection, lambda: len(held) == 3)
        for message in held[1:]:
            message.ack()
    assert [m.payload for m in held] == ["logs.web.error", "logs.db.error", "logs.db.error"]


def test_publish_with_confirms(broker, unique):
    url = f"amqp://guest:guest@127.0.0.1:{broker.port}//"
    with Connection(url, transport_options={"confirm_publish": True}) as connection:
        queue = Queue(unique, auto_delete=True)
        producer = connection.Producer()
        for i in range(3):
            producer.publish(i, routing_key=unique, declare=[queue], serializer="json")
        assert ready_count(connection, unique) == 3
        connection.default_channel.queue_delete(unique)
