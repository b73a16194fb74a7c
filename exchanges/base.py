"""The exchange-type contract, modelled on RabbitMQ's ``rabbit_exchange_type`` behaviour.

One ``ExchangeType`` instance exists per declared exchange and owns that exchange's routing
state (a hash table, a trie, ...). The broker core keeps the authoritative list of bindings in
its metadata store and tells the instance about changes through ``add_binding`` and
``remove_bindings``; ``route`` must then answer from the instance's own state alone, without
I/O, because it runs on the publish hot path.

``route`` returns destinations (``Destination`` values), never queue objects: a queue may live
on another cluster node, and an exchange destination (exchange-to-exchange binding) is followed
by the core, which also removes duplicates and breaks cycles.

A plugin ships a subclass and registers it under the ``amqp_server.exchange_types`` entry-point
group; the bundled types are registered the same way in this project's pyproject.toml.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

if TYPE_CHECKING:
    from amqp_server.plugin_api import PluginContext
    from queues.base import Settlement


class Destination(NamedTuple):
    """Where a binding leads: ``kind`` is ``"queue"`` or ``"exchange"``."""

    kind: str
    name: str


QUEUE = "queue"
EXCHANGE = "exchange"


class Binding(NamedTuple):
    """A binding from exchange ``source`` to ``destination``.

    ``arguments`` is the binding's argument table. Two bindings are the same binding when
    source, destination, routing key and arguments are equal (as in RabbitMQ); ``key`` gives a
    hashable identity for that.
    """

    source: str
    destination: Destination
    routing_key: str
    arguments: Mapping[str, Any]

    @property
    def key(self) -> tuple[str, Destination, str, str]:
        return (self.source, self.destination, self.routing_key, _canonical(self.arguments))


def _canonical(arguments: Mapping[str, Any]) -> str:
    return repr(sorted(arguments.items())) if arguments else ""


class RoutableMessage(Protocol):
    """What an exchange type may look at when routing."""

    @property
    def routing_keys(self) -> tuple[str, ...]:
        """The routing key, followed by any CC/BCC keys (RabbitMQ's sender-selected distribution)."""

    @property
    def headers(self) -> Mapping[str, Any] | None:
        """The message's headers table, decoded on first access."""


class ExchangeType(ABC):
    """Base class for exchange types (bundled and plugin alike)."""

    #: The type name used in exchange.declare, e.g. ``"direct"`` or ``"x-consistent-hash"``.
    name: ClassVar[str]
    #: One line for the management UI.
    description: ClassVar[str] = ""
    #: Timers, publishing later, state: given by the broker right after ``__init__``.
    context: PluginContext

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any]) -> None:
        """``create``: called once when the exchange is declared (or recovered)."""
        self.exchange_name = exchange_name
        self.arguments = arguments

    @classmethod
    def validate(cls, arguments: Mapping[str, Any]) -> None:
        """Check exchange.declare arguments; raise ``ChannelError`` to refuse them."""

    def validate_binding(self, binding: Binding) -> None:
        """Check a binding before it is added; raise ``ChannelError`` to refuse it."""

    @abstractmethod
    def add_binding(self, binding: Binding) -> None:
        """A binding with this exchange as source was added."""

    @abstractmethod
    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        """Bindings with this exchange as source were removed."""

    @abstractmethod
    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        """Destinations for ``message``. Hot path: no I/O, no allocation that can be avoided.

        May return a collection the instance keeps internally: the caller only iterates it,
        never stores or changes it.
        """

    def hold(self, message: RoutableMessage, mandatory: bool) -> bool | Settlement | None:
        """A publish to this exchange found no destination: does the type keep ``message`` back
        to route it later (a delayed exchange)? None: no, it is unroutable (returned when
        ``mandatory``). Otherwise as a queue's ``publish`` answers: True (kept), False (refused:
        nacked), a ``Settlement`` (kept once settled: the publisher's confirm waits for it).
        Called by the publishing channel only, right after ``route``; off the hot path."""
        return None

    def info(self) -> Mapping[str, Any]:
        """Extra fields for the management API's view of the exchange (RabbitMQ's ``info/1``)."""
        return {}

    def delete(self) -> None:
        """The exchange is being deleted; release any state held outside the instance."""

    def policy_changed(self, policy: Mapping[str, Any] | None) -> None:
        """The effective policy of the exchange changed (None: no policy applies)."""
