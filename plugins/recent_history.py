"""``rabbitmq_recent_history_exchange``: the ``x-recent-history`` exchange type routes as a
fanout exchange and keeps the last messages routed through it (``x-recent-history-length``,
default 20); a queue or exchange bound to it later first gets those messages, oldest first
(RabbitMQ's rabbit_exchange_type_recent_history). A message with the header
``x-recent-history-no-store`` = true is routed but not kept.

The history lives in memory, as RabbitMQ keeps it in a RAM-only Mnesia table: it goes with the
exchange, when the plugin is disabled, and when the node restarts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from amqp_server.plugin_api import (
    PRECONDITION_FAILED,
    Binding,
    ChannelError,
    Destination,
    ExchangeType,
    Message,
    Plugin,
    RoutableMessage,
    erlang_repr,
)

LENGTH = "x-recent-history-length"
NO_STORE = "x-recent-history-no-store"
DEFAULT_LENGTH = 20  # the plugin's KEEP_NB


class RecentHistoryExchange(ExchangeType):
    name = "x-recent-history"
    description = "Recent History Exchange."

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any]) -> None:
        super().__init__(exchange_name, arguments)
        self._history: deque[Message] = deque(maxlen=arguments.get(LENGTH) or DEFAULT_LENGTH)
        self._bindings: dict[tuple[Any, ...], Destination] = {}
        self._destinations: list[Destination] = []

    @classmethod
    def validate(cls, arguments: Mapping[str, Any]) -> None:
        if LENGTH not in arguments:
            return
        value = arguments[LENGTH]
        # Integer types only (byte, short, signedint, long): not bool, not a timestamp.
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"Invalid argument {erlang_repr(value)}, '{LENGTH}' must be a positive integer",
            )

    def add_binding(self, binding: Binding) -> None:
        self._bindings[binding.key] = binding.destination
        self._destinations = list(self._bindings.values())
        for message in self._history:  # the new destination gets the history, oldest first
            self.context.deliver((binding.destination,), message)

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
            self._bindings.pop(binding.key, None)
        self._destinations = list(self._bindings.values())

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        headers = message.headers
        if headers is None or headers.get(NO_STORE) is not True:
            self._history.append(message)  # type: ignore[arg-type] - the broker routes Messages
        return self._destinations


PLUGIN = Plugin(
    "rabbitmq_recent_history_exchange",
    description="RabbitMQ Recent History Exchange",
    exchange_types=(RecentHistoryExchange,),
)
