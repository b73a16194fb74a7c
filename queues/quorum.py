"""The quorum queue (``x-queue-type: quorum``) with RabbitMQ 3.10's semantics, on one node.

A quorum queue is a classic queue (``queues.classic``) with these differences, as RabbitMQ
3.10's ``rabbit_quorum_queue`` / ``rabbit_fifo`` behave:

* declare: durable, not exclusive, not auto-delete; priorities, lazy mode, master locators
  and stream arguments are refused; ``x-delivery-limit``, ``x-dead-letter-strategy``,
  ``x-quorum-initial-group-size``, ``x-queue-leader-locator`` and ``x-max-in-memory-*`` taken;
* every message is kept on disk whatever its delivery_mode, and confirmed once it is there;
* a returned message (nack/reject with requeue, basic.recover, its channel closed) goes to the
  back of the queue and its delivery count grows; past ``delivery-limit`` it is dropped or
  dead-lettered (``delivery_limit``); deliveries of returned messages, and every basic.get,
  carry the count in an ``x-delivery-count`` header;
* ``reject-publish`` is a soft limit: publishes are refused once the queue is over its limit,
  until it is back to 80% of it; ``reject-publish-dlx`` acts as ``drop-head``;
* dead-lettering is at-most-once, or at-least-once with ``dead-letter-strategy: at-least-once``
  and ``overflow: reject-publish`` (``queues.at_least_once``).

It is a single-member group for now: replication across nodes (issue 15) will run the same
state changes from the cluster's Raft log. They are kept in one place for that: every change
to the queue's state goes through the ``QueueType`` methods (publish, get, dispatch, settle,
discard, requeue, purge, delete), which a replicated log can apply in order on every member;
the delivery counts (``_returns``) and the delivered copies (``_copies``) change only there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from amqp_server.core.message import Message
from amqp_server.protocol.content import FLAG_HEADERS, join_properties, split_properties
from amqp_server.protocol.errors import PRECONDITION_FAILED, ChannelError
from amqp_server.protocol.tables import L_LONG, decode_entries, encode_entries, set_table_value
from queues.arguments import TYPE_ARGS
from queues.at_least_once import RetainedDeadLetters
from queues.base import Consumer, QueueEntry
from queues.classic import ClassicQueue

# Arguments RabbitMQ knows but refuses on a quorum queue ("... of queue type rabbit_quorum_queue").
UNSUPPORTED_ARGS = frozenset(
    (
        "x-max-priority",
        "x-queue-mode",
        "x-queue-master-locator",
        "x-queue-version",
        "x-max-age",
        "x-stream-max-segment-size-bytes",
        "x-initial-cluster-size",
    )
)
SOFT_LIMIT = 0.8  # rabbit_fifo's ?LOW_LIMIT: reject-publish lets publishes in again below it
DELIVERY_COUNT = b"x-delivery-count"


class QuorumQueue(ClassicQueue):
    type_name = "quorum"
    stores_every_message: ClassVar[bool] = True
    type_arguments: ClassVar[frozenset[str]] = TYPE_ARGS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Returned messages (the message a ready entry holds) -> times returned.
        self._returns: dict[Any, int] = {}
        # Unacked entries delivered with an x-delivery-count header -> the message they hold.
        self._copies: dict[QueueEntry, Any] = {}
        self._blocked = False  # reject-publish: over the limit, not yet back under the soft one
        self._leaving: list[QueueEntry] = []  # at-least-once: unstored at the end of this turn
        self._retained: RetainedDeadLetters | None = None
        super().__init__(*args, **kwargs)

    def _configure(self) -> None:
        super()._configure()
        self._special = True  # every publish takes the path that stores it
        if self._limits.reject_dlx:  # rabbit_quorum_queue:overflow/3: drop-head instead
            self._drops_head = self._limits.limited
            self._rejects = False
        settings = self.settings
        self._at_least_once = (settings.dead_letter_strategy == "at-least-once"
                               and settings.overflow == "reject-publish"
                               and settings.dead_letter_exchange is not None)  # fmt: skip

    @classmethod
    def validate_arguments(cls, arguments: Mapping[str, Any], where: str) -> None:
        for key in arguments:
            if key in UNSUPPORTED_ARGS:
                raise ChannelError(
                    PRECONDITION_FAILED, f"invalid arg '{key}' for {where} of queue type rabbit_quorum_queue"
                )

    @classmethod
    def validate_properties(cls, *, durable: bool, exclusive: bool, auto_delete: bool, where: str) -> None:
        for refused, name in (
            (auto_delete, "auto-delete"),
            (exclusive, "exclusive-owner"),
            (not durable, "non-durable"),
        ):
            if refused:
                raise ChannelError(PRECONDITION_FAILED, f"invalid property '{name}' for {where}")

    # -- overflow ------------------------------------------------------------------------

    def _would_overflow(self, size: int) -> bool:
        """reject-publish as rabbit_fifo: refused while the queue is over a limit (so the
        publish that takes it over is still taken), and then until it is back to 80%."""
        limits = self._limits
        ready = len(self._ready) + self._tail.count
        ready_bytes = self._ready_bytes + self._tail.bytes
        max_length = limits.max_length
        max_bytes = limits.max_bytes
        if (max_length is not None and ready > max_length) or (
            max_bytes is not None and ready_bytes > max_bytes
        ):
            self._blocked = True
        elif self._blocked:
            self._blocked = (max_length is not None and ready > int(max_length * SOFT_LIMIT)) or (
                max_bytes is not None and ready_bytes > int(max_bytes * SOFT_LIMIT)
            )
        return self._blocked

    # -- deliveries ----------------------------------------------------------------------

    def _hand_to(self, consumer: Consumer, entry: QueueEntry) -> None:
        count = self._returns.get(entry.message)
        if count:
            self._deliver_counted(entry, count, consumer.no_ack)
        super()._hand_to(consumer, entry)

    def get(self) -> QueueEntry | None:
        entry = super().get()
        if entry is not None:
            self._deliver_counted(entry, self._returns.get(entry.message, 0), False)
        return entry

    def _deliver_counted(self, entry: QueueEntry, count: int, gone: bool) -> None:
        """The entry goes out with its delivery count in an x-delivery-count header; the
        message as stored stays behind for a requeue or a dead-letter (unless it is ``gone``)."""
        message = entry.message
        if gone:
            self._returns.pop(message, None)
        else:
            self._copies[entry] = message
        entry.message = with_delivery_count(message, count)

    def _stored_message(self, entry: QueueEntry) -> Any:
        """Undo ``_deliver_counted``: the entry holds its message as stored again."""
        message = entry.message = self._copies.pop(entry, entry.message)
        return message

    # -- settlement ----------------------------------------------------------------------

    def settle(self, entry: QueueEntry) -> None:
        # entry.message stays the delivered copy: a basic.get without ack is answered after this.
        self._returns.pop(self._copies.pop(entry, entry.message), None)
        super().settle(entry)

    def discard(self, entry: QueueEntry, reason: str) -> None:
        self._stored_message(entry)
        super().discard(entry, reason)  # _dead_letter forgets its count

    def _dead_letter(self, messages: list[Any], reason: str) -> None:
        returns = self._returns
        if returns:
            for message in messages:
                returns.pop(message, None)
        if not self._at_least_once or self._deleted or self.dead_letter is None:
            super()._dead_letter(messages, reason)
            return
        # At least once: each stays (those just leaving the store stay stored) until taken.
        leaving = {id(entry.message): entry for entry in self._leaving}
        held = [leaving.pop(id(message), None) or QueueEntry(message, 0, self) for message in messages]
        self._leaving = list(leaving.values())
        self._hold(held, reason)

    # -- at-least-once dead-lettering (queues.at_least_once) ---------------------------------

    def _unstore(self, entry: QueueEntry) -> None:
        if not self._at_least_once or self._deleted:
            super()._unstore(entry)
            return
        # Leaving the store at the end of this turn, unless it is being dead-lettered.
        if not self._leaving:
            self._clock.loop().call_soon(self._flush_leaving)
        self._leaving.append(entry)

    def _flush_leaving(self) -> None:
        leaving, self._leaving = self._leaving, []
        for entry in leaving:
            if entry.stored is not None:
                super()._unstore(entry)

    def _release_dead(self, entry: QueueEntry) -> None:
        if entry.stored is not None:
            super()._unstore(entry)

    def _hold(self, entries: list[QueueEntry], reason: str) -> None:
        if self._retained is None:
            self._retained = RetainedDeadLetters(
                lambda message, why: self.dead_letter(self, [message], why) if self.dead_letter else None,
                self._release_dead, self._clock.loop(),
            )  # fmt: skip
        store = self._store
        if store is not None and hasattr(store, "held"):  # replicated: a new leader keeps them
            store.held([(entry.seq, reason) for entry in entries if entry.stored is not None])
        for entry in entries:
            self._retained.hold(entry, reason)

    def restore_dead_letters(self, held: Iterable[tuple[QueueEntry, str]]) -> None:
        """Entries recovered from a replicated log that were being dead-lettered."""
        by_reason: dict[str, list[QueueEntry]] = {}
        for entry, reason in held:
            by_reason.setdefault(reason, []).append(entry)
        for reason, entries in by_reason.items():
            self._hold(entries, reason)

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Returned entries go to the back of the queue in the order they come back (the order
        they were delivered in), each returned once more; past the delivery limit one is
        dead-lettered (``delivery_limit``)."""
        entries = list(entries)
        for entry in entries:
            self._stored_message(entry)
        if self._deleted:
            super().requeue(entries)
            return
        limit = self.settings.delivery_limit
        returns = self._returns
        ready = self._ready
        size = 0
        back: list[QueueEntry] = []
        for entry in entries:
            count = returns.get(entry.message, 0) + 1
            if limit is not None and count > limit:
                self.discard(entry, "delivery_limit")
                continue
            returns[entry.message] = count
            entry.consumer = None
            entry.redelivered = True
            size += len(entry.message.body)
            if entry.expires is not None:
                self._timed = True
            back.append(entry)
        ready.extend(back)
        store = self._store
        if back and store is not None and hasattr(store, "returned"):  # replicated: counts survive a failover
            store.returned([(entry.seq, returns[entry.message]) for entry in back])
        self._unacked -= len(back)
        self._unacked_bytes -= size
        self._ready_bytes += size
        if self._drops_head:
            self._drop_head()
        self.dispatch()

    def restore_delivery_counts(self, counts: Iterable[tuple[QueueEntry, int]]) -> None:
        """Entries recovered from a replicated log, with the times each was returned."""
        for entry, count in counts:
            self._returns[entry.message] = count

    # -- management ----------------------------------------------------------------------

    def purge(self) -> int:
        returns = self._returns
        if returns:
            for entry in self._ready:
                returns.pop(entry.message, None)
        return super().purge()

    def delete(self) -> int:
        self._returns.clear()
        self._copies.clear()
        count = super().delete()
        self._flush_leaving()
        if self._retained is not None:
            for entry in self._retained.drop():
                self._release_dead(entry)
        return count

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        retained = self._retained
        stats["messages_dlx"] = len(retained.pending) if retained is not None else 0
        stats["message_bytes_dlx"] = retained.bytes if retained is not None else 0
        return stats


def with_delivery_count(message: Any, count: int) -> Message:
    """A copy of ``message`` whose headers carry ``x-delivery-count`` (a long, as
    rabbit_quorum_queue adds it through rabbit_basic:add_header)."""
    header = message.header
    properties = split_properties(header)
    raw = properties.get(FLAG_HEADERS)
    headers = decode_entries(raw, 4, len(raw)) if raw is not None else []
    properties[FLAG_HEADERS] = encode_entries(set_table_value(headers, DELIVERY_COUNT, L_LONG, count))
    copy = Message(
        message.exchange,
        message.routing_key,
        message.exchange_and_key,
        join_properties(header, properties),
        message.body,
    )
    copy._keys = message._keys  # noqa: SLF001
    return copy
