"""The ``fanout`` exchange type: every bound destination, as RabbitMQ's rabbit_exchange_type_fanout."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from amqp_server.plugin_api import Binding, Destination, ExchangeType, RoutableMessage


class FanoutExchange(ExchangeType):
    """Routes every message to all destinations, whatever the routing key."""

    name = "fanout"
    description = "AMQP fanout exchange, as per the AMQP specification"

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any]) -> None:
        super().__init__(exchange_name, arguments)
        # destination -> number of bindings to it: a queue bound twice (different keys or
        # arguments) still gets one copy, and stays bound until its last binding goes.
        self._counts: dict[Destination, int] = {}
        # What route() returns, rebuilt only when the set of destinations changes.
        self._all: tuple[Destination, ...] = ()
        self._bindings: set[tuple[Any, ...]] = set()

    def add_binding(self, binding: Binding) -> None:
        identity = binding.key
        if identity in self._bindings:
            return
        self._bindings.add(identity)
        dest = binding.destination
        previous = self._counts.get(dest, 0)
        self._counts[dest] = previous + 1
        if not previous:
            self._all = tuple(self._counts)

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        changed = False
        for binding in bindings:
            identity = binding.key
            if identity not in self._bindings:
                continue
            self._bindings.discard(identity)
            dest = binding.destination
            left = self._counts[dest] - 1
            if left:
                self._counts[dest] = left
            else:
                del self._counts[dest]
                changed = True
        if changed:
            self._all = tuple(self._counts)

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        return self._all

    def delete(self) -> None:
        self._counts.clear()
        self._bindings.clear()
        self._all = ()
