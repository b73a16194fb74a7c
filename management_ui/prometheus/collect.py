"""What a scrape reads from the broker: rows of values in the layouts of ``families.py``, built
from the objects' ``stats()`` and counters, the vhost tables, and the counters ``Counters``
keeps from the event bus. Nothing here runs per message.

A ``Snapshot`` reads each kind of object once, when a scrape first needs it, in one go on the
event loop: the figures of a scrape are of one moment.
"""

from __future__ import annotations

import os
import resource
import time
import weakref
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from amqp_server.core import alarms
from management_ui.prometheus.families import CHANNEL_COLUMNS

if TYPE_CHECKING:
    from amqp_server.channel.channel import Channel
    from amqp_server.core.broker import Broker
    from amqp_server.core.events import Event
    from amqp_server.transport.connection import Connection
    from queues.base import QueueType

# A channel's message counters (keys of its stats()["message_stats"]): the last columns of its rows.
FIRST_COUNTER = CHANNEL_COLUMNS.index("publish")
MESSAGE_COUNTERS = CHANNEL_COLUMNS[FIRST_COUNTER:]
CONSUMERS, UNCOMMITTED = CHANNEL_COLUMNS.index("consumers"), CHANNEL_COLUMNS.index("uncommitted")
# The event each churn counter counts (RabbitMQ's event names).
CHURN_EVENTS = {
    "connection.created": ("connections_opened",),
    "connection.closed": ("connections_closed",),
    "channel.created": ("channels_opened",),
    "channel.closed": ("channels_closed",),
    # Only creations are seen: a queue.declare of an existing queue emits nothing.
    "queue.created": ("queues_declared", "queues_created"),
    "queue.deleted": ("queues_deleted",),
}
CHURN = ("connections_opened", "connections_closed", "channels_opened", "channels_closed",
         "queues_declared", "queues_created", "queues_deleted")  # fmt: skip


def escape(value: str) -> str:
    """A label value as the exposition format writes it (backslash, double quote, newline)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


class Counters:
    """What only the event bus tells: connections, channels and queues opened and closed since
    ``subscribe``, and the message counters of channels that closed (so that the rabbitmq_global_
    counters never go down)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.churn = dict.fromkeys(CHURN, 0)
        self.closed_channels = [0] * len(MESSAGE_COUNTERS)
        # Closed channels already counted in ``closed_channels``: a scrape skips them should they
        # still be in their connection's table.
        self.retired: weakref.WeakSet[Channel] = weakref.WeakSet()
        self._unsubscribe: Callable[[], None] | None = None

    def subscribe(self) -> None:
        self._unsubscribe = self.broker.events.subscribe(self._event, *CHURN_EVENTS)

    def unsubscribe(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _event(self, event: Event) -> None:
        churn = self.churn
        for key in CHURN_EVENTS[event.name]:
            churn[key] += 1
        channel = event.subject
        if event.name == "channel.closed" and channel is not None and channel not in self.retired:
            self.retired.add(channel)
            stats = channel.stats()["message_stats"]
            closed = self.closed_channels
            for index, key in enumerate(MESSAGE_COUNTERS):
                closed[index] += stats.get(key, 0)


class Snapshot:
    """The rows of one scrape; each kind is read on first use."""

    def __init__(self, broker: Broker, counters: Counters) -> None:
        self.broker = broker
        self.counters = counters

    @cached_property
    def open_connections(self) -> list[Connection]:
        """Those past connection.open: what RabbitMQ lists and counts."""
        return [c for c in self.broker.connections if c.vhost is not None]

    @cached_property
    def queue(self) -> list[tuple[Any, ...]]:
        return [_queue_row(queue) for vhost in self.broker.vhosts.values() for queue in vhost.queues.values()]

    @cached_property
    def channel(self) -> list[tuple[Any, ...]]:
        retired = self.counters.retired
        rows = []
        for connection in self.open_connections:
            name = connection.name
            for channel in list(connection.channels.values()):
                if channel not in retired:
                    rows.append(_channel_row(channel, name))
        return rows

    @cached_property
    def connection(self) -> list[tuple[Any, ...]]:
        return [_connection_row(connection) for connection in self.open_connections]

    @cached_property
    def node(self) -> list[tuple[Any, ...]]:
        broker = self.broker
        churn = self.counters.churn
        try:
            open_fds: int | None = len(os.listdir("/proc/self/fd"))
        except OSError:  # not Linux
            open_fds = None
        try:
            disk_free: int | None = alarms.disk_free(broker.config.data_dir)
        except OSError:
            disk_free = None
        max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return [
            (
                "",
                *(churn[key] for key in CHURN),
                open_fds,
                len(broker.connections),
                alarms.process_memory(),
                disk_free,
                None if max_fds == resource.RLIM_INFINITY else max_fds,
                broker.alarms.memory_limit,
                broker.alarms.disk_limit,
            )
        ]

    @cached_property
    def vhost(self) -> list[tuple[Any, ...]]:
        return [(f'vhost="{escape(name)}"', 1) for name in self.broker.vhosts]

    @cached_property
    def exchange(self) -> list[tuple[Any, ...]]:
        """Exchanges as rabbitmq_cluster_exchange_* list them: not the default one nor internal
        ones, with the count of bindings they are the source of."""
        rows = []
        for vhost in self.broker.vhosts.values():
            bindings: dict[str, int] = {}
            for binding in vhost.bindings.values():
                bindings[binding.source] = bindings.get(binding.source, 0) + 1
            v = escape(vhost.name)
            for exchange in vhost.exchanges.values():
                if exchange.name and not exchange.internal:
                    labels = f'vhost="{v}",exchange="{escape(exchange.name)}",type="{escape(exchange.type_name)}"'
                    rows.append((labels, bindings.get(exchange.name, 0), 1))
        return rows

    def rows(self, source: str) -> list[tuple[Any, ...]]:
        return getattr(self, source)

    def totals(self) -> tuple[int, int, int, int]:
        """Open connections, their channels, those channels' consumers, and queues."""
        channels = [channel for connection in self.open_connections for channel in connection.channels.values()]
        consumers = sum(len(channel.consumers) for channel in channels)
        queues = sum(len(vhost.queues) for vhost in self.broker.vhosts.values())
        return len(self.open_connections), len(channels), consumers, queues

    def global_values(self) -> dict[str, int]:
        """The rabbitmq_global_ counters by name: closed channels' counters plus open ones'."""
        totals = list(self.counters.closed_channels)
        consumers = publishers = uncommitted = 0
        for row in self.channel:
            for index in range(len(totals)):
                totals[index] += row[FIRST_COUNTER + index]
            consumers += row[CONSUMERS]
            uncommitted += row[UNCOMMITTED]
            if row[FIRST_COUNTER]:
                publishers += 1
        c = dict(zip(MESSAGE_COUNTERS, totals, strict=True))
        return {
            "consumers": consumers,
            "messages_acknowledged_total": c["ack"],
            "messages_confirmed_total": c["confirm"],
            "messages_delivered_consume_auto_ack_total": c["deliver_no_ack"],
            "messages_delivered_consume_manual_ack_total": c["deliver"],
            "messages_delivered_get_auto_ack_total": c["get_no_ack"],
            "messages_delivered_get_manual_ack_total": c["get"],
            "messages_delivered_total": c["deliver"] + c["deliver_no_ack"] + c["get"] + c["get_no_ack"],
            "messages_get_empty_total": c["get_empty"],
            "messages_received_confirm_total": c["confirm"],
            "messages_received_total": c["publish"],
            "messages_redelivered_total": c["redeliver"],
            # Published, less what no queue took and what waits in open transactions.
            "messages_routed_total": c["publish"] - c["return_unroutable"] - c["drop_unroutable"] - uncommitted,
            "messages_unroutable_dropped_total": c["drop_unroutable"],
            "messages_unroutable_returned_total": c["return_unroutable"],
            "publishers": publishers,
        }


def _queue_row(queue: QueueType) -> tuple[Any, ...]:
    vhost = queue.vhost
    v, q = escape(vhost), escape(queue.name)
    # stats() is empty for a queue type that keeps no counters: the lengths are then read from
    # the QueueType contract and the other samples left out.
    stats = queue.stats()
    get = stats.get
    ready, unacked, consumers = get("messages_ready"), get("messages_unacknowledged"), get("consumers")
    if ready is None or unacked is None or consumers is None:
        ready, unacked, consumers = queue.message_count, queue.unacked_count, queue.consumer_count
    ready_ram = get("messages_ready_ram")
    in_ram = ready_ram is not None
    return (
        vhost,
        f'vhost="{v}",queue="{q}"',
        f'queue_vhost="{v}",queue="{q}"',
        ready,
        unacked,
        ready + unacked,
        consumers,
        ready_ram,
        ready_ram + unacked if in_ram else None,
        unacked if in_ram else None,  # unacknowledged messages are always in memory
        get("message_bytes"),
        get("message_bytes_ready"),
        get("message_bytes_unacknowledged"),
        get("messages_paged_out"),
        get("publish"),
    )


def _channel_row(channel: Channel, connection: str) -> tuple[Any, ...]:
    stats = channel.stats()
    counters = stats["message_stats"]
    labels = f'channel="{escape(f"{connection} ({channel.number})")}"'
    return (
        labels,
        f'{labels},vhost="{escape(channel.vhost.name)}"',
        stats["consumer_count"],
        stats["messages_unacknowledged"],
        stats["messages_unconfirmed"],
        stats["messages_uncommitted"],
        stats["acks_uncommitted"],
        stats["prefetch_count"],
        stats["global_prefetch_count"],
        *(counters.get(key, 0) for key in MESSAGE_COUNTERS),
    )


def _connection_row(connection: Connection) -> tuple[Any, ...]:
    transport = connection.transport
    return (
        # RabbitMQ labels a connection's figures with its process under "channel".
        f'channel="{escape(connection.name)}"',
        connection.recv_oct,
        connection.send_oct,
        connection.recv_cnt,
        connection.send_cnt,
        transport.get_write_buffer_size() if transport is not None and not transport.is_closing() else 0,
        len(connection.channels),
    )


def process_start_time() -> float:
    """When this process started (seconds since the epoch), from /proc where there is one."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            ticks = int(handle.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


_IMPORTED_AT = time.time()
