"""At-least-once dead-lettering of a quorum queue (``dead-letter-strategy: at-least-once``, with
``overflow: reject-publish`` and a dead-letter exchange, as RabbitMQ 3.10 requires it).

A message dead-lettered so stays stored in its queue, out of the consumers' reach, until every
queue its dead-letter exchange routes it to has taken it (confirmed it, when they confirm):
RabbitMQ's ``rabbit_fifo_dlx``. Not routed, or refused (a full target with reject-publish),
it is sent again every ``RETRY`` seconds. The queue's stats count them as ``messages_dlx`` and
``message_bytes_dlx``. On a cluster the log marks them (``held``), so a new leader keeps
sending them; a single node restarted puts them back in the queue (delivered again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from queues.base import Settlement

if TYPE_CHECKING:
    from queues.base import QueueEntry

RETRY = 2.0  # seconds between tries of the dead letters not taken yet (RabbitMQ: 180 s)

#: ``send(message, reason)``: the dead-letter exchange's publish results, None: not routed.
Send = Callable[[Any, str], "list[bool | Settlement] | None"]


class RetainedDeadLetters:
    """The dead letters a queue keeps until their targets took them."""

    def __init__(self, send: Send, release: Callable[[QueueEntry], None], loop: asyncio.AbstractEventLoop) -> None:
        self._send = send
        self._release = release  # the entry leaves the queue's store for good
        self._loop = loop
        self.pending: dict[QueueEntry, str] = {}  # entry -> reason
        self.bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    def hold(self, entry: QueueEntry, reason: str) -> None:
        self.pending[entry] = reason
        self.bytes += len(entry.message.body)
        self._try(entry, reason)

    def _try(self, entry: QueueEntry, reason: str) -> None:
        results = self._send(entry.message, reason)
        if not results or not all(results):
            self._retry_later()
            return
        settlements = [result for result in results if isinstance(result, Settlement)]
        if not settlements:
            self._taken(entry)
            return
        left = [len(settlements)]

        def settled(settlement: Settlement) -> None:
            if not settlement.ok:
                left[0] = -1
                self._retry_later()
                return
            left[0] -= 1
            if left[0] == 0:
                self._taken(entry)

        for settlement in settlements:
            settlement.watch(settled)

    def _taken(self, entry: QueueEntry) -> None:
        if self.pending.pop(entry, None) is not None:
            self.bytes -= len(entry.message.body)
            self._release(entry)

    def _retry_later(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(RETRY, self._retry)

    def _retry(self) -> None:
        self._timer = None
        for entry, reason in list(self.pending.items()):
            self._try(entry, reason)

    def drop(self) -> list[QueueEntry]:
        """The queue is deleted: what it held goes with it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        entries = list(self.pending)
        self.pending.clear()
        self.bytes = 0
        return entries
