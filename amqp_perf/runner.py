"""The coordinator: declares the topology, starts the worker processes, turns their snapshots into
one report per second and a summary, and cleans up.

    result = run(Settings(uri=..., producers=2, consumers=2, time=5))
    result.summary()          # the JSON object of --json
    result.exit_code          # 0 ok, 2 connection/protocol error, 3 a worker did not stop,
                              # 4 no message flowed, 5 bad or out-of-order messages
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from amqp_perf import client, topology, workers
from amqp_perf.settings import Settings
from amqp_perf.stats import COUNTERS, ZERO, Histogram, Snapshot, add_counters

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
#: lead time between "go" and the first publish, so every worker starts at the same moment
GO_LEAD = 0.05

EXIT_OK, EXIT_ERROR, EXIT_STUCK, EXIT_NO_FLOW, EXIT_BAD = 0, 2, 3, 4, 5


@dataclass
class Tick:
    """One second of the run, all workers together: rates in msg/s."""

    time: float
    rates: dict[str, float]
    latency: Histogram
    confirm_latency: Histogram


@dataclass
class Result:
    settings: Settings
    broker: str
    processes: int
    exchange: str
    queues: list[str]
    elapsed: float = 0.0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    latency: Histogram = field(default_factory=Histogram)
    confirm_latency: Histogram = field(default_factory=Histogram)
    ticks: list[Tick] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stuck: int = 0
    #: CPU % (100 = one core) of each worker process over the run
    cpu: list[float] = field(default_factory=list)

    def rate(self, name: str) -> float:
        return self.counters[name] / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> int:
        s, c = self.settings, self.counters
        if self.stuck:
            return EXIT_STUCK
        if self.errors:
            return EXIT_ERROR
        if s.producers and s.consumers and c["published"] and not c["received"]:
            return EXIT_NO_FLOW
        if c["bad"] or c["out_of_order"]:
            return EXIT_BAD
        return EXIT_OK

    def summary(self) -> dict[str, Any]:
        """Everything as one JSON-able object."""
        s = self.settings
        code = self.exit_code
        return {
            "tool": "amqp-perf",
            "id": s.test_id,
            "broker": self.broker,
            "producers": s.producers,
            "consumers": s.consumers,
            "processes": self.processes,
            "exchange": self.exchange,
            "exchange_type": s.exchange_type,
            "queues": self.queues,
            "size": s.size,
            "flags": list(s.flags),
            "confirm": s.confirm,
            "qos": s.qos,
            "autoack": s.autoack,
            "multi_ack_every": s.multi_ack_every,
            "rate_limit": s.rate,
            "max_inflight": s.max_inflight,
            "seconds": round(self.elapsed, 3),
            **self.counters,
            "send_rate": round(self.rate("published"), 1),
            "confirm_rate": round(self.rate("confirmed"), 1) if s.confirms else None,
            "receive_rate": round(self.rate("received"), 1),
            "latency_us": self.latency.summary(),
            "confirm_latency_us": self.confirm_latency.summary() if s.confirms else None,
            "samples": [
                {"time": round(t.time, 3), **{k: round(v, 1) for k, v in t.rates.items()}} for t in self.ticks
            ],
            "tool_cpu_pct": round(sum(self.cpu), 1),
            "busiest_process_cpu_pct": round(max(self.cpu, default=0.0), 1),
            "errors": self.errors,
            "warnings": self.warnings,
            "exit": code,
            "ok": code == EXIT_OK,
        }


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def assign(producers: int, consumers: int, processes: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Spread consumers, then producers, round-robin over ``processes``: (producer ids,
    consumer ids) of each process, none empty."""
    processes = max(1, min(processes, producers + consumers))
    roles = [("c", j) for j in range(consumers)] + [("p", i) for i in range(producers)]
    shares: list[tuple[list[int], list[int]]] = [([], []) for _ in range(processes)]
    for k, (kind, ident) in enumerate(roles):
        shares[k % processes][0 if kind == "p" else 1].append(ident)
    return [(tuple(p), tuple(c)) for p, c in shares]


class _Coordinator:
    def __init__(
        self,
        settings: Settings,
        on_tick: Callable[[Tick], None] | None,
        on_error: Callable[[str], None] | None,
    ) -> None:
        self.settings = settings
        self.on_tick = on_tick
        self.on_error = on_error
        self.endpoint = client.parse_uri(settings.uri)
        self.topology = topology.plan(settings)
        processes = settings.processes or cpu_count()
        self.shares = assign(settings.producers, settings.consumers, processes)
        queues = [q for q, _key in self.topology.named_queues] or ["(server-named, one per consumer)"]
        self.result = Result(
            settings, self.endpoint.describe(), len(self.shares), self.topology.exchange, queues
        )
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        self.stop_requested = False

    def error(self, text: str) -> None:
        self.result.errors.append(text)
        if self.on_error is not None:
            self.on_error(text)

    def broadcast(self, *message: Any) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(message)

    def request_stop(self) -> None:
        if not self.stop_requested:
            self.stop_requested = True
            self.broadcast("stop")

    async def run(self) -> Result:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
                loop.add_signal_handler(sig, self.request_stop)
        try:
            await self._run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                    loop.remove_signal_handler(sig)
        return self.result

    async def _run(self) -> None:
        setup: client.Connection | None = None
        try:
            setup = await client.connect(
                self.endpoint, f"amqp-perf {self.settings.test_id} setup", frame_max=self.settings.frame_max
            )
            declared = await topology.declare(setup, self.topology, self.settings)
        except client.AmqpError as exc:
            self.error(f"set-up: {exc}")
            if setup is not None:
                setup.abort()
            return
        try:
            if not self.stop_requested:
                self._spawn()
                await self._conduct()
        finally:
            await self._reap()
            try:
                if setup.error is None:
                    await topology.cleanup(setup, declared, self.settings)
                    await setup.close()
                else:
                    self.result.warnings.append(f"clean-up skipped: set-up connection failed: {setup.error}")
            except client.AmqpError as exc:
                self.result.warnings.append(f"clean-up: {exc}")

    def _spawn(self) -> None:
        s = self.settings
        context = multiprocessing.get_context("spawn")
        inflight = None
        if s.max_inflight and s.producers and s.consumers:
            inflight = context.RawArray("Q", s.producers * s.consumers)
        run_tag = random.randrange(1 << 16)
        loop = asyncio.get_running_loop()
        for index, (producer_ids, consumer_ids) in enumerate(self.shares):
            plan = workers.WorkerPlan(index, s, self.topology, run_tag, producer_ids, consumer_ids)
            mine, theirs = context.Pipe()
            proc = context.Process(
                target=workers.process_main,
                args=(plan, theirs, inflight),
                name=f"amqp-perf-{index}",
                daemon=True,
            )
            proc.start()
            theirs.close()
            self.pipes.append(mine)
            self.procs.append(proc)
            loop.add_reader(mine.fileno(), self._receive, index)

    def _receive(self, index: int) -> None:
        pipe = self.pipes[index]
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(pipe.fileno())
            message = ("gone",)
        self.inbox.put_nowait((index, *message))

    async def _next(self, timeout: float) -> tuple[Any, ...] | None:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            return None

    async def _conduct(self) -> None:
        count = len(self.procs)
        ready: set[int] = set()
        finals: dict[int, Snapshot] = {}
        done: set[int] = set()
        deadline = time.monotonic() + START_TIMEOUT
        while len(ready) < count and not self.result.errors and not self.stop_requested:
            message = await self._next(max(0.0, deadline - time.monotonic()))
            if message is None:
                self.error(f"workers not ready within {START_TIMEOUT:g} s")
                break
            index, kind = message[0], message[1]
            if kind == "ready":
                ready.add(index)
            elif kind == "error":
                self.error(message[2])
            elif kind in ("done", "gone"):
                done.add(index)
                if kind == "done":
                    self.result.warnings += message[2]
                if index not in ready and not self.result.errors:
                    self.error(f"worker process {index} exited while starting")
        if len(ready) < count or self.stop_requested:
            self.stop_requested = True
            self.broadcast("stop")
            await self._wait_done(done)
            return
        s = self.settings
        t0 = time.monotonic() + GO_LEAD
        self.broadcast("go", t0, t0 + s.time if s.time else None)
        previous = {i: Snapshot(0.0, ZERO) for i in range(count)}
        pending: dict[int, dict[int, Snapshot]] = {}
        while len(finals) + len(done - finals.keys()) < count:
            message = await self._next(1.0)
            if message is None:
                for i, proc in enumerate(self.procs):
                    if not proc.is_alive() and i not in finals and i not in done:
                        done.add(i)
                        self.error(f"worker process {i} died (exit code {proc.exitcode})")
                        self.request_stop()
                continue
            index, kind = message[0], message[1]
            if kind == "tick":
                snapshot: Snapshot = message[3]
                self._collect(snapshot)
                tick = pending.setdefault(message[2], {})
                tick[index] = snapshot
                if len(tick) == count:
                    del pending[message[2]]
                    self._report(tick, previous)
            elif kind == "final":
                finals[index] = message[2]
                self._collect(message[2])
            elif kind == "error":
                self.error(message[2])
                self.request_stop()
            elif kind in ("done", "gone"):
                if kind == "done":
                    self.result.warnings += message[2]
                if index not in finals:
                    self.error(f"worker process {index} ended without a final report")
                    self.request_stop()
                done.add(index)
        counters = ZERO
        for snapshot in finals.values():
            counters = add_counters(counters, snapshot.counters)
        self.result.counters = dict(zip(COUNTERS, counters, strict=True))
        self.result.elapsed = max((f.elapsed for f in finals.values()), default=0.0)
        self.result.cpu = [f.cpu / f.elapsed * 100 if f.elapsed > 0 else 0.0 for f in finals.values()]
        await self._wait_done(done)

    def _collect(self, snapshot: Snapshot) -> None:
        self.result.latency.merge(snapshot.latency)
        self.result.confirm_latency.merge(snapshot.confirm_latency)

    def _report(self, tick: dict[int, Snapshot], previous: dict[int, Snapshot]) -> None:
        rates = dict.fromkeys(("published", "confirmed", "nacked", "returned", "received"), 0.0)
        latency, confirm_latency = Histogram(), Histogram()
        for index, snapshot in tick.items():
            before = previous[index]
            interval = snapshot.elapsed - before.elapsed
            if interval > 0:
                for name in rates:
                    rates[name] += (snapshot.counter(name) - before.counter(name)) / interval
            latency.merge(snapshot.latency)
            confirm_latency.merge(snapshot.confirm_latency)
            previous[index] = snapshot
        entry = Tick(max(s.elapsed for s in tick.values()), rates, latency, confirm_latency)
        self.result.ticks.append(entry)
        if self.on_tick is not None:
            self.on_tick(entry)

    async def _wait_done(self, done: set[int]) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT
        while len(done) < len(self.procs):
            message = await self._next(max(0.05, min(0.5, deadline - time.monotonic())))
            if message is not None:
                index, kind = message[0], message[1]
                if kind in ("done", "gone"):
                    done.add(index)
                    if kind == "done":
                        self.result.warnings += message[2]
                elif kind == "error" and not self.result.errors:
                    self.error(message[2])
            else:
                for i, proc in enumerate(self.procs):
                    if not proc.is_alive():
                        done.add(i)
            if time.monotonic() > deadline:
                break

    async def _reap(self) -> None:
        """Join the worker processes; kill what does not end within STOP_TIMEOUT."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs:
            while proc.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if proc.is_alive():
                self.result.stuck += 1
                self.error(f"worker process {proc.name} did not stop within {STOP_TIMEOUT:g} s; killed")
                proc.kill()
            proc.join(1)
        for pipe in self.pipes:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(pipe.fileno())
            pipe.close()


async def run_async(
    settings: Settings,
    on_tick: Callable[[Tick], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> Result:
    """One run on the running event loop; ``on_tick`` gets each second's report, ``on_error``
    each error as it happens."""
    return await _Coordinator(settings, on_tick, on_error).run()


def run(
    settings: Settings,
    on_tick: Callable[[Tick], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> Result:
    """One run on a new event loop (uvloop's when installed)."""
    return client.run(run_async(settings, on_tick, on_error))
