"""Helpers the integration tests share: publishing, counting and draining queues, waiting for a
condition, expecting a channel to be closed, finding the broker's side of a client connection.

They work through the wire (pika, or a ``rawamqp.RawClient``) or through the broker's public
surfaces (``stats()``, public attributes, ``BrokerHandle.admin``), never its private attributes,
so that refactoring the broker does not break the tests. Import them as
``from helpers import ...`` (``tests/`` is on the path, as for ``conftest``).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import pytest
from conftest import BrokerHandle, Node
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pika.exceptions import ChannelClosedByBroker

# -- publishing ---------------------------------------------------------------------------------


def publish(channel: Any, queue: str, *bodies: bytes, **properties: Any) -> None:
    """Publish ``bodies`` to ``queue`` through the default exchange, with ``properties`` if any."""
    for body in bodies:
        channel.basic_publish("", queue, body, pika.BasicProperties(**properties) if properties else None)


def publish_numbered(channel: Any, queue: str, n: int) -> None:
    """Publish ``n`` messages ``b"m0"``, ``b"m1"``, ... to ``queue`` through the default exchange."""
    for i in range(n):
        channel.basic_publish("", queue, f"m{i}".encode())


def new_queue(channel: Any, **arguments: Any) -> str:
    """Declare a server-named exclusive queue with ``arguments``; its name."""
    return channel.queue_declare("", exclusive=True, arguments=arguments or None).method.queue


# -- counting and draining ----------------------------------------------------------------------


def message_count(channel: Any, queue: str) -> int:
    """queue.declare passive: the ready count; also a round trip, after which all earlier
    deliveries on ``channel`` are in."""
    return channel.queue_declare(queue, passive=True).method.message_count


def message_count_on(connection: pika.BlockingConnection, queue: str) -> int:
    """``message_count`` on a channel of its own (opened for it, closed after)."""
    channel = connection.channel()
    try:
        return message_count(channel, queue)
    finally:
        channel.close()


def get_messages(channel: Any, queue: str, *, auto_ack: bool = True) -> list[tuple[Any, Any, bytes]]:
    """basic.get until ``queue`` is empty: every (method, properties, body), in order. Without
    ``auto_ack`` each message is acked right after its get."""
    got = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=auto_ack)
        if method is None:
            return got
        got.append((method, properties, body))
        if not auto_ack:
            channel.basic_ack(method.delivery_tag)


def drain(channel: Any, queue: str) -> list[bytes]:
    """The bodies of every message ready in ``queue``, in order (basic.get with auto-ack)."""
    return [body for _method, _properties, body in get_messages(channel, queue)]


def drain_acked(channel: Any, queue: str) -> list[tuple[str, bool]]:
    """Every ready message of ``queue`` as (body, redelivered), each acked after its get."""
    return [
        (body.decode(), method.redelivered)
        for method, _properties, body in get_messages(channel, queue, auto_ack=False)
    ]


def queue_exists(connection: pika.BlockingConnection, name: str) -> bool:
    """Whether queue ``name`` exists in "/", by a passive declare on a fresh channel (which counts
    as a use of the queue); anything but 404 fails the test."""
    try:
        connection.channel().queue_declare(name, passive=True)
    except ChannelClosedByBroker as error:
        assert (error.reply_code, error.reply_text) == (404, f"NOT_FOUND - no queue '{name}' in vhost '/'")
        return False
    return True


# -- waiting ------------------------------------------------------------------------------------


def wait_until(
    connection: pika.BlockingConnection | None,
    condition: Callable[[], Any],
    limit: float = 1.5,
    message: str = "condition not reached",
) -> None:
    """Wait until ``condition()`` is true, failing the test with ``message`` after ``limit``
    seconds. With a pika ``connection`` its events are processed while waiting (so that its
    callbacks run); with None it sleeps."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, message
        if connection is None:
            time.sleep(0.02)
        else:
            connection.process_data_events(time_limit=0.02)


# -- errors -------------------------------------------------------------------------------------


def channel_error(connection: pika.BlockingConnection, action: Callable[[Any], Any]) -> tuple[int, str]:
    """Run ``action`` on a fresh channel; it must be closed by the broker. Returns (code, text)."""
    channel = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as raised:
        action(channel)
    return raised.value.reply_code, raised.value.reply_text


def closes(channel: Any, action: Callable[[], Any]) -> tuple[int, str]:
    """Run ``action``; the broker must close ``channel`` for it: (code, text). A round trip
    follows the action, for actions that await no reply (basic.publish, basic.ack)."""
    with pytest.raises(ChannelClosedByBroker) as raised:
        action()
        channel.queue_declare("", exclusive=True)
    return raised.value.reply_code, raised.value.reply_text


# -- the broker's side --------------------------------------------------------------------------


def connect_named(handle: BrokerHandle, name: str, **kw: Any) -> pika.BlockingConnection:
    """A pika connection with ``connection_name`` ``name`` (how ``server_connection`` finds it)."""
    return handle.connect(client_properties={"connection_name": name}, **kw)


def server_connection(handle: BrokerHandle, client: Any) -> Any:
    """The broker's Connection for ``client``: a RawClient, or the ``connection_name`` of a pika
    connection (``connect_named``). None when the broker has none."""
    if isinstance(client, str):

        def matches(connection: Any) -> bool:
            return connection.client_properties.get("connection_name") == client

    else:
        port = client.sock.getsockname()[1]

        def matches(connection: Any) -> bool:
            return connection.peer[1] == port

    return handle.call(lambda: next((c for c in handle.broker.connections if matches(c)), None))


def queue_stats(handle: BrokerHandle, name: str, vhost: str = "/") -> dict[str, Any]:
    """The queue's counters (``stats()``, as RabbitMQ's HTTP API names them), read on the broker's loop."""
    return handle.call(lambda: handle.broker.vhosts[vhost].queues[name].stats())


def read_message(raw: Any, channel: int, kind: type) -> Any:
    """Read a content-carrying method (basic.deliver, basic.get-ok, ...) with its header and body
    from a RawClient; the method."""
    method = raw.expect(channel, kind)
    raw.expect(channel, ContentHeader)
    raw.expect(channel, ContentBody)
    return method


def restart_node(node: Node, sig: signal.Signals, data_dir: Path, cwd: Path, nodes: list[Node]) -> Node:
    """Stop a broker process with ``sig`` (SIGTERM: a clean exit; SIGKILL: killed) and start
    another on the same data directory (added to ``nodes``), listening."""
    node.process.send_signal(sig)
    code, err = node.exit_status()
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), err
    again = Node(data_dir, cwd)
    nodes.append(again)
    return again.wait_listening()
