"""``x-delayed-message``: routes as the type named by its ``x-delayed-type`` argument, but a
message with an ``x-delay`` header of 1..2^32-1 ms is held that long first (see ``delay.py``)
and then routed as the inner type routes it at that moment.

The inner type is an instance of the installed type (direct, topic, a plugin's), which keeps
the bindings: this type adds only the holding. A publish straight to the exchange is answered
for by ``hold``: with mandatory=true, a message the inner routing has no queue for now is
returned (312 NO_ROUTE) and not held; otherwise it is held and confirmed once stored
(persistent) or at once (transient). Routing is decided again when it is delivered.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from amqp_server.plugin_api import (
    PRECONDITION_FAILED,
    Binding,
    ChannelError,
    Destination,
    ExchangeType,
    PluginContext,
    RoutableMessage,
    Settlement,
)
from plugins.delayed_message.delay import delay_of
from plugins.delayed_message.scheduler import Scheduler

TYPE_ARGUMENT = "x-delayed-type"
_NOTHING: tuple[Destination, ...] = ()

#: The scheduler of the node running on each event loop (the plugin's start hook puts it here):
#: exchange instances are made by the broker, which gives them no handle on the plugin.
schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Scheduler] = weakref.WeakKeyDictionary()


def _scheduler() -> Scheduler | None:
    return schedulers.get(asyncio.get_running_loop())


def _inner_type_name(arguments: Mapping[str, Any]) -> str | None:
    value = arguments.get(TYPE_ARGUMENT)
    if isinstance(value, bytes | bytearray):  # a binary field: an Erlang binary all the same
        value = bytes(value).decode("utf-8", "surrogateescape")
    return value if isinstance(value, str) else None


class DelayedMessageExchange(ExchangeType):
    name = "x-delayed-message"
    description = "Delayed Message Exchange."

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any]) -> None:
        super().__init__(exchange_name, arguments)
        self._context: PluginContext | None = None
        self._inner: ExchangeType | None = None

    @classmethod
    def validate(cls, arguments: Mapping[str, Any]) -> None:
        """rabbit_exchange_type_delayed_message:validate; the inner type's existence and its own
        checks of the arguments follow when the instance gets its context."""
        type_name = _inner_type_name(arguments)
        if type_name == cls.name:
            raise ChannelError(
                PRECONDITION_FAILED,
                "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'",
            )
        if type_name is None:
            raise ChannelError(
                PRECONDITION_FAILED, "Invalid argument, 'x-delayed-type' must be an existing exchange type"
            )

    @property  # type: ignore[override]
    def context(self) -> PluginContext:
        assert self._context is not None
        return self._context

    @context.setter
    def context(self, context: PluginContext) -> None:
        # The broker gives the context right after making the instance, before anything else:
        # the first moment the node's exchange types can be looked up.
        self._context = context
        type_name = _inner_type_name(self.arguments)
        assert type_name is not None  # validate() refused anything else
        inner_class = context.exchange_type(type_name)  # 503 unknown/invalid exchange type
        inner_class.validate(self.arguments)
        inner = inner_class(self.exchange_name, self.arguments)
        inner.context = context
        self._inner = inner

    @property
    def inner(self) -> ExchangeType:
        assert self._inner is not None
        return self._inner

    def validate_binding(self, binding: Binding) -> None:
        self.inner.validate_binding(binding)

    def add_binding(self, binding: Binding) -> None:
        self.inner.add_binding(binding)

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        self.inner.remove_bindings(bindings)

    def policy_changed(self, policy: Mapping[str, Any] | None) -> None:
        self.inner.policy_changed(policy)

    def delete(self) -> None:
        self.inner.delete()  # the held messages go on the exchange.deleted event (see __init__)

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        delay = delay_of(message.headers)
        if delay:
            scheduler = _scheduler()
            if scheduler is not None:
                scheduler.arrive(self.context.vhost, self.exchange_name, message, delay)  # type: ignore[arg-type]
                return _NOTHING
            self.context.log.error(
                "delayed message plugin not started: %s routed without delay", self.exchange_name
            )
        return self.inner.route(message)

    def hold(self, message: RoutableMessage, mandatory: bool) -> bool | Settlement | None:
        scheduler = _scheduler()
        if scheduler is None or not scheduler.arriving(message):  # type: ignore[arg-type]
            return None  # not delayed: the inner routing found no queue
        keep = not mandatory or self.context.reaches(self.inner.route(message), message)  # type: ignore[arg-type]
        return scheduler.claim(keep)

    def info(self) -> Mapping[str, Any]:
        scheduler = _scheduler()
        held = scheduler.count(self.context.vhost, self.exchange_name) if scheduler is not None else 0
        return {"messages_delayed": held}
