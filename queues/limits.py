"""Length limits of a classic queue: max-length, max-length-bytes and what overflow does.

They count ready messages only, as RabbitMQ's classic queue does: unacked messages do not
count. With overflow ``drop-head`` (the default) the oldest ready messages are dropped
(dead-lettered, reason ``maxlen``) once the queue is over a limit; ``reject-publish`` refuses
a publish that would take it over (a confirm-mode publisher sees basic.nack);
``reject-publish-dlx`` refuses it and dead-letters it (``maxlen``).

The queue tests them itself (``ClassicQueue._would_overflow``, ``_drop_head``): they run per
publish, where a call per test would cost more than the test.
"""

from __future__ import annotations

from queues.settings import QueueSettings


class LengthLimits:
    """The limits of one queue's effective settings."""

    __slots__ = ("max_length", "max_bytes", "limited", "drop_head", "reject_publish", "reject_dlx")

    def __init__(self, settings: QueueSettings) -> None:
        self.max_length = settings.max_length
        self.max_bytes = settings.max_length_bytes
        self.limited = self.max_length is not None or self.max_bytes is not None
        reject = settings.overflow in ("reject-publish", "reject-publish-dlx")
        self.drop_head = self.limited and not reject  # the head goes while the queue is over
        self.reject_publish = self.limited and reject  # a publish that would go over is refused
        self.reject_dlx = settings.overflow == "reject-publish-dlx"
