"""The event bus: what happened to the broker's entities, under RabbitMQ's event names
(``queue.created``, ``connection.closed``, ``policy.set``, ... as the rabbitmq_event_exchange
plugin publishes them) with their payloads.

Side effects of metadata changes (closing a deleted vhost's connections, giving a new queue
its message store, tearing a deleted queue down) and observers (statistics, the management API,
the event exchange, plugins) are subscribers; the code that applies a change only changes state
and emits. Events are about entities, never about messages: nothing is emitted per message.

A subscriber is called synchronously, in subscription order, with the ``Event``; one that
raises is logged and the others still run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    #: RabbitMQ's event name, e.g. ``queue.created``.
    name: str
    #: The fields RabbitMQ's event carries (``name``, ``vhost``, ``durable``, ...).
    payload: dict[str, Any]
    #: The object the event is about, for in-process subscribers (a queue, a connection); None
    #: when the entity is gone or has no object.
    subject: Any = None
    timestamp_in_ms: int = field(default_factory=lambda: int(time.time() * 1000))


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._by_name: dict[str, list[Subscriber]] = {}
        self._all: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber, *names: str) -> Callable[[], None]:
        """Call ``subscriber`` for events of ``names`` (every event when none is named);
        returns the function that unsubscribes it."""
        lists = [self._by_name.setdefault(name, []) for name in names] or [self._all]
        for subscribers in lists:
            subscribers.append(subscriber)

        def unsubscribe() -> None:
            for subscribers in lists:
                if subscriber in subscribers:
                    subscribers.remove(subscriber)

        return unsubscribe

    def emit(self, event_name: str, subject: Any = None, /, **payload: Any) -> None:
        """Tell the subscribers of ``event_name``; ``payload`` is the event's fields."""
        named = self._by_name.get(event_name)
        if not named and not self._all:
            return
        event = Event(event_name, payload, subject)
        for subscriber in [*(named or ()), *self._all]:
            try:
                subscriber(event)
            except Exception:  # noqa: BLE001 - one subscriber's failure is not the emitter's
                log.exception("event subscriber %r failed on %s", subscriber, event_name)
