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
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pamqp import commands
from pamqp.header import ContentHeader

from amqp_server.core.events import Event
from amqp_server.core.message import Message
from amqp_server.metadata.store import Change
from amqp_server.protocol.content import FLAG_HEADERS, join_properties, split_properties
from amqp_server.protocol.errors import (
    ACCESS_REFUSED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    ChannelError,
    ConnectionError,
)
from amqp_server.protocol.field_types import amqp_type_name, octets, short_str
from amqp_server.protocol.rabbit_text import erlang_repr
from amqp_server.protocol.tables import encode_entries
from exchanges.base import EXCHANGE, QUEUE, Binding, Destination, ExchangeType, RoutableMessage
from queues.base import Consumer, QueueEntry, QueueType, Settlement
from queues.settings import QueueSettings

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker, BrokerConfig

__all__ = [
    "ACCESS_REFUSED", "EXCHANGE", "NOT_FOUND", "PRECONDITION_FAILED", "QUEUE", "Binding", "ChannelError",
    "ConnectionError", "Consumer", "Destination", "Event", "ExchangeType", "Message", "NodeContext", "Plugin",
    "PluginContext", "QueueEntry",
    "QueueSettings", "QueueType", "RoutableMessage", "Settlement", "TypedTable", "amqp_type_name", "erlang_repr", "new_message",
]  # fmt: skip


#: Headers with the exact AMQP type of each value, as RabbitMQ's plugins write them: entries
#: ``(name, type, value)``, the type as its letter (``"S"`` longstr, ``"l"`` long, ``"I"``
#: signedint, ``"t"`` bool, ``"F"`` table (a TypedTable), ``"A"`` array (``[(type, value)]``), ...).
TypedTable = list[tuple[str, str, Any]]


def new_message(
    exchange: str, routing_key: str, body: bytes, properties: dict[str, Any] | None = None,
    typed_headers: TypedTable | None = None,
) -> Message:  # fmt: skip
    """A message made by a plugin, as if published to ``exchange`` with ``routing_key``;
    ``properties`` are basic properties by pamqp's names (``delivery_mode``, ``headers``, ...);
    ``typed_headers``, when given, are the headers instead, with their AMQP types as given."""
    header = ContentHeader(0, len(body), commands.Basic.Properties(**(properties or {}))).marshal()
    if typed_headers is not None:
        fields = split_properties(header)
        fields[FLAG_HEADERS] = encode_entries(_entries(typed_headers))
        header = join_properties(header, fields)
    return Message(exchange, routing_key, short_str(exchange) + short_str(routing_key), header, body)


def _entries(table: TypedTable) -> list[tuple[bytes, int, Any]]:
    return [(octets(name), ord(kind), _typed(kind, value)) for name, kind, value in table]


def _typed(kind: str, value: Any) -> Any:
    """A TypedTable value as the table encoder takes it."""
    if kind == "F":
        return _entries(value)
    if kind == "A":
        return [(ord(item_kind), _typed(item_kind, item)) for item_kind, item in value]
    return octets(value) if isinstance(value, str) else value


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

    def deliver(
        self, destinations: Iterable[Destination], message: Message, unsettled: set[Settlement] | None = None
    ) -> int:
        """Enqueue ``message`` on the queues ``destinations`` lead to (exchange destinations are
        followed as routing follows them); returns how many queues took it. Nothing is returned
        to a publisher: it has had its answer already. ``unsettled``: the ``Settlement`` of each
        queue that took it but has not stored it yet is added to it (a plugin keeping its own
        copy drops that copy once they are settled)."""
        vhost = self._broker.vhosts.get(self.vhost)
        if vhost is None:
            return 0
        taken = 0
        for queue in vhost.route_to(destinations, message):
            result = queue.publish(message)
            if result:
                taken += 1
                if result is not True and unsettled is not None:
                    unsettled.add(result)
        return taken

    def publish(self, exchange: str, message: Message, unsettled: set[Settlement] | None = None) -> int:
        """Route ``message`` through ``exchange`` of this vhost, as a publish would; returns how
        many queues took it (0 also when the exchange does not exist); ``unsettled`` as for
        ``deliver``."""
        return self.deliver((Destination(EXCHANGE, exchange),), message, unsettled)

    def reaches(self, destinations: Iterable[Destination], message: Message) -> bool:
        """Whether ``destinations`` lead to any queue now (nothing is enqueued): a plugin that
        holds a message back checks with it whether a publish would be routed."""
        vhost = self._broker.vhosts.get(self.vhost)
        return vhost is not None and bool(vhost.route_to(destinations, message))

    def exchange_type(self, name: str) -> type[ExchangeType]:
        """The installed exchange type ``name`` (a type wrapping another finds it here), or
        RabbitMQ's 503 for an unknown one, as exchange.declare refuses it."""
        from amqp_server.core.topology import exchange_type  # the core imports the plugin API

        return exchange_type(self._broker.vhosts[self.vhost], name)


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
        #: True when ``stop`` runs because the node stops, not because the plugin is disabled:
        #: what RabbitMQ's plugins undo only on disable (their cleanup steps) stays then.
        self.node_stopping = False
        self._undo: list[Callable[[], None]] = []

    @property
    def node_name(self) -> str:
        return self._broker.node_name

    @property
    def amqp_address(self) -> tuple[str, int] | None:
        """Where the node's first AMQP listener listens, once it does (None before)."""
        return self._broker.amqp_address

    @property
    def cluster_name(self) -> str:
        return self._broker.cluster_name

    def subscribe(self, callback: Callable[[Event], None], *names: str) -> None:
        """Call ``callback`` for the events ``names`` (RabbitMQ's names; every event when none
        is named), until the plugin is disabled."""
        self._undo.append(self._broker.events.subscribe(callback, *names))

    def vhost(self, name: str) -> PluginContext:
        """A context to publish and deliver in vhost ``name``."""
        return PluginContext(self._broker, name, self.plugin)

    def vhosts(self) -> list[str]:
        return list(self._broker.vhosts)

    @property
    def config(self) -> BrokerConfig:
        """The node's configuration (read it, never change it)."""
        return self._broker.config

    async def declare_exchange(
        self, vhost: str, name: str, type_name: str, *, durable: bool = True, internal: bool = False
    ) -> None:
        """Declare an exchange of the plugin's own, as RabbitMQ's plugins do with
        rabbit_exchange:declare: ``amq.*`` names are allowed; an existing exchange is kept."""
        target = self._broker.vhosts.get(vhost)
        if target is None or name in target.exchanges:
            return
        record = {"type": type_name, "durable": durable, "auto_delete": False, "internal": internal, "arguments": {}}
        await self._broker.change(Change("exchange", "put", vhost, name, record, persisted=durable, create=True))

    async def delete_exchange(self, vhost: str, name: str) -> None:
        """Delete an exchange (its bindings go with it), ``amq.*`` names too; none is no error."""
        target = self._broker.vhosts.get(vhost)
        exchange = target.exchanges.get(name) if target is not None else None
        if exchange is not None:
            await self._broker.change(Change("exchange", "delete", vhost, name, persisted=exchange.durable))

    def parameters(self, component: str) -> dict[tuple[str, str], Any]:
        """The runtime parameters of ``component`` (``shovel``, ``federation-upstream``) by
        (vhost, name); ``parameter.set`` and ``parameter.cleared`` events tell of changes."""
        return {
            (vhost, name): value
            for (vhost, of, name), value in self._broker.parameters.items()
            if of == component
        }

    def policy_in_force(self, vhost: str, kind: str, name: str) -> dict[str, Any] | None:
        """The effective policy definition of queue or exchange ``name`` (``kind``: ``queue`` or
        ``exchange``), None when it has none or does not exist."""
        host = self._broker.vhosts.get(vhost)
        if host is None:
            return None
        entity = (host.queues if kind == QUEUE else host.exchanges).get(name)
        return getattr(entity, "effective_policy", None) or None

    def names(self, vhost: str, kind: str) -> list[str]:
        """The names of the queues or exchanges (``kind``) of ``vhost``."""
        host = self._broker.vhosts.get(vhost)
        return [] if host is None else list(host.queues if kind == QUEUE else host.exchanges)

    def bindings(self, vhost: str, source: str) -> list[Binding]:
        """The bindings from exchange ``source``."""
        host = self._broker.vhosts.get(vhost)
        return [] if host is None else [b for b in host.bindings.values() if b.source == source]

    def queue_stats(self, vhost: str, name: str) -> dict[str, Any] | None:
        """A queue's counters as the HTTP API names them (``consumers``, ``messages_ready``, ...)."""
        host = self._broker.vhosts.get(vhost)
        queue = None if host is None else host.queues.get(name)
        return None if queue is None else queue.stats()

    def add_parameter_component(self, component: str, validate: Callable[[str, str, Any], list[str]]) -> None:
        """Accept runtime parameters of ``component`` (set_parameter, the HTTP API) while the
        plugin is enabled; ``validate(vhost, name, value)`` gives RabbitMQ's error texts (none:
        valid), shown under ``Validation failed``."""
        self._broker.parameter_components[component] = validate
        self._undo.append(lambda: self._broker.parameter_components.pop(component, None))

    async def clear_parameter(self, vhost: str, component: str, name: str) -> None:
        """Clear a runtime parameter, as ``rabbitmqctl clear_parameter`` (a shovel that is done)."""
        from amqp_server.admin.operations import Admin  # here: the broker it imports imports this module

        await Admin(self._broker).clear_parameter(vhost, component, name)

    def add_command(self, name: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        """Answer control-channel command ``name`` (what an ``amqp-ctl`` command of the plugin
        calls) with ``handler(args)`` (a value, or an awaitable of one; raise
        ``amqp_server.admin.errors.AdminError`` to refuse), while the plugin is enabled."""
        self._broker.plugin_commands[name] = handler
        self._undo.append(lambda: self._broker.plugin_commands.pop(name, None))

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

    def add_routes(self, routes: Iterable[tuple[str, Any]]) -> None:
        """Serve ``routes`` in the management HTTP API until the plugin is disabled: (path
        under /api, resource) pairs as management_ui's modules list them (``ROUTES``: a
        ``management_ui.resource.Resource``; ``{name}`` parts as aiohttp's)."""
        self._undo.append(self._broker.plugins.add_routes(self.plugin, routes))

    def add_dashboard_extension(self, javascript_file: str | os.PathLike[str]) -> None:
        """Add a JavaScript module to the management dashboard until the plugin is disabled:
        served as ``/js/extensions/<plugin>/<file name>``, listed by ``/api/extensions``, and
        imported by the dashboard after login (its pages and tabs: docs/plugins.md). A relative
        path is in the plugin's package (the directory of the module defining its start hook)."""
        self._undo.append(self._broker.plugins.add_dashboard_extension(self.plugin, javascript_file))

    def throttle_publishers(self, on: bool) -> None:
        """Stop (True) or resume (False) reading from connections that publish: for a plugin
        whose own store falls behind what publishers send it, as the broker does when its
        message store does (silently, as RabbitMQ's credit flow)."""
        self._broker.throttle_publishers(f"plugin {self.plugin}", on)

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
