"""The exposition format and the HTTP surface: content type, TYPE and HELP lines as RabbitMQ
3.10.8 writes them, label escaping, the registries and paths, gzip, the scrape summaries and
stopping."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from conftest import BrokerHandle

from management_ui.prometheus import CONTENT_TYPE, PrometheusServer, start_prometheus

if TYPE_CHECKING:
    from tests.prometheus.conftest import Client, Scrape

REFERENCE = Path(__file__).with_name("rabbitmq-3.10.8-families.txt")
# Families RabbitMQ does not have: the standard CPU-time metric of a Prometheus process collector.
OURS = {"process_cpu_seconds_total"}
TABLES = (
    "connection_churn_metrics", "node_coarse_metrics", "node_metrics", "queue_coarse_metrics",
    "queue_consumer_count", "queue_metrics", "channel_metrics", "channel_exchange_metrics",
    "channel_queue_metrics", "connection_coarse_metrics", "connection_metrics",
    "channel_queue_exchange_metrics", "vhost_status", "exchange_bindings", "exchange_names",
)  # fmt: skip
ALL_FAMILIES = "&".join(f"family={name}" for name in TABLES)


def headers_of(text: str) -> dict[str, tuple[str, str]]:
    """family -> (TYPE, HELP), checking each TYPE line is followed by its HELP line."""
    lines = text.splitlines()
    found = {}
    for index, line in enumerate(lines):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            prefix = f"# HELP {name} "
            assert lines[index + 1].startswith(prefix), lines[index : index + 2]
            found[name] = (kind, lines[index + 1][len(prefix) :])
    return found


def reference() -> dict[str, tuple[str, str]]:
    return headers_of(REFERENCE.read_text())


def plain(name: str) -> str:
    """The /metrics name of a /metrics/detailed family."""
    return name.replace("rabbitmq_detailed_", "rabbitmq_")


@pytest.mark.parametrize("path", ["/metrics", "/metrics/per-object", f"/metrics/detailed?{ALL_FAMILIES}"])
async def test_families_are_rabbitmqs(prom: Client, path: str) -> None:
    """Every family has RabbitMQ's TYPE and HELP; none is an Erlang VM one; the text parses."""
    scrape = await prom.get(path)
    assert scrape.status == 200
    assert scrape.headers["Content-Type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    expected = reference()
    families = headers_of(scrape.text)
    assert families and not [name for name in families if name.startswith("erlang_")]
    for name, header in families.items():
        if name in OURS or name.startswith("telemetry_"):
            continue
        assert expected[plain(name)] == header, name
    assert scrape.text.endswith("\n")


async def test_registries_have_rabbitmqs_collectors(prom: Client) -> None:
    """/metrics: process and alarm families first; /metrics/per-object has neither (RabbitMQ
    registers those collectors in the default registry only); both have the totals, the
    identity and the global counters; /metrics/detailed without a family only the identity."""
    default = headers_of((await prom.get("/metrics")).text)
    per_object = headers_of((await prom.get("/metrics/per-object")).text)
    detailed = headers_of((await prom.get("/metrics/detailed")).text)
    assert list(default)[:5] == [
        "process_start_time_seconds",
        "process_cpu_seconds_total",
        "rabbitmq_alarms_file_descriptor_limit",
        "rabbitmq_alarms_free_disk_space_watermark",
        "rabbitmq_alarms_memory_used_watermark",
    ]
    assert set(default) - set(per_object) == {name for name in list(default)[:5]}
    for name in ("rabbitmq_queues", "rabbitmq_identity_info", "rabbitmq_global_messages_received_total"):
        assert name in default and name in per_object
    assert [name for name in detailed if not name.startswith("telemetry_")] == [
        "rabbitmq_build_info",
        "rabbitmq_identity_info",
    ]
    assert list(default)[-3:] == list(per_object)[-3:] == list(detailed)[-3:] == [
        "telemetry_scrape_size_bytes",
        "telemetry_scrape_duration_seconds",
        "telemetry_scrape_encoded_size_bytes",
    ]


async def test_label_values_are_escaped(prom: Client, broker: BrokerHandle, unique: str) -> None:
    name = f'{unique} "quoted" back\\slash\nnewline'
    connection = broker.connect()
    try:
        connection.channel().queue_declare(name)
        scrape = await prom.get("/metrics/per-object")
        assert scrape.value("rabbitmq_queue_messages", vhost="/", queue=name) == 0
        assert f'queue="{unique} \\"quoted\\" back\\\\slash\\nnewline"' in scrape.text
        connection.channel().queue_delete(name)
    finally:
        connection.close()


async def test_unknown_registry_and_paths(prom: Client) -> None:
    async with prom.session.get("/metrics/nonesuch") as response:
        assert (response.status, await response.text()) == (404, "Unknown Registry")
    async with prom.session.get("/") as response:
        assert response.status == 404
        assert await response.json() == {"error": "Object Not Found", "reason": "Not Found"}
    for path in ("/metrics/default", "/metrics/"):
        default = await prom.get(path)
        assert default.status == 200 and "rabbitmq_alarms_memory_used_watermark" in default.types


async def test_gzip_when_accepted(prom: Client, metrics: PrometheusServer) -> None:
    url = f"http://127.0.0.1:{metrics.port}/metrics"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            text = gzip.decompress(await response.read()).decode()
        async with session.get(url, headers={"Accept-Encoding": "gzip;q=0, identity"}) as response:
            assert response.headers["Content-Encoding"] == "identity"
            assert (await response.text()).startswith("# TYPE process_start_time_seconds gauge\n")
    assert "rabbitmq_queues" in headers_of(text)


async def test_scrape_summaries(prom: Client) -> None:
    """A scrape's size and duration go to its registry's summaries, its encoded size to the
    default registry's (RabbitMQ's telemetry registry)."""
    before = await prom.get("/metrics")
    await prom.get("/metrics/per-object")
    await prom.get("/metrics/per-object")
    after = await prom.get("/metrics")
    per_object = await prom.get("/metrics/per-object")
    ct = {"content_type": CONTENT_TYPE}

    def count(scrape: object, name: str, **labels: str) -> float:
        return scrape.value(name, **labels, **ct) or 0  # type: ignore[attr-defined]

    assert count(after, "telemetry_scrape_size_bytes_count", registry="default") == (
        count(before, "telemetry_scrape_size_bytes_count", registry="default") + 1
    )
    assert count(after, "telemetry_scrape_size_bytes_sum", registry="default") == (
        count(before, "telemetry_scrape_size_bytes_sum", registry="default") + len(before.text.encode())
    )
    encoded = "telemetry_scrape_encoded_size_bytes_count"
    encoding = per_object.headers["Content-Encoding"]  # aiohttp's client accepts gzip
    assert count(after, encoded, registry="per-object", encoding=encoding) == (
        count(before, encoded, registry="per-object", encoding=encoding) + 2
    )
    assert per_object.value("telemetry_scrape_duration_seconds_count", registry="per-object", **ct) >= 2
    assert per_object.labelled(encoded) == {}  # only in the default registry


async def test_per_object_by_default_when_configured(
    broker: BrokerHandle, unique: str, scrape_port: Callable[[int, str], Awaitable[Scrape]]
) -> None:
    """prometheus.return_per_object_metrics = true: /metrics per object, still with the
    process and alarm families."""
    server = broker.run(start_prometheus(broker.broker, "127.0.0.1", 0, return_per_object_metrics=True))
    connection = broker.connect()
    try:
        connection.channel().queue_declare(unique, exclusive=True)
        scrape = await scrape_port(server.port, "/metrics")
    finally:
        connection.close()
        broker.run(server.stop())
    assert scrape.value("rabbitmq_queue_messages", vhost="/", queue=unique) == 0
    assert scrape.value("rabbitmq_queue_messages") is None
    assert "rabbitmq_alarms_memory_used_watermark" in scrape.types


async def test_stop_closes_the_port(broker: BrokerHandle) -> None:
    server = broker.run(start_prometheus(broker.broker, "127.0.0.1", 0))
    port = server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()
    broker.run(server.stop())
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    # Stopped: its counters no longer follow the broker's events.
    before = server.counters.churn["queues_created"]
    connection = broker.connect()
    try:
        connection.channel().queue_declare("", exclusive=True)
    finally:
        connection.close()
    assert server.counters.churn["queues_created"] == before
