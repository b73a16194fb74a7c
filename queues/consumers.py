"""The consumers of a classic queue: who receives the next message.

Round-robin among the consumers of the highest priority that have credit left (a consumer's
``credit`` is how many more deliveries it takes now; the queue spends it, the channel refills
it). With ``x-single-active-consumer`` only one consumer receives; the others wait, and when
it goes the waiting one with the highest consumer priority (the earliest registered among
equals) takes over.
"""

from __future__ import annotations

from collections import deque

from queues.base import Consumer


def _priority(consumer: Consumer) -> int:
    return consumer.priority


class ConsumerRing(deque[Consumer]):
    """The consumers that receive, in turn; with single active consumer only the active one,
    the others in ``waiting``.

    The ring is a deque itself so that the queue's hot path tests it, takes its length and
    rotates it in C, as it did when the queue held a plain deque.
    """

    __slots__ = ("single_active", "mixed_priorities", "waiting")

    def __init__(self, single_active: bool) -> None:
        super().__init__()
        self.single_active = single_active
        self.mixed_priorities = False  # False: plain round-robin, no priority to compare
        self.waiting: list[Consumer] = []

    def pick(self) -> Consumer | None:
        """The next consumer, round-robin among the highest-priority ones with credit."""
        if len(self) == 1:
            consumer = self[0]
            return consumer if consumer.credit > 0 else None
        if not self.mixed_priorities:
            for _ in range(len(self)):
                consumer = self[0]
                self.rotate(-1)
                if consumer.credit > 0:
                    return consumer
            return None
        best: Consumer | None = None
        best_index = 0
        for index, consumer in enumerate(self):
            if consumer.credit > 0 and (best is None or consumer.priority > best.priority):
                best, best_index = consumer, index
        if best is not None:
            # Move the chosen consumer to the back: round-robin within its priority.
            del self[best_index]
            self.append(best)
        return best

    def register(self, consumer: Consumer) -> bool:
        """A new consumer; False if it waits (single active consumer, another one is active)."""
        if self.single_active and self:
            self.waiting.append(consumer)
            return False
        self.append(consumer)
        self.mixed_priorities = len({c.priority for c in self}) > 1
        return True

    def unregister(self, consumer: Consumer) -> bool:
        """The consumer goes; False if it was not registered."""
        if consumer in self.waiting:
            self.waiting.remove(consumer)
            return True
        try:
            self.remove(consumer)
        except ValueError:
            return False
        self.mixed_priorities = len({c.priority for c in self}) > 1
        return True

    def promote(self) -> bool:
        """Single active consumer, the active one gone: the highest-priority waiting consumer
        becomes active. True if one did (a consumer waits only while another is active)."""
        waiting = self.waiting
        if self or not waiting:
            return False
        best = max(waiting, key=_priority)  # max keeps the first of equals
        waiting.remove(best)
        self.append(best)
        return True

    def active(self) -> Consumer | None:
        """Single active consumer: the one receiving (None on other queues)."""
        return self[0] if self.single_active and self else None

    @property
    def total(self) -> int:
        """Consumers registered, active or waiting."""
        return len(self) + len(self.waiting)

    def everyone(self) -> tuple[Consumer, ...]:
        """Every registered consumer, the receiving ones first."""
        return (*self, *self.waiting)

    def release(self) -> tuple[Consumer, ...]:
        """The queue goes: every consumer, unregistered."""
        consumers = self.everyone()
        self.clear()
        self.waiting.clear()
        return consumers
