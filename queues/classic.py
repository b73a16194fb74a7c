"""The classic queue: a FIFO of entries in memory, round-robin over consumers by priority.

Length limits (``x-max-length``, ``x-max-length-bytes``) count ready messages only, as RabbitMQ's
classic queue does: unacked messages do not count. With ``x-overflow`` ``drop-head`` (the
default) the oldest ready messages are dropped once the queue is over a limit; with
``reject-publish`` (or ``reject-publish-dlx``) a publish that would take the queue over a limit
is refused, which a confirm-mode publisher sees as basic.nack.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from amqp_server.errors import PRECONDITION_FAILED, ChannelError
from amqp_server.field_types import amqp_type_name
from queues.base import Consumer, QueueEntry, QueueType

# rabbit_misc:check_expiry's ceiling for x-expires and x-message-ttl (ten years in ms).
MAX_EXPIRY = 315_360_000_000
MAX_PRIORITY = 255
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
QUEUE_MODES = ("default", "lazy")
QUEUE_TYPES = ("classic", "quorum", "stream")
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


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# Each checker returns None when the value is acceptable, else the error term as RabbitMQ's
# ``~p`` prints it (rabbit_amqqueue:declare_args/0).


def _expected_integer(value: Any) -> str | None:
    return None if is_integer(value) else f'"expected integer, got {amqp_type_name(value)}"'


def _check_expiry(value: Any) -> str | None:
    if value < 0:
        return f"{{value_negative,{value}}}"
    if value > MAX_EXPIRY:
        return f"{{value_too_large,{value}}}"
    return None


def _check_expires(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _expected_integer(value)
    if error:
        return error
    if value == 0:
        return "{value_zero,0}"
    return _check_expiry(value)


def _check_message_ttl(value: Any, arguments: Mapping[str, Any]) -> str | None:
    return _expected_integer(value) or _check_expiry(value)


def _check_non_negative(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _expected_integer(value)
    if error:
        return error
    return f"{{value_negative,{value}}}" if value < 0 else None


def _check_longstr(value: Any) -> str | None:
    return None if isinstance(value, str | bytes) else f"{{unacceptable_type,{amqp_type_name(value)}}}"


def _check_dlx(value: Any, arguments: Mapping[str, Any]) -> str | None:
    return _check_longstr(value)


def _check_dlx_routing_key(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_longstr(value)
    if error:
        return error
    return "routing_key_but_no_dlx_defined" if "x-dead-letter-exchange" not in arguments else None


def _check_max_priority(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_non_negative(value, arguments)
    if error:
        return error
    return f"{{max_value_exceeded,{value}}}" if value > MAX_PRIORITY else None


def _check_overflow(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_longstr(value)
    if error:
        return error
    return None if _text(value) in OVERFLOW_MODES else "invalid_overflow"


def _check_queue_mode(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_longstr(value)
    if error:
        return error
    return None if _text(value) in QUEUE_MODES else f"\"unsupported queue mode '{_text(value)}'\""


def _check_single_active_consumer(value: Any, arguments: Mapping[str, Any]) -> str | None:
    return None if isinstance(value, bool) else f"{{unacceptable_type,{amqp_type_name(value)}}}"


def _check_queue_type(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_longstr(value)
    if error:
        return error
    return None if _text(value) in QUEUE_TYPES else f"\"unsupported queue type '{_text(value)}'\""


# In RabbitMQ's order: when several arguments are bad, the first in this list is reported.
DECLARE_ARGS: tuple[tuple[str, Callable[[Any, Mapping[str, Any]], str | None]], ...] = (
    ("x-expires", _check_expires),
    ("x-message-ttl", _check_message_ttl),
    ("x-dead-letter-exchange", _check_dlx),
    ("x-dead-letter-routing-key", _check_dlx_routing_key),
    ("x-max-length", _check_non_negative),
    ("x-max-length-bytes", _check_non_negative),
    ("x-max-priority", _check_max_priority),
    ("x-overflow", _check_overflow),
    ("x-queue-mode", _check_queue_mode),
    ("x-single-active-consumer", _check_single_active_consumer),
    ("x-queue-type", _check_queue_type),
)


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
        arguments = self.arguments
        max_length = arguments.get("x-max-length")
        max_bytes = arguments.get("x-max-length-bytes")
        self._max_length: int | None = max_length if is_integer(max_length) else None
        self._max_bytes: int | None = max_bytes if is_integer(max_bytes) else None
        self._limited = self._max_length is not None or self._max_bytes is not None
        self._reject_publish = _text(arguments.get("x-overflow", "drop-head")) != "drop-head"
        self._ready_bytes = 0  # body bytes of ready entries; kept only when _max_bytes is set
        # Set by the vhost: deletes this queue when auto-delete says so.
        self.on_unused: Callable[[QueueType], None] | None = None

    @classmethod
    def validate_arguments(cls, arguments: Mapping[str, Any], where: str = "queue") -> None:
        """rabbit_amqqueue:check_declare_arguments, then the classic type's supported arguments.

        ``where`` names the queue as RabbitMQ does: ``queue 'q' in vhost '/'``.
        """
        for key, checker in DECLARE_ARGS:
            if key in arguments:
                error = checker(arguments[key], arguments)
                if error is not None:
                    raise ChannelError(PRECONDITION_FAILED, f"invalid arg '{key}' for {where}: {error}")
        for key in UNSUPPORTED_ARGS:
            if key in arguments:
                raise ChannelError(
                    PRECONDITION_FAILED, f"invalid arg '{key}' for {where} of queue type rabbit_classic_queue"
                )

    # -- publish path --------------------------------------------------------------------

    def publish(self, message: Any) -> bool:
        if self._limited and self._reject_publish and self._would_overflow(message):
            return False
        seq = self._next_seq
        self._next_seq = seq + 1
        entry = QueueEntry(message, seq, self)
        if not self._ready and self._consumers:
            consumer = self._pick_consumer()
            if consumer is not None:
                self._hand_to(consumer, entry)
                return True
        self._ready.append(entry)
        if self._limited:
            if self._max_bytes is not None:
                self._ready_bytes += len(message.body)
            if not self._reject_publish:
                self._drop_head()
        return True

    def _would_overflow(self, message: Any) -> bool:
        """reject-publish: would this message take the ready messages over a limit?"""
        max_length = self._max_length
        if max_length is not None and len(self._ready) + 1 > max_length:
            return True
        max_bytes = self._max_bytes
        return max_bytes is not None and self._ready_bytes + len(message.body) > max_bytes

    def _drop_head(self) -> None:
        """drop-head: drop the oldest ready messages while the queue is over a limit."""
        ready = self._ready
        max_length = self._max_length
        max_bytes = self._max_bytes
        while ready and (
            (max_length is not None and len(ready) > max_length)
            or (max_bytes is not None and self._ready_bytes > max_bytes)
        ):
            entry = ready.popleft()
            if max_bytes is not None:
                self._ready_bytes -= len(entry.message.body)

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
        track_bytes = self._max_bytes is not None
        while ready and self._consumers:
            consumer = self._pick_consumer()
            if consumer is None:
                return
            entry = ready.popleft()
            if track_bytes:
                self._ready_bytes -= len(entry.message.body)
            self._hand_to(consumer, entry)

    def get(self) -> QueueEntry | None:
        if not self._ready:
            return None
        entry = self._ready.popleft()
        if self._max_bytes is not None:
            self._ready_bytes -= len(entry.message.body)
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

    def discard(self, entry: QueueEntry, reason: str) -> None:
        self.settle(entry)
        if self.dead_letter is not None and self.settings.dead_letter_exchange is not None:
            self.dead_letter(self, [entry.message], reason)

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Entries go back to their original places (by publish order), marked redelivered."""
        if self._deleted:
            return
        ready = self._ready
        count = 0
        added_bytes = 0
        # Entries come back in reverse so that each lands at the head in front of later ones.
        for entry in sorted(entries, key=_seq, reverse=True):
            count += 1
            entry.consumer = None
            entry.redelivered = True
            added_bytes += len(entry.message.body)
            if not ready or entry.seq < ready[0].seq:
                ready.appendleft(entry)
            else:
                insort(ready, entry, key=_seq)
        self._unacked -= count
        if self._limited:
            if self._max_bytes is not None:
                self._ready_bytes += added_bytes
            if not self._reject_publish:
                self._drop_head()  # as rabbit_amqqueue_process:requeue_and_run
        self.dispatch()

    # -- management ----------------------------------------------------------------------

    def purge(self) -> int:
        count = len(self._ready)
        self._ready.clear()
        self._ready_bytes = 0
        return count

    def delete(self) -> int:
        self._deleted = True
        count = len(self._ready)
        self._ready.clear()
        self._ready_bytes = 0
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
