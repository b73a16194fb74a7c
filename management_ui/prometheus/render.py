"""The text exposition format (version 0.0.4) of RabbitMQ's three registries: ``default``
(/metrics, aggregated unless per-object metrics are asked for), ``per-object``
(/metrics/per-object) and ``detailed`` (/metrics/detailed?family=...&vhost=...).

The text is built as a list of strings joined once: a family's samples are one list
comprehension over the rows of ``collect.Snapshot``, with no object per sample.
"""

from __future__ import annotations

import platform
from collections.abc import Collection
from typing import Any

from amqp_server import __version__
from amqp_server.admin.definitions import RABBIT_VERSION
from amqp_server.admin.operations import Admin
from amqp_server.core.alarms import DISK, MEMORY
from management_ui.prometheus import families as f
from management_ui.prometheus.collect import Snapshot, cpu_seconds, escape, process_start_time

PREFIX, DETAILED_PREFIX, CLUSTER_PREFIX = "rabbitmq_", "rabbitmq_detailed_", "rabbitmq_cluster_"
VHOST = f.QUEUE_COLUMNS.index("vhost")  # what the vhost parameter filters queue rows on


def _header(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# TYPE {name} {kind}\n# HELP {name} {help_text}\n")


def _tables(out: list[str], snapshot: Snapshot, prefix: str, tables: Collection[f.Table], per_object: bool,
            vhosts: Collection[str] | None = None) -> None:  # fmt: skip
    """The families of ``tables``: a sample per row (``per_object``) or their sum; node figures
    have no labels either way. ``vhosts``: only the queues of these, in tables filtered by vhost."""
    for table in tables:
        rows = snapshot.rows(table.source)
        if vhosts is not None and table.vhost_filtered:
            rows = [row for row in rows if row[VHOST] in vhosts]
        at = table.labels
        for family in table.families:
            name = prefix + family.name
            column = family.column
            _header(out, name, family.type, family.help)
            if table.source == "node":
                value = rows[0][column]
                if value is not None:
                    out.append(f"{name} {value}\n")
            elif per_object:
                out.append("".join([f"{name}{{{row[at]}}} {row[column]}\n" for row in rows if row[column] is not None]))
            else:
                out.append(f"{name} {sum([row[column] for row in rows if row[column] is not None])}\n")


def _totals(out: list[str], snapshot: Snapshot) -> None:
    for (name, kind, help_text), value in zip(f.TOTALS, snapshot.totals(), strict=True):
        _header(out, PREFIX + name, kind, help_text)
        out.append(f"{PREFIX}{name} {value}\n")


def _info(out: list[str], family: tuple[str, str, str], labels: list[tuple[str, str]]) -> None:
    name, kind, help_text = family
    _header(out, name, kind, help_text)
    pairs = ",".join([key + '="' + escape(value) + '"' for key, value in labels])
    out.append(f"{name}{{{pairs}}} 1\n")


def _identity(out: list[str], snapshot: Snapshot) -> None:
    """rabbitmq_build_info and rabbitmq_identity_info, what dashboards join other series with."""
    _info(out, f.BUILD_INFO, [
        ("product_name", "amqp-server"),
        ("product_version", __version__),
        ("rabbitmq_version", RABBIT_VERSION),
        ("prometheus_plugin_version", RABBIT_VERSION),
        ("erlang_version", platform.python_version()),  # as the HTTP API reports it
    ])  # fmt: skip
    broker = snapshot.broker
    identity = [("rabbitmq_node", broker.node_name), ("rabbitmq_cluster", Admin(broker).cluster_name())]
    cluster_id = broker.global_parameters.get("internal_cluster_id")  # a RabbitMQ definitions import brings it
    if isinstance(cluster_id, str):
        identity.append(("rabbitmq_cluster_permanent_id", cluster_id))
    _info(out, f.IDENTITY_INFO, identity)


def _process(out: list[str], snapshot: Snapshot) -> None:
    """The process collector's and the alarm collector's families (the default registry's only)."""
    for (name, kind, help_text), value in zip(f.PROCESS, (int(process_start_time()), round(cpu_seconds(), 6)), strict=True):
        _header(out, name, kind, help_text)
        out.append(f"{name} {value}\n")
    on = snapshot.broker.alarms.alarms
    for (name, kind, help_text), value in zip(f.ALARMS, (0, int(DISK in on), int(MEMORY in on)), strict=True):
        _header(out, name, kind, help_text)
        out.append(f"{name} {value}\n")


def _global(out: list[str], snapshot: Snapshot) -> None:
    values = snapshot.global_values()
    for name, kind, help_text, per_queue_type in f.GLOBAL:
        full = f"rabbitmq_global_{name}"
        _header(out, full, kind, help_text)
        value = values[name]
        if per_queue_type:
            # Every queue of this broker is a classic one.
            for index, queue_type in enumerate(f.QUEUE_TYPES):
                out.append(f'{full}{{protocol="amqp091",queue_type="{queue_type}"}} {value if index == 0 else 0}\n')
        else:
            out.append(f'{full}{{protocol="amqp091"}} {value}\n')


def default(snapshot: Snapshot, per_object: bool) -> list[str]:
    """/metrics: RabbitMQ's default registry (the core, global, alarm and process collectors)."""
    out: list[str] = []
    _process(out, snapshot)
    # queue_consumer_count is a subset of queue_metrics: left out when both are there.
    _tables(out, snapshot, PREFIX, [t for t in f.TABLES if t.name != "queue_consumer_count"], per_object)
    _totals(out, snapshot)
    _identity(out, snapshot)
    _global(out, snapshot)
    return out


def per_object(snapshot: Snapshot) -> list[str]:
    """/metrics/per-object: the core collector per object and the global counters."""
    out: list[str] = []
    _tables(out, snapshot, PREFIX, [t for t in f.TABLES if t.name != "queue_consumer_count"], True)
    _totals(out, snapshot)
    _identity(out, snapshot)
    _global(out, snapshot)
    return out


def detailed(snapshot: Snapshot, names: Collection[str], vhosts: Collection[str] | None) -> list[str]:
    """/metrics/detailed: the tables named by ``family`` parameters, per object, in RabbitMQ's
    order (unknown names are ignored); ``vhosts``, when given, limits the queue tables."""
    out: list[str] = []
    tables = [t for t in f.TABLES if t.name in names]
    if "queue_metrics" in names:
        tables = [t for t in tables if t.name != "queue_consumer_count"]
    _tables(out, snapshot, DETAILED_PREFIX, tables, True, vhosts)
    _tables(out, snapshot, CLUSTER_PREFIX, [t for t in f.CLUSTER_TABLES if t.name in names], True)
    _identity(out, snapshot)
    return out


class Telemetry:
    """rabbit_prometheus_handler's scrape summaries (count and sum, no quantiles): a registry's
    sizes and durations are in its own output; the encoded sizes of every registry in the
    default one (RabbitMQ records those in its telemetry registry)."""

    def __init__(self, content_type: str) -> None:
        self.labels = f'content_type="{escape(content_type)}"'
        self.scrapes: dict[str, list[Any]] = {}  # registry -> [count, size sum, duration sum]
        self.encoded: dict[tuple[str, str], list[int]] = {}  # (registry, encoding) -> [count, size sum]

    def observe(self, registry: str, size: int, duration: float, encoding: str, encoded_size: int) -> None:
        scrape = self.scrapes.setdefault(registry, [0, 0, 0.0])
        scrape[0] += 1
        scrape[1] += size
        scrape[2] += duration
        encoded = self.encoded.setdefault((registry, encoding), [0, 0])
        encoded[0] += 1
        encoded[1] += encoded_size

    def render(self, out: list[str], registry: str) -> None:
        (size, size_help), (duration, duration_help), (encoded, encoded_help) = f.TELEMETRY
        scrape = self.scrapes.get(registry)
        labels = f'registry="{registry}",{self.labels}'
        for index, (name, help_text) in ((1, (size, size_help)), (2, (duration, duration_help))):
            _header(out, name, "summary", help_text)
            if scrape is not None:
                out.append(f"{name}_count{{{labels}}} {scrape[0]}\n{name}_sum{{{labels}}} {scrape[index]}\n")
        _header(out, encoded, "summary", encoded_help)
        if registry == "default":
            for (which, encoding), (count, total) in self.encoded.items():
                labels = f'registry="{which}",{self.labels},encoding="{encoding}"'
                out.append(f"{encoded}_count{{{labels}}} {count}\n{encoded}_sum{{{labels}}} {total}\n")
