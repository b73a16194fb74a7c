"""The node's held messages: every one in the store, the earliest-due ones also in memory.

Memory holds a window: a heap of the messages due first, with ``horizon`` the last key
``(due, id)`` it covers. Every held message at or before the horizon is in the heap; those after
it are on disk only. A new message due before the horizon joins the heap; one due later only
goes to the store. When the heap grows past twice the window it is cut back to the window (the
horizon moves earlier); when delivering drains it below half, the next rows after the horizon
are read in. So memory holds about twice the window at most (what arrives while a read is
under way waits for it), however many messages are held.

One loop timer, for the head of the heap, delivers whatever is due, in due order (ties in
publish order, the id). A delivered message is routed through its exchange as published there
(``x-delay`` now negative, so it goes straight to the inner type's routing, whatever the
bindings are at that moment) and leaves the store once the queues that took it have stored it.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable
from typing import NamedTuple

from amqp_server.plugin_api import Message, NodeContext, PluginContext, Settlement
from amqp_server.storage.message_store import is_persistent
from amqp_server.storage.records import exchange_and_key
from plugins.delayed_message.delay import swap_delay_header
from plugins.delayed_message.store import DelayedStore, Key, Row, log

NOTHING_LOADED: Key = (-1, -1)
EVERYTHING: Key = (2**63, 0)
DELIVERIES_PER_TICK = 500  # then the loop serves others before the next ones
EARLY_RETRY = 0.001  # seconds


def _now_ms() -> float:
    return time.time() * 1000


class Held(NamedTuple):
    """A message in the heap: ordered by (due, id)."""

    due: int
    id: int
    vhost: str
    exchange: str
    message: Message


def _from_row(row: Row) -> Held:
    exchange, routing_key = exchange_and_key(row.exchange_and_key)
    return Held(row.due, row.id, row.vhost, row.exchange,
                Message(exchange, routing_key, row.exchange_and_key, row.header, row.body))  # fmt: skip


class Scheduler:
    """Holds delayed messages of every exchange of the node and delivers them when due."""

    def __init__(self, node: NodeContext, store: DelayedStore, window: int) -> None:
        self.node = node
        self.store = store
        self.window = window
        self.counts: dict[tuple[str, str], int] = {}  # held messages per (vhost, exchange)
        self._heap: list[Held] = []
        self._horizon: Key = EVERYTHING
        self._next_id = 1
        self._timer: asyncio.Handle | None = None
        self._timer_due = 0
        self._reading = False  # a read of the next rows is under way
        self._since_read: list[Held] = []  # held after the horizon while it was
        self._purged_since_read: list[tuple[str, str | None]] = []
        self._arriving: list[tuple[str, str, Message, int]] = []  # routed this tick, not yet held
        self._contexts: dict[str, PluginContext] = {}
        self._closed = False

    async def start(self) -> None:
        top, self.counts = await self.store.open()
        self._next_id = top + 1
        if self.counts:
            self._horizon = NOTHING_LOADED
            self._read_more()

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._admit_arrivals()
        await self.store.close()

    def count(self, vhost: str, exchange: str) -> int:
        return self.counts.get((vhost, exchange), 0)

    @property
    def in_memory(self) -> int:
        """How many held messages are in memory (the window)."""
        return len(self._heap)

    # -- taking messages -----------------------------------------------------------------------

    def arrive(self, vhost: str, exchange: str, message: Message, delay: int) -> None:
        """A delayed exchange routed ``message`` to later: held at the end of this tick unless
        the publishing channel claims it first (``claim``)."""
        if not self._arriving:
            asyncio.get_running_loop().call_soon(self._admit_arrivals)
        self._arriving.append((vhost, exchange, message, delay))

    def arriving(self, message: Message) -> bool:
        """``message`` is the one the last ``arrive`` was about."""
        return bool(self._arriving) and self._arriving[-1][2] is message

    def claim(self, keep: bool) -> bool | Settlement | None:
        """The publishing channel answers for the message ``arrive`` was last told of: held now
        if ``keep`` (True, or the settlement a persistent one waits for), else dropped (None)."""
        vhost, exchange, message, delay = self._arriving.pop()
        if not keep:
            return None
        return self._hold(vhost, exchange, message, delay)

    def _admit_arrivals(self) -> None:
        arriving, self._arriving = self._arriving, []
        for vhost, exchange, message, delay in arriving:
            self._hold(vhost, exchange, message, delay)

    def _hold(self, vhost: str, exchange: str, message: Message, delay: int) -> bool | Settlement:
        message_id = self._next_id
        self._next_id += 1
        header = swap_delay_header(message.header, delay)
        held = Held(math.ceil(_now_ms()) + delay, message_id, vhost, exchange,
                    Message(message.exchange, message.routing_key, message.exchange_and_key, header, message.body))  # fmt: skip
        persistent = is_persistent(header)
        row = Row(message_id, held.due, vhost, exchange, message.exchange_and_key, header, message.body)
        settlement = self.store.insert(row, persistent)
        self.counts[(vhost, exchange)] = self.counts.get((vhost, exchange), 0) + 1
        if (held.due, message_id) <= self._horizon:
            heapq.heappush(self._heap, held)
            if len(self._heap) > 2 * self.window and not self._reading:
                self._cut_back()
            self._schedule()
        elif self._reading:
            self._since_read.append(held)
        return settlement if persistent else True

    def _cut_back(self) -> None:
        """Keep the window's earliest messages in memory; the rest are in the store."""
        kept = heapq.nsmallest(self.window, self._heap)
        self._heap = kept  # sorted: a valid heap
        self._horizon = (kept[-1].due, kept[-1].id)

    # -- delivering ----------------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._closed or not self._heap:
            return
        due = self._heap[0].due
        if self._timer is not None:
            if self._timer_due <= due:
                return
            self._timer.cancel()
        self._timer_due = due
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + (due - _now_ms()) / 1000, self._deliver_due)

    def _deliver_due(self) -> None:
        self._timer = None
        heap = self._heap
        now = _now_ms()
        store = self.store
        delivered = 0
        waits: dict[frozenset[Settlement], list[int]] = {}
        while heap and heap[0].due <= now and delivered < DELIVERIES_PER_TICK:
            held = heapq.heappop(heap)
            delivered += 1
            unsettled: set[Settlement] = set()
            self._context(held.vhost).publish(held.exchange, held.message, unsettled)
            key = (held.vhost, held.exchange)
            left = self.counts.get(key, 0) - 1
            if left > 0:
                self.counts[key] = left
            else:
                self.counts.pop(key, None)
            if not unsettled:
                store.delete(held.id)
            else:  # dropped from the store once the queues have it on disk
                waits.setdefault(frozenset(unsettled), []).append(held.id)
        for settlements, ids in waits.items():
            deleter = _deleter(store, settlements, ids)
            for settlement in settlements:
                settlement.watch(deleter)
        if heap and heap[0].due <= now:
            self._timer_due = 0  # at once: nothing can be due earlier
            self._timer = asyncio.get_running_loop().call_soon(self._deliver_due)
        elif heap and heap[0].due - now < 2 * EARLY_RETRY * 1000:
            # Fired early: due times are wall-clock ms (they outlive the process) and timers run
            # on the loop's clock, which uvloop keeps in whole ms. Looking again at once would
            # spin the loop until then; a millisecond later is at most that late.
            self._timer_due = heap[0].due
            self._timer = asyncio.get_running_loop().call_later(EARLY_RETRY, self._deliver_due)
        else:
            self._schedule()
        if len(heap) <= self.window // 2 and self._horizon != EVERYTHING and not self._reading:
            self._read_more()

    def _context(self, vhost: str) -> PluginContext:
        context = self._contexts.get(vhost)
        if context is None:
            context = self._contexts[vhost] = self.node.vhost(vhost)
        return context

    # -- paging in -----------------------------------------------------------------------------

    def _read_more(self) -> None:
        self._reading = True
        after = self._horizon
        limit = self.window - len(self._heap)
        self.store.read_after(after, limit).add_done_callback(lambda done: self._read_done(done, limit))

    def _read_done(self, done: asyncio.Future[list[Row]], limit: int) -> None:
        self._reading = False
        since, self._since_read = self._since_read, []
        purged, self._purged_since_read = self._purged_since_read, []
        if self._closed or done.cancelled():
            return
        if done.exception() is not None:
            log.error("reading delayed messages failed (%s); trying again in a second", done.exception())
            asyncio.get_running_loop().call_later(1, self._read_more)
            return
        rows = done.result()
        self._horizon = (rows[-1].due, rows[-1].id) if len(rows) == limit else EVERYTHING
        loaded = [_from_row(row) for row in rows if not _purged(row.vhost, row.exchange, purged)]
        loaded.extend(held for held in since if (held.due, held.id) <= self._horizon)
        for held in loaded:
            heapq.heappush(self._heap, held)
        if len(self._heap) > 2 * self.window:
            self._cut_back()
        self._schedule()

    # -- exchanges and vhosts going away -------------------------------------------------------

    def purge(self, vhost: str, exchange: str | None) -> None:
        """Drop every message of ``exchange`` (of the whole vhost when None)."""
        self.store.purge(vhost, exchange)
        for key in [key for key in self.counts if _purged(*key, [(vhost, exchange)])]:
            del self.counts[key]
        self._heap = [
            held for held in self._heap if not _purged(held.vhost, held.exchange, [(vhost, exchange)])
        ]
        heapq.heapify(self._heap)
        if self._reading:
            self._purged_since_read.append((vhost, exchange))


def _purged(vhost: str, exchange: str, purges: list[tuple[str, str | None]]) -> bool:
    return any(vhost == gone_vhost and gone in (None, exchange) for gone_vhost, gone in purges)


def _deleter(
    store: DelayedStore, settlements: frozenset[Settlement], ids: list[int]
) -> Callable[[Settlement], None]:
    """Deletes ``ids`` once every one of ``settlements`` is settled."""

    def delete(_settlement: Settlement) -> None:
        if ids and all(settlement.done for settlement in settlements):
            for message_id in ids:
                store.delete(message_id)
            ids.clear()

    return delete
