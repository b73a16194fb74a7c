"""Crash-test harness: publishers with confirms and acking consumers against a broker process that
is killed with SIGKILL at random moments and restarted on the same data directory, then a ledger
check that nothing confirmed was lost and nothing was duplicated.

Shared by ``tests/integration/test_crash.py`` (a few cycles in CI) and ``scripts/crash_test.py``
(the long run whose result goes in ``docs/crash-test.md``), so both check exactly the same thing.

Topology: the durable fanout exchange ``crash.fanout`` bound to the durable queues ``crash.f1``,
``crash.f2`` and ``crash.f3``, and the durable queue ``crash.direct`` reached through the default
exchange. Every message body starts with a JSON header line naming its id, publisher and sequence
number, followed by padding derived from the id, so a delivery identifies itself and a damaged body
is detected.

What a client can know, and so what is checked (``evaluate``):

* A persistent message whose publish was confirmed must reach every queue it was routed to and stay
  there until it is acked: if its last delivery before the final drain was never acked (or it was
  never delivered at all), the final drain must deliver it. Otherwise it is **lost**.
* An ack is *maybe* once ``basic.ack`` was handed to the socket (it may not have reached the broker,
  let alone its disk) and *definite* once a later ``basic.qos`` round trip on the same channel came
  back (the broker processed it). Neither promises the ack is on disk, as in RabbitMQ: a message acked
  just before a kill may come back after the restart. Such a return is counted (``resurrected``) but
  is not a failure.
* Within one broker lifetime each queue delivers each message at most once: consumers never reject,
  nack or close a channel while the broker runs, so nothing is requeued. A second copy is
  **duplicated** (this covers unconfirmed messages too: they may be absent or present, never twice).
* Every delivery names a message that was published and routed to that queue (**unknown** otherwise)
  and its body is intact (**corrupt** otherwise).
* Transient messages (delivery mode 1) never outlive the broker lifetime they were published in
  (**transient_survived** otherwise), as RabbitMQ drops them on recovery.
* Warnings, not failures: order (a publisher's messages in one queue come in publish order within a
  broker lifetime), the redelivered flag on a message delivered and left unacked in an earlier
  lifetime, resurrections.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pika.exceptions

EXCHANGE = "crash.fanout"
FANOUT_QUEUES = ("crash.f1", "crash.f2", "crash.f3")
DIRECT_QUEUE = "crash.direct"
ALL_QUEUES = (*FANOUT_QUEUES, DIRECT_QUEUE)
ROUTES: dict[str, tuple[str, ...]] = {"fanout": FANOUT_QUEUES, "direct": (DIRECT_QUEUE,)}

# Errors a client sees when the broker goes away under it; anything else is a harness or broker bug.
CLIENT_ERRORS = (pika.exceptions.AMQPError, OSError, EOFError)


def free_port() -> int:
    """A port that is free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- message bodies --------------------------------------------------------------------------------


def padding(mid: str, size: int) -> bytes:
    """Deterministic filler derived from the id, so the consumer can verify a body byte for byte."""
    block = hashlib.sha256(mid.encode()).hexdigest().encode()
    return (block * (size // len(block) + 1))[:size]


def make_body(mid: str, publisher: str, seq: int, size: int) -> bytes:
    header = json.dumps({"id": mid, "p": publisher, "s": seq, "n": size}, separators=(",", ":"))
    return header.encode() + b"\n" + padding(mid, size)


def parse_body(body: bytes) -> tuple[str | None, bool]:
    """The message id in a body and whether the body is intact (``None`` if unreadable)."""
    header, sep, rest = body.partition(b"\n")
    try:
        meta = json.loads(header)
        mid = str(meta["id"])
        size = int(meta["n"])
    except (ValueError, KeyError, TypeError):
        return None, False
    return mid, bool(sep) and rest == padding(mid, size)


# -- the ledger ------------------------------------------------------------------------------------


@dataclass
class Sent:
    """A message handed to ``basic_publish`` (whether or not it was confirmed)."""

    mid: str
    publisher: str
    seq: int
    route: str  # a key of ROUTES
    persistent: bool
    epoch: int


@dataclass
class Delivery:
    """One delivery to a consumer; ``ack`` goes none -> maybe -> definite as described above."""

    queue: str
    mid: str | None
    epoch: int
    redelivered: bool
    intact: bool
    ack: str = "none"


@dataclass
class Ledger:
    """Everything the clients did and saw during a run."""

    sent: dict[str, Sent] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)
    nacked: set[str] = field(default_factory=set)
    # Per (epoch, queue): deliveries in the order the single consumer of that queue received them.
    deliveries: dict[tuple[int, str], list[Delivery]] = field(default_factory=lambda: defaultdict(list))
    final_epoch: int = 0
    errors: list[str] = field(default_factory=list)  # client errors while the broker was up


@dataclass
class Report:
    """The verdict on a ledger: failure counts, warnings, totals and a few examples of each."""

    published: int
    confirmed: int
    nacked: int
    delivered: int
    acked: int
    failures: dict[str, int]
    warnings: dict[str, int]
    examples: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return not any(self.failures.values())

    def describe(self) -> str:
        lines = [f"failures {self.failures}", f"warnings {self.warnings}"]
        lines += [f"  {kind}: {', '.join(items)}" for kind, items in self.examples.items() if items]
        return "\n".join(lines)


def evaluate(ledger: Ledger) -> Report:
    """Check a finished run's ledger (the last epoch being a clean drain of every queue)."""
    failures = dict.fromkeys(
        ("lost", "duplicated", "unknown", "corrupt", "transient_survived", "client_errors"), 0
    )
    warnings = dict.fromkeys(("order", "redelivered_flag_missing", "resurrected"), 0)
    examples: dict[str, list[str]] = defaultdict(list)

    def note(bucket: dict[str, int], kind: str, text: str, count: int = 1) -> None:
        bucket[kind] += count
        if len(examples[kind]) < 10:
            examples[kind].append(text)

    history: dict[tuple[str, str], list[Delivery]] = defaultdict(list)  # (queue, id) -> in time order
    delivered = acked = 0
    for epoch, queue in sorted(ledger.deliveries):
        seen: dict[str, int] = defaultdict(int)
        last_seq: dict[str, int] = {}
        for d in ledger.deliveries[(epoch, queue)]:
            delivered += 1
            acked += d.ack != "none"
            if d.mid is None or not d.intact:
                note(failures, "corrupt", f"{queue}@{epoch}:{d.mid}")
                if d.mid is None:
                    continue
            sent = ledger.sent.get(d.mid)
            if sent is None or queue not in ROUTES[sent.route]:
                note(failures, "unknown", f"{queue}@{epoch}:{d.mid}")
                continue
            seen[d.mid] += 1
            if seen[d.mid] == 2:
                note(failures, "duplicated", f"{queue}@{epoch}:{d.mid}")
            if not sent.persistent and epoch > sent.epoch:
                note(failures, "transient_survived", f"{queue}@{epoch}:{d.mid} (published @{sent.epoch})")
            previous = history[(queue, d.mid)]
            if previous and previous[-1].epoch < epoch:
                if not d.redelivered and previous[-1].ack == "none":
                    note(warnings, "redelivered_flag_missing", f"{queue}@{epoch}:{d.mid}")
                if previous[-1].ack == "definite":
                    note(warnings, "resurrected", f"{queue}@{epoch}:{d.mid}")
            previous.append(d)
            if sent.publisher in last_seq and sent.seq <= last_seq[sent.publisher] and seen[d.mid] == 1:
                note(warnings, "order", f"{queue}@{epoch}:{d.mid} after seq {last_seq[sent.publisher]}")
            last_seq[sent.publisher] = max(sent.seq, last_seq.get(sent.publisher, 0))

    for mid in ledger.confirmed:
        sent = ledger.sent[mid]
        if not sent.persistent:
            continue
        for queue in ROUTES[sent.route]:
            past = history.get((queue, mid), [])
            if any(d.epoch == ledger.final_epoch for d in past):
                continue  # still there at the end: fine
            before = [d for d in past if d.epoch < ledger.final_epoch]
            if not before or before[-1].ack == "none":
                where = f"last delivered @{before[-1].epoch}, unacked" if before else "never delivered"
                note(failures, "lost", f"{queue}:{mid} ({where})")

    for text in ledger.errors:
        note(failures, "client_errors", text)
    return Report(
        published=len(ledger.sent),
        confirmed=len(ledger.confirmed),
        nacked=len(ledger.nacked),
        delivered=delivered,
        acked=acked,
        failures=failures,
        warnings=warnings,
        examples=dict(examples),
    )


# -- the broker process ----------------------------------------------------------------------------


class BrokerProcess:
    """``python -m amqp_server`` on loopback with a fixed data directory; stderr goes to a log file."""

    def __init__(self, data_dir: Path, log_path: Path, memory_window: int | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.memory_window = memory_window
        self.port = free_port()
        self.management_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def spawn(self) -> None:
        """Start the process without waiting for it to listen."""
        assert self.process is None or self.process.poll() is not None
        command = [sys.executable, "-m", "amqp_server", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--management-port", str(self.management_port), "--prometheus-port", "0"]
        command += ["--data-dir", str(self.data_dir)]
        command += ["--log-level", "WARNING"]
        if self.memory_window is not None:
            config = self.data_dir.parent / "broker.conf"
            config.write_text(f"queue_memory_window = {self.memory_window}\n")
            command += ["--config", str(config)]
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir.parent
            )
        self.starts += 1

    def wait_listening(self, timeout: float = 60.0) -> float:
        """Block until the broker accepts connections (it listens only after recovery); seconds taken."""
        assert self.process is not None
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return time.monotonic() - began
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"broker did not listen on {self.port} within {timeout} s:\n{self.log_tail()}")

    def start(self, timeout: float = 60.0) -> float:
        self.spawn()
        return self.wait_listening(timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, the store sees exactly what a power cut would leave."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait: used after the final drain."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def connect(port: int) -> pika.BlockingConnection:
    """A pika connection whose every wait is bounded."""
    params = pika.ConnectionParameters(
        "127.0.0.1",
        port,
        "/",
        pika.PlainCredentials("guest", "guest"),
        connection_attempts=1,
        socket_timeout=5,
        stack_timeout=10,
        blocked_connection_timeout=30,
        heartbeat=0,
    )
    return pika.BlockingConnection(params)


def declare_topology(port: int, passive: bool) -> list[str]:
    """Declare the exchange, queues and bindings; with ``passive``, report what is missing instead."""
    missing: list[str] = []
    connection = connect(port)
    try:
        for kind, name in [("exchange", EXCHANGE)] + [("queue", q) for q in ALL_QUEUES]:
            channel = connection.channel()
            try:
                if kind == "exchange":
                    channel.exchange_declare(EXCHANGE, "fanout", durable=True, passive=passive)
                else:
                    channel.queue_declare(name, durable=True, passive=passive)
                channel.close()
            except pika.exceptions.ChannelClosedByBroker as exc:
                missing.append(f"{kind} {name}: {exc.reply_code} {exc.reply_text}")
        if not passive:
            channel = connection.channel()
            for queue in FANOUT_QUEUES:
                channel.queue_bind(queue, EXCHANGE)
            channel.close()
    finally:
        connection.close()
    return missing


# -- clients ---------------------------------------------------------------------------------------


class Worker(threading.Thread):
    """A client thread; its records are merged into the ledger by the main thread after ``join``."""

    def __init__(self, name: str, port: int, epoch: int, stop: threading.Event, deadline: float) -> None:
        super().__init__(name=name, daemon=True)
        self.port = port
        self.epoch = epoch
        self.stop_event = stop
        self.deadline = deadline
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.work()
        except CLIENT_ERRORS as exc:
            if not self.stop_event.is_set():  # the broker was not being killed: it failed us
                self.error = f"{self.name}@{self.epoch}: {type(exc).__name__}: {exc}"
        except Exception as exc:  # a harness bug: report it, never hide it
            self.error = f"{self.name}@{self.epoch}: unexpected {type(exc).__name__}: {exc}"

    def running(self) -> bool:
        return not self.stop_event.is_set() and time.monotonic() < self.deadline

    def work(self) -> None:
        raise NotImplementedError


class Publisher(Worker):
    """Publishes in confirm mode, one message at a time, to the fanout exchange or the direct queue."""

    def __init__(
        self, name: str, port: int, epoch: int, stop: threading.Event, deadline: float,
        *, seed: int, transient_ratio: float, max_messages: int,
    ) -> None:
        super().__init__(name, port, epoch, stop, deadline)
        self.rng = random.Random(seed)
        self.transient_ratio = transient_ratio
        self.max_messages = max_messages
        self.sent: list[Sent] = []
        self.confirmed: list[str] = []
        self.nacked: list[str] = []

    def work(self) -> None:
        connection = connect(self.port)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for seq in range(1, self.max_messages + 1):
                if not self.running():
                    break
                mid = f"{self.name}.{seq}"
                route = self.rng.choice(("fanout", "direct"))
                persistent = self.rng.random() >= self.transient_ratio
                roll = self.rng.random()
                size = self.rng.randrange(150_000, 300_000) if roll < 0.01 else self.rng.randrange(0, 2000)
                self.sent.append(Sent(mid, self.name, seq, route, persistent, self.epoch))  # before the wire
                props = pika.BasicProperties(delivery_mode=2 if persistent else 1, message_id=mid)
                exchange, key = (EXCHANGE, "") if route == "fanout" else ("", DIRECT_QUEUE)
                try:
                    channel.basic_publish(exchange, key, make_body(mid, self.name, seq, size), props)
                except pika.exceptions.NackError:
                    self.nacked.append(mid)
                    continue
                self.confirmed.append(mid)
        finally:
            if connection.is_open:
                connection.close()


class Consumer(Worker):
    """Consumes one queue and acks in batches (one by one or ``multiple``), then makes the acks
    definite with a ``basic.qos`` round trip. Now and then it sits on a batch before acking, so kills
    find delivered but unacked messages; an ``absent`` consumer does not consume this cycle, so
    backlogs build up and are recovered. With ``until_empty`` it drains the queue and returns."""

    def __init__(
        self, name: str, port: int, epoch: int, stop: threading.Event, deadline: float,
        *, queue: str, seed: int, prefetch: int, until_empty: bool = False, absent: bool = False,
    ) -> None:
        super().__init__(name, port, epoch, stop, deadline)
        self.queue = queue
        self.rng = random.Random(seed)
        self.absent = absent
        self.prefetch = prefetch
        self.until_empty = until_empty
        self.deliveries: list[Delivery] = []
        self.drained = False

    def work(self) -> None:
        if self.absent:
            while self.running():
                time.sleep(0.05)
            return
        connection = connect(self.port)
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.prefetch)
            inbox: list[tuple[int, bool, bytes]] = []

            def on_message(_ch: object, method: pika.spec.Basic.Deliver, _props: object, body: bytes) -> None:
                inbox.append((method.delivery_tag, method.redelivered, body))

            channel.basic_consume(self.queue, on_message)
            idle_since = time.monotonic()
            while self.running():
                connection.process_data_events(time_limit=0.05)
                if not inbox:
                    if self.until_empty and time.monotonic() - idle_since > 0.5:
                        if channel.queue_declare(self.queue, durable=True, passive=True).method.message_count == 0:
                            self.drained = True
                            break
                        idle_since = time.monotonic()
                    continue
                idle_since = time.monotonic()
                batch, inbox[:] = list(inbox), []
                records = []
                for _tag, redelivered, body in batch:
                    mid, intact = parse_body(body)
                    record = Delivery(self.queue, mid, self.epoch, redelivered, intact)
                    self.deliveries.append(record)
                    records.append(record)
                if not self.until_empty and self.rng.random() < 0.1:
                    time.sleep(self.rng.uniform(0.05, 0.3))  # slow work: the kill may come now
                if self.rng.random() < 0.5:
                    for record in records:
                        record.ack = "maybe"  # set first: a failing basic_ack may still have sent it
                    channel.basic_ack(batch[-1][0], multiple=True)
                else:
                    for record, (tag, _r, _b) in zip(records, batch, strict=True):
                        record.ack = "maybe"
                        channel.basic_ack(tag)
                channel.basic_qos(prefetch_count=self.prefetch)  # round trip: the acks were processed
                for record in records:
                    record.ack = "definite"
        finally:
            if connection.is_open:
                connection.close()


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Settings:
    """Knobs of a run; the defaults are the documented long run's."""

    cycles: int = 100
    seed: int = 1
    publishers: int = 3
    min_delay: float = 0.2  # seconds of traffic before the kill
    max_delay: float = 2.0
    early_kill_ratio: float = 0.1  # cycles that first kill a start while it boots and recovers
    transient_ratio: float = 0.1
    absent_ratio: float = 0.25  # chance that a queue's consumer sits out a cycle
    # A small window, so that the backlogs built while consumers sit out are mostly paged out
    # to disk and the kills find paged tails being written and read back.
    memory_window: int | None = 200
    prefetch: int = 50
    max_messages_per_publisher: int = 20_000  # per cycle; a bound, not a target
    start_timeout: float = 60.0
    drain_timeout: float = 300.0


@dataclass
class CycleStats:
    cycle: int
    epoch: int
    recovery: float  # seconds from spawn to listening
    early_kill: float | None  # seconds after spawn of a kill during boot, if this cycle had one
    uptime: float  # seconds of traffic before the kill
    published: int = 0
    confirmed: int = 0
    delivered: int = 0
    acked: int = 0
    errors: int = 0

    def line(self, total: int) -> str:
        early = "" if self.early_kill is None else f" (after a kill {self.early_kill:.2f}s into boot)"
        return (
            f"cycle {self.cycle}/{total} epoch {self.epoch}: recovered in {self.recovery:.2f}s{early}, killed after "
            f"{self.uptime:.2f}s; published {self.published} confirmed {self.confirmed} "
            f"delivered {self.delivered} acked {self.acked} errors {self.errors}"
        )


class CrashRun:
    """Runs ``settings.cycles`` kill/restart cycles in ``workdir``, then drains and evaluates."""

    def __init__(self, workdir: Path, settings: Settings, log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.log = log
        workdir.mkdir(parents=True, exist_ok=True)
        self.broker = BrokerProcess(workdir / "data", workdir / "broker.log", settings.memory_window)
        self.ledger = Ledger()
        self.epoch = 0
        self.cycles: list[CycleStats] = []
        self.topology_lost: list[str] = []
        self.drain_incomplete: list[str] = []
        self.elapsed = 0.0
        self.last_recovery = 0.5

    def run(self) -> Report:
        """The whole run; the broker process is killed on any way out."""
        began = time.monotonic()
        try:
            for number in range(1, self.settings.cycles + 1):
                stats = self.cycle(number)
                self.cycles.append(stats)
                self.log(stats.line(self.settings.cycles))
            self.final_drain()
        finally:
            self.broker.kill()
        report = evaluate(self.ledger)
        for text in self.topology_lost:
            report.failures["topology_lost"] = report.failures.get("topology_lost", 0) + 1
            report.examples.setdefault("topology_lost", []).append(text)
        for text in self.drain_incomplete:
            report.failures["drain_incomplete"] = report.failures.get("drain_incomplete", 0) + 1
            report.examples.setdefault("drain_incomplete", []).append(text)
        self.elapsed = time.monotonic() - began
        return report

    def _start(self) -> float:
        recovery = self.broker.start(self.settings.start_timeout)
        self.epoch += 1
        if self.broker.starts == 1:
            declare_topology(self.broker.port, passive=False)
        else:
            lost = declare_topology(self.broker.port, passive=True)
            if lost:
                self.topology_lost += [f"epoch {self.epoch}: {text}" for text in lost]
                declare_topology(self.broker.port, passive=False)  # so the run can go on
        return recovery

    def cycle(self, number: int) -> CycleStats:
        s = self.settings
        early = None
        if self.broker.starts and self.rng.random() < s.early_kill_ratio:
            # Kill a start somewhere in its boot: interpreter start-up, store open, recovery.
            self.broker.spawn()
            self.epoch += 1
            early = self.rng.uniform(0.3, 1.1) * self.last_recovery
            time.sleep(early)
            self.broker.kill()
        recovery = self._start()
        self.last_recovery = recovery
        stop = threading.Event()
        deadline = time.monotonic() + s.max_delay + 30  # workers stop on `stop`; this bounds a stuck one
        workers: list[Worker] = []
        for index, queue in enumerate(ALL_QUEUES):
            workers.append(
                Consumer(
                    f"c{index}", self.broker.port, self.epoch, stop, deadline,
                    queue=queue, seed=self.rng.getrandbits(32), prefetch=s.prefetch,
                    absent=self.rng.random() < s.absent_ratio,
                )
            )
        for index in range(s.publishers):
            workers.append(
                Publisher(
                    f"e{self.epoch}p{index}", self.broker.port, self.epoch, stop, deadline,
                    seed=self.rng.getrandbits(32), transient_ratio=s.transient_ratio,
                    max_messages=s.max_messages_per_publisher,
                )
            )
        for worker in workers:
            worker.start()
        uptime = self.rng.uniform(s.min_delay, s.max_delay)
        time.sleep(uptime)
        stop.set()
        self.broker.kill()
        stats = CycleStats(number, self.epoch, recovery, early, uptime)
        self._collect(workers, stats)
        return stats

    def _collect(self, workers: list[Worker], stats: CycleStats) -> None:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                self.ledger.errors.append(f"{worker.name}@{worker.epoch}: still running 30 s after the kill")
            if worker.error:
                self.ledger.errors.append(worker.error)
                stats.errors += 1
            if isinstance(worker, Publisher):
                for sent in worker.sent:
                    self.ledger.sent[sent.mid] = sent
                self.ledger.confirmed.update(worker.confirmed)
                self.ledger.nacked.update(worker.nacked)
                stats.published += len(worker.sent)
                stats.confirmed += len(worker.confirmed)
            elif isinstance(worker, Consumer):
                self.ledger.deliveries[(worker.epoch, worker.queue)].extend(worker.deliveries)
                stats.delivered += len(worker.deliveries)
                stats.acked += sum(d.ack != "none" for d in worker.deliveries)

    def final_drain(self) -> None:
        """Restart once more and consume every queue to empty, with no kill."""
        self._start()
        self.ledger.final_epoch = self.epoch
        stop = threading.Event()
        deadline = time.monotonic() + self.settings.drain_timeout
        consumers = [
            Consumer(
                f"drain{index}", self.broker.port, self.epoch, stop, deadline,
                queue=queue, seed=index, prefetch=500, until_empty=True,
            )
            for index, queue in enumerate(ALL_QUEUES)
        ]
        for consumer in consumers:
            consumer.start()
        stats = CycleStats(0, self.epoch, 0.0, None, 0.0)
        for consumer in consumers:
            consumer.join(timeout=self.settings.drain_timeout + 30)
        stop.set()
        self._collect(consumers, stats)
        for consumer in consumers:
            if not consumer.drained:
                self.drain_incomplete.append(f"{consumer.queue} not empty after {self.settings.drain_timeout} s")
        self.log(f"final drain epoch {self.epoch}: delivered {stats.delivered}")
        self.broker.stop()

    def summary(self, report: Report) -> dict[str, object]:
        """The one JSON object the script prints and the docs table is filled from."""
        return {
            "cycles": self.settings.cycles,
            "seed": self.settings.seed,
            "memory_window": self.settings.memory_window,
            "early_kills": sum(c.early_kill is not None for c in self.cycles),
            "published": report.published,
            "confirmed": report.confirmed,
            "nacked": report.nacked,
            "delivered": report.delivered,
            "acked": report.acked,
            "lost": report.failures["lost"],
            "duplicated": report.failures["duplicated"],
            "failures": {k: v for k, v in report.failures.items() if v},
            "warnings": {k: v for k, v in report.warnings.items() if v},
            "max_recovery_s": round(max((c.recovery for c in self.cycles), default=0.0), 2),
            "elapsed_s": round(self.elapsed, 1),
            "ok": report.ok,
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "cpus": os.cpu_count(),
        }
