"""Exchange types: the ``amqp_server.exchange_types`` entry-point group, plus in-process
registration (see ``amqp_server.type_registry``)."""

from __future__ import annotations

from amqp_server.type_registry import TypeRegistry
from exchanges.base import ExchangeType

ENTRY_POINT_GROUP = "amqp_server.exchange_types"

exchange_types: TypeRegistry[type[ExchangeType]] = TypeRegistry(ENTRY_POINT_GROUP, ExchangeType, "name", "exchange type")
register = exchange_types.register
unregister = exchange_types.unregister
load_exchange_types = exchange_types.load
