"""A Jepsen-style check of replicated queues: three broker processes on loopback, publishers
with confirms and consumers with manual acks on a quorum queue or a classic queue mirrored by
an ``ha-mode: all`` policy (``--queue-type mirrored``), while a nemesis kills nodes
with SIGKILL and restarts them, and cuts nodes off from the others (fault-injecting proxies
on every link and heartbeat path, tests/cluster/proxy.py). At the end every node is up, a
last consumer drains the queue, and the history is checked: every confirmed message was
acked during the run or is delivered in the final drain (lost = 0); the final drain has each
message once, and each publisher's messages that were never delivered before in the order
published; duplicates come only from redelivery.

    python scripts/jepsen_queues.py --seconds 120 --seed 7 [--queue-type quorum|mirrored]

The suite runs a short version (tests/cluster/test_quorum_jepsen.py); docs/clustering.md has
the results of long runs.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pika
from broker_process import free_port, wait_listening

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cluster"))
from proxy import Proxies  # noqa: E402 - the suite's fault-injecting proxies

NAMES = [f"jepsen-{i}@localhost" for i in range(3)]
QUEUE = "jepsen"


class Node:
    def __init__(self, index: int, base: Path, cluster_ports: list[int], cookie: Path,
                 peer_ports: dict[int, int] | None = None) -> None:  # fmt: skip
        """``peer_ports``: where this node dials each other node (a proxy's port), else their
        cluster ports."""
        self.index = index
        self.port = free_port()
        self.data_dir = base / f"node{index}"
        config = base / f"node{index}.conf"
        config.write_text("".join(
            f"cluster_formation.classic_config.nodes.{n} = {NAMES[j]}:{(peer_ports or {}).get(j, cluster_ports[j])}\n"
            for n, j in enumerate(j for j in range(3) if j != index)
        ))  # fmt: skip
        self.command = [sys.executable, "-m", "amqp_server", "--host", "127.0.0.1", "--port", str(self.port),
                        "--data-dir", str(self.data_dir), "--node-name", NAMES[index],
                        "--cluster-port", str(cluster_ports[index]), "--cookie-file", str(cookie),
                        "--config", str(config), "--log-level", "error", "--management-port", "0",
                        "--prometheus-port", "0"]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self) -> None:
        assert self.process is not None
        wait_listening(self.port, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def connect(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.port, credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=1, socket_timeout=5, blocked_connection_timeout=10,
        ))  # fmt: skip


@dataclass
class History:
    confirmed: set[str] = field(default_factory=set)
    unconfirmed: set[str] = field(default_factory=set)  # nacked or unanswered: may be in or not
    acked: set[str] = field(default_factory=set)
    delivered: set[str] = field(default_factory=set)  # acked or not
    deliveries: int = 0
    redeliveries: int = 0
    kills: int = 0
    partitions: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def publisher(nodes: list[Node], history: History, stop: threading.Event, name: str, rng: random.Random) -> None:
    number = 0
    while not stop.is_set():
        node = rng.choice([n for n in nodes if n.up] or nodes)
        try:
            with node.connect() as connection:
                channel = connection.channel()
                channel.confirm_delivery()
                while not stop.is_set():
                    number += 1
                    body = f"{name}-{number}"
                    try:
                        channel.basic_publish("", QUEUE, body.encode(), pika.BasicProperties(delivery_mode=2))
                    except pika.exceptions.NackError:
                        with history.lock:
                            history.unconfirmed.add(body)
                        time.sleep(0.05)  # refused (no leader yet): not in a tight loop
                        continue
                    except BaseException:
                        with history.lock:
                            history.unconfirmed.add(body)
                        raise
                    with history.lock:
                        history.confirmed.add(body)
        except Exception as exc:  # noqa: BLE001 - the node went or refused: another one
            with history.lock:
                history.errors.append(f"publisher: {type(exc).__name__}")
            time.sleep(0.1)


def consumer(nodes: list[Node], history: History, stop: threading.Event, rng: random.Random) -> None:
    while not stop.is_set():
        node = rng.choice([n for n in nodes if n.up] or nodes)
        try:
            with node.connect() as connection:
                channel = connection.channel()
                channel.basic_qos(prefetch_count=20)
                for method, _properties, body in channel.consume(QUEUE, inactivity_timeout=0.5):
                    if stop.is_set():
                        break
                    if method is None:
                        continue
                    with history.lock:
                        history.delivered.add(body.decode())
                    channel.basic_ack(method.delivery_tag)
                    with history.lock:
                        history.deliveries += 1
                        history.redeliveries += method.redelivered
                        history.acked.add(body.decode())
        except Exception as exc:  # noqa: BLE001 - cancelled on failover, or the node went
            with history.lock:
                history.errors.append(f"consumer: {type(exc).__name__}")
            time.sleep(0.1)


def nemesis(nodes: list[Node], history: History, stop: threading.Event, rng: random.Random,
            proxies: Proxies | None) -> None:  # fmt: skip
    """Every 1-2.5 s a random node is killed with SIGKILL and restarted 0.5-2 s later, or (with
    ``proxies``, one time in two) cut off from the others for 1-4 s."""
    while not stop.is_set():
        time.sleep(rng.uniform(1.0, 2.5))
        if stop.is_set():
            break
        victim = rng.choice(nodes)
        if proxies is not None and rng.random() < 0.5:
            proxies.isolate(victim.index)
            history.partitions += 1
            time.sleep(rng.uniform(1.0, 4.0))
            proxies.heal()
            continue
        victim.kill()
        history.kills += 1
        time.sleep(rng.uniform(0.5, 2.0))
        victim.start()
        victim.wait()


def drain(nodes: list[Node]) -> list[str]:
    """The final consumer: everything left in the queue, acked."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with nodes[0].connect() as connection:
                channel = connection.channel()
                channel.queue_declare(QUEUE, passive=True)
                channel.basic_qos(prefetch_count=200)
                bodies = []
                for method, _properties, body in channel.consume(QUEUE, inactivity_timeout=3):
                    if method is None:
                        return bodies
                    channel.basic_ack(method.delivery_tag)
                    bodies.append(body.decode())
        except Exception:  # the queue's new leader is not in place yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def declare(node: Node, queue_type: str) -> None:
    """The queue under test: a quorum queue, or a classic one an ha-mode policy mirrors."""
    if queue_type == "mirrored":
        policy = json.dumps({"ha-mode": "all", "ha-sync-mode": "automatic"})
        subprocess.run([str(Path(sys.executable).with_name("amqp-ctl")), "--data-dir", str(node.data_dir),
                        "set_policy", "ha", f"^{QUEUE}$", policy], check=True, capture_output=True)  # fmt: skip
        arguments = {}
    else:
        arguments = {"x-queue-type": "quorum"}
    with node.connect() as connection:
        connection.channel().queue_declare(QUEUE, durable=True, arguments=arguments)


def out_of_order(final: list[str], delivered: set[str]) -> int:
    """Messages of the final drain that come before an earlier message of their publisher,
    among those never delivered before (a redelivered one may come back anywhere)."""
    last: dict[str, int] = {}
    count = 0
    for body in final:
        if body in delivered:
            continue
        publisher, number = body.rsplit("-", 1)
        if int(number) < last.get(publisher, 0):
            count += 1
        last[publisher] = max(last.get(publisher, 0), int(number))
    return count


def run(seconds: float, seed: int, publishers: int = 2, queue_type: str = "quorum",
        partitions: bool = True) -> dict[str, object]:  # fmt: skip
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        cookie = base / "cookie"
        cookie.write_text("jepsen\n")
        cluster_ports = [free_port() for _ in range(3)]
        proxies = Proxies(cluster_ports) if partitions else None
        nodes = [Node(i, base, cluster_ports, cookie,
                      {j: proxies.pairs[i, j].port for j in range(3) if j != i} if proxies else None)
                 for i in range(3)]  # fmt: skip
        for node in nodes:
            node.start()
        try:
            for node in nodes:
                node.wait()
            declare(nodes[0], queue_type)
            history = History()
            stop = threading.Event()
            workers = [threading.Thread(target=publisher, args=(nodes, history, stop, f"p{i}", random.Random(rng.random())))
                       for i in range(publishers)]  # fmt: skip
            workers.append(threading.Thread(target=consumer, args=(nodes, history, stop, random.Random(rng.random()))))
            chaos = threading.Thread(target=nemesis, args=(nodes, history, stop, random.Random(rng.random()), proxies))
            for worker in [*workers, chaos]:
                worker.daemon = True
                worker.start()
            time.sleep(seconds)
            stop.set()
            chaos.join(60)
            for worker in workers:
                worker.join(30)
            for node in nodes:  # every node up for the final drain
                if not node.up:
                    node.start()
                    node.wait()
            final = drain(nodes)
        finally:
            for node in nodes:
                node.kill()
            if proxies is not None:
                proxies.close()
    drained = set(final)
    lost = history.confirmed - history.acked - drained
    return {
        "seed": seed,
        "seconds": seconds,
        "queue_type": queue_type,
        "kills": history.kills,
        "partitions": history.partitions,
        "confirmed": len(history.confirmed),
        "unconfirmed": len(history.unconfirmed),
        "acked_during_run": len(history.acked),
        "deliveries_during_run": history.deliveries,
        "redelivered_during_run": history.redeliveries,
        "final_drain": len(final),
        "final_drain_duplicates": len(final) - len(drained),
        "final_drain_out_of_order": out_of_order(final, history.delivered),
        "redelivered_after_ack": len(drained & history.acked),
        "lost": sorted(lost)[:20],
        "lost_count": len(lost),
        "client_errors": len(history.errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--queue-type", choices=("quorum", "mirrored"), default="quorum")
    parser.add_argument("--no-partitions", action="store_true", help="kills and restarts only")
    args = parser.parse_args()
    result = run(args.seconds, args.seed, queue_type=args.queue_type, partitions=not args.no_partitions)
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["lost_count"] or result["final_drain_duplicates"] or result["final_drain_out_of_order"]
             else 0)  # fmt: skip


if __name__ == "__main__":
    main()
