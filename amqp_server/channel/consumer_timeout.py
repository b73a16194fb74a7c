"""The delivery acknowledgement timeout (RabbitMQ's consumer_timeout): a channel whose oldest
unacked delivery is older than the timeout is closed with 406.

The check needs no per-delivery timestamp: each tick remembers the newest delivery tag at
that moment; an unacked tag no newer than a tick at least a timeout old is late.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import TYPE_CHECKING

from amqp_server.protocol.errors import PRECONDITION_FAILED, ChannelError

if TYPE_CHECKING:
    from amqp_server.channel.channel import Channel

CONSUMER_TIMEOUT_TICK = 60.0  # seconds between consumer-timeout checks at most (rabbit_channel's tick)


class ConsumerTimeout:
    """The timer of one channel, started at channel open (when RabbitMQ reads the setting)."""

    __slots__ = ("channel", "timeout_ms", "_ticks_needed", "_tick_tags", "_ticks", "_timer")

    def __init__(self, channel: Channel, timeout_ms: int) -> None:
        self.channel = channel
        self.timeout_ms = timeout_ms
        interval = min(timeout_ms / 1000, CONSUMER_TIMEOUT_TICK)
        self._ticks_needed = math.ceil(timeout_ms / 1000 / interval)
        self._tick_tags: deque[tuple[float, int]] = deque()  # (tick, newest delivery tag then)
        self._ticks = 0
        self._timer: asyncio.TimerHandle | None = channel.connection.loop.call_later(interval, self._tick, interval)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self, interval: float) -> None:
        """Close the channel when its oldest unacked delivery is older than the timeout.

        Tick ``n`` records the newest delivery tag so far. A delivery whose tag is no newer
        than the one recorded ``ticks_needed`` ticks ago has been unacked for at least the
        timeout, so the check is one comparison with the oldest unacked tag.
        """
        self._timer = None
        channel = self.channel
        if channel.closing or channel.connection.closed:
            return
        self._ticks = tick = self._ticks + 1
        ticks = self._tick_tags
        needed = self._ticks_needed
        while len(ticks) >= 2 and tick - ticks[1][0] >= needed:
            ticks.popleft()
        unacked = channel.unacked
        if unacked and ticks and tick - ticks[0][0] >= needed and next(iter(unacked)) <= ticks[0][1]:
            channel.close_with(
                ChannelError(
                    PRECONDITION_FAILED,
                    f"delivery acknowledgement on channel {channel.number} timed out. Timeout value used: "
                    f"{self.timeout_ms} ms. This timeout value can be configured, see consumers "
                    "doc guide to learn more",
                )
            )
            return
        ticks.append((tick, channel.next_delivery_tag))
        self._timer = channel.connection.loop.call_later(interval, self._tick, interval)
