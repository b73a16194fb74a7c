"""The ready store of a queue with ``x-max-priority``: one FIFO per priority, highest first.

It offers the few deque operations the classic queue uses on its ready messages (``append``,
``popleft``, ``[0]``, ``len``, ``clear``) so that a queue without priorities keeps a plain
deque and pays nothing. A message's priority is its ``priority`` property capped at the
queue's maximum (absent counts as 0); the message itself is not changed, so it is delivered
with the priority it was published with, as RabbitMQ does.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Iterator

from queues.base import QueueEntry


def _seq(entry: QueueEntry) -> int:
    return entry.seq


class PriorityReady:
    """Ready entries by priority; FIFO (publish order) within a priority."""

    __slots__ = ("_levels", "_max", "_top", "_len")

    def __init__(self, max_priority: int) -> None:
        self._max = max_priority
        self._levels: list[deque[QueueEntry]] = [deque() for _ in range(max_priority + 1)]
        self._top = 0  # no level above this one holds entries
        self._len = 0

    def priority_of(self, entry: QueueEntry) -> int:
        priority = entry.message.priority
        if not isinstance(priority, int) or priority < 0:
            return 0
        return priority if priority < self._max else self._max

    def append(self, entry: QueueEntry) -> None:
        priority = self.priority_of(entry)
        self._levels[priority].append(entry)
        self._len += 1
        if priority > self._top:
            self._top = priority

    def _head_level(self) -> deque[QueueEntry]:
        levels = self._levels
        top = self._top
        while top > 0 and not levels[top]:
            top -= 1
        self._top = top
        return levels[top]

    def popleft(self) -> QueueEntry:
        if not self._len:
            raise IndexError("pop from an empty PriorityReady")
        self._len -= 1
        return self._head_level().popleft()

    def __getitem__(self, index: int) -> QueueEntry:
        if index != 0 or not self._len:
            raise IndexError(index)
        return self._head_level()[0]

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[QueueEntry]:
        """Delivery order."""
        for level in reversed(self._levels):
            yield from level

    def clear(self) -> None:
        for level in self._levels:
            level.clear()
        self._len = 0
        self._top = 0

    def requeue(self, entry: QueueEntry) -> None:
        """Back to its place by publish order within its priority."""
        priority = self.priority_of(entry)
        level = self._levels[priority]
        if not level or entry.seq < level[0].seq:
            level.appendleft(entry)
        else:
            insort(level, entry, key=_seq)
        self._len += 1
        if priority > self._top:
            self._top = priority
