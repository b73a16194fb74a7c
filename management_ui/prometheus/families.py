"""rabbitmq_prometheus's metric families as data: names, types and help texts exactly as
RabbitMQ 3.10's collectors give them, grouped by the table (RabbitMQ's ETS table, and the
``family`` of ``/metrics/detailed``) they come from, each naming the column of our rows
(``collect.py``) that holds its value.

Only the families this broker has figures for are listed; docs/prometheus.md names the rest.
"""

from __future__ import annotations

from typing import NamedTuple

COUNTER, GAUGE, UNTYPED = "counter", "gauge", "untyped"

# Row layouts (collect.py builds tuples in these orders). The first columns are label strings.
QUEUE_COLUMNS = (
    "vhost", "labels", "publish_labels",
    "ready", "unacked", "messages", "consumers", "ready_ram", "ram", "unacked_ram",
    "bytes", "bytes_ready", "bytes_unacked", "paged_out", "published",
)  # fmt: skip
CHANNEL_COLUMNS = (
    "labels", "vhost_labels",
    "consumers", "unacked", "unconfirmed", "uncommitted", "acks_uncommitted", "prefetch",
    "global_prefetch", "publish", "confirm", "return_unroutable", "drop_unroutable", "get",
    "get_no_ack", "deliver", "deliver_no_ack", "redeliver", "ack", "get_empty",
)  # fmt: skip
CONNECTION_COLUMNS = ("labels", "recv_oct", "send_oct", "recv_cnt", "send_cnt", "send_pend", "channels")
NODE_COLUMNS = (
    "labels",
    "connections_opened", "connections_closed", "channels_opened", "channels_closed",
    "queues_declared", "queues_created", "queues_deleted",
    "open_fds", "open_tcp_sockets", "resident_memory", "disk_free",
    "max_fds", "memory_limit", "disk_limit",
)  # fmt: skip
VHOST_COLUMNS = ("labels", "status")
EXCHANGE_COLUMNS = ("labels", "bindings", "one")

COLUMNS = {
    "queue": QUEUE_COLUMNS,
    "channel": CHANNEL_COLUMNS,
    "connection": CONNECTION_COLUMNS,
    "node": NODE_COLUMNS,
    "vhost": VHOST_COLUMNS,
    "exchange": EXCHANGE_COLUMNS,
}


class Family(NamedTuple):
    name: str  # without the rabbitmq_ / rabbitmq_detailed_ / rabbitmq_cluster_ prefix
    type: str
    help: str
    column: int  # where the value sits in a row of the table's source


class Table(NamedTuple):
    name: str  # RabbitMQ's table: the ``family`` parameter of /metrics/detailed
    source: str  # the rows: queue, channel, connection, node, vhost, exchange
    labels: int  # the column of the per-object label string
    families: tuple[Family, ...]
    vhost_filtered: bool = False  # /metrics/detailed's vhost parameter applies


def _table(name: str, source: str, families: list[tuple[str, str, str, str]], *, labels: str = "labels",
           vhost_filtered: bool = False) -> Table:  # fmt: skip
    columns = COLUMNS[source]
    return Table(
        name,
        source,
        columns.index(labels),
        tuple(Family(n, t, h, columns.index(c)) for n, t, h, c in families),
        vhost_filtered,
    )


# METRICS_RAW of prometheus_rabbitmq_core_metrics_collector, in its order.
TABLES = (
    _table("connection_churn_metrics", "node", [
        ("connections_opened_total", COUNTER, "Total number of connections opened", "connections_opened"),
        ("connections_closed_total", COUNTER, "Total number of connections closed or terminated", "connections_closed"),
        ("channels_opened_total", COUNTER, "Total number of channels opened", "channels_opened"),
        ("channels_closed_total", COUNTER, "Total number of channels closed", "channels_closed"),
        ("queues_declared_total", COUNTER, "Total number of queues declared", "queues_declared"),
        ("queues_created_total", COUNTER, "Total number of queues created", "queues_created"),
        ("queues_deleted_total", COUNTER, "Total number of queues deleted", "queues_deleted"),
    ]),
    _table("node_coarse_metrics", "node", [
        ("process_open_fds", GAUGE, "Open file descriptors", "open_fds"),
        ("process_open_tcp_sockets", GAUGE, "Open TCP sockets", "open_tcp_sockets"),
        ("process_resident_memory_bytes", GAUGE, "Memory used in bytes", "resident_memory"),
        ("disk_space_available_bytes", GAUGE, "Disk space available in bytes", "disk_free"),
    ]),
    _table("node_metrics", "node", [
        ("process_max_fds", GAUGE, "Open file descriptors limit", "max_fds"),
        ("resident_memory_limit_bytes", GAUGE, "Memory high watermark in bytes", "memory_limit"),
        ("disk_space_available_limit_bytes", GAUGE, "Free disk space low watermark in bytes", "disk_limit"),
    ]),
    _table("queue_coarse_metrics", "queue", [
        ("queue_messages_ready", GAUGE, "Messages ready to be delivered to consumers", "ready"),
        ("queue_messages_unacked", GAUGE, "Messages delivered to consumers but not yet acknowledged", "unacked"),
        ("queue_messages", GAUGE, "Sum of ready and unacknowledged messages - total queue depth", "messages"),
    ], vhost_filtered=True),
    _table("queue_consumer_count", "queue", [
        ("queue_consumers", GAUGE, "Consumers on a queue", "consumers"),
    ], vhost_filtered=True),
    _table("queue_metrics", "queue", [
        ("queue_consumers", GAUGE, "Consumers on a queue", "consumers"),
        ("queue_messages_ram", GAUGE, "Ready and unacknowledged messages stored in memory", "ram"),
        ("queue_messages_ready_ram", GAUGE, "Ready messages stored in memory", "ready_ram"),
        ("queue_messages_unacked_ram", GAUGE, "Unacknowledged messages stored in memory", "unacked_ram"),
        ("queue_messages_bytes", GAUGE, "Size in bytes of ready and unacknowledged messages", "bytes"),
        ("queue_messages_ready_bytes", GAUGE, "Size in bytes of ready messages", "bytes_ready"),
        ("queue_messages_unacked_bytes", GAUGE, "Size in bytes of all unacknowledged messages", "bytes_unacked"),
        ("queue_messages_paged_out", GAUGE, "Messages paged out to disk", "paged_out"),
    ], vhost_filtered=True),
    _table("channel_metrics", "channel", [
        ("channel_consumers", GAUGE, "Consumers on a channel", "consumers"),
        ("channel_messages_unacked", GAUGE, "Delivered but not yet acknowledged messages", "unacked"),
        ("channel_messages_unconfirmed", GAUGE, "Published but not yet confirmed messages", "unconfirmed"),
        ("channel_messages_uncommitted", GAUGE, "Messages received in a transaction but not yet committed", "uncommitted"),
        ("channel_acks_uncommitted", GAUGE, "Message acknowledgements in a transaction not yet committed", "acks_uncommitted"),
        ("consumer_prefetch", GAUGE, "Limit of unacknowledged messages for each consumer", "prefetch"),
        ("channel_prefetch", GAUGE, "Total limit of unacknowledged messages for all consumers on a channel", "global_prefetch"),
    ]),
    _table("channel_exchange_metrics", "channel", [
        ("channel_messages_published_total", COUNTER, "Total number of messages published into an exchange on a channel", "publish"),
        ("channel_messages_confirmed_total", COUNTER, "Total number of messages published into an exchange and confirmed on the channel", "confirm"),
        ("channel_messages_unroutable_returned_total", COUNTER, "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", "return_unroutable"),
        ("channel_messages_unroutable_dropped_total", COUNTER, "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", "drop_unroutable"),
    ], labels="vhost_labels"),
    _table("channel_queue_metrics", "channel", [
        ("channel_get_ack_total", COUNTER, "Total number of messages fetched with basic.get in manual acknowledgement mode", "get"),
        ("channel_get_total", COUNTER, "Total number of messages fetched with basic.get in automatic acknowledgement mode", "get_no_ack"),
        ("channel_messages_delivered_ack_total", COUNTER, "Total number of messages delivered to consumers in manual acknowledgement mode", "deliver"),
        ("channel_messages_delivered_total", COUNTER, "Total number of messages delivered to consumers in automatic acknowledgement mode", "deliver_no_ack"),
        ("channel_messages_redelivered_total", COUNTER, "Total number of messages redelivered to consumers", "redeliver"),
        ("channel_messages_acked_total", COUNTER, "Total number of messages acknowledged by consumers", "ack"),
        ("channel_get_empty_total", COUNTER, "Total number of times basic.get operations fetched no message", "get_empty"),
    ], labels="vhost_labels"),
    _table("connection_coarse_metrics", "connection", [
        ("connection_incoming_bytes_total", COUNTER, "Total number of bytes received on a connection", "recv_oct"),
        ("connection_outgoing_bytes_total", COUNTER, "Total number of bytes sent on a connection", "send_oct"),
    ]),
    _table("connection_metrics", "connection", [
        ("connection_incoming_packets_total", COUNTER, "Total number of packets received on a connection", "recv_cnt"),
        ("connection_outgoing_packets_total", COUNTER, "Total number of packets sent on a connection", "send_cnt"),
        ("connection_pending_packets", GAUGE, "Number of packets waiting to be sent on a connection", "send_pend"),
        ("connection_channels", GAUGE, "Channels on a connection", "channels"),
    ]),
    _table("channel_queue_exchange_metrics", "queue", [
        ("queue_messages_published_total", COUNTER, "Total number of messages published to queues", "published"),
    ], labels="publish_labels"),
)  # fmt: skip

# METRICS_CLUSTER: only through /metrics/detailed, prefixed rabbitmq_cluster_, never filtered.
CLUSTER_TABLES = (
    _table("vhost_status", "vhost", [
        ("vhost_status", GAUGE, "Whether a given vhost is running", "status"),
    ]),
    _table("exchange_bindings", "exchange", [
        ("exchange_bindings", GAUGE, "Number of bindings for an exchange. This value is cluster-wide.", "bindings"),
    ]),
    _table("exchange_names", "exchange", [
        ("exchange_name", GAUGE, "Enumerates exchanges without any additional info. This value is cluster-wide. "
         "A cheaper alternative to `exchange_bindings`", "one"),
    ]),
)  # fmt: skip

# TOTALS: object counts, after the tables on /metrics and /metrics/per-object.
TOTALS = (
    ("connections", GAUGE, "Connections currently open"),
    ("channels", GAUGE, "Channels currently open"),
    ("consumers", GAUGE, "Consumers currently connected"),
    ("queues", GAUGE, "Queues available"),
)

# prometheus_process_collector (RabbitMQ's has only the start time; the CPU time is the
# standard Prometheus process metric) and prometheus_rabbitmq_alarm_metrics_collector.
PROCESS = (
    ("process_start_time_seconds", GAUGE, "Start time of the process since unix epoch in seconds."),
    ("process_cpu_seconds_total", COUNTER, "Total user and system CPU time spent in seconds."),
)
ALARMS = (
    ("rabbitmq_alarms_file_descriptor_limit", UNTYPED, "is 1 if file descriptor limit alarm is in effect"),
    ("rabbitmq_alarms_free_disk_space_watermark", UNTYPED, "is 1 if free disk space watermark alarm is in effect"),
    ("rabbitmq_alarms_memory_used_watermark", UNTYPED, "is 1 if VM memory watermark alarm is in effect"),
)

BUILD_INFO = ("rabbitmq_build_info", UNTYPED, "RabbitMQ & Erlang/OTP version info")
IDENTITY_INFO = ("rabbitmq_identity_info", UNTYPED, "RabbitMQ node & cluster identity info")

# rabbit_global_counters (prometheus_rabbitmq_global_metrics_collector), in its order.
# The last field: labelled by queue type as well as by protocol. collect.global_values gives
# the values by name.
GLOBAL = (
    ("consumers", GAUGE, "Current number of consumers", False),
    ("messages_acknowledged_total", COUNTER, "Total number of messages acknowledged by consumers", True),
    ("messages_confirmed_total", COUNTER, "Total number of messages confirmed to publishers", False),
    ("messages_delivered_consume_auto_ack_total", COUNTER,
     "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment", True),
    ("messages_delivered_consume_manual_ack_total", COUNTER,
     "Total number of messages delivered to consumers using basic.consume with manual acknowledgment", True),
    ("messages_delivered_get_auto_ack_total", COUNTER,
     "Total number of messages delivered to consumers using basic.get with automatic acknowledgment", True),
    ("messages_delivered_get_manual_ack_total", COUNTER,
     "Total number of messages delivered to consumers using basic.get with manual acknowledgment", True),
    ("messages_delivered_total", COUNTER, "Total number of messages delivered to consumers", True),
    ("messages_get_empty_total", COUNTER, "Total number of times basic.get operations fetched no message", True),
    ("messages_received_confirm_total", COUNTER,
     "Total number of messages received from publishers expecting confirmations", False),
    ("messages_received_total", COUNTER, "Total number of messages received from publishers", False),
    ("messages_redelivered_total", COUNTER, "Total number of messages redelivered to consumers", True),
    ("messages_routed_total", COUNTER, "Total number of messages routed to queues or streams", False),
    ("messages_unroutable_dropped_total", COUNTER,
     "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", False),
    ("messages_unroutable_returned_total", COUNTER,
     "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
     False),
    ("publishers", GAUGE, "Current number of publishers", False),
)
# The queue types RabbitMQ labels these with; every queue of this broker counts as classic.
QUEUE_TYPES = ("rabbit_classic_queue", "rabbit_quorum_queue", "rabbit_stream_queue")

# rabbit_prometheus_handler's scrape summaries, per registry.
TELEMETRY = (
    ("telemetry_scrape_size_bytes", "Scrape size, not encoded"),
    ("telemetry_scrape_duration_seconds", "Scrape duration"),
    ("telemetry_scrape_encoded_size_bytes", "Scrape size, encoded"),
)
