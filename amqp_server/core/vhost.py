"""A virtual host: the object holding its exchanges, queues, bindings and policies, and the
lookups on them. What it does with them lives in modules named for it, whose functions take
the vhost first and are bound below as its methods, so every caller (and the publish path)
calls ``vhost.route(...)`` or ``vhost.declare_queue(...)`` with no hop in between:

- ``routing``: the queues a published message reaches (runs for every publish);
- ``topology``: RabbitMQ's rules for declaring, binding and deleting, which end in a
  ``metadata.Change`` committed to the broker's store;
- ``changes``: building and installing committed changes (``prepare``/``apply``), the binding
  indexes, policies taking effect, the events, and the snapshot.

The underscore attributes are the vhost's internals, shared with those three modules and no
others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqp_server.core import changes, routing, topology
from amqp_server.core.changes import Exchange
from amqp_server.core.dead_letter import dead_letter_hook
from amqp_server.protocol.errors import NOT_FOUND, ChannelError
from exchanges.base import QUEUE, Binding, Destination

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker
    from amqp_server.core.policy import Policy
    from amqp_server.core.trace import Tracer
    from queues.base import QueueType


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
        # Firehose tracing (core/trace.py): None while off, so publishes and deliveries pay one check.
        self.tracer: Tracer | None = None

    # -- routing (hot path) --------------------------------------------------------------

    route = routing.route
    route_to = routing.route_to

    # -- RabbitMQ's rules, before a change is committed ----------------------------------

    exchange_type = topology.exchange_type
    declare_exchange = topology.declare_exchange
    delete_exchange = topology.delete_exchange
    declare_queue = topology.declare_queue
    delete_queue = topology.delete_queue
    bind = topology.bind
    unbind = topology.unbind
    check_exclusive = topology.check_exclusive
    _queue_unused = topology.queue_unused

    # -- committed changes into the tables -----------------------------------------------

    prepare = changes.prepare
    apply = changes.apply
    snapshot = changes.snapshot
    install_defaults = changes.install_defaults
    forget_all = changes.forget_all

    # -- lookups -------------------------------------------------------------------------

    def exchange_or_404(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise ChannelError(NOT_FOUND, f"no exchange '{name}' in vhost '{self.name}'")
        return exchange

    def queue_or_404(self, name: str, *, reachable: bool = True) -> QueueType:
        """The queue named ``name``; 404 when there is none, or (``reachable``, for a command
        that uses the queue itself) when its home node cannot be reached."""
        queue = self.queues.get(name)
        if queue is None:
            raise ChannelError(NOT_FOUND, f"no queue '{name}' in vhost '{self.name}'")
        if reachable and not queue.home_reachable:
            raise self.home_node_down(queue)
        return queue

    def home_node_down(self, queue: QueueType) -> ChannelError:
        """What RabbitMQ answers for a queue whose home node is down (rabbit_amqqueue:absent)."""
        return ChannelError(
            NOT_FOUND,
            f"home node '{queue.home_node}' of durable {self._resource('queue', queue.name)} is down or inaccessible",
        )

    def _destination_or_404(self, destination: Destination, *, reachable: bool = True) -> bool:
        """Whether the destination is durable; 404 when it does not exist (see queue_or_404)."""
        if destination.kind == QUEUE:
            return self.queue_or_404(destination.name, reachable=reachable).durable
        return self.exchange_or_404(destination.name).durable

    def exclusive_queues(self, owner: object) -> list[str]:
        """Names of the queues ``owner`` (a connection id) declared exclusive, oldest first."""
        names = self._exclusive.get(owner)
        return list(names) if names else []

    def bindings_of_queue(self, name: str) -> list[Binding]:
        return [self.bindings[k] for k in self._by_destination.get(Destination(QUEUE, name), ())]

    def indexes_destination(self, destination: Destination) -> bool:
        """Whether the binding index by destination has an entry for ``destination``: only while
        a binding leads there (an entry left behind by a delete would be a leak)."""
        return destination in self._by_destination

    def _resource(self, kind: str, name: str) -> str:
        return f"{kind} '{name}' in vhost '{self.name}'"
