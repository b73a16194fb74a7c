"""``x-consistent-hash``: each message goes to exactly one bound destination, chosen by hashing
its routing key (or a header / property named by the exchange's ``hash-header`` or
``hash-property`` argument) onto a ring. A binding's routing key is its weight: a destination
bound with weight 2 gets about twice the share of one bound with weight 1. Adding or removing a
destination moves only the keys that fall on its part of the ring (as RabbitMQ's plugin of the
same name promises; the hash function differs, so the exact key-to-queue mapping does too).

The plugin ``rabbitmq_consistent_hash_exchange``, off by default as RabbitMQ's:
``amqp-plugins enable rabbitmq_consistent_hash_exchange``.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from amqp_server.plugin_api import (
    PRECONDITION_FAILED,
    Binding,
    ChannelError,
    Destination,
    ExchangeType,
    Plugin,
    RoutableMessage,
)

POINTS_PER_WEIGHT = 100  # ring points per unit of weight: smooths the distribution
_NOTHING: tuple[Destination, ...] = ()


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class ConsistentHashExchange(ExchangeType):
    name = "x-consistent-hash"
    description = "Consistent Hashing Exchange"

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any]) -> None:
        super().__init__(exchange_name, arguments)
        self._header = arguments.get("hash-header")
        self._property = arguments.get("hash-property")
        self._weights: dict[tuple[Any, ...], tuple[Destination, int]] = {}
        self._ring_points: list[int] = []
        self._ring_destinations: list[Destination] = []

    @classmethod
    def validate(cls, arguments: Mapping[str, Any]) -> None:
        if "hash-header" in arguments and "hash-property" in arguments:
            raise ChannelError(
                PRECONDITION_FAILED,
                "hash-header and hash-property are mutually exclusive",
            )

    def validate_binding(self, binding: Binding) -> None:
        if not binding.routing_key.isdigit() or int(binding.routing_key) < 1:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"The binding key '{binding.routing_key}' must be a positive integer (the weight)",
            )

    def add_binding(self, binding: Binding) -> None:
        self._weights[binding.key] = (binding.destination, int(binding.routing_key))
        self._rebuild()

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
            self._weights.pop(binding.key, None)
        self._rebuild()

    def _rebuild(self) -> None:
        ring: list[tuple[int, Destination]] = []
        for destination, weight in self._weights.values():
            seed = f"{destination.kind}\x00{destination.name}\x00".encode()
            ring.extend((_hash(seed + str(i).encode()), destination) for i in range(weight * POINTS_PER_WEIGHT))
        ring.sort()
        self._ring_points = [point for point, _ in ring]
        self._ring_destinations = [destination for _, destination in ring]

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        if not self._ring_points:
            return _NOTHING
        point = _hash(self._hash_input(message))
        index = bisect.bisect(self._ring_points, point) % len(self._ring_points)
        return (self._ring_destinations[index],)

    def _hash_input(self, message: RoutableMessage) -> bytes:
        if self._header is not None:
            value = (message.headers or {}).get(self._header)
        elif self._property is not None:
            value = getattr(message, "properties", {}).get(self._property)
        else:
            return message.routing_keys[0].encode()
        return b"" if value is None else value if isinstance(value, bytes) else str(value).encode()


PLUGIN = Plugin(
    "rabbitmq_consistent_hash_exchange",
    description="Consistent Hash Exchange Type",
    exchange_types=(ConsistentHashExchange,),
)
