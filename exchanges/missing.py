"""What a stored exchange becomes when no installed plugin provides its type (RabbitMQ's
``rabbit_exchange_type_invalid``): it keeps its name, type, arguments and bindings, so nothing is
lost and the exchange works again once the plugin is back, but routing through it is refused.

Not registered as a type: the vhost makes one for an exchange it recovers, and the plugin host
puts one in place of an exchange's router when the plugin of its type is disabled (``retire``),
and back when it is enabled again (``revive``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from amqp_server.plugin_api import PRECONDITION_FAILED, Binding, ChannelError, ExchangeType, PluginContext

if TYPE_CHECKING:
    from amqp_server.core.changes import Exchange
    from amqp_server.core.vhost import VirtualHost

log = logging.getLogger(__name__)


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


def retire(vhost: VirtualHost, exchange: Exchange) -> None:
    """The plugin of the exchange's type is disabled: a placeholder routes for the exchange
    (refusing publishes); its bindings stay in the vhost, for ``revive``."""
    router = exchange.router
    if router is None or isinstance(router, MissingExchangeType):
        return
    where = f"exchange '{exchange.name}' in vhost '{vhost.name}'"
    placeholder = MissingExchangeType(exchange.name, exchange.arguments, exchange.type_name, where)
    placeholder.context = router.context
    exchange.router = placeholder


def revive(vhost: VirtualHost, exchange: Exchange, type_class: type[ExchangeType]) -> None:
    """The exchange's type is back: a new instance of it routes for the exchange, told of its
    bindings and its policy as if the exchange had just been recovered."""
    placeholder = exchange.router
    if not isinstance(placeholder, MissingExchangeType):
        return
    try:
        router = type_class(exchange.name, exchange.arguments)
        router.context = PluginContext(vhost.broker, vhost.name, exchange.type_name)
        for binding in vhost.bindings.values():
            if binding.source == exchange.name:
                router.add_binding(binding)
        if exchange.effective_policy:
            router.policy_changed(exchange.effective_policy)
    except Exception:  # noqa: BLE001 - the exchange stays a placeholder, the others revive
        log.exception("%s cannot be made a %s exchange again", placeholder.where, exchange.type_name)
        return
    exchange.router = router
