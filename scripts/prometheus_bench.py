"""Time the Prometheus endpoints on a broker with many queues (docs/prometheus.md).

    python scripts/prometheus_bench.py [--queues 10000] [--connections 20] [--runs 20]

Starts a broker in this process on its own event-loop thread with the metrics listener on a
free port, declares the queues (through the vhost's declare rules, as queue.declare does; one
in ten gets a message), opens some AMQP connections with two channels each, then scrapes each
endpoint from this thread over one keep-alive HTTP connection and prints the median, the 95th
percentile and the slowest time, and the response size. A scrape must take well under a second.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pika

from amqp_server.core.broker import BrokerConfig
from amqp_server.plugin_api import new_message
from amqp_server.server import Server
from management_ui.prometheus import PrometheusServer, start_prometheus

REQUESTS = (
    ("/metrics", {}, "/metrics (aggregated)"),
    ("/metrics/per-object", {}, "/metrics/per-object"),
    ("/metrics/per-object", {"Accept-Encoding": "gzip"}, "/metrics/per-object, gzip"),
    ("/metrics/detailed?family=queue_coarse_metrics&vhost=%2F", {}, "detailed queue_coarse_metrics"),
)


class Broker:
    """A broker and its metrics listener on a background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = Server(BrokerConfig(host="127.0.0.1", port=0, data_dir=None))
        self.run(self.server.start())
        self.metrics: PrometheusServer = self.run(start_prometheus(self.server.broker, "127.0.0.1", 0))

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(600)

    async def declare(self, count: int) -> None:
        vhost = self.server.broker.vhosts["/"]
        for index in range(count):
            queue = await vhost.declare_queue(f"q-{index:05d}", durable=index % 2 == 0)
            if index % 10 == 0:
                queue.publish(new_message("", queue.name, b"x" * 100))

    async def render(self, registry: str) -> float:
        """One scrape's text built on the event loop, without HTTP: seconds."""
        started = time.perf_counter()
        self.metrics.text(registry)
        return time.perf_counter() - started

    def stop(self) -> None:
        self.run(self.metrics.stop())
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queues", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    broker = Broker()
    started = time.perf_counter()
    broker.run(broker.declare(args.queues))
    print(f"{args.queues} queues declared in {time.perf_counter() - started:.1f} s")
    params = pika.ConnectionParameters("127.0.0.1", broker.server.port)
    connections = [pika.BlockingConnection(params) for _ in range(args.connections)]
    for connection in connections:
        connection.channel()
        connection.channel().basic_publish("", "q-00001", b"y")
    client = http.client.HTTPConnection("127.0.0.1", broker.metrics.port)
    print(f"{'request':<32} {'median':>8} {'p95':>8} {'max':>8} {'bytes':>10}")
    for path, headers, label in REQUESTS:
        times = []
        size = 0
        for _ in range(args.runs):
            started = time.perf_counter()
            client.request("GET", path, headers=headers)
            response = client.getresponse()
            body = response.read()
            times.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise SystemExit(f"{path}: {response.status} {body[:200]!r}")
            size = len(body)
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        print(f"{label:<32} {statistics.median(times):7.1f}ms {p95:7.1f}ms {times[-1]:7.1f}ms {size:>10}")
    for registry in ("default", "per-object"):
        best = min(broker.run(broker.render(registry)) for _ in range(5)) * 1000
        print(f"text of {registry!r} on the event loop (best of 5): {best:.1f} ms")
    for connection in connections:
        connection.close()
    broker.stop()


if __name__ == "__main__":
    main()
