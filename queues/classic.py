"""The classic queue: a FIFO of entries in memory, delivered round-robin to its consumers.

Everything below reads the queue's effective ``settings`` (arguments + policies), never the
arguments, so that ``apply_settings`` can change them at once. Each concern beyond the FIFO is
a small object the queue owns, in a module of its own:

* length limits and overflow: ``queues.limits`` (``LengthLimits``);
* message TTL, expired at the head, and x-expires (unused queue deletion): ``queues.expiry``
  (``HeadTimer``, ``UnusedTimer`` on a ``Clock``);
* x-max-priority: ``queues.priority`` (``PriorityReady``, the ready entries by priority);
* consumers, round-robin by priority with credit, and x-single-active-consumer:
  ``queues.consumers`` (``ConsumerRing``);
* paging of the ready tail to the message store: ``queues.paging`` (``PagedTail``).

What stays here: publish, dispatch, get, settle and requeue over the ready entries, the hooks
the message store calls (``attach_store``, ``reserve_seqs``, ``recover_*``, ``tail_loaded``,
``store_qid``, ``delivered_mark``) and the counters of ``stats``. A queue with none of the
above keeps a plain deque and pays one flag test per publish (``_special``), plus one
comparison for paging (``_page_at``).
"""

from __future__ import annotations

import logging
import sys
from bisect import insort
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from amqp_server.protocol.errors import INTERNAL_ERROR, PRECONDITION_FAILED, ChannelError, ConnectionError
from amqp_server.protocol.field_types import text
from amqp_server.storage.message_store import is_persistent
from queues.base import Consumer, QueueEntry, QueueType, Settlement
from queues.consumers import ConsumerRing
from queues.expiry import Clock, HeadTimer, UnusedTimer
from queues.limits import LengthLimits
from queues.paging import PagedTail
from queues.priority import PriorityReady
from queues.settings import QueueSettings

if TYPE_CHECKING:
    from amqp_server.storage.message_store import MessageStore

log = logging.getLogger(__name__)

MASTER_LOCATORS = ("min-masters", "client-local", "random")
# Arguments RabbitMQ knows but refuses on a classic queue ("... of queue type rabbit_classic_queue").
UNSUPPORTED_ARGS = (
    "x-dead-letter-strategy",
    "x-delivery-limit",
    "x-initial-cluster-size",
    "x-max-age",
    "x-max-in-memory-bytes",
    "x-max-in-memory-length",
    "x-quorum-initial-group-size",
    "x-queue-leader-locator",
    "x-stream-max-segment-size-bytes",
)


class ClassicQueue(QueueType):
    type_name = "classic"
    #: A subclass that keeps transient messages on disk too (the quorum queue) says so here.
    stores_every_message: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        max_priority = self.settings.max_priority
        self._prio = bool(max_priority)
        self._ready: Any = PriorityReady(max_priority) if max_priority else deque()
        self._consumers = ConsumerRing(self.settings.single_active_consumer)
        self._unacked = 0
        self._next_seq = 0  # also the count of accepted publishes
        self._had_consumer = False
        self._deleted = False
        self._ready_bytes = 0  # body bytes, as RabbitMQ's message_bytes_ready
        self._unacked_bytes = 0
        # Counters for stats(): integer increments only on the message path.
        self._delivered = 0
        self._delivered_no_ack = 0
        self._got = 0
        self._redelivered = 0
        self._acked = 0
        self._clock = Clock()
        self._head_timer = HeadTimer(self._clock, self._ttl_fired)
        self._unused_timer = UnusedTimer(self._clock, self._expired_unused)
        self._timed = False  # ready entries may carry an expiry: dispatch/get look at the head
        # Set by the vhost: deletes this queue (auto-delete after the last consumer, x-expires).
        self.on_unused: Callable[[QueueType], None] | None = None
        # Durable queue of a broker with a data directory: the message store keeps its
        # persistent messages (attach_store); None otherwise.
        self._store: MessageStore | None = None
        self.store_qid = 0
        self.delivered_mark = -1  # highest stored seq handed out (see message_store)
        self._seq_base = 0  # recovered seqs do not count as publishes in stats()
        # Paging: publishes go to the tail once the head holds _page_at entries. sys.maxsize:
        # no paging; the window; 0 while a tail exists, so that later publishes queue behind
        # it. ``not self._page_at`` is therefore this queue's test for "entries are paged out".
        self._tail = PagedTail(self)
        self._page_at = sys.maxsize
        self._configure()
        self._arm_expires()

    def _configure(self) -> None:
        """Precompute the flags the message path branches on from ``self.settings``."""
        settings = self.settings
        self._ttl = settings.message_ttl
        limits = self._limits = LengthLimits(settings)
        self._drops_head = limits.drop_head
        self._rejects = limits.reject_publish
        self._expires = settings.expires
        self._special = limits.limited or self._ttl is not None
        if self._ttl is not None:
            self._timed = True

    def apply_settings(self, settings: QueueSettings) -> None:
        """A policy changed: new limits apply at once (drop-head drops now), a new TTL applies
        to messages enqueued from now on (as RabbitMQ fixes expiry at enqueue), a new expires
        restarts the countdown."""
        old_expires = self._expires
        super().apply_settings(settings)
        self._configure()
        if self._expires != old_expires:
            self._arm_expires()
        if self._drops_head:
            self._drop_head()
        if self._timed:
            self._expire()

    @classmethod
    def validate_arguments(cls, arguments: Mapping[str, Any], where: str) -> None:
        for key in UNSUPPORTED_ARGS:
            if key in arguments:
                raise ChannelError(
                    PRECONDITION_FAILED, f"invalid arg '{key}' for {where} of queue type rabbit_classic_queue"
                )
        locator = arguments.get("x-queue-master-locator")
        if locator is not None and (not isinstance(locator, str | bytes) or text(locator) not in MASTER_LOCATORS):
            # RabbitMQ 3.10 checks no locator at declare; choosing the node then fails, which
            # closes the connection with a bare INTERNAL_ERROR and declares nothing.
            raise ConnectionError(INTERNAL_ERROR, "")

    # -- publish path --------------------------------------------------------------------

    def publish(self, message: Any) -> bool | Settlement:
        if self._special or message.header[12] & 1:  # limits, TTL or an expiration property
            return self._publish_special(message)
        if len(self._ready) >= self._page_at:
            return self._publish_special(message)
        if self._store is not None and message.header[12] & 0x10:  # delivery mode given
            return self._publish_special(message)
        seq = self._next_seq
        self._next_seq = seq + 1
        entry = QueueEntry(message, seq, self)
        if not self._ready and self._consumers:
            consumer = self._consumers.pick()
            if consumer is not None:
                self._hand_to(consumer, entry)
                return True
        self._ready.append(entry)
        self._ready_bytes += len(message.body)
        return True

    def _publish_special(self, message: Any) -> bool | Settlement:
        """publish for a queue with limits or TTL, or a message with an expiration."""
        size = len(message.body)
        if self._rejects and self._would_overflow(size):
            if self._limits.reject_dlx:
                self._dead_letter([message], "maxlen")
            return False
        ttl = self._ttl
        if message.header[12] & 1:
            own = message.expiration_ms
            if own is not None and (ttl is None or own < ttl):
                ttl = own
        now = None
        expires = None
        if ttl is not None:
            now = self._clock.now()
            expires = now + ttl / 1000
            self._timed = True
        seq = self._next_seq
        self._next_seq = seq + 1
        entry = QueueEntry(message, seq, self, expires)
        store = self._store
        if store is not None and not is_persistent(message.header) and not self.stores_every_message:
            store = None
        # A persistent message of a durable queue is safe once the batch storing it is on disk:
        # the publish answers with that batch's settlement.
        settled: bool | Settlement = True if store is None else store.settlement
        ready = self._ready
        if len(ready) >= self._page_at:
            self._page_at = 0  # everything after it queues behind it
            self._tail.page_out(entry, store is not None)
            if self._drops_head:
                self._drop_head()
            return settled
        if not ready and self._consumers:
            consumer = self._consumers.pick()
            if consumer is not None:
                if store is not None and not consumer.no_ack:
                    store.add(entry)
                else:
                    settled = True  # delivered without an ack to wait for: nothing to store
                self._hand_to(consumer, entry)
                return settled
        ready.append(entry)
        self._ready_bytes += size
        if store is not None:
            store.add(entry)  # before overflow or expiry may take it out again
        if self._drops_head:
            self._drop_head()
        if self._timed:
            self._expire(now)  # e.g. TTL 0 with no consumer ready: gone at once
        return settled

    def _would_overflow(self, size: int) -> bool:
        """reject-publish: would this message take the ready messages over a limit?"""
        limits = self._limits
        max_length = limits.max_length
        if max_length is not None and len(self._ready) + self._tail.count + 1 > max_length:
            return True
        max_bytes = limits.max_bytes
        return max_bytes is not None and self._ready_bytes + self._tail.bytes + size > max_bytes

    def _drop_head(self) -> None:
        """drop-head: drop (dead-letter, ``maxlen``) the head while the queue is over a limit."""
        ready = self._ready
        tail = self._tail
        limits = self._limits
        max_length = limits.max_length
        max_bytes = limits.max_bytes
        dropped: list[Any] = []
        while (
            (max_length is not None and len(ready) + tail.count > max_length)
            or (max_bytes is not None and self._ready_bytes + tail.bytes > max_bytes)
        ):
            if not ready:
                if not tail.count or not self._load_now():
                    break
                continue
            entry = ready.popleft()
            if entry.stored is not None:
                self._unstore(entry)
            message = entry.message
            self._ready_bytes -= len(message.body)
            dropped.append(message)
        if not self._page_at:
            tail.check_refill(len(ready))
        if dropped:
            self._dead_letter(dropped, "maxlen")

    def _dead_letter(self, messages: list[Any], reason: str) -> None:
        if self.dead_letter is not None and self.settings.dead_letter_exchange is not None:
            self.dead_letter(self, messages, reason)

    # -- expiry --------------------------------------------------------------------------

    def _expire(self, now: float | None = None) -> None:
        """Drop the expired entries at the head (dead-letter ``expired``), then set the timer
        for the new head's expiry."""
        ready = self._ready
        if not ready:
            self._timed = self._ttl is not None
            if not self._page_at:
                self._tail.check_refill(0)  # the head is empty
            return
        if now is None:
            now = self._clock.now()
        dropped = []
        while ready:
            expires = ready[0].expires
            if expires is None or expires > now:
                break
            dropped.append(ready.popleft())
        next_expiry = ready[0].expires if ready else None
        if next_expiry is not None:
            self._head_timer.arm(next_expiry)
        elif not ready:
            self._timed = self._ttl is not None
        if not self._page_at:
            self._tail.check_refill(len(ready))  # an expired head lets the tail's head expire next
        if dropped:
            messages = [entry.message for entry in dropped]
            for entry in dropped:
                self._ready_bytes -= len(entry.message.body)
                if entry.stored is not None:
                    self._unstore(entry)
            self._dead_letter(messages, "expired")

    def _ttl_fired(self) -> None:
        if not self._deleted:
            self._expire()

    def touch(self) -> None:
        """Redeclared or basic.get: the x-expires countdown starts again."""
        if self._expires is not None:
            self._arm_expires()

    def _arm_expires(self) -> None:
        """(Re)start the x-expires countdown, which runs only while the queue has no consumers."""
        expires = self._expires
        if expires is None or self._deleted or self._consumers.total:
            self._unused_timer.cancel()
        else:
            self._unused_timer.restart(expires)

    def _expired_unused(self) -> None:
        if not self._deleted and not self._consumers.total and self.on_unused is not None:
            self.on_unused(self)

    # -- consume path --------------------------------------------------------------------

    def _hand_to(self, consumer: Consumer, entry: QueueEntry) -> None:
        consumer.credit -= 1
        if entry.redelivered:
            self._redelivered += 1
        if consumer.no_ack:
            self._delivered_no_ack += 1
            if entry.stored is not None:
                self._unstore(entry)
        else:
            entry.consumer = consumer
            self._unacked += 1
            self._unacked_bytes += len(entry.message.body)
            self._delivered += 1
            if entry.stored is not None and entry.seq > self.delivered_mark:
                self._mark_delivered(entry.seq)
        consumer.deliver(entry)

    def dispatch(self) -> None:
        if self._timed:
            self._dispatch_timed()
            return
        ready = self._ready
        consumers = self._consumers
        while ready and consumers:
            consumer = consumers.pick()
            if consumer is None:
                break
            entry = ready.popleft()
            self._ready_bytes -= len(entry.message.body)
            self._hand_to(consumer, entry)
        if not self._page_at:
            self._tail.check_refill(len(ready))

    def _dispatch_timed(self) -> None:
        """dispatch when entries may expire: an expired head is dropped, never delivered."""
        ready = self._ready
        if not ready:
            self._expire()  # nothing to deliver; it sees to the flag and the tail
            return
        now = self._clock.now()
        consumers = self._consumers
        while ready and consumers:
            entry = ready[0]
            if entry.expires is not None and entry.expires <= now:
                self._expire(now)
                continue
            consumer = consumers.pick()
            if consumer is None:
                break
            ready.popleft()
            self._ready_bytes -= len(entry.message.body)
            self._hand_to(consumer, entry)
        self._expire(now)

    def get(self) -> QueueEntry | None:
        if self._expires is not None:
            self._arm_expires()
        ready = self._ready
        if self._timed:
            self._expire()
        if not ready and not self._page_at:
            self._load_now()
            if self._timed:
                self._expire()
        if not ready:
            return None
        entry = ready.popleft()
        size = len(entry.message.body)
        self._ready_bytes -= size
        self._unacked += 1
        self._unacked_bytes += size
        self._got += 1
        if entry.redelivered:
            self._redelivered += 1
        if entry.stored is not None and entry.seq > self.delivered_mark:
            self._mark_delivered(entry.seq)
        if self._timed:
            self._expire()  # the new head, if expired, goes before get-ok reports the count
        elif not self._page_at:
            self._tail.check_refill(len(ready))
        return entry

    def add_consumer(self, consumer: Consumer) -> None:
        self._had_consumer = True
        self._unused_timer.cancel()
        if self._consumers.register(consumer):
            self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        consumers = self._consumers
        if not consumers.unregister(consumer):
            return
        if consumers.promote():
            # The new active consumer receives from the next loop turn, so that a closing
            # channel's unacked messages, requeued right after, reach it first.
            self._clock.loop().call_soon(self._dispatch_if_alive)
        if not consumers.total:
            if self.auto_delete and self._had_consumer and self.on_unused:
                self.on_unused(self)
            elif self._expires is not None:
                self._arm_expires()

    def _dispatch_if_alive(self) -> None:
        if not self._deleted:
            self.dispatch()

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        return self._consumers.everyone()

    @property
    def active_consumer(self) -> Consumer | None:
        """Single active consumer: the one receiving (None on other queues)."""
        return self._consumers.active()

    # -- settlement ----------------------------------------------------------------------

    def settle(self, entry: QueueEntry) -> None:
        entry.consumer = None
        self._unacked -= 1
        self._unacked_bytes -= len(entry.message.body)
        self._acked += 1
        if entry.stored is not None:
            self._unstore(entry)

    def discard(self, entry: QueueEntry, reason: str) -> None:
        entry.consumer = None
        self._unacked -= 1
        self._unacked_bytes -= len(entry.message.body)
        if entry.stored is not None:
            self._unstore(entry)
        self._dead_letter([entry.message], reason)

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Entries go back to their original places (by publish order, within their priority),
        marked redelivered. Their expiry stays what it was (TTL counts from publish)."""
        if self._deleted:
            for entry in entries:
                if entry.stored is not None:
                    self._unstore(entry)
            return
        ready = self._ready
        place = ready.requeue if self._prio else None
        count = 0
        size = 0
        timed = False
        # Entries come back in reverse so that each lands at the head in front of later ones.
        for entry in sorted(entries, key=_seq, reverse=True):
            count += 1
            entry.consumer = None
            entry.redelivered = True
            size += len(entry.message.body)
            if entry.expires is not None:
                timed = True
            if place is not None:
                place(entry)
            elif not ready or entry.seq < ready[0].seq:
                ready.appendleft(entry)
            else:
                insort(ready, entry, key=_seq)
        self._unacked -= count
        self._unacked_bytes -= size
        self._ready_bytes += size
        if timed:
            self._timed = True
        if self._drops_head:
            self._drop_head()  # as rabbit_amqqueue_process:requeue_and_run
        self.dispatch()  # drops expired heads too

    # -- persistence and paging ------------------------------------------------------------

    def attach_store(self, store: MessageStore, qid: int) -> None:
        """Persistent messages published from now on are stored under queue id ``qid``."""
        self._store = store
        self.store_qid = qid

    def enable_paging(self, store: MessageStore, window: int) -> None:
        """Hold at most ``window`` ready entries in memory, the rest in ``store`` (not for
        priority queues, nor with a window of 0)."""
        if window <= 0 or self._prio:
            return
        if not self.store_qid:
            self.store_qid = store.transient_qid()
        tail = self._tail
        tail.enable(store, window)
        self._page_at = window if not tail.count else 0

    @property
    def page_window(self) -> int:
        """Ready entries held in memory at most; 0: the queue does not page."""
        return self._tail.window

    def tail_loaded(self, rows: list[Any] | None) -> None:
        """A background read of the tail finished (rows as ``message_store.TAIL_SQL``)."""
        entries = self._tail.loaded(None if self._deleted else rows)  # a deleted queue takes nothing
        if entries is None:
            return
        if entries:
            self._take_tail(entries)
        if not self._page_at:
            self._tail.check_refill(len(self._ready))
        self.dispatch()
        if self._timed:
            self._expire()

    def _load_now(self) -> bool:
        """The head is empty and an entry is needed now (basic.get, drop-head): read at once."""
        entries = self._tail.load_now()
        if not entries:  # only if the tail was miscounted: forget it rather than loop
            log.error("queue %s: %d paged messages not found", self.name, self._tail.count)
            self._drop_tail(rows=False)
            return False
        self._take_tail(entries)
        return True

    def _take_tail(self, entries: list[QueueEntry]) -> None:
        """Entries read back from the tail (in order) join the head."""
        if not self._tail.take(entries, self._append_ready(entries)):
            self._page_at = self._tail.window

    def _drop_tail(self, rows: bool) -> int:
        """The paged entries leave the queue (``rows``: their rows go with the next batch);
        returns the seq they started from."""
        self._page_at = self._tail.window
        return self._tail.drop(rows)

    def recover_tail(self, count: int, size: int, tail_seq: int) -> None:
        """Recovery: ``count`` stored entries from ``tail_seq`` on stay on disk."""
        self._tail.recover(count, size, tail_seq)
        self._page_at = 0

    def _append_ready(self, entries: list[QueueEntry]) -> int:
        """Entries (in sequence order, after every ready one) become ready; returns their body bytes."""
        append = self._ready.append
        size = 0
        timed = False
        for entry in entries:
            append(entry)
            size += len(entry.message.body)
            if entry.expires is not None:
                timed = True
        self._ready_bytes += size
        if timed:
            self._timed = True
        return size

    def _unstore(self, entry: QueueEntry) -> None:
        """The entry left the queue for good: its row goes with the next batch."""
        self._store.remove(entry, None if self._deleted else self.store_qid)  # type: ignore[union-attr]

    def _mark_delivered(self, seq: int) -> None:
        self.delivered_mark = seq
        self._store.mark_delivered(self.store_qid, self)  # type: ignore[union-attr]

    def reserve_seqs(self, next_seq: int) -> None:
        """Recovery: new publishes number after the stored entries."""
        if next_seq > self._next_seq:
            self._seq_base += next_seq - self._next_seq
            self._next_seq = next_seq

    def recover_entries(self, entries: list[QueueEntry]) -> None:
        """Recovery: stored entries (in sequence order) become ready, before any new publish."""
        mark = self.delivered_mark
        for entry in entries:
            if entry.redelivered and entry.seq > mark:
                mark = entry.seq
        self.delivered_mark = mark
        self._append_ready(entries)

    def recovered(self) -> None:
        """Recovery done for every queue: apply length limits and expiry to what came back."""
        if self._drops_head:
            self._drop_head()
        if self._timed:
            self._expire()

    # -- management ----------------------------------------------------------------------

    def purge(self) -> int:
        count = len(self._ready) + self._tail.count
        if not self._page_at:
            self._drop_tail(rows=True)
        if self._store is not None:
            for entry in self._ready:
                if entry.stored is not None:
                    self._unstore(entry)
        self._ready.clear()
        self._ready_bytes = 0
        self._timed = self._ttl is not None
        return count

    def delete(self) -> int:
        self._deleted = True
        self._head_timer.cancel()
        self._unused_timer.cancel()
        count = len(self._ready) + self._tail.count
        store = self._store
        # A durable queue's paged rows go with its other rows (queue_deleted), others' now.
        tail_from = self._drop_tail(rows=store is None) if not self._page_at else None
        if store is not None:
            store.queue_deleted(self.store_qid, tail_from)  # its rows go at once; _unstore skips them
            for entry in self._ready:
                if entry.stored is not None:
                    store.remove(entry, None)
        self._ready.clear()
        self._ready_bytes = 0
        self.cancel_consumers()
        return count

    def cancel_consumers(self) -> None:
        """Every consumer goes (basic.cancel to those whose clients take it); what they hold
        unacked stays theirs until acked or returned."""
        for consumer in self._consumers.release():
            consumer.cancelled_by_server()

    @property
    def message_count(self) -> int:
        return len(self._ready) + self._tail.count

    @property
    def consumer_count(self) -> int:
        return self._consumers.total

    @property
    def unacked_count(self) -> int:
        return self._unacked

    def stats(self) -> dict[str, Any]:
        """RabbitMQ's queue counters (names as its HTTP API): lengths, bytes, message totals."""
        tail = self._tail
        ready = len(self._ready) + tail.count
        ready_bytes = self._ready_bytes + tail.bytes
        delivered = self._delivered + self._delivered_no_ack
        stats: dict[str, Any] = {
            "messages": ready + self._unacked,
            "messages_ready": ready,
            "messages_unacknowledged": self._unacked,
            "message_bytes": ready_bytes + self._unacked_bytes,
            "message_bytes_ready": ready_bytes,
            "message_bytes_unacknowledged": self._unacked_bytes,
            "messages_ready_ram": len(self._ready),  # the rest of the ready ones are paged out
            "messages_paged_out": tail.count,
            "consumers": self.consumer_count,
            "publish": self._next_seq - self._seq_base,
            "deliver": self._delivered,
            "deliver_no_ack": self._delivered_no_ack,
            "get": self._got,
            "deliver_get": delivered + self._got,
            "redeliver": self._redelivered,
            "ack": self._acked,
        }
        if self._consumers.single_active:
            active = self.active_consumer
            stats["single_active_consumer_tag"] = active.tag if active is not None else None
        return stats


def _seq(entry: QueueEntry) -> int:
    return entry.seq
