"""``rabbitmq_random_exchange``: the ``x-random`` exchange type sends each message to one of its
bound destinations, picked at random; the routing key plays no part (RabbitMQ's
rabbit_exchange_type_random). Several bindings to one destination make it likelier, as there.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from amqp_server.plugin_api import Binding, Destination, ExchangeType, Plugin, RoutableMessage

_NOTHING: tuple[Destination, ...] = ()


class RandomExchange(ExchangeType):
    name = "x-random"
    description = "Randomly picks a binding (queue) to route via (to)."

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any]) -> None:
        super().__init__(exchange_name, arguments)
        self._bindings: dict[tuple[Any, ...], Destination] = {}
        self._destinations: list[Destination] = []

    def add_binding(self, binding: Binding) -> None:
        self._bindings[binding.key] = binding.destination
        self._destinations = list(self._bindings.values())

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
            self._bindings.pop(binding.key, None)
        self._destinations = list(self._bindings.values())

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        destinations = self._destinations
        if not destinations:
            return _NOTHING
        return (random.choice(destinations),)  # noqa: S311 - load spreading, not security


PLUGIN = Plugin(
    "rabbitmq_random_exchange",
    description="RabbitMQ Random Exchange",
    exchange_types=(RandomExchange,),
)
