"""Counters and latency histograms, as workers collect them and the coordinator merges them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: what every producer and consumer counts, in this order in a ``Snapshot``
COUNTERS = (
    "published",
    "confirmed",
    "nacked",
    "returned",
    "received",
    "bad",
    "out_of_order",
    "gaps",
    "foreign",
    "redelivered",
    "blocked",
)

_SUB_BITS = 7  # 128 buckets per power of two above 256: values within 0.8 %
_LINEAR = 2 << _SUB_BITS


def bucket(value: int) -> int:
    """The histogram bucket of a non-negative integer: exact below 256, log-linear above."""
    if value < _LINEAR:
        return value
    shift = value.bit_length() - _SUB_BITS - 1
    return (shift << _SUB_BITS) + (value >> shift)


def bucket_value(index: int) -> int:
    """The middle of a bucket's range."""
    if index < _LINEAR:
        return index
    shift = (index >> _SUB_BITS) - 1
    low = (index - (shift << _SUB_BITS)) << shift
    return low + ((1 << shift) >> 1)


class Histogram:
    """Latencies in microseconds: bucket counts, count, sum, exact min and max."""

    __slots__ = ("counts", "n", "total", "min", "max")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.total = 0
        self.min = -1
        self.max = -1

    def add(self, value: int, count: int = 1) -> None:
        """``count`` samples of ``value`` (negative values count as 0)."""
        if value < 0:
            value = 0
        index = value if value < _LINEAR else bucket(value)
        counts = self.counts
        counts[index] = counts.get(index, 0) + count
        self.n += count
        self.total += value * count
        if value > self.max:
            self.max = value
        if value < self.min or self.min < 0:
            self.min = value

    def merge(self, other: Histogram) -> None:
        if not other.n:
            return
        counts = self.counts
        for index, count in other.counts.items():
            counts[index] = counts.get(index, 0) + count
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)
        self.min = other.min if self.min < 0 else min(self.min, other.min)

    def take(self) -> Histogram:
        """A copy of what was collected so far; this one starts again empty."""
        taken = Histogram()
        taken.counts, taken.n, taken.total, taken.min, taken.max = (
            self.counts,
            self.n,
            self.total,
            self.min,
            self.max,
        )
        self.counts, self.n, self.total, self.min, self.max = {}, 0, 0, -1, -1
        return taken

    def percentile(self, q: float) -> int:
        """The value at quantile ``q`` (0..1); 0 when empty."""
        if not self.n:
            return 0
        if q <= 0:
            return self.min
        target = max(1, math.ceil(q * self.n))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= target:
                return max(self.min, min(bucket_value(index), self.max))
        return self.max

    def summary(self) -> dict[str, int]:
        """min, median, 75th, 95th, 99th percentile, max, mean and count."""
        return {
            "min": self.percentile(0),
            "median": self.percentile(0.5),
            "p75": self.percentile(0.75),
            "p95": self.percentile(0.95),
            "p99": self.percentile(0.99),
            "max": max(self.max, 0),
            "mean": self.total // self.n if self.n else 0,
            "n": self.n,
        }


@dataclass
class Snapshot:
    """What one worker process reports at a tick or at the end: cumulative counters since the
    start, and the latencies collected since its previous snapshot."""

    elapsed: float
    counters: tuple[int, ...]
    #: CPU seconds the worker process used since the start
    cpu: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    confirm_latency: Histogram = field(default_factory=Histogram)

    def counter(self, name: str) -> int:
        return self.counters[COUNTERS.index(name)]


def add_counters(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


ZERO = (0,) * len(COUNTERS)
