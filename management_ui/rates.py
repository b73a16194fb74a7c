"""Rates and history from counters: RabbitMQ's ``*_details`` objects.

RabbitMQ's management agent samples every object's counters every
``collect_statistics_interval`` (5 s) and answers ``messages_details: {"rate": ...}``,
``message_stats: {"publish": n, "publish_details": {"rate": ...}}`` and so on. The ``Sampler``
does the same from what the broker already keeps: the queues', channels' and connections'
``stats()`` (counters kept in O(1) on the message path) read once per round, off the message
path; nothing is added per message. A round reads a few thousand objects per event-loop turn,
so that 10,000 queues do not hold the loop.

An object's ``History`` stores a sample only when it differs from the previous one, so idle
objects cost one sample, and stores it as machine integers; a value at a time is the last
sample at or before it. Queues, channels and connections keep ``OBJECT_RETENTION`` of history
(the dashboard's charts of one object span a minute), vhosts and the node ``RETENTION`` (RabbitMQ's
basic retention), one sample older than that being kept as the baseline.

Query parameters ``lengths_age``/``lengths_incr`` (queue lengths), ``msg_rates_age``/
``msg_rates_incr`` (message counters), ``data_rates_age``/``data_rates_incr`` (octets) and
``node_stats_age``/``node_stats_incr`` (node figures), in seconds, add ``samples``, ``avg`` and
``avg_rate`` to the details, as RabbitMQ does.

What RabbitMQ counts from events that this broker does not emit (connections and channels
opening and closing) is counted from what a round sees: a connection opened and closed between
two rounds is not counted, and the messages a connection moved after the last round before it
closed are not in the totals.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import os
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from management_ui.errors import bad_request

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker
    from amqp_server.core.events import Event

log = logging.getLogger(__name__)

RETENTION = 600.0  # seconds of history of the node and vhosts (RabbitMQ's basic retention)
OBJECT_RETENTION = 120.0  # seconds of history of each queue, channel and connection
MAX_RANGE = 500  # age / incr at most this (rabbit_mgmt_util ?MAX_RANGE)
CHUNK = 500  # objects read per event-loop turn during a round (about 5 ms of it)

#: The queue lengths (stats() keys) and the queue counters shown as message_stats.
LENGTHS = ("messages", "messages_ready", "messages_unacknowledged")
QUEUE_COUNTERS = ("publish", "deliver", "deliver_no_ack", "get", "deliver_get", "redeliver", "ack")
#: A channel's (and a connection's, summed) message_stats counters.
CHANNEL_COUNTERS = (
    "publish", "confirm", "return_unroutable", "drop_unroutable", "deliver", "deliver_no_ack", "get",
    "get_no_ack", "get_empty", "deliver_get", "redeliver", "ack",
)  # fmt: skip
OCTETS = ("recv_oct", "send_oct")
CHURN = (
    "connection_created", "connection_closed", "channel_created", "channel_closed", "queue_declared",
    "queue_created", "queue_deleted",
)  # fmt: skip
NODE = ("mem_used", "disk_free", "fd_used", "sockets_used", "proc_used")
ZERO_TRAFFIC = (0,) * (len(OCTETS) + len(CHANNEL_COUNTERS))

# Where each group sits in a kind's sample tuples.
QUEUE_LAYOUT = {"lengths": 0, "messages": len(LENGTHS)}
CONNECTION_LAYOUT = {"octets": 0, "messages": len(OCTETS)}
CHANNEL_LAYOUT = {"messages": 0}
VHOST_LAYOUT = {"lengths": 0, "octets": len(LENGTHS), "messages": len(LENGTHS) + len(OCTETS)}
OVERVIEW_LAYOUT = {**VHOST_LAYOUT, "churn": len(LENGTHS) + len(OCTETS) + len(CHANNEL_COUNTERS)}

#: The query parameter prefix that sets the range of each group of fields.
GROUPS = ("lengths", "msg_rates", "data_rates", "node_stats")


class History:
    """One object's samples, stored only when they change: ``times`` (ms) and, one sample after
    the other, ``values`` (``width`` integers a sample, in the order of the kind's fields)."""

    __slots__ = ("width", "retention", "times", "values")

    def __init__(self, width: int, retention: float) -> None:
        self.width = width
        self.retention = retention * 1000
        self.times = array("d")
        self.values = array("q")

    def add(self, now: float, values: tuple[int, ...]) -> None:
        if self.times and tuple(self.values[-self.width :]) == values:
            return
        self.times.append(now)
        self.values.extend(values)
        # Keep one sample at or before the horizon: the value at the start of the window.
        cut = bisect.bisect_right(self.times, now - self.retention) - 1
        if cut > 0:
            del self.times[:cut]
            del self.values[: cut * self.width]

    def at(self, when: float) -> tuple[int, ...] | None:
        index = bisect.bisect_right(self.times, when) - 1
        if index < 0:
            return None
        return tuple(self.values[index * self.width : (index + 1) * self.width])

    @property
    def last_change(self) -> float | None:
        return self.times[-1] if self.times else None


Range = tuple[int, int]  # (age, incr) in seconds


def ranges(query: Mapping[str, str]) -> dict[str, Range]:
    """The requested ranges by group; 400 ``invalid_range_parameters`` as rabbit_mgmt_util:range."""
    found = {}
    for group in GROUPS:
        age, incr = _int(query.get(f"{group}_age")), _int(query.get(f"{group}_incr"))
        if age is None or incr is None:
            continue
        if not (age > 0 and incr > 0 and age // incr <= MAX_RANGE):
            raise bad_request(f"Invalid range parameters: age {age}, incr {incr}", "invalid_range_parameters")
        found[group] = (age, incr)
    return found


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class Sampler:
    """Samples the broker's counters every ``interval`` seconds and answers rates from them."""

    def __init__(self, broker: Broker, interval: float) -> None:
        self.broker = broker
        self.interval = interval
        self.rounds: list[float] = []  # round times (ms), newest last, as far back as RETENTION
        self.histories: dict[Any, History] = {}
        # Octets and message counters of connections that are gone, by vhost: they stay in
        # the vhost's and the node's totals (RabbitMQ keeps them too).
        self.retired: dict[str, list[int]] = {}
        self.churn = dict.fromkeys(CHURN, 0)  # counted from the broker's events
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._round = asyncio.Lock()  # one round at a time: a round yields to the loop midway

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        events = self.broker.events
        self._unsubscribe = [
            events.subscribe(self._count, "queue.created", "queue.deleted", "channel.created", "channel.closed"),
            events.subscribe(self._connection_event, "connection.created", "connection.closed"),
        ]
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # noqa: BLE001 - a bad round must not end sampling
                log.exception("statistics round failed")
            await asyncio.sleep(self.interval)

    def _count(self, event: Event) -> None:
        churn = self.churn
        if event.name == "queue.created":
            churn["queue_created"] += 1
            churn["queue_declared"] += 1
        else:
            key = event.name.replace(".", "_")  # queue_deleted, channel_created, channel_closed
            churn[key] += 1

    def _connection_event(self, event: Event) -> None:
        connection = event.subject
        if event.name == "connection.created":
            self.churn["connection_created"] += 1
        elif connection.vhost is not None:  # an opened connection closed: its final counters stay
            self.churn["connection_closed"] += 1
            values = connection_sample(connection.stats())
            _accumulate(self.retired.setdefault(connection.vhost.name, [0] * len(values)), values)

    # -- a round ---------------------------------------------------------------------------

    async def sample(self) -> None:
        """One round: every queue, connection and channel, then the vhosts, the node totals
        and the node's own figures."""
        async with self._round:
            await self._sample()

    async def _sample(self) -> None:
        now = time.time() * 1000
        seen: set[Any] = set()
        broker = self.broker
        lengths: dict[str, list[int]] = {}
        count = 0
        for vhost in list(broker.vhosts.values()):
            totals = lengths[vhost.name] = [0, 0, 0]
            for queue in list(vhost.queues.values()):
                values = queue_sample(queue)
                _accumulate(totals, values[:3])
                self._add(queue, now, values, seen)
                count += 1
                if count % CHUNK == 0:
                    await asyncio.sleep(0)
        traffic = {name: list(values) for name, values in self.retired.items()}
        for connection in list(broker.connections):
            stats = connection.stats()
            values = connection_sample(stats)
            self._add(connection, now, values, seen)
            if stats["vhost"] is not None:
                _accumulate(traffic.setdefault(stats["vhost"], list(ZERO_TRAFFIC)), values)
            for channel in list(connection.channels.values()):
                message_stats = channel.stats()["message_stats"]
                self._add(channel, now, tuple(message_stats.get(key, 0) for key in CHANNEL_COUNTERS), seen)
        for name in broker.vhosts:
            vhost_values = (*lengths.get(name, (0, 0, 0)), *traffic.get(name, ZERO_TRAFFIC))
            self._add(("vhost", name), now, vhost_values, seen, RETENTION)
        node_lengths = [sum(values[i] for values in lengths.values()) for i in range(3)]
        node_traffic = [0] * len(ZERO_TRAFFIC)
        for values in traffic.values():
            _accumulate(node_traffic, values)
        churn = tuple(self.churn[key] for key in CHURN)
        self._add("overview", now, (*node_lengths, *node_traffic, *churn), seen, RETENTION)
        self._add("node", now, self.node_figures(), seen, RETENTION)
        for key in [key for key in self.histories if key not in seen]:
            del self.histories[key]
        self.rounds.append(now)
        cut = bisect.bisect_right(self.rounds, now - RETENTION * 1000) - 1
        if cut > 0:
            del self.rounds[:cut]

    def traffic(self) -> dict[str, list[int]]:
        """Octets and message counters by vhost (``connection_sample``'s layout): the live
        connections' (their closed channels included) plus those of closed connections."""
        by_vhost: dict[str, list[int]] = {name: list(values) for name, values in self.retired.items()}
        for connection in list(self.broker.connections):
            vhost = connection.vhost
            if vhost is not None:
                _accumulate(by_vhost.setdefault(vhost.name, list(ZERO_TRAFFIC)), connection_sample(connection.stats()))
        return by_vhost

    def _add(
        self, key: Any, now: float, values: tuple[int, ...], seen: set[Any], retention: float = OBJECT_RETENTION
    ) -> None:
        history = self.histories.get(key)
        if history is None:
            history = self.histories[key] = History(len(values), retention)
        history.add(now, values)
        seen.add(key)

    def node_figures(self) -> tuple[int, ...]:
        """mem_used, disk_free, fd_used, sockets_used, proc_used (tasks) of this node now."""
        alarms = self.broker.alarms
        try:
            fds = len(os.listdir("/proc/self/fd"))
        except OSError:  # not Linux: unknown
            fds = 0
        return (alarms.memory_used, alarms.disk_free, fds, len(self.broker.connections), len(asyncio.all_tasks()))

    # -- answers ---------------------------------------------------------------------------

    def history(self, key: Any) -> History | None:
        return self.histories.get(key)

    def details(
        self,
        key: Any,
        fields: Sequence[str],
        offset: int,
        current: Mapping[str, Any],
        ranged: Range | None,
        lengths: bool = False,
    ) -> dict[str, Any]:
        """``{field: current value, field_details: {...}}`` for ``fields``, which sit from
        ``offset`` in the object's sample tuples. ``lengths``: the range ends at the next
        multiple of incr (RabbitMQ's ceiling for queue lengths), else at the last one."""
        history = self.histories.get(key)
        out: dict[str, Any] = {}
        if ranged is None:
            rate = self._rates(history, offset, len(fields))
            for index, field in enumerate(fields):
                out[field] = current.get(field, 0)
                out[field + "_details"] = {"rate": rate[index]}
            return out
        age, incr = ranged
        now = time.time() * 1000
        step = incr * 1000
        last = (math.ceil(now / step) if lengths else math.floor(now / step)) * step
        stamps = [last - k * step for k in range(age // incr + 1)]
        rows = [history.at(stamp) if history is not None else None for stamp in stamps]
        for index, field in enumerate(fields):
            samples = [row[offset + index] if row is not None else 0 for row in rows]
            detail: dict[str, Any] = {
                "rate": (samples[0] - samples[1]) / incr if len(samples) > 1 else 0.0,
                "samples": [{"sample": s, "timestamp": int(t)} for s, t in zip(samples, stamps, strict=True)],
            }
            if len(samples) > 1:
                detail["avg_rate"] = (samples[0] - samples[-1]) / age
                detail["avg"] = sum(samples) / len(samples)
            out[field] = current.get(field, 0)
            out[field + "_details"] = detail
        return out

    def _rates(self, history: History | None, offset: int, width: int) -> list[float]:
        """Per second over the last round."""
        rounds = self.rounds
        if history is None or len(rounds) < 2:
            return [0.0] * width
        newer, older = history.at(rounds[-1]), history.at(rounds[-2])
        if newer is None:
            return [0.0] * width
        seconds = (rounds[-1] - rounds[-2]) / 1000 or 1.0
        base = older if older is not None else (0,) * len(newer)
        return [(newer[offset + i] - base[offset + i]) / seconds for i in range(width)]


def queue_sample(queue: Any) -> tuple[int, ...]:
    """A queue's sample: LENGTHS then QUEUE_COUNTERS."""
    stats = queue.stats()
    ready = stats.get("messages_ready", queue.message_count)
    unacked = stats.get("messages_unacknowledged", queue.unacked_count)
    return (ready + unacked, ready, unacked, *(stats.get(key, 0) for key in QUEUE_COUNTERS))


def connection_sample(stats: Mapping[str, Any]) -> tuple[int, ...]:
    """A connection's sample from its stats(): OCTETS then CHANNEL_COUNTERS."""
    message_stats = stats["message_stats"]
    return (*(stats[key] for key in OCTETS), *(message_stats.get(key, 0) for key in CHANNEL_COUNTERS))


def _accumulate(into: list[int], values: Iterable[int]) -> None:
    for index, value in enumerate(values):
        into[index] += value
