"""Routing: the queues a message published to an exchange reaches, read from the vhost's
applied tables only. ``route`` runs for every publish; ``VirtualHost`` binds it as its own
method, so a publish pays one call, as when it was written in the class.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from exchanges.base import EXCHANGE, QUEUE, Destination

if TYPE_CHECKING:
    from amqp_server.core.changes import Exchange
    from amqp_server.core.vhost import VirtualHost
    from queues.base import QueueType


def route(vhost: VirtualHost, exchange: Exchange, message: Any) -> list[QueueType]:
    """The queues ``message`` published to ``exchange`` reaches, each once."""
    queues = vhost.queues
    router = exchange.router
    if router is None:
        if not message.header[12] & 0x20:  # no headers property, so no CC/BCC keys
            queue = queues.get(message.routing_key)
            return [queue] if queue is not None else []
        found = [queues[key] for key in message.routing_keys if key in queues]
        return found if len(found) < 2 else list(dict.fromkeys(found))
    if not vhost._exchange_bindings and not vhost._alternates:
        return [queues[d.name] for d in router.route(message) if d.name in queues]
    # Exchange-to-exchange bindings or alternate exchanges (cycles allowed): walk the graph.
    return _walk(vhost, [exchange], (), message)


def route_to(vhost: VirtualHost, destinations: Iterable[Destination], message: Any) -> list[QueueType]:
    """The queues ``destinations`` lead to (following exchanges as routing does): how a
    plugin routes a message it held back (``PluginContext.deliver``)."""
    return _walk(vhost, [], destinations, message)


def _walk(
    vhost: VirtualHost, work: list[Exchange], first: Iterable[Destination], message: Any
) -> list[QueueType]:
    """The queues reached from the exchanges in ``work`` and from ``first``, following each
    exchange once and an exchange's alternate when it routes nowhere."""
    queues = vhost.queues
    exchanges = vhost.exchanges
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
