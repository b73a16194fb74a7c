"""The timers of a classic queue: message TTL at the head, and x-expires.

* Message TTL (message-ttl and the per-message ``expiration``, the lower wins) is fixed when
  the message is enqueued. As in RabbitMQ, messages expire only at the head: an expired
  message behind a live one stays (and counts) until it reaches the head, then it is dropped
  or dead-lettered (``expired``) and never delivered. So one timer per queue is enough, for the
  head's expiry (``HeadTimer``).
* x-expires: the queue deletes itself after that long without consumers, basic.get or
  redeclaration (``UnusedTimer``).

Both run on the queue's ``Clock``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Clock:
    """The event loop of a queue's timers, found when first needed: a queue may be built
    outside a running loop."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop = _running_loop()

    def now(self) -> float:
        """The loop's time (the expiry times of entries are in it)."""
        loop = self._loop  # as loop(), inline: once per message on a TTL queue
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (an error outside a running one)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def loop_if_running(self) -> asyncio.AbstractEventLoop | None:
        """The loop, or None outside a running one."""
        loop = self._loop
        if loop is None:
            loop = self._loop = _running_loop()
        return loop


class _Timer:
    """One pending call of ``fire`` at most."""

    __slots__ = ("_clock", "_fire", "_handle")

    def __init__(self, clock: Clock, fire: Callable[[], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None

    def _fired(self) -> None:
        self._handle = None
        self._fire()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class HeadTimer(_Timer):
    """Calls ``fire`` at the head entry's expiry time."""

    __slots__ = ("_at",)

    def __init__(self, clock: Clock, fire: Callable[[], None]) -> None:
        super().__init__(clock, fire)
        self._at = 0.0

    def arm(self, when: float) -> None:
        """Fire at ``when`` (loop time) unless armed for earlier already."""
        handle = self._handle
        if handle is not None:
            if self._at <= when:
                return  # fires first, and the queue then arms it for the next head
            handle.cancel()
        self._at = when
        self._handle = self._clock.loop().call_at(when, self._fired)


class UnusedTimer(_Timer):
    """x-expires: calls ``fire`` once the queue has been unused for the time it was started with."""

    __slots__ = ()

    def restart(self, ms: int) -> None:
        """Count ``ms`` from now (outside a running loop there is nothing to count on)."""
        self.cancel()
        loop = self._clock.loop_if_running()
        if loop is not None:
            self._handle = loop.call_later(ms / 1000, self._fired)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
