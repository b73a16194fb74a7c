"""A virtual host: its exchanges, queues and bindings, the routing of published messages,
and RabbitMQ's rules for declaring, binding and deleting them.

Every mutation is a ``metadata.Change`` committed to the broker's store first and applied to
the tables here by ``apply``; checks (permissions, existence, equivalence, reserved names,
exclusivity) run before, in the order rabbit_channel runs them, because when several fail the
client sees the first one. The channel passes its permission check as ``check``; the broker's
own operations (auto-delete, an exclusive owner going away) pass none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from amqp_server.core.dead_letter import dead_letter_hook
from amqp_server.core.policy import Policy, effective_definition, select
from amqp_server.metadata.store import Change
from amqp_server.plugin_api import PluginContext
from amqp_server.protocol.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    ChannelError,
    ConnectionError,
)
from amqp_server.protocol.field_types import amqp_type_name, octets, text
from amqp_server.protocol.rabbit_text import misc_val as _shown
from amqp_server.protocol.rabbit_text import misc_val_of_type
from exchanges.base import EXCHANGE, QUEUE, Binding, Destination, ExchangeType
from exchanges.missing import MissingExchangeType
from queues.arguments import check_declare_arguments, queue_type_of
from queues.base import QueueType
from queues.settings import QueueSettings

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker

log = logging.getLogger(__name__)

#: A permission check: (``"configure"``/``"write"``/``"read"``, resource kind, name); raises 403.
Check = Callable[[str, str, str], None]

# Queue arguments whose values must match on redeclaration, in the order RabbitMQ compares them
# (rabbit_classic_queue's queue_arguments). Others (x-max-in-memory-length, x-max-age, ...) may differ.
EQUIVALENT_QUEUE_ARGS = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
)
EQUIVALENT_EXCHANGE_ARGS = ("alternate-exchange",)
# name, type, internal
PREDECLARED = (
    ("amq.direct", "direct", False),
    ("amq.fanout", "fanout", False),
    ("amq.topic", "topic", False),
    ("amq.headers", "headers", False),
    ("amq.match", "headers", False),
    ("amq.rabbitmq.trace", "topic", True),
)
# Names that are atoms in a RabbitMQ 3.10 node, for which exchange.declare with an unknown type
# says "invalid exchange type" instead of "unknown exchange type" (checked against the node).
ERLANG_ATOMS = frozenset(
    (
        "", "foo", "bar", "test", "dummy", "invalid", "unknown", "bad", "other", "none", "null",
        "nil", "undefined", "true", "false", "ok", "error", "Direct", "header", "match", "default",
        "local", "system", "internal", "queue", "exchange", "rabbit", "random", "hash", "x", "a",
        "b", "c", "delay", "priority", "stream", "quorum", "classic", "lazy", "normal", "simple",
        "basic", "any", "all", "string", "binary", "json", "text", "name", "type", "new",
        "federation", "trace", "event", "events", "log",
    )
)  # fmt: skip


class Exchange:
    __slots__ = (
        "name", "type_name", "durable", "auto_delete", "internal", "arguments", "router", "alternate",
        "policy", "operator_policy", "effective_policy",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        type_name: str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: Mapping[str, Any],
        router: ExchangeType | None,
    ) -> None:
        self.name = name
        self.type_name = type_name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = dict(arguments)
        self.router = router  # None for the default exchange, which routes by queue name
        alternate = self.arguments.get("alternate-exchange")
        # The argument wins over a policy's alternate-exchange (VirtualHost._apply_exchange_policy).
        self.alternate: str | None = text(alternate) if alternate is not None else None
        self.policy: str | None = None  # names of the applied policies, for the admin surfaces
        self.operator_policy: str | None = None
        self.effective_policy: dict[str, Any] = {}


_MISSING: Any = object()


def _not_default(name: str) -> None:
    if name == "":
        raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")


def _erlang_term(value: Any) -> Any:
    """A key equal for two field values exactly when RabbitMQ takes them as equivalent: same
    Erlang term, whatever the width of an integer or the string type (longstr/bytes)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", value)
    if isinstance(value, str):
        return ("bin", octets(value))
    if isinstance(value, bytes | bytearray):
        return ("bin", bytes(value))
    return (type(value).__name__, repr(value))


def _value(value: Any) -> str:
    return "none" if value is _MISSING else misc_val_of_type(value)


def _assert_fields_equivalent(where: str, fields: Iterable[tuple[str, bool, bool]]) -> None:
    """rabbit_misc:assert_field_equivalence for durable/auto_delete/internal."""
    for field, received, current in fields:
        if bool(received) != bool(current):
            raise ChannelError(
                PRECONDITION_FAILED,
                f"inequivalent arg '{field}' for {where}: received '{_shown(bool(received))}' "
                f"but current is '{_shown(bool(current))}'",
            )


def _assert_args_equivalent(
    where: str, current_args: Mapping[str, Any], received_args: Mapping[str, Any], keys: Iterable[str]
) -> None:
    """rabbit_misc:assert_args_equivalence: both missing or equal terms pass; when both are
    present the values are shown bare, when one is missing the other is shown with its type."""
    for key in keys:
        current = current_args.get(key, _MISSING)
        received = received_args.get(key, _MISSING)
        if current is _MISSING and received is _MISSING:
            continue
        if key == "x-queue-type" and text(current if received is _MISSING else received) == "classic" and (
            current is _MISSING or received is _MISSING
        ):
            continue  # a classic queue is a classic queue whether or not the argument says so
        if current is not _MISSING and received is not _MISSING:
            if _erlang_term(current) == _erlang_term(received):
                continue
            shown_received, shown_current = f"'{_shown(received)}'", f"'{_shown(current)}'"
        else:
            shown_received, shown_current = _value(received), _value(current)
        raise ChannelError(
            PRECONDITION_FAILED,
            f"inequivalent arg '{key}' for {where}: received {shown_received} but current is {shown_current}",
        )


class VirtualHost:
    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, QueueType] = {}
        self.bindings: dict[tuple, Binding] = {}
        self._by_source: dict[str, set[tuple]] = {}
        self._by_destination: dict[Destination, set[tuple]] = {}
        self._exchange_bindings = 0  # how many bindings lead to exchanges: 0 keeps routing simple
        self._alternates = 0  # how many exchanges have an alternate exchange
        self.policies: dict[str, Policy] = {}
        self.operator_policies: dict[str, Policy] = {}
        self.description = ""
        self.tags: list[str] = []
        # Every queue shares one dead-letter hook (it takes the queue as an argument).
        self._dead_letter = dead_letter_hook(self)
        # Exclusive queues by owning connection id, in declaration order: what a closing
        # connection deletes, found without looking at every queue of the vhost.
        self._exclusive: dict[object, dict[str, None]] = {}

    # -- routing (hot path) --------------------------------------------------------------

    def route(self, exchange: Exchange, message: Any) -> list[QueueType]:
        """The queues ``message`` published to ``exchange`` reaches, each once."""
        queues = self.queues
        router = exchange.router
        if router is None:
            if not message.header[12] & 0x20:  # no headers property, so no CC/BCC keys
                queue = queues.get(message.routing_key)
                return [queue] if queue is not None else []
            found = [queues[key] for key in message.routing_keys if key in queues]
            return found if len(found) < 2 else list(dict.fromkeys(found))
        if not self._exchange_bindings and not self._alternates:
            return [queues[d.name] for d in router.route(message) if d.name in queues]
        return self._route_graph(exchange, message)

    def _route_graph(self, exchange: Exchange, message: Any) -> list[QueueType]:
        """Routing through exchange-to-exchange bindings and alternate exchanges (cycles allowed)."""
        return self._walk([exchange], (), message)

    def route_to(self, destinations: Iterable[Destination], message: Any) -> list[QueueType]:
        """The queues ``destinations`` lead to (following exchanges as routing does): how a
        plugin routes a message it held back (``PluginContext.deliver``)."""
        return self._walk([], destinations, message)

    def _walk(self, work: list[Exchange], first: Iterable[Destination], message: Any) -> list[QueueType]:
        queues = self.queues
        exchanges = self.exchanges
        seen_exchanges = {exchange.name for exchange in work}
        found: dict[str, QueueType] = {}
        destinations: Iterable[Destination] = first
        while True:
            for destination in destinations:
                if destination.kind == QUEUE:
                    queue = queues.get(destination.name)
                    if queue is not None:
                        found[destination.name] = queue
                elif destination.name not in seen_exchanges:
                    seen_exchanges.add(destination.name)
                    target = exchanges.get(destination.name)
                    if target is not None:
                        work.append(target)
            if not work:
                return list(found.values())
            current = work.pop()
            if current.router is None:  # the default exchange: by queue name
                destinations = [Destination(QUEUE, key) for key in message.routing_keys]
            else:
                destinations = list(current.router.route(message))
            if not destinations and current.alternate is not None:
                destinations = [Destination(EXCHANGE, current.alternate)]

    # -- lookups -------------------------------------------------------------------------

    def exchange_or_404(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise ChannelError(NOT_FOUND, f"no exchange '{name}' in vhost '{self.name}'")
        return exchange

    def queue_or_404(self, name: str) -> QueueType:
        queue = self.queues.get(name)
        if queue is None:
            raise ChannelError(NOT_FOUND, f"no queue '{name}' in vhost '{self.name}'")
        return queue

    def check_exclusive(self, queue: QueueType, connection_id: str | None, strict: bool = False) -> None:
        """rabbit_amqqueue:check_exclusive_access: the owner may; anyone may use a non-exclusive
        queue, except that a declare (``strict``) must also match the queue's exclusivity."""
        owner = queue.exclusive_owner
        if owner == connection_id or (owner is None and not strict):
            return
        raise ChannelError(
            RESOURCE_LOCKED,
            f"cannot obtain exclusive access to locked queue '{queue.name}' in vhost '{self.name}'. "
            "It could be originally declared on another connection or the exclusive property "
            "value does not match that of the original declaration.",
        )

    def exclusive_queues(self, owner: object) -> list[str]:
        """Names of the queues ``owner`` (a connection id) declared exclusive, oldest first."""
        names = self._exclusive.get(owner)
        return list(names) if names else []

    def _resource(self, kind: str, name: str) -> str:
        return f"{kind} '{name}' in vhost '{self.name}'"

    # -- exchanges -----------------------------------------------------------------------

    def exchange_type(self, type_name: str) -> type[ExchangeType]:
        """The class for ``type_name``, or RabbitMQ's 503 (rabbit_exchange:check_type)."""
        type_class = self.broker.exchange_types.get(type_name)
        if type_class is None:
            # RabbitMQ says "invalid" when the name is an existing Erlang atom and "unknown"
            # otherwise; ERLANG_ATOMS holds the names people try that are atoms in RabbitMQ 3.10.
            adjective = "invalid" if type_name in ERLANG_ATOMS else "unknown"
            raise ConnectionError(COMMAND_INVALID, f"{adjective} exchange type '{type_name}'")
        return type_class

    async def declare_exchange(
        self,
        name: str,
        type_name: str,
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
        check: Check | None = None,
    ) -> Exchange:
        """exchange.declare, checks in rabbit_channel's order; ``check`` does permission checks."""
        arguments = arguments or {}
        if passive:
            _not_default(name)
            return self.exchange_or_404(name)
        type_class = self.exchange_type(type_name)
        _not_default(name)
        if check is not None:
            check("configure", "exchange", name)
        existing = self.exchanges.get(name)
        if existing is None:
            if name.startswith("amq."):
                raise ChannelError(ACCESS_REFUSED, f"exchange name '{name}' contains reserved prefix 'amq.*'")
            alternate = arguments.get("alternate-exchange")
            if alternate is not None:
                if not isinstance(alternate, str | bytes):
                    raise ChannelError(
                        PRECONDITION_FAILED,
                        f"invalid type '{amqp_type_name(alternate)}' for arg 'alternate-exchange' in "
                        f"{self._resource('exchange', name)}",
                    )
                if check is not None:
                    check("read", "exchange", name)
                    check("write", "exchange", text(alternate))
            type_class.validate(arguments)
            await self.broker.change(  # (False: declared meanwhile; the checks below then apply)
                Change(
                    "exchange",
                    "put",
                    self.name,
                    name,
                    {
                        "type": type_name,
                        "durable": durable,
                        "auto_delete": auto_delete,
                        "internal": internal,
                        "arguments": dict(arguments),
                    },
                    persisted=durable,
                    create=True,
                )
            )
            existing = self.exchanges[name]
        self._assert_exchange_equivalent(existing, type_name, durable, auto_delete, internal, arguments)
        return existing

    def _assert_exchange_equivalent(
        self,
        exchange: Exchange,
        type_name: str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: Mapping[str, Any],
    ) -> None:
        where = self._resource("exchange", exchange.name)
        if exchange.type_name != type_name:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"inequivalent arg 'type' for {where}: received '{type_name}' but current is '{exchange.type_name}'",
            )
        _assert_fields_equivalent(
            where,
            (("durable", durable, exchange.durable), ("auto_delete", auto_delete, exchange.auto_delete),
             ("internal", internal, exchange.internal)),
        )
        _assert_args_equivalent(where, exchange.arguments, arguments, EQUIVALENT_EXCHANGE_ARGS)

    async def delete_exchange(self, name: str, if_unused: bool = False, *, check: Check | None = None) -> None:
        """exchange.delete: '' and amq.* are refused; a missing exchange is no error."""
        _not_default(name)
        if name.startswith("amq."):
            raise ChannelError(ACCESS_REFUSED, f"deletion of system {self._resource('exchange', name)} not allowed")
        if check is not None:
            check("configure", "exchange", name)
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # deleting what is not there succeeds, as in RabbitMQ
        if if_unused and self._by_source.get(name):
            raise ChannelError(PRECONDITION_FAILED, f"{self._resource('exchange', name)} in use")
        await self._delete_exchange(exchange)

    async def _delete_exchange(self, exchange: Exchange) -> None:
        sources = self._sources_of(Destination(EXCHANGE, exchange.name))
        await self.broker.change(Change("exchange", "delete", self.name, exchange.name, persisted=exchange.durable))
        await self._auto_delete(sources)

    async def _auto_delete(self, names: Iterable[str]) -> None:
        """Delete the auto-delete exchanges among ``names`` that are no longer a binding's source
        (rabbit_exchange:maybe_auto_delete; cascades through exchange-to-exchange bindings)."""
        for name in names:
            exchange = self.exchanges.get(name)
            if exchange is not None and exchange.auto_delete and name not in self._by_source:
                await self._delete_exchange(exchange)

    def _sources_of(self, destination: Destination) -> list[str]:
        return sorted({key[0] for key in self._by_destination.get(destination, ())})

    # -- queues --------------------------------------------------------------------------

    async def declare_queue(
        self,
        name: str,
        *,
        passive: bool = False,
        durable: bool = False,
        exclusive_owner: str | None = None,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        server_named: bool = False,
        check: Check | None = None,
        connection_id: str | None = None,
    ) -> QueueType:
        """queue.declare, checks in rabbit_channel's order.

        ``exclusive_owner`` is the declaring connection's id when the declare is exclusive;
        ``connection_id`` is the declaring connection (for a passive or non-exclusive declare).
        An exclusive queue is never durable (RabbitMQ ignores ``durable`` for it).
        """
        arguments = arguments or {}
        owner = exclusive_owner if exclusive_owner is not None else connection_id
        if passive:
            queue = self.queue_or_404(name)
            self.check_exclusive(queue, owner)
            return queue
        if name.startswith("amq.") and not server_named:
            raise ChannelError(ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'")
        durable = durable and exclusive_owner is None
        if check is not None:
            check("configure", "queue", name)
        existing = self.queues.get(name)
        if existing is not None:
            return self._existing_queue(existing, exclusive_owner, durable, auto_delete, arguments)
        self._check_queue_limit(name)
        dead_letter = arguments.get("x-dead-letter-exchange")
        if dead_letter is not None:
            if not isinstance(dead_letter, str | bytes):
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"invalid type '{amqp_type_name(dead_letter)}' for arg 'x-dead-letter-exchange' in "
                    f"{self._resource('queue', name)}",
                )
            if check is not None:
                check("read", "queue", name)
                check("write", "exchange", text(dead_letter))
        where = self._resource("queue", name)
        check_declare_arguments(arguments, where, self.broker.queue_types)
        queue_type = queue_type_of(arguments)
        self.broker.queue_types[queue_type].validate_arguments(arguments, where)
        created = await self.broker.change(
            Change(
                "queue",
                "put",
                self.name,
                name,
                {
                    "type": queue_type,
                    "durable": durable,
                    "auto_delete": auto_delete,
                    "exclusive_owner": exclusive_owner,
                    "arguments": dict(arguments),
                    "home_node": self.broker.node_name,
                },
                persisted=durable,
                create=True,
            )
        )
        queue = self.queues[name]
        if not created:  # declared meanwhile by someone else: as if it had been there before
            return self._existing_queue(queue, exclusive_owner, durable, auto_delete, arguments)
        return queue

    def _existing_queue(
        self, queue: QueueType, exclusive_owner: str | None, durable: bool, auto_delete: bool,
        arguments: Mapping[str, Any],
    ) -> QueueType:  # fmt: skip
        """A declare of a queue that exists: RabbitMQ's exclusivity and equivalence checks."""
        self.check_exclusive(queue, exclusive_owner, strict=True)
        where = self._resource("queue", queue.name)
        _assert_fields_equivalent(
            where, (("durable", durable, queue.durable), ("auto_delete", auto_delete, queue.auto_delete))
        )
        _assert_args_equivalent(where, queue.arguments, arguments, EQUIVALENT_QUEUE_ARGS)
        return queue

    def _check_queue_limit(self, name: str) -> None:
        """The vhost's max-queues (rabbit_channel:check_vhost_queue_limit); negative: no limit."""
        limit = self.broker.vhost_limits.get(self.name, {}).get("max-queues") if self.broker.vhost_limits else None
        if limit is not None and limit >= 0 and len(self.queues) >= limit:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"cannot declare queue '{name}': queue limit in vhost '{self.name}' ({limit}) is reached",
            )

    async def delete_queue(
        self,
        name: str,
        if_unused: bool = False,
        if_empty: bool = False,
        *,
        check: Check | None = None,
        connection_id: str | None = None,
    ) -> int:
        """queue.delete; returns the ready messages the queue held (0 when it was not there).

        ``connection_id`` is the deleting connection, checked against an exclusive queue's owner;
        None (the broker itself: auto-delete, owner gone, vhost deleted) skips that check.
        """
        if check is not None:
            check("configure", "queue", name)
        queue = self.queues.get(name)
        if queue is None:
            return 0
        if connection_id is not None:
            self.check_exclusive(queue, connection_id)
        # The queue process answers if-empty before if-unused (rabbit_amqqueue_process).
        if if_empty and queue.message_count:
            raise ChannelError(PRECONDITION_FAILED, f"{self._resource('queue', name)} not empty")
        if if_unused and queue.consumer_count:
            raise ChannelError(PRECONDITION_FAILED, f"{self._resource('queue', name)} in use")
        count = queue.message_count
        sources = self._sources_of(Destination(QUEUE, name))
        await self.broker.change(
            Change("queue", "delete", self.name, name, persisted=queue.durable and queue.exclusive_owner is None)
        )
        await self._auto_delete(sources)
        return count

    # -- bindings ------------------------------------------------------------------------

    async def bind(
        self,
        source: str,
        destination: Destination,
        routing_key: str,
        arguments: Mapping[str, Any],
        *,
        check: Check | None = None,
        connection_id: str | None = None,
    ) -> None:
        """queue.bind / exchange.bind (rabbit_channel:binding_action, rabbit_binding:add)."""
        self._binding_checks(source, destination, check)
        exchange = self.exchange_or_404(source)
        target_durable = self._destination_or_404(destination)
        binding = Binding(source, destination, routing_key, dict(arguments))
        assert exchange.router is not None
        exchange.router.validate_binding(binding)
        if destination.kind == QUEUE and connection_id is not None:
            self.check_exclusive(self.queues[destination.name], connection_id)
        if binding.key in self.bindings:
            return
        await self.broker.change(
            Change(
                "binding",
                "put",
                self.name,
                repr(binding.key),
                _binding_record(binding),
                persisted=exchange.durable and target_durable,
            )
        )

    async def unbind(
        self,
        source: str,
        destination: Destination,
        routing_key: str,
        arguments: Mapping[str, Any],
        *,
        check: Check | None = None,
        connection_id: str | None = None,
    ) -> None:
        """queue.unbind / exchange.unbind: a missing source, destination or binding is no error."""
        self._binding_checks(source, destination, check)
        binding = self.bindings.get(Binding(source, destination, routing_key, dict(arguments)).key)
        if binding is None:
            return  # unbinding what is not bound succeeds, as in RabbitMQ
        exchange = self.exchanges[source]
        if destination.kind == QUEUE:
            queue = self.queues[destination.name]
            if connection_id is not None:
                self.check_exclusive(queue, connection_id)
            target_durable = queue.durable
        else:
            target_durable = self.exchanges[destination.name].durable
        await self.broker.change(
            Change(
                "binding",
                "delete",
                self.name,
                repr(binding.key),
                _binding_record(binding),
                persisted=exchange.durable and target_durable,
            )
        )
        await self._auto_delete((source,))

    def _binding_checks(self, source: str, destination: Destination, check: Check | None) -> None:
        # Order as rabbit_channel:binding_action: write on the destination, neither end the
        # default exchange, read on the source.
        if check is not None:
            check("write", destination.kind, destination.name)
        if destination.kind == EXCHANGE:
            _not_default(destination.name)
        _not_default(source)
        if check is not None:
            check("read", "exchange", source)

    def _destination_or_404(self, destination: Destination) -> bool:
        """Whether the destination is durable; 404 when it does not exist."""
        if destination.kind == QUEUE:
            return self.queue_or_404(destination.name).durable
        return self.exchange_or_404(destination.name).durable

    def bindings_of_queue(self, name: str) -> list[Binding]:
        return [self.bindings[k] for k in self._by_destination.get(Destination(QUEUE, name), ())]

    # -- applying committed changes ------------------------------------------------------
    #
    # ``prepare`` builds what a change needs (exchange-type and queue objects, a parsed
    # policy) and raises if it cannot be applied; ``apply`` only installs what was prepared.
    # Broker.change prepares before it commits, so a committed change always applies, and the
    # boot sets aside a stored change whose prepare fails instead of failing itself.

    def prepare(self, change: Change) -> Any:
        """What ``apply`` installs for ``change``; raises (nothing changed) if it cannot be applied."""
        if change.op != "put":
            return None
        if change.kind == "exchange":
            return self._build_exchange(change)
        if change.kind == "queue":
            return self._build_queue(change)
        if change.kind == "binding":
            return self._build_binding(change)
        if change.kind in ("policy", "operator_policy"):
            return Policy.from_record(self.name, change.name, change.record)
        raise ValueError(f"unknown change {change.kind} {change.op}")

    def apply(self, change: Change, prepared: Any) -> None:
        getattr(self, f"_apply_{change.kind}_{change.op}")(change, prepared)

    def _build_exchange(self, change: Change) -> Exchange:
        record = change.record
        type_name = record["type"]
        arguments = record.get("arguments", {})
        alternate = arguments.get("alternate-exchange")
        if alternate is not None and not isinstance(alternate, str | bytes):
            raise ValueError(f"invalid alternate-exchange {alternate!r}")
        type_class = self.broker.exchange_types.get(type_name)
        if type_class is not None:
            router: ExchangeType = type_class(change.name, arguments)
        else:  # only a stored exchange can get here: a declare checks the type first
            where = self._resource("exchange", change.name)
            log.warning("%s has type %s, which no installed plugin provides: it routes nothing", where, type_name)
            router = MissingExchangeType(change.name, arguments, type_name, where)
        router.context = PluginContext(self.broker, self.name, type_name)
        return Exchange(
            change.name,
            type_name,
            record.get("durable", False),
            record.get("auto_delete", False),
            record.get("internal", False),
            arguments,
            router,
        )

    def _build_queue(self, change: Change) -> QueueType:
        record = change.record
        arguments = record.get("arguments", {})
        queue_type = record.get("type", "classic")
        type_class = self.broker.queue_types.get(queue_type)
        if type_class is None:
            raise ValueError(f"queue type '{queue_type}' is not installed")
        queue = type_class(
            self.name,
            change.name,
            durable=record.get("durable", False),
            exclusive_owner=record.get("exclusive_owner"),
            auto_delete=record.get("auto_delete", False),
            arguments=arguments,
            home_node=record.get("home_node", self.broker.node_name),
        )
        queue.on_unused = self._queue_unused
        queue.dead_letter = self._dead_letter
        return queue

    def _build_binding(self, change: Change) -> Binding:
        binding = _binding_from_record(change.record)
        exchange = self.exchange_or_404(binding.source)
        self._destination_or_404(binding.destination)
        if exchange.router is None:
            raise ValueError("the default exchange takes no bindings")
        exchange.router.validate_binding(binding)
        return binding

    def _apply_exchange_put(self, change: Change, exchange: Exchange) -> None:
        previous = self.exchanges.get(change.name)
        if previous is not None and previous.alternate is not None:
            self._alternates -= 1
        self.exchanges[change.name] = exchange
        if exchange.alternate is not None:
            self._alternates += 1
        if self.policies or self.operator_policies:
            self._apply_exchange_policy(exchange)
        router = exchange.router
        assert router is not None
        for key in self._by_source.get(change.name, ()):
            router.add_binding(self.bindings[key])
        if previous is None:
            self.broker.events.emit("exchange.created", exchange, name=exchange.name, vhost=self.name,
                                    type=exchange.type_name, durable=exchange.durable,
                                    auto_delete=exchange.auto_delete, internal=exchange.internal,
                                    arguments=exchange.arguments)  # fmt: skip

    def _apply_exchange_delete(self, change: Change, _: None) -> None:
        exchange = self.exchanges.pop(change.name, None)
        if exchange is None:
            return
        if exchange.alternate is not None:
            self._alternates -= 1
        for key in list(self._by_source.get(change.name, ())):
            self._remove_binding(self.bindings[key])
        for key in list(self._by_destination.get(Destination(EXCHANGE, change.name), ())):
            self._remove_binding(self.bindings[key])
        if exchange.router is not None:
            exchange.router.delete()
        self.broker.events.emit("exchange.deleted", name=change.name, vhost=self.name)

    def _apply_queue_put(self, change: Change, queue: QueueType) -> None:
        previous = self.queues.get(change.name)
        if previous is not None:
            self._forget_exclusive(previous)
        self.queues[change.name] = queue
        if queue.exclusive_owner is not None:
            self._exclusive.setdefault(queue.exclusive_owner, {})[change.name] = None
        if self.policies or self.operator_policies:
            self._apply_queue_policy(queue)
        else:  # what _apply_queue_policy gives without policies: the arguments' settings, as made
            queue.policy = None  # type: ignore[attr-defined]
            queue.operator_policy = None  # type: ignore[attr-defined]
            queue.effective_policy = {}  # type: ignore[attr-defined]
        self.broker.events.emit("queue.created", queue, name=queue.name, vhost=self.name, durable=queue.durable,
                                auto_delete=queue.auto_delete, exclusive=queue.exclusive_owner is not None,
                                arguments=queue.arguments, type=queue.type_name)  # fmt: skip

    def _apply_queue_delete(self, change: Change, _: None) -> None:
        queue = self.queues.pop(change.name, None)
        if queue is None:
            return
        self._forget_exclusive(queue)
        for key in list(self._by_destination.get(Destination(QUEUE, change.name), ())):
            self._remove_binding(self.bindings[key])
        self.broker.events.emit("queue.deleted", queue, name=change.name, vhost=self.name)

    def forget_all(self) -> None:
        """The vhost is deleted: its queues go (each with its queue.deleted event)."""
        for name in list(self.queues):
            self._apply_queue_delete(Change("queue", "delete", self.name, name), None)

    def _forget_exclusive(self, queue: QueueType) -> None:
        owner = queue.exclusive_owner
        if owner is not None:
            names = self._exclusive.get(owner)
            if names is not None:
                names.pop(queue.name, None)
                if not names:
                    del self._exclusive[owner]

    # -- policies ------------------------------------------------------------------------

    def _apply_policy_put(self, change: Change, policy: Policy) -> None:
        self.policies[change.name] = policy
        self._reapply_policies()
        self.broker.events.emit("policy.set", policy, component="policy", **policy.as_dict())

    def _apply_policy_delete(self, change: Change, _: None) -> None:
        if self.policies.pop(change.name, None) is not None:
            self._reapply_policies()
            self.broker.events.emit("policy.cleared", component="policy", name=change.name, vhost=self.name)

    def _apply_operator_policy_put(self, change: Change, policy: Policy) -> None:
        self.operator_policies[change.name] = policy
        self._reapply_policies()
        self.broker.events.emit("policy.set", policy, component="operator_policy", **policy.as_dict())

    def _apply_operator_policy_delete(self, change: Change, _: None) -> None:
        if self.operator_policies.pop(change.name, None) is not None:
            self._reapply_policies()
            self.broker.events.emit("policy.cleared", component="operator_policy", name=change.name,
                                    vhost=self.name)  # fmt: skip

    def _reapply_policies(self) -> None:
        """A policy came, changed or went: every queue and exchange takes its effect at once."""
        for queue in list(self.queues.values()):
            self._apply_queue_policy(queue)
        for exchange in list(self.exchanges.values()):
            self._apply_exchange_policy(exchange)

    def _apply_queue_policy(self, queue: QueueType) -> None:
        """Resolve the queue's settings from its arguments and its matching (operator) policy."""
        policy = select(self.policies.values(), "queue", queue.name) if self.policies else None
        operator = (
            select(self.operator_policies.values(), "queue", queue.name) if self.operator_policies else None
        )
        queue.policy = policy.name if policy is not None else None  # type: ignore[attr-defined]
        queue.operator_policy = operator.name if operator is not None else None  # type: ignore[attr-defined]
        queue.effective_policy = effective_definition(policy, operator)  # type: ignore[attr-defined]
        settings = QueueSettings.resolve(
            queue.arguments,
            policy.definition if policy is not None else None,
            operator.definition if operator is not None else None,
        )
        if settings != queue.settings:
            queue.apply_settings(settings)

    def _apply_exchange_policy(self, exchange: Exchange) -> None:
        """Record the exchange's policies; its alternate exchange is the argument's, else the policy's."""
        if exchange.router is None:
            return  # the default exchange takes no policy
        policy = select(self.policies.values(), "exchange", exchange.name) if self.policies else None
        operator = (
            select(self.operator_policies.values(), "exchange", exchange.name) if self.operator_policies else None
        )
        exchange.policy = policy.name if policy is not None else None
        exchange.operator_policy = operator.name if operator is not None else None
        effective = effective_definition(policy, operator)
        alternate = text(exchange.arguments.get("alternate-exchange"))
        if alternate is None:
            alternate = effective.get("alternate-exchange")
        if (alternate is None) != (exchange.alternate is None):
            self._alternates += 1 if alternate is not None else -1
        exchange.alternate = alternate
        if effective != exchange.effective_policy:
            exchange.effective_policy = effective
            exchange.router.policy_changed(effective or None)

    def _apply_binding_put(self, change: Change, binding: Binding) -> None:
        key = binding.key
        if key in self.bindings:
            return
        self.bindings[key] = binding
        self._by_source.setdefault(binding.source, set()).add(key)
        self._by_destination.setdefault(binding.destination, set()).add(key)
        if binding.destination.kind == EXCHANGE:
            self._exchange_bindings += 1
        exchange = self.exchanges.get(binding.source)
        if exchange is not None and exchange.router is not None:
            exchange.router.add_binding(binding)
        self._binding_event("binding.created", binding)

    def _apply_binding_delete(self, change: Change, _: None) -> None:
        binding = self.bindings.get(_binding_from_record(change.record).key)
        if binding is not None:
            self._remove_binding(binding)

    def _remove_binding(self, binding: Binding) -> None:
        """Forget a binding. Auto-deleting its source is the job of whoever committed the removal
        (``_auto_delete``), so that replaying or replicating changes never deletes twice."""
        key = binding.key
        del self.bindings[key]
        self._by_source[binding.source].discard(key)
        if not self._by_source[binding.source]:
            del self._by_source[binding.source]
        self._by_destination[binding.destination].discard(key)
        if not self._by_destination[binding.destination]:
            del self._by_destination[binding.destination]
        if binding.destination.kind == EXCHANGE:
            self._exchange_bindings -= 1
        exchange = self.exchanges.get(binding.source)
        if exchange is not None and exchange.router is not None:
            exchange.router.remove_bindings([binding])
        self._binding_event("binding.deleted", binding)

    def _binding_event(self, name: str, binding: Binding) -> None:
        self.broker.events.emit(name, binding, source_name=binding.source, source_kind="exchange",
                                destination_name=binding.destination.name,
                                destination_kind=binding.destination.kind, routing_key=binding.routing_key,
                                arguments=binding.arguments, vhost=self.name)  # fmt: skip

    def _queue_unused(self, queue: QueueType) -> None:
        """An auto-delete queue lost its last consumer."""
        self.broker.spawn(self._delete_if_current(queue))

    async def _delete_if_current(self, queue: QueueType) -> None:
        if self.queues.get(queue.name) is queue:
            await self.delete_queue(queue.name)

    def snapshot(self) -> list[Change]:
        """Puts that rebuild this vhost's policies, exchanges, queues and bindings (the amq.*
        exchanges come with the vhost)."""
        changes = [Change(kind, "put", self.name, p.name, _policy_record(p))
                   for kind, table in (("policy", self.policies), ("operator_policy", self.operator_policies))
                   for p in table.values()]  # fmt: skip
        changes += [
            Change("exchange", "put", self.name, x.name,
                   {"type": x.type_name, "durable": x.durable, "auto_delete": x.auto_delete, "internal": x.internal,
                    "arguments": dict(x.arguments)}, persisted=x.durable)  # fmt: skip
            for x in self.exchanges.values() if x.name and not x.name.startswith("amq.")
        ]
        changes += [
            Change("queue", "put", self.name, q.name,
                   {"type": q.type_name, "durable": q.durable, "auto_delete": q.auto_delete,
                    "exclusive_owner": q.exclusive_owner, "arguments": dict(q.arguments), "home_node": q.home_node},
                   persisted=q.durable and q.exclusive_owner is None)  # fmt: skip
            for q in self.queues.values()
        ]
        changes += [Change("binding", "put", self.name, repr(b.key), _binding_record(b), persisted=self._persisted(b))
                    for b in self.bindings.values()]  # fmt: skip
        return changes

    def _persisted(self, binding: Binding) -> bool:
        """A binding is stored when both its ends are."""
        source = self.exchanges.get(binding.source)
        if binding.destination.kind == QUEUE:
            queue = self.queues.get(binding.destination.name)
            target = queue is not None and queue.durable and queue.exclusive_owner is None
        else:
            exchange = self.exchanges.get(binding.destination.name)
            target = exchange is not None and exchange.durable
        return source is not None and source.durable and target

    # -- boot ----------------------------------------------------------------------------

    def install_defaults(self) -> None:
        """The default exchange and the amq.* exchanges every vhost has."""
        self.exchanges[""] = Exchange("", "direct", True, False, False, {}, None)
        for name, type_name, internal in PREDECLARED:
            change = Change("exchange", "put", self.name, name, {"type": type_name, "durable": True, "internal": internal})
            self._apply_exchange_put(change, self._build_exchange(change))


def _policy_record(policy: Policy) -> dict[str, Any]:
    return {"pattern": policy.pattern, "definition": dict(policy.definition), "priority": policy.priority,
            "apply-to": policy.apply_to}  # fmt: skip


def _binding_record(binding: Binding) -> dict[str, Any]:
    return {
        "source": binding.source,
        "destination_type": binding.destination.kind,
        "destination": binding.destination.name,
        "routing_key": binding.routing_key,
        "arguments": dict(binding.arguments),
    }


def _binding_from_record(record: Mapping[str, Any]) -> Binding:
    return Binding(
        record["source"],
        Destination(record["destination_type"], record["destination"]),
        record["routing_key"],
        record.get("arguments", {}),
    )
