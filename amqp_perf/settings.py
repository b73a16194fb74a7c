"""What one run is asked to do: the parsed command line, shared by the coordinator and workers."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_URI = "amqp://guest:guest@localhost:5672/%2F"
FLAGS = ("persistent", "mandatory")


@dataclass(frozen=True)
class Settings:
    """PerfTest's options (same meanings), plus a few of our own (processes, max_inflight)."""

    uri: str = DEFAULT_URI
    producers: int = 1
    consumers: int = 1
    size: int = 16
    flags: tuple[str, ...] = ()
    #: None: no confirms; 0: confirms, no limit; N: at most N unconfirmed per producer
    confirm: int | None = None
    qos: int = 0
    #: 0 or 1: ack each message; N > 1: one multiple ack every N messages
    multi_ack_every: int = 0
    autoack: bool = False
    #: publish rate limit per producer, msg/s; 0 = unlimited
    rate: float = 0.0
    #: seconds; 0 = until interrupted
    time: float = 0.0
    queues: tuple[str, ...] = ()
    #: None: an exchange named after the type (PerfTest's default "direct"); "" = default exchange
    exchange: str | None = None
    exchange_type: str = "direct"
    routing_key: str | None = None
    queue_pattern: str | None = None
    queue_pattern_from: int | None = None
    queue_pattern_to: int | None = None
    predeclared: bool = False
    auto_delete: bool = True
    #: named queues are quorum queues (durable whatever the flags)
    quorum: bool = False
    test_id: str = "test"
    #: worker processes; 0 = min(cpus, producers + consumers)
    processes: int = 0
    #: closed loop: a producer waits while this many deliveries of its messages are unconsumed
    max_inflight: int = 0
    frame_max: int = 131072

    @property
    def persistent(self) -> bool:
        return "persistent" in self.flags

    @property
    def mandatory(self) -> bool:
        return "mandatory" in self.flags

    @property
    def confirms(self) -> bool:
        return self.confirm is not None

    @property
    def ack_every(self) -> int:
        """Messages per ack: multi-ack-every, but never more than the prefetch window (which
        would stall the consumer)."""
        every = max(1, self.multi_ack_every)
        return min(every, self.qos) if self.qos else every

    def pattern_queues(self) -> list[str]:
        """The queue names of --queue-pattern (printf-style, e.g. ``perf-test-%d``), or []."""
        if self.queue_pattern is None or self.queue_pattern_from is None or self.queue_pattern_to is None:
            return []
        return [self.queue_pattern % i for i in range(self.queue_pattern_from, self.queue_pattern_to + 1)]
