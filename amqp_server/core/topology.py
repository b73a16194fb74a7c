"""RabbitMQ's rules for declaring, binding and deleting exchanges and queues, which run before
a change is committed: permissions (through ``check``), existence, equivalence, reserved
names, exclusivity and limits, in the order rabbit_channel runs them, because when several
fail the client sees the first one. What passes becomes a ``metadata.Change`` committed
through ``Broker.change``; ``tables`` applies it. ``VirtualHost`` binds the public functions
here as its methods (``vhost.declare_queue(...)``).

The channel passes its permission check as ``check``; the broker's own operations
(auto-delete, an exclusive owner going away) pass none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from amqp_server.core.changes import binding_record
from amqp_server.core.placement import home_node, replica_group
from amqp_server.metadata.store import Change
from amqp_server.protocol.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    ChannelError,
    ConnectionError,
)
from amqp_server.protocol.field_types import amqp_type_name, octets, text
from amqp_server.protocol.rabbit_text import misc_val as _shown
from amqp_server.protocol.rabbit_text import misc_val_of_type
from exchanges.base import EXCHANGE, QUEUE, Binding, Destination, ExchangeType
from queues.arguments import check_declare_arguments, queue_type_of

if TYPE_CHECKING:
    from amqp_server.core.changes import Exchange
    from amqp_server.core.vhost import VirtualHost
    from queues.base import QueueType

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


def check_exclusive(
    vhost: VirtualHost, queue: QueueType, connection_id: str | None, strict: bool = False
) -> None:
    """rabbit_amqqueue:check_exclusive_access: the owner may; anyone may use a non-exclusive
    queue, except that a declare (``strict``) must also match the queue's exclusivity."""
    owner = queue.exclusive_owner
    if owner == connection_id or (owner is None and not strict):
        return
    raise ChannelError(
        RESOURCE_LOCKED,
        f"cannot obtain exclusive access to locked queue '{queue.name}' in vhost '{vhost.name}'. "
        "It could be originally declared on another connection or the exclusive property "
        "value does not match that of the original declaration.",
    )


def exchange_type(vhost: VirtualHost, type_name: str) -> type[ExchangeType]:
    """The class for ``type_name``, or RabbitMQ's 503 (rabbit_exchange:check_type)."""
    type_class = vhost.broker.exchange_types.get(type_name)
    if type_class is None:
        # RabbitMQ says "invalid" when the name is an existing Erlang atom and "unknown"
        # otherwise; ERLANG_ATOMS holds the names people try that are atoms in RabbitMQ 3.10.
        adjective = "invalid" if type_name in ERLANG_ATOMS else "unknown"
        raise ConnectionError(COMMAND_INVALID, f"{adjective} exchange type '{type_name}'")
    return type_class


async def declare_exchange(
    vhost: VirtualHost,
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
        return vhost.exchange_or_404(name)
    type_class = exchange_type(vhost, type_name)
    _not_default(name)
    if check is not None:
        check("configure", "exchange", name)
    existing = vhost.exchanges.get(name)
    if existing is None:
        if name.startswith("amq."):
            raise ChannelError(ACCESS_REFUSED, f"exchange name '{name}' contains reserved prefix 'amq.*'")
        _check_target_exchange(vhost, "exchange", name, "alternate-exchange", arguments, check)
        type_class.validate(arguments)
        await vhost.broker.change(  # (False: declared meanwhile; the checks below then apply)
            Change(
                "exchange",
                "put",
                vhost.name,
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
        existing = vhost.exchanges[name]
    _assert_exchange_equivalent(vhost, existing, type_name, durable, auto_delete, internal, arguments)
    return existing


def _assert_exchange_equivalent(
    vhost: VirtualHost,
    exchange: Exchange,
    type_name: str,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    arguments: Mapping[str, Any],
) -> None:
    where = vhost._resource("exchange", exchange.name)
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


async def delete_exchange(
    vhost: VirtualHost, name: str, if_unused: bool = False, *, check: Check | None = None
) -> None:
    """exchange.delete: '' and amq.* are refused; a missing exchange is no error."""
    _not_default(name)
    if name.startswith("amq."):
        raise ChannelError(ACCESS_REFUSED, f"deletion of system {vhost._resource('exchange', name)} not allowed")
    if check is not None:
        check("configure", "exchange", name)
    exchange = vhost.exchanges.get(name)
    if exchange is None:
        return  # deleting what is not there succeeds, as in RabbitMQ
    if if_unused and vhost._by_source.get(name):
        raise ChannelError(PRECONDITION_FAILED, f"{vhost._resource('exchange', name)} in use")
    await _delete_exchange(vhost, exchange)


async def _delete_exchange(vhost: VirtualHost, exchange: Exchange) -> None:
    sources = _sources_of(vhost, Destination(EXCHANGE, exchange.name))
    await vhost.broker.change(Change("exchange", "delete", vhost.name, exchange.name, persisted=exchange.durable))
    await _auto_delete(vhost, sources)


async def _auto_delete(vhost: VirtualHost, names: Iterable[str]) -> None:
    """Delete the auto-delete exchanges among ``names`` that are no longer a binding's source
    (rabbit_exchange:maybe_auto_delete; cascades through exchange-to-exchange bindings)."""
    for name in names:
        exchange = vhost.exchanges.get(name)
        if exchange is not None and exchange.auto_delete and name not in vhost._by_source:
            await _delete_exchange(vhost, exchange)


def _sources_of(vhost: VirtualHost, destination: Destination) -> list[str]:
    return sorted({key[0] for key in vhost._by_destination.get(destination, ())})


async def declare_queue(
    vhost: VirtualHost,
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
        queue = vhost.queue_or_404(name)
        check_exclusive(vhost, queue, owner)
        return queue
    if name.startswith("amq.") and not server_named:
        raise ChannelError(ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'")
    durable = durable and exclusive_owner is None
    if check is not None:
        check("configure", "queue", name)
    existing = vhost.queues.get(name)
    if existing is not None:
        return _existing_queue(vhost, existing, exclusive_owner, durable, auto_delete, arguments)
    _check_queue_limit(vhost, name)
    _check_target_exchange(vhost, "queue", name, "x-dead-letter-exchange", arguments, check)
    where = vhost._resource("queue", name)
    check_declare_arguments(arguments, where, vhost.broker.queue_types)
    queue_type = queue_type_of(arguments)
    vhost.broker.queue_types[queue_type].validate_arguments(arguments, where)
    vhost.broker.queue_types[queue_type].validate_properties(
        durable=durable, exclusive=exclusive_owner is not None, auto_delete=auto_delete, where=where
    )
    created = await vhost.broker.change(
        Change(
            "queue",
            "put",
            vhost.name,
            name,
            {
                "type": queue_type,
                "durable": durable,
                "auto_delete": auto_delete,
                "exclusive_owner": exclusive_owner,
                "arguments": dict(arguments),
                "home_node": home_node(vhost, name, arguments, exclusive_owner is not None),
                **replica_group(vhost, name, queue_type, arguments, exclusive_owner is not None),
            },
            persisted=durable,
            create=True,
        )
    )
    queue = vhost.queues[name]
    if not created:  # declared meanwhile by someone else: as if it had been there before
        return _existing_queue(vhost, queue, exclusive_owner, durable, auto_delete, arguments)
    return queue


def _existing_queue(
    vhost: VirtualHost, queue: QueueType, exclusive_owner: str | None, durable: bool, auto_delete: bool,
    arguments: Mapping[str, Any],
) -> QueueType:  # fmt: skip
    """A declare of a queue that exists: RabbitMQ's exclusivity and equivalence checks."""
    if not queue.home_reachable:
        raise vhost.home_node_down(queue)
    check_exclusive(vhost, queue, exclusive_owner, strict=True)
    where = vhost._resource("queue", queue.name)
    _assert_fields_equivalent(
        where, (("durable", durable, queue.durable), ("auto_delete", auto_delete, queue.auto_delete))
    )
    _assert_args_equivalent(where, queue.arguments, arguments, EQUIVALENT_QUEUE_ARGS)
    return queue


def _check_queue_limit(vhost: VirtualHost, name: str) -> None:
    """The vhost's max-queues (rabbit_channel:check_vhost_queue_limit); negative: no limit."""
    limit = vhost.broker.vhost_limits.get(vhost.name, {}).get("max-queues") if vhost.broker.vhost_limits else None
    if limit is not None and limit >= 0 and len(vhost.queues) >= limit:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"cannot declare queue '{name}': queue limit in vhost '{vhost.name}' ({limit}) is reached",
        )


async def delete_queue(
    vhost: VirtualHost,
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
    queue = vhost.queues.get(name)
    if queue is None:
        return 0
    if not queue.home_reachable:
        raise vhost.home_node_down(queue)
    if connection_id is not None:
        check_exclusive(vhost, queue, connection_id)
    # The queue process answers if-empty before if-unused (rabbit_amqqueue_process).
    if if_empty and queue.message_count:
        raise ChannelError(PRECONDITION_FAILED, f"{vhost._resource('queue', name)} not empty")
    if if_unused and queue.consumer_count:
        raise ChannelError(PRECONDITION_FAILED, f"{vhost._resource('queue', name)} in use")
    count = queue.message_count
    sources = _sources_of(vhost, Destination(QUEUE, name))
    await vhost.broker.change(
        Change("queue", "delete", vhost.name, name, persisted=queue.durable and queue.exclusive_owner is None)
    )
    await _auto_delete(vhost, sources)
    return count


async def bind(
    vhost: VirtualHost,
    source: str,
    destination: Destination,
    routing_key: str,
    arguments: Mapping[str, Any],
    *,
    check: Check | None = None,
    connection_id: str | None = None,
) -> None:
    """queue.bind / exchange.bind (rabbit_channel:binding_action, rabbit_binding:add)."""
    _binding_checks(source, destination, check)
    exchange = vhost.exchange_or_404(source)
    target_durable = vhost._destination_or_404(destination)
    binding = Binding(source, destination, routing_key, dict(arguments))
    assert exchange.router is not None
    exchange.router.validate_binding(binding)
    if destination.kind == QUEUE and connection_id is not None:
        check_exclusive(vhost, vhost.queues[destination.name], connection_id)
    if binding.key in vhost.bindings:
        return
    await vhost.broker.change(
        Change(
            "binding",
            "put",
            vhost.name,
            repr(binding.key),
            binding_record(binding),
            persisted=exchange.durable and target_durable,
        )
    )


async def unbind(
    vhost: VirtualHost,
    source: str,
    destination: Destination,
    routing_key: str,
    arguments: Mapping[str, Any],
    *,
    check: Check | None = None,
    connection_id: str | None = None,
) -> None:
    """queue.unbind / exchange.unbind: a missing source, destination or binding is no error."""
    _binding_checks(source, destination, check)
    binding = vhost.bindings.get(Binding(source, destination, routing_key, dict(arguments)).key)
    if binding is None:
        return  # unbinding what is not bound succeeds, as in RabbitMQ
    exchange = vhost.exchanges[source]
    if destination.kind == QUEUE:
        queue = vhost.queues[destination.name]
        if connection_id is not None:
            check_exclusive(vhost, queue, connection_id)
        target_durable = queue.durable
    else:
        target_durable = vhost.exchanges[destination.name].durable
    await vhost.broker.change(
        Change(
            "binding",
            "delete",
            vhost.name,
            repr(binding.key),
            binding_record(binding),
            persisted=exchange.durable and target_durable,
        )
    )
    await _auto_delete(vhost, (source,))


def _binding_checks(source: str, destination: Destination, check: Check | None) -> None:
    # Order as rabbit_channel:binding_action: write on the destination, neither end the
    # default exchange, read on the source.
    if check is not None:
        check("write", destination.kind, destination.name)
    if destination.kind == EXCHANGE:
        _not_default(destination.name)
    _not_default(source)
    if check is not None:
        check("read", "exchange", source)


def queue_unused(vhost: VirtualHost, queue: QueueType) -> None:
    """Every queue's ``on_unused`` hook: an auto-delete queue lost its last consumer."""
    vhost.broker.spawn(_delete_if_current(vhost, queue))


async def _delete_if_current(vhost: VirtualHost, queue: QueueType) -> None:
    if vhost.queues.get(queue.name) is queue:
        await delete_queue(vhost, queue.name)


def _check_target_exchange(
    vhost: VirtualHost, kind: str, name: str, argument: str, arguments: Mapping[str, Any], check: Check | None
) -> None:
    """An argument naming an exchange the new exchange or queue sends to (alternate-exchange,
    x-dead-letter-exchange): a string, and read on the new one and write on the target."""
    target = arguments.get(argument)
    if target is None:
        return
    if not isinstance(target, str | bytes):
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid type '{amqp_type_name(target)}' for arg '{argument}' in {vhost._resource(kind, name)}",
        )
    if check is not None:
        check("read", kind, name)
        check("write", "exchange", text(target))
