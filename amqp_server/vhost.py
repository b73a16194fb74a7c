"""A virtual host: its exchanges, queues and bindings, the routing of published messages,
and RabbitMQ's rules for declaring, binding and deleting them.

Every mutation is a ``metadata.Change`` committed to the broker's store first and applied to
the tables here by ``apply``; checks (existence, equivalence, reserved names) run before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from amqp_server.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    ChannelError,
    ConnectionError,
)
from amqp_server.metadata import Change
from exchanges.base import EXCHANGE, QUEUE, Binding, Destination, ExchangeType
from queues.base import QueueType
from queues.classic import ClassicQueue

if TYPE_CHECKING:
    from amqp_server.broker import Broker

# Queue arguments whose values must match on redeclaration (RabbitMQ's list).
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
    "x-queue-type",
    "x-single-active-consumer",
)
PREDECLARED = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)


class Exchange:
    __slots__ = ("name", "type_name", "durable", "auto_delete", "internal", "arguments", "router", "alternate")

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
        self.alternate: str | None = alternate.decode() if isinstance(alternate, bytes) else alternate


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _amqp_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str | bytes):
        return "longstr"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return "void"


def _describe(value: Any) -> str:
    if value is None:
        return "none"
    shown = value.decode() if isinstance(value, bytes) else value
    if isinstance(shown, bool):
        shown = _flag(shown)
    return f"the value '{shown}' of type '{_amqp_type(value)}'"


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

    # -- routing (hot path) --------------------------------------------------------------

    def route(self, exchange: Exchange, message: Any) -> list[QueueType]:
        """The queues ``message`` published to ``exchange`` reaches, each once."""
        queues = self.queues
        router = exchange.router
        if router is None:
            keys = message.routing_keys if message.header[12] & 0x20 else (message.routing_key,)
            found = [queues[key] for key in keys if key in queues]
            return found if len(found) < 2 else list(dict.fromkeys(found))
        if not self._exchange_bindings and not self._alternates:
            return [queues[d.name] for d in router.route(message) if d.name in queues]
        return self._route_graph(exchange, message)

    def _route_graph(self, exchange: Exchange, message: Any) -> list[QueueType]:
        """Routing through exchange-to-exchange bindings and alternate exchanges (cycles allowed)."""
        queues = self.queues
        exchanges = self.exchanges
        seen_exchanges = {exchange.name}
        work = [exchange]
        found: dict[str, QueueType] = {}
        while work:
            current = work.pop()
            destinations = list(current.router.route(message)) if current.router else []
            if not destinations and current.alternate is not None:
                destinations = [Destination(EXCHANGE, current.alternate)]
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
        return list(found.values())

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

    def check_exclusive(self, queue: QueueType, connection_id: str) -> None:
        if queue.exclusive_owner is not None and queue.exclusive_owner != connection_id:
            raise ChannelError(
                RESOURCE_LOCKED,
                f"cannot obtain exclusive access to locked queue '{queue.name}' in vhost '{self.name}'. "
                "It could be originally declared on another connection or the exclusive property "
                "value does not match that of the original declaration.",
            )

    # -- exchanges -----------------------------------------------------------------------

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
    ) -> Exchange:
        arguments = arguments or {}
        if passive:
            if name == "":
                return self.exchanges[""]
            return self.exchange_or_404(name)
        if name == "":
            raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        type_class = self.broker.exchange_types.get(type_name)
        if type_class is None:
            raise ConnectionError(COMMAND_INVALID, f"invalid exchange type '{type_name}'")
        existing = self.exchanges.get(name)
        if existing is None:
            if name.startswith("amq."):
                raise ChannelError(
                    ACCESS_REFUSED,
                    f"attempt to declare exchange '{name}' in vhost '{self.name}' using reserved name 'amq.'",
                )
            type_class.validate(arguments)
            await self.broker.change(
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
                    durable=durable,
                )
            )
            return self.exchanges[name]
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
        where = f"for exchange '{exchange.name}' in vhost '{self.name}'"
        if exchange.type_name != type_name:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"inequivalent arg 'type' {where}: received '{type_name}' but current is '{exchange.type_name}'",
            )
        for field, received, current in (
            ("durable", durable, exchange.durable),
            ("auto_delete", auto_delete, exchange.auto_delete),
            ("internal", internal, exchange.internal),
        ):
            if received != current:
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"inequivalent arg '{field}' {where}: received '{_flag(received)}' but current is '{_flag(current)}'",
                )
        received_ae = arguments.get("alternate-exchange")
        current_ae = exchange.arguments.get("alternate-exchange")
        if received_ae != current_ae:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"inequivalent arg 'alternate-exchange' {where}: "
                f"received {_describe(received_ae)} but current is {_describe(current_ae)}",
            )

    async def delete_exchange(self, name: str, if_unused: bool = False) -> None:
        if name == "":
            raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # deleting what is not there succeeds, as in RabbitMQ
        if if_unused and self._by_source.get(name):
            raise ChannelError(PRECONDITION_FAILED, f"exchange '{name}' in vhost '{self.name}' in use")
        await self.broker.change(Change("exchange", "delete", self.name, name, durable=exchange.durable))

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
    ) -> QueueType:
        arguments = arguments or {}
        existing = self.queues.get(name)
        if passive:
            if existing is None:
                raise ChannelError(NOT_FOUND, f"no queue '{name}' in vhost '{self.name}'")
            self.check_exclusive(existing, exclusive_owner or "")
            return existing
        if existing is not None:
            self.check_exclusive(existing, exclusive_owner or "")
            self._assert_queue_equivalent(existing, durable, exclusive_owner, auto_delete, arguments)
            return existing
        if name.startswith("amq.") and not server_named:
            raise ChannelError(
                ACCESS_REFUSED,
                f"queue name '{name}' contains reserved prefix 'amq.*'",
            )
        ClassicQueue.validate_arguments(arguments)
        await self.broker.change(
            Change(
                "queue",
                "put",
                self.name,
                name,
                {
                    "type": "classic",
                    "durable": durable,
                    "auto_delete": auto_delete,
                    "exclusive_owner": exclusive_owner,
                    "arguments": dict(arguments),
                    "home_node": self.broker.node_name,
                },
                durable=durable and exclusive_owner is None,
            )
        )
        return self.queues[name]

    def _assert_queue_equivalent(
        self,
        queue: QueueType,
        durable: bool,
        exclusive_owner: str | None,
        auto_delete: bool,
        arguments: Mapping[str, Any],
    ) -> None:
        where = f"for queue '{queue.name}' in vhost '{self.name}'"
        for field, received, current in (
            ("durable", durable, queue.durable),
            ("exclusive", exclusive_owner is not None, queue.exclusive_owner is not None),
            ("auto_delete", auto_delete, queue.auto_delete),
        ):
            if received != current:
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"inequivalent arg '{field}' {where}: received '{_flag(received)}' but current is '{_flag(current)}'",
                )
        for key in EQUIVALENT_QUEUE_ARGS:
            received_value = arguments.get(key)
            current_value = queue.arguments.get(key)
            if _as_text(received_value) != _as_text(current_value):
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"inequivalent arg '{key}' {where}: received {_describe(received_value)} "
                    f"but current is {_describe(current_value)}",
                )

    async def delete_queue(self, name: str, if_unused: bool = False, if_empty: bool = False) -> int:
        queue = self.queues.get(name)
        if queue is None:
            return 0
        if if_unused and queue.consumer_count:
            raise ChannelError(PRECONDITION_FAILED, f"queue '{name}' in vhost '{self.name}' in use")
        if if_empty and queue.message_count:
            raise ChannelError(PRECONDITION_FAILED, f"queue '{name}' in vhost '{self.name}' is not empty")
        count = queue.message_count
        await self.broker.change(
            Change("queue", "delete", self.name, name, durable=queue.durable and queue.exclusive_owner is None)
        )
        return count

    # -- bindings ------------------------------------------------------------------------

    async def bind(
        self, source: str, destination: Destination, routing_key: str, arguments: Mapping[str, Any]
    ) -> None:
        exchange, target_durable = self._binding_ends(source, destination)
        binding = Binding(source, destination, routing_key, dict(arguments))
        if binding.key in self.bindings:
            return
        assert exchange.router is not None
        exchange.router.validate_binding(binding)
        await self.broker.change(
            Change(
                "binding",
                "put",
                self.name,
                repr(binding.key),
                _binding_record(binding),
                durable=exchange.durable and target_durable,
            )
        )

    async def unbind(
        self, source: str, destination: Destination, routing_key: str, arguments: Mapping[str, Any]
    ) -> None:
        exchange, target_durable = self._binding_ends(source, destination)
        binding = Binding(source, destination, routing_key, dict(arguments))
        if binding.key not in self.bindings:
            return  # unbinding what is not bound succeeds, as in RabbitMQ
        await self.broker.change(
            Change(
                "binding",
                "delete",
                self.name,
                repr(binding.key),
                _binding_record(binding),
                durable=exchange.durable and target_durable,
            )
        )

    def _binding_ends(self, source: str, destination: Destination) -> tuple[Exchange, bool]:
        if source == "" or (destination.kind == EXCHANGE and destination.name == ""):
            raise ChannelError(
                ACCESS_REFUSED,
                "operation not permitted on the default exchange",
            )
        if destination.kind == QUEUE:
            target_durable = self.queue_or_404(destination.name).durable
        else:
            target_durable = self.exchange_or_404(destination.name).durable
        return self.exchange_or_404(source), target_durable

    def bindings_of_queue(self, name: str) -> list[Binding]:
        return [self.bindings[k] for k in self._by_destination.get(Destination(QUEUE, name), ())]

    # -- applying committed changes ------------------------------------------------------

    def apply(self, change: Change) -> None:
        getattr(self, f"_apply_{change.kind}_{change.op}")(change)

    def _apply_exchange_put(self, change: Change) -> None:
        record = change.record
        type_name = record["type"]
        router = self.broker.exchange_types[type_name](change.name, record.get("arguments", {}))
        exchange = Exchange(
            change.name,
            type_name,
            record.get("durable", False),
            record.get("auto_delete", False),
            record.get("internal", False),
            record.get("arguments", {}),
            router,
        )
        previous = self.exchanges.get(change.name)
        if previous is not None and previous.alternate is not None:
            self._alternates -= 1
        self.exchanges[change.name] = exchange
        if exchange.alternate is not None:
            self._alternates += 1
        for key in self._by_source.get(change.name, ()):
            router.add_binding(self.bindings[key])

    def _apply_exchange_delete(self, change: Change) -> None:
        exchange = self.exchanges.pop(change.name, None)
        if exchange is None:
            return
        if exchange.alternate is not None:
            self._alternates -= 1
        for key in list(self._by_source.get(change.name, ())):
            self._remove_binding(self.bindings[key], cascade=False)
        for key in list(self._by_destination.get(Destination(EXCHANGE, change.name), ())):
            self._remove_binding(self.bindings[key])
        if exchange.router is not None:
            exchange.router.delete()

    def _apply_queue_put(self, change: Change) -> None:
        record = change.record
        queue = ClassicQueue(
            self.name,
            change.name,
            durable=record.get("durable", False),
            exclusive_owner=record.get("exclusive_owner"),
            auto_delete=record.get("auto_delete", False),
            arguments=record.get("arguments", {}),
            home_node=record.get("home_node", self.broker.node_name),
        )
        queue.on_unused = self._queue_unused
        self.queues[change.name] = queue

    def _apply_queue_delete(self, change: Change) -> None:
        queue = self.queues.pop(change.name, None)
        if queue is None:
            return
        for key in list(self._by_destination.get(Destination(QUEUE, change.name), ())):
            self._remove_binding(self.bindings[key])
        queue.delete()

    def _apply_binding_put(self, change: Change) -> None:
        binding = _binding_from_record(change.record)
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

    def _apply_binding_delete(self, change: Change) -> None:
        binding = self.bindings.get(_binding_from_record(change.record).key)
        if binding is not None:
            self._remove_binding(binding)

    def _remove_binding(self, binding: Binding, cascade: bool = True) -> None:
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
        if exchange is None or exchange.router is None:
            return
        exchange.router.remove_bindings([binding])
        # An auto-delete exchange goes when its last binding (as source) goes.
        if cascade and exchange.auto_delete and binding.source not in self._by_source:
            self.broker.spawn(self.delete_exchange(exchange.name))

    def _queue_unused(self, queue: QueueType) -> None:
        self.broker.spawn(self.delete_queue(queue.name))

    # -- boot ----------------------------------------------------------------------------

    def install_defaults(self) -> None:
        """The default exchange and the amq.* exchanges every vhost has."""
        self.exchanges[""] = Exchange("", "direct", True, False, False, {}, None)
        for name, type_name in PREDECLARED:
            self._apply_exchange_put(
                Change("exchange", "put", self.name, name, {"type": type_name, "durable": True})
            )


def _as_text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


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
