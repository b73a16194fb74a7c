"""A durable queue lives on its home node: a node that applies its metadata under another name
holds a proxy of it, absent while there is no way to the home node. Here the node is restarted
under a new name over the same data directory (a cluster's nodes apply one metadata log the
same way): every use of the queue is answered as RabbitMQ answers for a queue whose node is
down, a publish to it is nacked, and back under its old name the node has the queue and its
messages again."""

from __future__ import annotations

from pathlib import Path

import pika
import pika.exceptions
import pytest
from conftest import start_broker
from helpers import channel_error, publish

ABSENT = "NOT_FOUND - home node 'rabbit@first' of durable queue 'q' in vhost '/' is down or inaccessible"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    first = start_broker(data_dir=str(tmp_path), node_name="rabbit@first")
    connection = first.connect()
    channel = connection.channel()
    channel.queue_declare("q", durable=True)
    channel.exchange_declare("x", "direct", durable=True)
    channel.queue_bind("q", "x", "k")
    channel.confirm_delivery()
    publish(channel, "q", b"one", b"two", delivery_mode=2)
    connection.close()
    first.stop()
    return tmp_path


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda ch: ch.queue_declare("q", passive=True), id="passive declare"),
        pytest.param(lambda ch: ch.queue_declare("q", durable=True), id="declare"),
        pytest.param(lambda ch: ch.queue_bind("q", "x", "other"), id="bind"),
        pytest.param(lambda ch: ch.basic_consume("q", lambda *_: None), id="consume"),
        pytest.param(lambda ch: ch.basic_get("q"), id="get"),
        pytest.param(lambda ch: ch.queue_purge("q"), id="purge"),
        pytest.param(lambda ch: ch.queue_delete("q"), id="delete"),
    ],
)
def test_a_queue_of_another_node_is_absent(data_dir: Path, action) -> None:  # noqa: ANN001
    second = start_broker(data_dir=str(data_dir), node_name="rabbit@second")
    try:
        connection = second.connect()
        assert channel_error(connection, action) == (404, ABSENT)
        connection.close()
    finally:
        second.stop()


def test_a_publish_to_an_absent_queue_is_nacked_and_the_home_node_keeps_its_messages(data_dir: Path) -> None:
    second = start_broker(data_dir=str(data_dir), node_name="rabbit@second")
    try:
        connection = second.connect()
        channel = connection.channel()
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.NackError):
            channel.basic_publish("x", "k", b"three", pika.BasicProperties(delivery_mode=2))
        channel.queue_unbind("q", "x", "k")  # metadata only: no need of the home node
        connection.close()
    finally:
        second.stop()
    first = start_broker(data_dir=str(data_dir), node_name="rabbit@first")
    try:
        connection = first.connect()
        channel = connection.channel()
        bodies = []
        while (got := channel.basic_get("q", auto_ack=True))[0] is not None:
            bodies.append(got[2])
        assert bodies == [b"one", b"two"]
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.UnroutableError):  # the unbind above holds here too
            channel.basic_publish("x", "k", b"four", mandatory=True)
        connection.close()
    finally:
        first.stop()
