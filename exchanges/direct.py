"""The ``direct`` exchange type: exact routing-key match, as RabbitMQ's rabbit_exchange_type_direct."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from amqp_server.plugin_api import Binding, Destination, ExchangeType, RoutableMessage

_NOTHING: tuple[Destination, ...] = ()


class DirectExchange(ExchangeType):
    """Routes to the destinations bound with a key equal to the message's routing key."""

    name = "direct"
    description = "AMQP direct exchange, as per the AMQP specification"

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any]) -> None:
        super().__init__(exchange_name, arguments)
        # Per routing key: destination -> number of bindings leading to it. Bindings with the
        # same key and destination but different arguments are distinct bindings, so a count is
        # needed to know when the last one goes.
        self._counts: dict[str, dict[Destination, int]] = {}
        # Per routing key, the answer route() hands out as is: built on binding changes so
        # that publishing does one dict lookup and allocates nothing.
        self._routes: dict[str, tuple[Destination, ...]] = {}
        self._bindings: set[tuple[Any, ...]] = set()

    def add_binding(self, binding: Binding) -> None:
        identity = binding.key
        if identity in self._bindings:
            return  # re-adding an existing binding (e.g. on recovery) must not double count
        self._bindings.add(identity)
        key = binding.routing_key
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = {}
        dest = binding.destination
        previous = counts.get(dest, 0)
        counts[dest] = previous + 1
        if not previous:
            self._routes[key] = tuple(counts)

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
            identity = binding.key
            if identity not in self._bindings:
                continue
            self._bindings.discard(identity)
            key = binding.routing_key
            counts = self._counts[key]
            dest = binding.destination
            left = counts[dest] - 1
            if left:
                counts[dest] = left
                continue
            del counts[dest]
            if counts:
                self._routes[key] = tuple(counts)
            else:
                del self._counts[key]
                del self._routes[key]

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        keys = message.routing_keys
        routes = self._routes
        if len(keys) == 1:
            return routes.get(keys[0], _NOTHING)
        # CC/BCC: several keys may lead to the same destination; deliver it once.
        out: set[Destination] = set()
        for key in keys:
            found = routes.get(key)
            if found:
                out.update(found)
        return out

    def delete(self) -> None:
        self._counts.clear()
        self._routes.clear()
        self._bindings.clear()
