"""What a plugin author imports: the exchange-type and queue-type contracts, the errors to
refuse with, the message (raw bytes, properties decoded on demand), and ``PluginContext``, which
lets a plugin instance act later than the call it is in: set timers, publish a message it holds
back, keep state.

    from amqp_server.plugin_api import ExchangeType, Destination, PluginContext, ChannelError

``amqp_type_name`` and ``erlang_repr`` print field values as RabbitMQ's error texts do.

The broker gives every exchange-type instance its context as ``self.context`` right after
creating it, before any other call. Everything a plugin needs is here; anything else in the
broker may change without notice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pamqp import commands
from pamqp.header import ContentHeader

from amqp_server.core.message import Message
from amqp_server.protocol.errors import (
    ACCESS_REFUSED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    ChannelError,
    ConnectionError,
)
from amqp_server.protocol.field_types import amqp_type_name, short_str
from amqp_server.protocol.rabbit_text import erlang_repr
from exchanges.base import EXCHANGE, QUEUE, Binding, Destination, ExchangeType, RoutableMessage
from queues.base import Consumer, QueueEntry, QueueType
from queues.settings import QueueSettings

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker

__all__ = [
    "ACCESS_REFUSED", "EXCHANGE", "NOT_FOUND", "PRECONDITION_FAILED", "QUEUE", "Binding", "ChannelError",
    "ConnectionError", "Consumer", "Destination", "ExchangeType", "Message", "PluginContext", "QueueEntry",
    "QueueSettings", "QueueType", "RoutableMessage", "amqp_type_name", "erlang_repr", "new_message",
]  # fmt: skip


def new_message(exchange: str, routing_key: str, body: bytes, properties: dict[str, Any] | None = None) -> Message:
    """A message made by a plugin, as if published to ``exchange`` with ``routing_key``;
    ``properties`` are basic properties by pamqp's names (``delivery_mode``, ``headers``, ...)."""
    header = ContentHeader(0, len(body), commands.Basic.Properties(**(properties or {}))).marshal()
    return Message(exchange, routing_key, short_str(exchange) + short_str(routing_key), header, body)


class PluginContext:
    """A plugin instance's handle on the broker, scoped to one vhost."""

    def __init__(self, broker: Broker, vhost: str, owner: str) -> None:
        self._broker = broker
        self.vhost = vhost
        self.log = logging.getLogger(f"plugin.{owner}")
        #: Whatever the plugin wants to keep between calls (it lives as long as the instance).
        self.state: dict[str, Any] = {}

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        """Run ``callback(*args)`` on the broker's event loop after ``delay`` seconds; an
        exception it raises is logged, never lost. Cancel with the returned handle."""

        def run() -> None:
            try:
                callback(*args)
            except Exception:  # noqa: BLE001 - a plugin's bug must not reach the event loop
                self.log.exception("timer callback failed")

        return asyncio.get_running_loop().call_later(delay, run)

    def deliver(self, destinations: Iterable[Destination], message: Message) -> int:
        """Enqueue ``message`` on the queues ``destinations`` lead to (exchange destinations are
        followed as routing follows them); returns how many queues took it. Nothing is returned
        to a publisher: it has had its answer already."""
        vhost = self._broker.vhosts.get(self.vhost)
        if vhost is None:
            return 0
        return sum(1 for queue in vhost.route_to(destinations, message) if queue.publish(message))

    def publish(self, exchange: str, message: Message) -> int:
        """Route ``message`` through ``exchange`` of this vhost, as a publish would; returns how
        many queues took it (0 also when the exchange does not exist)."""
        return self.deliver((Destination(EXCHANGE, exchange),), message)
