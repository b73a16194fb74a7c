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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pamqp import commands
from pamqp.header import ContentHeader

from amqp_server.core.events import Event
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
    "ConnectionError", "Consumer", "Destination", "Event", "ExchangeType", "Message", "NodeContext", "Plugin",
    "PluginContext", "QueueEntry",
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


#: A plugin's start or stop hook: called with the node's context; may be a coroutine function.
Hook = Callable[["NodeContext"], Awaitable[None] | None]
#: A policy key's validator: the error text RabbitMQ would give for ``value``, or None when valid.
PolicyKeyValidator = Callable[[Any], str | None]


@dataclass(frozen=True)
class Plugin:
    """What a plugin package exposes under the ``amqp_server.plugins`` entry-point group: one
    ``Plugin`` value, named as RabbitMQ names the plugin (``rabbitmq_delayed_message_exchange``)
    so that operators enable it with the name they know (``amqp-plugins enable NAME``).

    Enabled (at boot from the ``enabled_plugins`` file, or at once by ``amqp-plugins``), the
    broker enables its ``dependencies`` first, registers its exchange and queue types and policy
    keys, then calls ``start``; disabled, it calls ``stop`` and unregisters them (exchanges of a
    type that is gone stay as placeholders that refuse publishes, as RabbitMQ's do)."""

    name: str
    description: str = ""
    #: The plugin's own version ("" for a bundled plugin: the broker's).
    version: str = ""
    #: Plugins enabled before this one (and disabled after it).
    dependencies: tuple[str, ...] = ()
    #: Broker versions the plugin works with, as PEP 440 specifiers (``">=0.1,<2"``); "" is any.
    broker_version_requirement: str = ""
    exchange_types: tuple[type[ExchangeType], ...] = ()
    queue_types: tuple[type[QueueType], ...] = ()
    #: Policy definition keys the plugin gives meaning to, with their validators.
    policy_keys: Mapping[str, PolicyKeyValidator] = field(default_factory=dict)
    start: Hook | None = None
    stop: Hook | None = None


class NodeContext:
    """A plugin's handle on the whole node (``Plugin.start``/``stop`` get it): subscribe to
    events, act in a vhost, set timers, keep files. One per enabled plugin; what it subscribed
    and scheduled is undone when the plugin is disabled."""

    def __init__(self, broker: Broker, plugin: str, data_dir: str | None) -> None:
        self._broker = broker
        self.plugin = plugin
        #: The plugin's own directory (``<data dir>/plugins/<name>``, made on first use by the
        #: plugin), or None for a node without a data directory: keep state in memory then.
        self.data_dir = data_dir
        self.log = logging.getLogger(f"plugin.{plugin}")
        self._undo: list[Callable[[], None]] = []

    @property
    def node_name(self) -> str:
        return self._broker.node_name

    def subscribe(self, callback: Callable[[Event], None], *names: str) -> None:
        """Call ``callback`` for the events ``names`` (RabbitMQ's names; every event when none
        is named), until the plugin is disabled."""
        self._undo.append(self._broker.events.subscribe(callback, *names))

    def vhost(self, name: str) -> PluginContext:
        """A context to publish and deliver in vhost ``name``."""
        return PluginContext(self._broker, name, self.plugin)

    def vhosts(self) -> list[str]:
        return list(self._broker.vhosts)

    def parameters(self, component: str) -> dict[tuple[str, str], Any]:
        """The runtime parameters of ``component`` (``shovel``, ``federation-upstream``) by
        (vhost, name); ``parameter.set`` and ``parameter.cleared`` events tell of changes."""
        return {
            (vhost, name): value
            for (vhost, of, name), value in self._broker.parameters.items()
            if of == component
        }

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        """As ``PluginContext.call_later``; pending timers are cancelled when the plugin is disabled."""

        def run() -> None:
            try:
                callback(*args)
            except Exception:  # noqa: BLE001 - a plugin's bug must not reach the event loop
                self.log.exception("timer callback failed")

        handle = asyncio.get_running_loop().call_later(delay, run)
        self._undo.append(handle.cancel)
        return handle

    def on_disable(self, undo: Callable[[], None]) -> None:
        """Run ``undo`` when the plugin is disabled (after its ``stop`` hook)."""
        self._undo.append(undo)

    def close(self) -> None:
        """Undo what the plugin subscribed and scheduled, last first (the broker calls this)."""
        while self._undo:
            try:
                self._undo.pop()()
            except Exception:  # noqa: BLE001
                self.log.exception("undoing a plugin's registration failed")
