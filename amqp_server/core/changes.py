"""The vhost's tables and how committed changes go into them.

``prepare`` builds what a change needs (exchange-type and queue objects, a parsed policy, a
checked binding) and raises if it cannot be applied; ``apply`` only installs what was
prepared: the tables, the binding indexes (by source and by destination) and the counters
routing reads, the policies' effect on every queue and exchange, and the event each change
emits. Broker.change prepares before it commits, so a committed change always applies, and the
boot sets aside a stored change whose prepare fails instead of failing itself. ``snapshot``
gives the tables back as changes. ``VirtualHost`` binds the public functions here as its
methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from amqp_server.core.policy import Policy, effective_definition, select
from amqp_server.metadata.store import Change
from amqp_server.plugin_api import PluginContext
from amqp_server.protocol.field_types import text
from exchanges.base import EXCHANGE, QUEUE, Binding, Destination, ExchangeType
from exchanges.missing import MissingExchangeType
from queues.remote import RemoteQueue
from queues.settings import QueueSettings

if TYPE_CHECKING:
    from amqp_server.core.vhost import VirtualHost
    from queues.base import QueueType

log = logging.getLogger(__name__)

# name, type, internal
PREDECLARED = (
    ("amq.direct", "direct", False),
    ("amq.fanout", "fanout", False),
    ("amq.topic", "topic", False),
    ("amq.headers", "headers", False),
    ("amq.match", "headers", False),
    ("amq.rabbitmq.trace", "topic", True),
)


class Exchange:
    """An exchange as the vhost holds it: its declaration, the exchange-type object that routes
    for it, and what policies give it."""

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
        # The argument wins over a policy's alternate-exchange (_apply_exchange_policy).
        self.alternate: str | None = text(alternate) if alternate is not None else None
        self.policy: str | None = None  # names of the applied policies, for the admin surfaces
        self.operator_policy: str | None = None
        self.effective_policy: dict[str, Any] = {}


def prepare(vhost: VirtualHost, change: Change) -> Any:
    """What ``apply`` installs for ``change``; raises (nothing changed) if it cannot be applied."""
    if change.op != "put":
        return None
    if change.kind == "exchange":
        return _build_exchange(vhost, change)
    if change.kind == "queue":
        return _build_queue(vhost, change)
    if change.kind == "binding":
        return _build_binding(vhost, change)
    if change.kind in ("policy", "operator_policy"):
        return Policy.from_record(vhost.name, change.name, change.record)
    raise ValueError(f"unknown change {change.kind} {change.op}")


def apply(vhost: VirtualHost, change: Change, prepared: Any) -> None:
    """Install a committed ``change``, with what ``prepare`` built for it; cannot fail."""
    _APPLY[change.kind, change.op](vhost, change, prepared)


def _build_exchange(vhost: VirtualHost, change: Change) -> Exchange:
    record = change.record
    type_name = record["type"]
    arguments = record.get("arguments", {})
    alternate = arguments.get("alternate-exchange")
    if alternate is not None and not isinstance(alternate, str | bytes):
        raise ValueError(f"invalid alternate-exchange {alternate!r}")
    type_class = vhost.broker.exchange_types.get(type_name)
    if type_class is not None:
        router: ExchangeType = type_class(change.name, arguments)
    else:  # only a stored exchange can get here: a declare checks the type first
        where = vhost._resource("exchange", change.name)
        log.warning("%s has type %s, which no installed plugin provides: it routes nothing", where, type_name)
        router = MissingExchangeType(change.name, arguments, type_name, where)
    router.context = PluginContext(vhost.broker, vhost.name, type_name)
    return Exchange(
        change.name,
        type_name,
        record.get("durable", False),
        record.get("auto_delete", False),
        record.get("internal", False),
        arguments,
        router,
    )


def _build_queue(vhost: VirtualHost, change: Change) -> QueueType:
    record = change.record
    arguments = record.get("arguments", {})
    queue_type = record.get("type", "classic")
    type_class = vhost.broker.queue_types.get(queue_type)
    if type_class is None:
        raise ValueError(f"queue type '{queue_type}' is not installed")
    home_node = record.get("home_node", vhost.broker.node_name)
    replicas = vhost.broker.replicas
    if replicas is not None and replicas.replicated(record):  # a group of nodes holds it
        build: Callable[..., QueueType] = partial(replicas.build, queue_type, record)
    elif home_node == vhost.broker.node_name:
        build = type_class
    else:  # the queue itself lives on its home node only; other nodes hold a proxy of it
        build = partial(RemoteQueue, queue_type, vhost.broker.queue_link)
    queue = build(
        vhost.name,
        change.name,
        durable=record.get("durable", False),
        exclusive_owner=record.get("exclusive_owner"),
        auto_delete=record.get("auto_delete", False),
        arguments=arguments,
        home_node=home_node,
    )
    queue.on_unused = vhost._queue_unused
    queue.dead_letter = vhost._dead_letter
    return queue


def _build_binding(vhost: VirtualHost, change: Change) -> Binding:
    binding = _binding_from_record(change.record)
    exchange = vhost.exchange_or_404(binding.source)
    vhost._destination_or_404(binding.destination, reachable=False)  # a proxy's bindings route to it
    if exchange.router is None:
        raise ValueError("the default exchange takes no bindings")
    exchange.router.validate_binding(binding)
    return binding


def _apply_exchange_put(vhost: VirtualHost, change: Change, exchange: Exchange) -> None:
    previous = vhost.exchanges.get(change.name)
    if previous is not None and previous.alternate is not None:
        vhost._alternates -= 1
    vhost.exchanges[change.name] = exchange
    if exchange.alternate is not None:
        vhost._alternates += 1
    if vhost.policies or vhost.operator_policies:
        _apply_exchange_policy(vhost, exchange)
    router = exchange.router
    assert router is not None
    for key in vhost._by_source.get(change.name, ()):
        router.add_binding(vhost.bindings[key])
    if previous is None:
        vhost.broker.events.emit("exchange.created", exchange, name=exchange.name, vhost=vhost.name,
                                 type=exchange.type_name, durable=exchange.durable,
                                 auto_delete=exchange.auto_delete, internal=exchange.internal,
                                 arguments=exchange.arguments)  # fmt: skip


def _apply_exchange_delete(vhost: VirtualHost, change: Change, _: None) -> None:
    exchange = vhost.exchanges.pop(change.name, None)
    if exchange is None:
        return
    if exchange.alternate is not None:
        vhost._alternates -= 1
    for key in list(vhost._by_source.get(change.name, ())):
        _remove_binding(vhost, vhost.bindings[key])
    for key in list(vhost._by_destination.get(Destination(EXCHANGE, change.name), ())):
        _remove_binding(vhost, vhost.bindings[key])
    if exchange.router is not None:
        exchange.router.delete()
    vhost.broker.events.emit("exchange.deleted", name=change.name, vhost=vhost.name)


def _apply_queue_put(vhost: VirtualHost, change: Change, queue: QueueType) -> None:
    previous = vhost.queues.get(change.name)
    if previous is not None:
        _forget_exclusive(vhost, previous)
    vhost.queues[change.name] = queue
    if queue.exclusive_owner is not None:
        vhost._exclusive.setdefault(queue.exclusive_owner, {})[change.name] = None
    if vhost.policies or vhost.operator_policies:
        _apply_queue_policy(vhost, queue)
    else:  # what _apply_queue_policy gives without policies: the arguments' settings, as made
        queue.policy = None  # type: ignore[attr-defined]
        queue.operator_policy = None  # type: ignore[attr-defined]
        queue.effective_policy = {}  # type: ignore[attr-defined]
    vhost.broker.events.emit("queue.created", queue, name=queue.name, vhost=vhost.name, durable=queue.durable,
                             auto_delete=queue.auto_delete, exclusive=queue.exclusive_owner is not None,
                             arguments=queue.arguments, type=queue.type_name)  # fmt: skip


def _apply_queue_delete(vhost: VirtualHost, change: Change, _: None) -> None:
    queue = vhost.queues.pop(change.name, None)
    if queue is None:
        return
    _forget_exclusive(vhost, queue)
    for key in list(vhost._by_destination.get(Destination(QUEUE, change.name), ())):
        _remove_binding(vhost, vhost.bindings[key])
    vhost.broker.events.emit("queue.deleted", queue, name=change.name, vhost=vhost.name)


def forget_all(vhost: VirtualHost) -> None:
    """The vhost is deleted: its queues go (each with its queue.deleted event)."""
    for name in list(vhost.queues):
        _apply_queue_delete(vhost, Change("queue", "delete", vhost.name, name), None)


def _forget_exclusive(vhost: VirtualHost, queue: QueueType) -> None:
    owner = queue.exclusive_owner
    if owner is not None:
        names = vhost._exclusive.get(owner)
        if names is not None:
            names.pop(queue.name, None)
            if not names:
                del vhost._exclusive[owner]


def _apply_policy_put(vhost: VirtualHost, change: Change, policy: Policy) -> None:
    vhost.policies[change.name] = policy
    _reapply_policies(vhost)
    vhost.broker.events.emit("policy.set", policy, component="policy", **policy.as_dict())


def _apply_policy_delete(vhost: VirtualHost, change: Change, _: None) -> None:
    if vhost.policies.pop(change.name, None) is not None:
        _reapply_policies(vhost)
        vhost.broker.events.emit("policy.cleared", component="policy", name=change.name, vhost=vhost.name)


def _apply_operator_policy_put(vhost: VirtualHost, change: Change, policy: Policy) -> None:
    vhost.operator_policies[change.name] = policy
    _reapply_policies(vhost)
    vhost.broker.events.emit("policy.set", policy, component="operator_policy", **policy.as_dict())


def _apply_operator_policy_delete(vhost: VirtualHost, change: Change, _: None) -> None:
    if vhost.operator_policies.pop(change.name, None) is not None:
        _reapply_policies(vhost)
        vhost.broker.events.emit("policy.cleared", component="operator_policy", name=change.name,
                                 vhost=vhost.name)  # fmt: skip


def _reapply_policies(vhost: VirtualHost) -> None:
    """A policy came, changed or went: every queue and exchange takes its effect at once."""
    for queue in list(vhost.queues.values()):
        _apply_queue_policy(vhost, queue)
    for exchange in list(vhost.exchanges.values()):
        _apply_exchange_policy(vhost, exchange)


def _apply_queue_policy(vhost: VirtualHost, queue: QueueType) -> None:
    """Resolve the queue's settings from its arguments and its matching (operator) policy."""
    policy = select(vhost.policies.values(), "queue", queue.name) if vhost.policies else None
    operator = (
        select(vhost.operator_policies.values(), "queue", queue.name) if vhost.operator_policies else None
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


def _apply_exchange_policy(vhost: VirtualHost, exchange: Exchange) -> None:
    """Record the exchange's policies; its alternate exchange is the argument's, else the policy's."""
    if exchange.router is None:
        return  # the default exchange takes no policy
    policy = select(vhost.policies.values(), "exchange", exchange.name) if vhost.policies else None
    operator = (
        select(vhost.operator_policies.values(), "exchange", exchange.name) if vhost.operator_policies else None
    )
    exchange.policy = policy.name if policy is not None else None
    exchange.operator_policy = operator.name if operator is not None else None
    effective = effective_definition(policy, operator)
    alternate = text(exchange.arguments.get("alternate-exchange"))
    if alternate is None:
        alternate = effective.get("alternate-exchange")
    if (alternate is None) != (exchange.alternate is None):
        vhost._alternates += 1 if alternate is not None else -1
    exchange.alternate = alternate
    if effective != exchange.effective_policy:
        exchange.effective_policy = effective
        exchange.router.policy_changed(effective or None)


def _apply_binding_put(vhost: VirtualHost, change: Change, binding: Binding) -> None:
    key = binding.key
    if key in vhost.bindings:
        return
    vhost.bindings[key] = binding
    vhost._by_source.setdefault(binding.source, set()).add(key)
    vhost._by_destination.setdefault(binding.destination, set()).add(key)
    if binding.destination.kind == EXCHANGE:
        vhost._exchange_bindings += 1
    exchange = vhost.exchanges.get(binding.source)
    if exchange is not None and exchange.router is not None:
        exchange.router.add_binding(binding)
    _binding_event(vhost, "binding.created", binding)


def _apply_binding_delete(vhost: VirtualHost, change: Change, _: None) -> None:
    binding = vhost.bindings.get(_binding_from_record(change.record).key)
    if binding is not None:
        _remove_binding(vhost, binding)


def _remove_binding(vhost: VirtualHost, binding: Binding) -> None:
    """Forget a binding. Auto-deleting its source is the job of whoever committed the removal
    (``topology._auto_delete``), so that replaying or replicating changes never deletes twice."""
    key = binding.key
    del vhost.bindings[key]
    vhost._by_source[binding.source].discard(key)
    if not vhost._by_source[binding.source]:
        del vhost._by_source[binding.source]
    vhost._by_destination[binding.destination].discard(key)
    if not vhost._by_destination[binding.destination]:
        del vhost._by_destination[binding.destination]
    if binding.destination.kind == EXCHANGE:
        vhost._exchange_bindings -= 1
    exchange = vhost.exchanges.get(binding.source)
    if exchange is not None and exchange.router is not None:
        exchange.router.remove_bindings([binding])
    _binding_event(vhost, "binding.deleted", binding)


def _binding_event(vhost: VirtualHost, name: str, binding: Binding) -> None:
    vhost.broker.events.emit(name, binding, source_name=binding.source, source_kind="exchange",
                             destination_name=binding.destination.name,
                             destination_kind=binding.destination.kind, routing_key=binding.routing_key,
                             arguments=binding.arguments, vhost=vhost.name)  # fmt: skip


def snapshot(vhost: VirtualHost) -> list[Change]:
    """Puts that rebuild this vhost's policies, exchanges, queues and bindings (the amq.*
    exchanges come with the vhost)."""
    changes = [Change(kind, "put", vhost.name, p.name, _policy_record(p))
               for kind, table in (("policy", vhost.policies), ("operator_policy", vhost.operator_policies))
               for p in table.values()]  # fmt: skip
    changes += [
        Change("exchange", "put", vhost.name, x.name,
               {"type": x.type_name, "durable": x.durable, "auto_delete": x.auto_delete, "internal": x.internal,
                "arguments": dict(x.arguments)}, persisted=x.durable)  # fmt: skip
        for x in vhost.exchanges.values() if x.name and not x.name.startswith("amq.")
    ]
    changes += [
        Change("queue", "put", vhost.name, q.name, queue_record(q), persisted=q.durable and q.exclusive_owner is None)
        for q in vhost.queues.values()
    ]
    changes += [Change("binding", "put", vhost.name, repr(b.key), binding_record(b), persisted=_persisted(vhost, b))
                for b in vhost.bindings.values()]  # fmt: skip
    return changes


def queue_record(queue: QueueType) -> dict[str, Any]:
    """The metadata record a queue is put with, a replicated queue's group included
    (``cluster.replicated_queues``)."""
    replica = getattr(queue, "replica_record", None) or {}
    return {"type": queue.type_name, "durable": queue.durable, "auto_delete": queue.auto_delete,
            "exclusive_owner": queue.exclusive_owner, "arguments": dict(queue.arguments),
            "home_node": queue.home_node, **{key: replica[key] for key in ("members", "group") if key in replica}}  # fmt: skip


def _persisted(vhost: VirtualHost, binding: Binding) -> bool:
    """A binding is stored when both its ends are."""
    source = vhost.exchanges.get(binding.source)
    if binding.destination.kind == QUEUE:
        queue = vhost.queues.get(binding.destination.name)
        target = queue is not None and queue.durable and queue.exclusive_owner is None
    else:
        exchange = vhost.exchanges.get(binding.destination.name)
        target = exchange is not None and exchange.durable
    return source is not None and source.durable and target


def install_defaults(vhost: VirtualHost) -> None:
    """The default exchange and the amq.* exchanges every vhost has."""
    vhost.exchanges[""] = Exchange("", "direct", True, False, False, {}, None)
    for name, type_name, internal in PREDECLARED:
        change = Change("exchange", "put", vhost.name, name, {"type": type_name, "durable": True, "internal": internal})
        _apply_exchange_put(vhost, change, _build_exchange(vhost, change))


# What ``apply`` runs for each kind and op of change.
_APPLY: dict[tuple[str, str], Callable[[VirtualHost, Change, Any], None]] = {
    ("exchange", "put"): _apply_exchange_put,
    ("exchange", "delete"): _apply_exchange_delete,
    ("queue", "put"): _apply_queue_put,
    ("queue", "delete"): _apply_queue_delete,
    ("binding", "put"): _apply_binding_put,
    ("binding", "delete"): _apply_binding_delete,
    ("policy", "put"): _apply_policy_put,
    ("policy", "delete"): _apply_policy_delete,
    ("operator_policy", "put"): _apply_operator_policy_put,
    ("operator_policy", "delete"): _apply_operator_policy_delete,
}


def _policy_record(policy: Policy) -> dict[str, Any]:
    return {"pattern": policy.pattern, "definition": dict(policy.definition), "priority": policy.priority,
            "apply-to": policy.apply_to}  # fmt: skip


def binding_record(binding: Binding) -> dict[str, Any]:
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
