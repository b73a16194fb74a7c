"""``x-modulus-hash``: each message goes to exactly one of the exchange's bindings, the one at
index ``crc32(routing key) % number of bindings`` (bindings in the order they were made).

Unlike x-consistent-hash, adding or removing a binding moves most keys; in exchange the rule is
simple enough to predict from outside, which is what an example needs.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from amqp_server.plugin_api import Binding, Destination, ExchangeType, Plugin, RoutableMessage


class ModulusHashExchange(ExchangeType):
    name = "x-modulus-hash"
    description = "Modulus hash exchange: one binding per message, by crc32(routing key) modulo the bindings"

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any]) -> None:
        super().__init__(exchange_name, arguments)
        self.bindings: list[Binding] = []

    def add_binding(self, binding: Binding) -> None:
        self.bindings.append(binding)

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        gone = {binding.key for binding in bindings}
        self.bindings = [binding for binding in self.bindings if binding.key not in gone]

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        if not self.bindings:
            return ()
        index = zlib.crc32(message.routing_keys[0].encode()) % len(self.bindings)
        return (self.bindings[index].destination,)


PLUGIN = Plugin(
    "modulus_hash_exchange",
    description="Modulus Hash Exchange Type",
    version="1.0.0",
    broker_version_requirement=">=0.1",
    exchange_types=(ModulusHashExchange,),
)
