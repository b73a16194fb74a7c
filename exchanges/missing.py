"""What a stored exchange becomes when no installed plugin provides its type (RabbitMQ's
``rabbit_exchange_type_invalid``): it keeps its name, type, arguments and bindings, so nothing is
lost and the exchange works again once the plugin is back, but routing through it is refused.

Not registered as a type: the vhost makes one only for an exchange it recovers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from amqp_server.plugin_api import PRECONDITION_FAILED, Binding, ChannelError, ExchangeType


class MissingExchangeType(ExchangeType):
    name = "missing"
    description = "Dummy exchange type, to be used when the intended one is not found."

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any], type_name: str, where: str) -> None:
        super().__init__(exchange_name, arguments)
        self.type_name = type_name
        self.where = where  # "exchange 'x' in vhost '/'", for the refusal

    def add_binding(self, binding: Binding) -> None:
        pass

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        pass

    def route(self, message: Any) -> NoReturn:
        raise ChannelError(
            PRECONDITION_FAILED, f"Cannot route message through {self.where}: exchange type {self.type_name} not found"
        )
