"""The classic queue: a FIFO of entries in memory, round-robin over consumers by priority."""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from queues.base import Consumer, QueueEntry, QueueType


class ClassicQueue(QueueType):
    type_name = "classic"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ready: deque[QueueEntry] = deque()
        self._consumers: deque[Consumer] = deque()
        self._unacked = 0
        self._next_seq = 0
        self._had_consumer = False
        self._mixed_priorities = False
        self._deleted = False
        # Set by the vhost: deletes this queue when auto-delete says so.
        self.on_unused: Callable[[QueueType], None] | None = None

    # -- publish path --------------------------------------------------------------------

    def publish(self, message: Any) -> bool:
        seq = self._next_seq
        self._next_seq = seq + 1
        entry = QueueEntry(message, seq, self)
        if not self._ready and self._consumers:
            consumer = self._pick_consumer()
            if consumer is not None:
                self._hand_to(consumer, entry)
                return True
        self._ready.append(entry)
        return True

    # -- consume path --------------------------------------------------------------------

    def _pick_consumer(self) -> Consumer | None:
        """The next consumer, round-robin among the highest-priority ones that can take."""
        consumers = self._consumers
        if not self._mixed_priorities:
            for _ in range(len(consumers)):
                consumer = consumers[0]
                consumers.rotate(-1)
                if consumer.can_take():
                    return consumer
            return None
        best: Consumer | None = None
        best_index = 0
        for index, consumer in enumerate(consumers):
            if consumer.can_take() and (best is None or consumer.priority > best.priority):
                best, best_index = consumer, index
        if best is not None:
            # Move the chosen consumer to the back: round-robin within its priority.
            del consumers[best_index]
            consumers.append(best)
        return best

    def _hand_to(self, consumer: Consumer, entry: QueueEntry) -> None:
        if not consumer.no_ack:
            entry.consumer = consumer
            self._unacked += 1
        consumer.deliver(entry)

    def dispatch(self) -> None:
        ready = self._ready
        while ready and self._consumers:
            consumer = self._pick_consumer()
            if consumer is None:
                return
            self._hand_to(consumer, ready.popleft())

    def get(self) -> QueueEntry | None:
        if not self._ready:
            return None
        entry = self._ready.popleft()
        self._unacked += 1
        return entry

    def add_consumer(self, consumer: Consumer) -> None:
        self._consumers.append(consumer)
        self._had_consumer = True
        self._mixed_priorities = len({c.priority for c in self._consumers}) > 1
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        try:
            self._consumers.remove(consumer)
        except ValueError:
            return
        self._mixed_priorities = len({c.priority for c in self._consumers}) > 1
        if not self._consumers and self.auto_delete and self._had_consumer and self.on_unused:
            self.on_unused(self)

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        return tuple(self._consumers)

    # -- settlement ----------------------------------------------------------------------

    def settle(self, entry: QueueEntry) -> None:
        entry.consumer = None
        self._unacked -= 1

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        if self._deleted:
            return
        ready = self._ready
        count = 0
        # Entries come back in reverse so that each lands at the head in front of later ones.
        for entry in sorted(entries, key=_seq, reverse=True):
            count += 1
            entry.consumer = None
            entry.redelivered = True
            if not ready or entry.seq < ready[0].seq:
                ready.appendleft(entry)
            else:
                insort(ready, entry, key=_seq)
        self._unacked -= count
        self.dispatch()

    # -- management ----------------------------------------------------------------------

    def purge(self) -> int:
        count = len(self._ready)
        self._ready.clear()
        return count

    def delete(self) -> int:
        self._deleted = True
        count = len(self._ready)
        self._ready.clear()
        consumers = list(self._consumers)
        self._consumers.clear()
        for consumer in consumers:
            consumer.cancelled_by_server()
        return count

    @property
    def message_count(self) -> int:
        return len(self._ready)

    @property
    def consumer_count(self) -> int:
        return len(self._consumers)

    @property
    def unacked_count(self) -> int:
        return self._unacked


def _seq(entry: QueueEntry) -> int:
    return entry.seq
