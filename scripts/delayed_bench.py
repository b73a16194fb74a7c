"""The delayed-message exchange under load: memory with a million messages held, delivery
accuracy, and the held messages across a restart. Not a test: its figures go in docs/plugins.md.

    python scripts/delayed_bench.py [--pending 1000000] [--accuracy 100000] [--within 60]
                                    [--publishers 2] [--window N]

A broker process (``python -m amqp_server``, a fresh data directory with the plugin enabled in
its ``enabled_plugins`` file) on free ports. Then, with pika:

1. ``--pending`` messages are published to a delayed exchange with delays spread over 10 to 20
   minutes (none comes due during the run), by ``--publishers`` processes; the broker's RSS is
   read before and once the management API counts them all held (``messages_delayed``).
2. ``--accuracy`` messages due within ``--within`` seconds are published at an even pace during
   the first half of it, due evenly over the second half, and consumed (by another process)
   while the others stay held; each body carries its due time, so lateness is receive time
   minus due time (one clock: the same machine).
3. The broker is stopped (SIGTERM) and started again on the same directory: how long it takes to
   listen, and whether every message is still held.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pika
from broker_process import free_port

PLUGIN = "rabbitmq_delayed_message_exchange"
EXCHANGE = "bench.delayed"
SPREAD = (600_000, 1_200_000)  # ms: the held messages' delays


class Broker:
    def __init__(self, data_dir: Path, window: int | None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.management_port = free_port()
        self.env = dict(os.environ)
        if window is not None:
            self.env["AMQP_SERVER_DELAYED_MESSAGE_WINDOW"] = str(window)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start; seconds until it listens (AMQP and the management API)."""
        command = [sys.executable, "-m", "amqp_server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--management-port", str(self.management_port), "--prometheus-port", "0",
                   "--data-dir", str(self.data_dir)]  # fmt: skip
        log = open(self.data_dir / "broker.log", "ab")  # noqa: SIM115 - the process writes it
        started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=log, stderr=log, env=self.env)
        for port in (self.port, self.management_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if self.process.poll() is not None:
                        raise SystemExit(f"broker exited; see {self.data_dir / 'broker.log'}") from None
                    time.sleep(0.05)
        return time.monotonic() - started

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)

    def rss_mib(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def held(self) -> int:
        url = f"http://127.0.0.1:{self.management_port}/api/exchanges/%2F/{urllib.parse.quote(EXCHANGE, safe='')}"
        request = urllib.request.Request(url)
        request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["messages_delayed"]

    def connect(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.port))


def publish_held(port: int, count: int, seed: int) -> None:
    """One publisher process: ``count`` messages with delays spread over SPREAD."""
    rng = random.Random(seed)
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    channel = connection.channel()
    body = b"x" * 32
    for _ in range(count):
        props = pika.BasicProperties(headers={"x-delay": rng.randint(*SPREAD)}, delivery_mode=2)
        channel.basic_publish(EXCHANGE, "held", body, props)
    connection.close()


def wait_held(broker: Broker, count: int, limit: float) -> float:
    started = time.monotonic()
    while broker.held() < count:
        if time.monotonic() - started > limit:
            raise SystemExit(f"only {broker.held()} of {count} held after {limit} s")
        time.sleep(0.5)
    return time.monotonic() - started


def consume_lateness(port: int, count: int, limit: float, results: multiprocessing.Queue, ready: Any) -> None:
    """The consumer process: the lateness in ms of ``count`` messages whose body is their due time."""
    lateness: list[float] = []
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    channel = connection.channel()

    def on_message(_channel: object, _method: object, _props: object, body: bytes) -> None:
        lateness.append(time.time() * 1000 - float(body))
        if len(lateness) >= count:
            channel.stop_consuming()

    channel.basic_consume("bench.accuracy", on_message, auto_ack=True)
    connection.call_later(limit, channel.stop_consuming)
    ready.set()
    channel.start_consuming()
    connection.close()
    results.put(lateness)


def accuracy(broker: Broker, count: int, within: float) -> list[float]:
    """Lateness in ms of ``count`` messages due evenly over the second half of the next
    ``within`` seconds, published at an even pace during the first half (as a steady
    producer would, rather than in one burst whose own queueing would be measured)."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    ready = multiprocessing.Event()
    consumer = multiprocessing.Process(
        target=consume_lateness, args=(broker.port, count, within + 60, results, ready)
    )
    consumer.start()
    ready.wait(30)
    connection = broker.connect()
    channel = connection.channel()
    begin = time.time()
    half = within / 2
    for index in range(count):
        if index % 100 == 0:  # keep to the pace
            ahead = begin + (half - 5) * index / count - time.time()
            if ahead > 0:
                time.sleep(ahead)
        now = time.time() * 1000
        delay = max(1, round((begin + half + half * index / count) * 1000 - now))
        due = f"{now + delay:.3f}".encode()  # what this publish asks for
        channel.basic_publish(EXCHANGE, "accuracy", due, pika.BasicProperties(headers={"x-delay": delay}))
    connection.close()
    lateness = results.get(timeout=within + 90)
    consumer.join()
    if len(lateness) < count:
        raise SystemExit(f"only {len(lateness)} of {count} accuracy messages arrived")
    return lateness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--accuracy", type=int, default=100_000)
    parser.add_argument("--within", type=float, default=60.0)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--window", type=int, default=None, help="memory window (default: the plugin's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="delayed-bench-") as directory:
        data_dir = Path(directory)
        (data_dir / "enabled_plugins").write_text(f"[{PLUGIN}].\n")
        broker = Broker(data_dir, args.window)
        broker.start()
        try:
            run(broker, args)
        finally:
            if broker.process is not None and broker.process.poll() is None:
                broker.process.kill()


def run(broker: Broker, args: argparse.Namespace) -> None:
    connection = broker.connect()
    channel = connection.channel()
    channel.exchange_declare(
        EXCHANGE, "x-delayed-message", durable=True, arguments={"x-delayed-type": "direct"}
    )
    for name in ("held", "accuracy"):
        channel.queue_declare(f"bench.{name}", durable=True)
        channel.queue_bind(f"bench.{name}", EXCHANGE, name)
    connection.close()
    time.sleep(1)
    rss_before = broker.rss_mib()
    print(f"broker RSS before: {rss_before:.0f} MiB")

    started = time.monotonic()
    share = args.pending // args.publishers
    publishers = [
        multiprocessing.Process(
            target=publish_held, args=(broker.port, share + (i < args.pending % args.publishers), i)
        )
        for i in range(args.publishers)
    ]
    for process in publishers:
        process.start()
    for process in publishers:
        process.join()
    wait_held(broker, args.pending, 600)
    seconds = time.monotonic() - started
    rss_held = broker.rss_mib()
    size = sum(path.stat().st_size for path in (broker.data_dir / "plugins" / PLUGIN).glob("delayed.db*"))
    print(
        f"{args.pending} held in {seconds:.0f} s ({args.pending / seconds:.0f} msg/s, persistent, no confirms)"
    )
    print(
        f"broker RSS with {args.pending} held: {rss_held:.0f} MiB (+{rss_held - rss_before:.0f}); delayed.db {size / 2**20:.1f} MiB"
    )

    lateness = sorted(accuracy(broker, args.accuracy, args.within))
    p50 = statistics.median(lateness)
    p99 = lateness[int(len(lateness) * 0.99) - 1]
    print(f"{args.accuracy} messages due within {args.within:.0f} s while "
          f"{args.pending} stay held: lateness ms min {lateness[0]:.1f} p50 {p50:.1f} p99 {p99:.1f} "
          f"max {lateness[-1]:.1f}")  # fmt: skip
    print(f"broker RSS after: {broker.rss_mib():.0f} MiB")

    broker.stop()
    listening = broker.start()
    held_again = broker.held()
    print(f"restarted: listening after {listening:.1f} s; {held_again} held (of {args.pending}); "
          f"RSS {broker.rss_mib():.0f} MiB")  # fmt: skip
    broker.stop()


if __name__ == "__main__":
    main()
