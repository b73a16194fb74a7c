"""Confirmed persistent throughput of a quorum queue on three local nodes: ours against
RabbitMQ's (Debian's package, three nodes on other ports), measured with amqp-perf in
alternating rounds on the same machine (docs/performance.md, "Quorum queues").

    python scripts/quorum_bench.py --seconds 15 --rounds 3

Each round: one producer with publisher confirms (at most ``--confirm`` unconfirmed), one
consumer with manual acks (prefetch 200), 1 KB persistent messages, the queue declared on the
first node and used from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from broker_process import free_port
from jepsen_queues import Node

RABBIT_NAMES = [f"qbench{i}@localhost" for i in range(3)]


class RabbitCluster:
    """Three RabbitMQ nodes from Debian's package, clustered, on free ports."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.ports = [free_port() for _ in range(3)]
        plugins = base / "enabled_plugins"
        plugins.write_text("[].\n")
        self.env = []
        base.chmod(0o755)  # Debian's scripts run the nodes as the rabbitmq user when started by root
        for i, name in enumerate(RABBIT_NAMES):
            home = base / f"rabbit{i}"
            home.mkdir()
            if os.geteuid() == 0:
                shutil.chown(home, "rabbitmq", "rabbitmq")
            self.env.append({**os.environ, "RABBITMQ_NODENAME": name, "RABBITMQ_NODE_PORT": str(self.ports[i]),
                             "RABBITMQ_DIST_PORT": str(free_port()), "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
                             "RABBITMQ_LOG_BASE": str(home / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
                             "RABBITMQ_PID_FILE": str(home / "pid")})  # fmt: skip

    def ctl(self, i: int, *args: str) -> None:
        subprocess.run(["rabbitmqctl", "-n", RABBIT_NAMES[i], *args], env=self.env[i], check=True,
                       capture_output=True, timeout=120)  # fmt: skip

    def start(self) -> None:
        for i in range(3):
            subprocess.run(["rabbitmq-server", "-detached"], env=self.env[i], check=True)
        for i in range(3):
            self.ctl(i, "wait", self.env[i]["RABBITMQ_PID_FILE"], "--timeout", "120")
        for i in (1, 2):
            self.ctl(i, "stop_app")
            self.ctl(i, "join_cluster", RABBIT_NAMES[0])
            self.ctl(i, "start_app")

    def stop(self) -> None:
        for i in range(3):
            subprocess.run(["rabbitmqctl", "-n", RABBIT_NAMES[i], "stop"], env=self.env[i], capture_output=True,
                           timeout=120)  # fmt: skip


def perf(port: int, seconds: float, confirm: int, queue: str) -> dict[str, float]:
    amqp_perf = str(Path(sys.executable).with_name("amqp-perf"))
    done = subprocess.run([amqp_perf, "-h", f"amqp://guest:guest@127.0.0.1:{port}/%2F", "-x", "1", "-y", "1",
                           "-s", "1024", "-f", "persistent", "-c", str(confirm), "-q", "200", "--quorum-queue",
                           "-u", queue, "-z", str(seconds), "--json"],
                          capture_output=True, text=True, timeout=seconds + 120)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"amqp-perf failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--confirm", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("rabbitmq-server") is None:
        raise SystemExit("rabbitmq-server is not installed (apt-get install -y rabbitmq-server)")
    results: dict[str, list[dict[str, float]]] = {"ours": [], "rabbitmq": []}
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        cookie = base / "cookie"
        cookie.write_text("qbench\n")
        cluster_ports = [free_port() for _ in range(3)]
        ours = [Node(i, base, cluster_ports, cookie) for i in range(3)]
        rabbit = RabbitCluster(base)
        try:
            for node in ours:
                node.start()
            for node in ours:
                node.wait()
            rabbit.start()
            time.sleep(2)  # the groups' first elections
            for round_ in range(args.rounds):
                order = ["ours", "rabbitmq"] if round_ % 2 == 0 else ["rabbitmq", "ours"]
                for who in order:
                    port = ours[0].port if who == "ours" else rabbit.ports[0]
                    result = perf(port, args.seconds, args.confirm, f"qbench-{round_}")
                    results[who].append(result)
                    print(who, json.dumps({k: result.get(k) for k in ("send_rate", "receive_rate")}), flush=True)
        finally:
            for node in ours:
                node.kill()
            rabbit.stop()
    print("| broker | sent msg/s (median) | received msg/s (median) | rounds |")
    print("| --- | --- | --- | --- |")
    for who, rows in results.items():
        sent = statistics.median(row["send_rate"] for row in rows)
        received = statistics.median(row["receive_rate"] for row in rows)
        print(f"| {who} | {sent:,.0f} | {received:,.0f} | {len(rows)} |")


if __name__ == "__main__":
    main()
