"""Exchange types: the routing contract and the bundled direct, fanout, topic and headers types."""

from exchanges.base import Binding, Destination, ExchangeType, RoutableMessage

__all__ = ["Binding", "Destination", "ExchangeType", "RoutableMessage"]
