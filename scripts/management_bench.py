"""Time the management HTTP API of a broker holding many queues (docs/management.md).

    python scripts/management_bench.py [--queues 10000] [--runs 50]

Starts a broker process (``python -m amqp_server``, as deployed) on free ports with a fresh
data directory, declares the queues over AMQP (transient; one in ten gets a message), waits
for a statistics round, then times each request over one keep-alive HTTP connection and
prints the first (cold) time, the median, the 95th percentile and the slowest, and the size
of the answer. The targets: a page of /api/queues under 100 ms, /api/overview under 50 ms.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import statistics
import subprocess
import sys
import tempfile
import time

import pika
from broker_process import free_port, wait_listening

REQUESTS = (
    ("/api/overview", "overview"),
    ("/api/queues?page=1", "queues, page 1 (100)"),
    ("/api/queues/%2F?page=50&page_size=100", "queues of /, page 50"),
    ("/api/queues?page=1&page_size=500", "queues, page of 500"),
    ("/api/queues?page=1&name=q-0042", "queues, filtered by name"),
    ("/api/queues?page=1&sort=messages&sort_reverse=true", "queues, page 1 sorted by messages"),
    ("/api/queues/%2F/q-05000", "one queue"),
    ("/api/queues?columns=name,messages", "all queues, two columns"),
    ("/api/queues", "all queues, everything"),
    ("/api/exchanges?page=1", "exchanges, page 1"),
    ("/api/vhosts", "vhosts"),
    ("/api/nodes", "nodes"),
)
HEADERS = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}


def declare(port: int, count: int) -> None:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    channel = connection.channel()
    for index in range(count):
        name = f"q-{index:05d}"
        channel.queue_declare(name)
        if index % 10 == 0:
            channel.basic_publish("", name, b"x" * 100)
    connection.close()


def time_requests(port: int, runs: int) -> None:
    client = http.client.HTTPConnection("127.0.0.1", port)
    print(f"{'request':<36} {'first':>8} {'median':>8} {'p95':>8} {'max':>8} {'bytes':>10}")
    for path, label in REQUESTS:
        times = []
        size = 0
        for _ in range(runs if "everything" not in label else max(5, runs // 10)):
            started = time.perf_counter()
            client.request("GET", path, headers=HEADERS)
            response = client.getresponse()
            body = response.read()
            times.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise SystemExit(f"{path}: {response.status} {body[:200]!r}")
            size = len(body)
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        print(
            f"{label:<36} {times[0]:7.1f}ms {statistics.median(ordered):7.1f}ms {p95:7.1f}ms "
            f"{ordered[-1]:7.1f}ms {size:>10}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queues", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    amqp, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        command = [sys.executable, "-m", "amqp_server", "--host", "127.0.0.1", "--port", str(amqp),
                   "--management-port", str(http_port), "--prometheus-port", "0", "--data-dir", data_dir,
                   "--log-level", "WARNING"]  # fmt: skip
        process = subprocess.Popen(command)
        try:
            wait_listening(amqp, process)
            started = time.perf_counter()
            declare(amqp, args.queues)
            print(f"{args.queues} queues declared in {time.perf_counter() - started:.1f} s")
            time.sleep(6)  # a statistics round (every 5 s) has seen them
            time_requests(http_port, args.runs)
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
