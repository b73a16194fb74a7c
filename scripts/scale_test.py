"""Scale figures for one broker node: many queues, many connections, deep queues, metadata churn
and a few RabbitMQ-benchmark-style scenarios.

    python scripts/scale_test.py                       # starts amqp_server on free ports, a fresh
                                                       # temporary data dir per scenario
    python scripts/scale_test.py --uri amqp://guest:guest@127.0.0.1:5672/%2F --pid "$(pgrep beam.smp)"
    python scripts/scale_test.py --only queues,churn   # some scenarios only

Scenarios (``--only`` takes a comma-separated list of these names):

* ``queues`` / ``queues-durable``: declare ``--queues`` queues over ``--streams`` channels (one
  RPC at a time on each), RSS per idle queue, then delete them.
* ``bound-queues`` / ``bound-queues-durable``: the same, each queue also bound to a direct
  exchange (durable with durable queues).
* ``connections``: ``--connections`` idle connections with one channel each (raw asyncio
  clients in worker processes), RSS per connection, and a publish/consume round trip while
  they are open. Against a broker whose open-files limit is lower, half that limit is used:
  a RabbitMQ node that runs out of file descriptors loses its Mnesia log and stops working.
* ``queued-messages``: 100k then 1M 16-byte transient messages in one queue, RSS per message.
* ``churn``: queue.declare+bind+unbind+delete cycles and exchange.declare+delete cycles over one
  channel (non-durable and durable).
* ``backlog``: publish ``--backlog-messages`` without consumers, then drain with one consumer.
* ``fan-in``: ``--fan-in-publishers`` publishers at ``--fan-in-rate`` msg/s each into one queue
  with one consumer: throughput and latency.
* ``consumers-fanout`` / ``consumers-direct``: ``--consumer-queues`` queues with one consumer
  each, fed through a fanout exchange (every message to every queue) or a direct exchange
  (round-robin over the queues' keys): delivery throughput, latency and RSS.

Consumers of ``backlog`` and ``fan-in`` ack every 100 deliveries (multiple) with a prefetch of
1000; those of ``consumers-*`` use no-ack. Publishers send transient messages without
properties; the ``consumers-*`` publisher uses confirms with ``--fanout-window`` /
``--direct-window`` unconfirmed messages. Latency is measured from a CLOCK_MONOTONIC stamp in
the body, which every process on the machine shares.

Each scenario prints a human-readable line and a JSON line (prefixed ``JSON``). RSS is
``VmRSS`` of the broker process (``--pid``; for RabbitMQ the beam.smp process). The load is a
small client written here on asyncio sockets with pamqp for encoding, so that thousands of
connections fit in a few client processes; it runs on the same machine as the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from broker_process import free_port
from pamqp import commands
from pamqp import frame as pamqp_frame

ROOT = Path(__file__).resolve().parent.parent

# -- a small AMQP client --------------------------------------------------------------------

_FRAME_HEADER = struct.Struct(">BHI")
_U64 = struct.Struct(">Q")
_TIMESTAMP = struct.Struct(">Q")
FRAME_END = b"\xce"
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"
DELIVER = b"\x00\x3c\x00\x3c"
BASIC_ACK = b"\x00\x3c\x00\x50"
BASIC_NACK = b"\x00\x3c\x00\x78"
CLIENT_PROPERTIES = {
    "product": "scale_test",
    "capabilities": {
        "publisher_confirms": True,
        "consumer_cancel_notify": True,
        "basic.nack": True,
        "connection.blocked": True,
        "authentication_failure_close": True,
    },
}


class AmqpError(Exception):
    """The broker closed a channel or the connection."""


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    return bytes((len(raw),)) + raw


def _frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return _FRAME_HEADER.pack(frame_type, channel, len(payload)) + payload + FRAME_END


def publish_frames(channel: int, exchange: str, routing_key: str, body: bytes) -> bytes:
    """basic.publish, a content header without properties (transient) and one body frame."""
    method = b"\x00\x3c\x00\x28\x00\x00" + _shortstr(exchange) + _shortstr(routing_key) + b"\x00"
    header = b"\x00\x3c\x00\x00" + _U64.pack(len(body)) + b"\x00\x00"
    return _frame(1, channel, method) + _frame(2, channel, header) + _frame(3, channel, body)


def ack_frame(channel: int, tag: int, multiple: bool) -> bytes:
    return _frame(1, channel, BASIC_ACK + _U64.pack(tag) + (b"\x01" if multiple else b"\x00"))


def stamped_body(size: int = 16) -> bytes:
    """A body starting with the sender's CLOCK_MONOTONIC in ns (the same clock in every process)."""
    return _TIMESTAMP.pack(time.monotonic_ns()) + b"\x00" * max(0, size - 8)


class Client(asyncio.Protocol):
    """One connection: handshake, RPCs answered in order per channel, publishing with write
    back-pressure, consuming through callbacks that see raw frames (nothing decoded)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiters: dict[int, deque[asyncio.Future[Any]]] = {}
        self._drained: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.error: AmqpError | None = None
        # Consumer callbacks: deliver(channel, method payload), body(channel, payload).
        self.on_deliver: Callable[[int, bytes], None] | None = None
        self.on_body: Callable[[int, bytes], None] | None = None
        self.on_confirm: Callable[[int, int, bool], None] | None = None
        self._next_channel = 1

    # -- transport events --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(self.error or AmqpError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._drained = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        size = len(buffer)
        position = 0
        unpack = _FRAME_HEADER.unpack_from
        while size - position >= 8:
            frame_type, channel, length = unpack(buffer, position)
            end = position + 7 + length
            if end >= size:
                break
            payload = bytes(buffer[position + 7 : end])
            if frame_type == 3:
                if self.on_body is not None:
                    self.on_body(channel, payload)
            elif frame_type == 1:
                head = payload[:4]
                if head == DELIVER:
                    if self.on_deliver is not None:
                        self.on_deliver(channel, payload)
                elif head in (BASIC_ACK, BASIC_NACK):
                    if self.on_confirm is not None:
                        tag = _U64.unpack_from(payload, 4)[0]
                        self.on_confirm(channel, tag, bool(payload[12] & 1))
                else:
                    self._method(channel, bytes(buffer[position : end + 1]))
            elif frame_type == 8:
                self.write(HEARTBEAT)
            position = end + 1
        if position:
            del buffer[:position]

    def _method(self, channel: int, raw: bytes) -> None:
        _consumed, _channel, method = pamqp_frame.unmarshal(raw)
        if isinstance(method, commands.Connection.Close):
            self.error = AmqpError(f"connection closed: {method.reply_code} {method.reply_text}")
            self.send(0, commands.Connection.CloseOk())
            self._fail(self.error)
            return
        if isinstance(method, commands.Channel.Close):
            self.send(channel, commands.Channel.CloseOk())
            error = AmqpError(f"channel {channel} closed: {method.reply_code} {method.reply_text}")
            for waiter in self._waiters.pop(channel, ()):
                if not waiter.done():
                    waiter.set_exception(error)
                    waiter.exception()
            return
        if isinstance(method, commands.Basic.Return | commands.Basic.Cancel | commands.Connection.Blocked):
            return
        if isinstance(method, commands.Connection.Unblocked):
            return
        waiters = self._waiters.get(channel)
        if waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(method)

    def _fail(self, error: AmqpError) -> None:
        waiters, self._waiters = self._waiters, {}
        for queue in waiters.values():
            for waiter in queue:
                if not waiter.done():
                    waiter.set_exception(error)
                    waiter.exception()  # retrieved: nobody may be waiting for it any more

    # -- sending ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, channel: int, method: Any) -> None:
        self.write(pamqp_frame.marshal(method, channel))

    async def drain(self) -> None:
        if self._drained is not None:
            await self._drained

    def expect(self, channel: int) -> asyncio.Future[Any]:
        if self.error is not None:
            raise self.error
        waiter: asyncio.Future[Any] = self.loop.create_future()
        self._waiters.setdefault(channel, deque()).append(waiter)
        return waiter

    async def rpc(self, channel: int, method: Any) -> Any:
        waiter = self.expect(channel)
        self.send(channel, method)
        return await waiter

    async def open_channel(self) -> int:
        number = self._next_channel
        self._next_channel += 1
        await self.rpc(number, commands.Channel.Open())
        return number

    async def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(AmqpError, TimeoutError):
            await asyncio.wait_for(self.rpc(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)), 5)
        self.transport.close()


async def connect(uri: str, heartbeat: int | None = None, timeout: float = 30.0) -> Client:
    """A connection past connection.open-ok; ``heartbeat`` None takes the broker's proposal."""
    return await asyncio.wait_for(_connect(uri, heartbeat), timeout)


async def _connect(uri: str, heartbeat: int | None) -> Client:
    parts = urlparse(uri)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    vhost = unquote(parts.path[1:]) if parts.path and parts.path != "/" else "/"
    loop = asyncio.get_running_loop()
    _transport, client = await loop.create_connection(Client, host, port)
    start = client.expect(0)
    client.write(b"AMQP\x00\x00\x09\x01")
    await start
    tune_waiter = client.expect(0)
    client.send(
        0,
        commands.Connection.StartOk(
            client_properties=CLIENT_PROPERTIES, mechanism="PLAIN", response=f"\0{user}\0{password}", locale="en_US"
        ),
    )
    tune = await tune_waiter
    client.send(
        0,
        commands.Connection.TuneOk(
            channel_max=tune.channel_max,
            frame_max=tune.frame_max,
            heartbeat=tune.heartbeat if heartbeat is None else heartbeat,
        ),
    )
    await client.rpc(0, commands.Connection.Open(virtual_host=vhost))
    return client


async def gather_limited(factories: Iterable[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run coroutine factories with at most ``limit`` at a time; results in order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(factory: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await factory()

    return await asyncio.gather(*(one(f) for f in factories))


class Consumer:
    """Counts deliveries on a connection, acks every ``ack_every`` with multiple=true (or
    consumes with no-ack), and samples latency from stamped bodies."""

    def __init__(self, client: Client, ack_every: int = 0, sample_every: int = 1) -> None:
        self.client = client
        self.ack_every = ack_every  # 0: no-ack
        self.sample_every = sample_every
        self.delivered = 0
        self.latencies: list[float] = []  # seconds
        self._unacked: dict[int, int] = {}  # channel -> deliveries since the last ack
        self._tags: dict[int, int] = {}
        client.on_deliver = self._deliver
        client.on_body = self._body

    async def consume(self, channel: int, queue: str, prefetch: int = 0) -> None:
        if prefetch:
            await self.client.rpc(channel, commands.Basic.Qos(prefetch_count=prefetch))
        await self.client.rpc(channel, commands.Basic.Consume(queue=queue, no_ack=not self.ack_every))

    def _deliver(self, channel: int, payload: bytes) -> None:
        self.delivered += 1
        if self.ack_every:
            tag_at = 5 + payload[4]
            self._tags[channel] = _U64.unpack_from(payload, tag_at)[0]
            count = self._unacked.get(channel, 0) + 1
            if count >= self.ack_every:
                self.client.write(ack_frame(channel, self._tags[channel], True))
                count = 0
            self._unacked[channel] = count

    def _body(self, channel: int, payload: bytes) -> None:
        if self.sample_every and self.delivered % self.sample_every == 0 and len(payload) >= 8:
            sent = _TIMESTAMP.unpack_from(payload)[0]
            self.latencies.append((time.monotonic_ns() - sent) / 1e9)

    def flush_acks(self) -> None:
        for channel, count in self._unacked.items():
            if count:
                self.client.write(ack_frame(channel, self._tags[channel], True))
                self._unacked[channel] = 0


class Publisher:
    """Publishes pre-encoded messages; with ``window``, in confirm mode with at most that many
    unconfirmed."""

    def __init__(self, client: Client, channel: int) -> None:
        self.client = client
        self.channel = channel
        self.published = 0
        self.confirmed = 0
        self._window = 0
        self._room: asyncio.Event = asyncio.Event()
        client.on_confirm = self._confirm

    async def confirm_mode(self, window: int) -> None:
        await self.client.rpc(self.channel, commands.Confirm.Select())
        self._window = window

    def _confirm(self, channel: int, tag: int, multiple: bool) -> None:
        self.confirmed = tag if multiple else max(self.confirmed, tag)
        if self.published - self.confirmed < self._window:
            self._room.set()

    async def send(self, data: bytes, count: int) -> None:
        """Write ``data`` (``count`` messages); waits for socket room and the confirm window."""
        if self._window:
            while self.published - self.confirmed >= self._window:
                self._room.clear()
                await self._room.wait()
        self.client.write(data)
        self.published += count
        await self.client.drain()


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency_summary(values: list[float]) -> dict[str, float | None]:
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "latency_p50_ms": ms(percentile(values, 0.5)),
        "latency_p95_ms": ms(percentile(values, 0.95)),
        "latency_p99_ms": ms(percentile(values, 0.99)),
        "latency_max_ms": ms(max(values) if values else None),
    }


# -- worker processes ------------------------------------------------------------------------
#
# The parent starts ``scale_test.py --worker ROLE SPEC``; the worker prints "READY {json}" once
# set up, waits for "GO" on stdin, prints "RUNNING {json}", waits for "STOP", then prints
# "RESULT {json}" and exits.


async def _read_line(reader: asyncio.StreamReader) -> str:
    return (await reader.readline()).decode().strip()


def _emit(tag: str, data: dict[str, Any]) -> None:
    sys.stdout.write(f"{tag} {json.dumps(data)}\n")
    sys.stdout.flush()


async def worker_main(role: str, spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    uri = spec["uri"]
    if role == "idle":
        _emit("READY", {})
        await _read_line(stdin)
        started = time.monotonic()
        errors: list[str] = []

        async def open_one() -> Client | None:
            try:
                client = await connect(uri)
                await client.open_channel()
                return client
            except (OSError, AmqpError) as exc:
                errors.append(str(exc))
                return None

        clients = await gather_limited([open_one] * spec["count"], spec.get("concurrency", 100))
        opened = [c for c in clients if c is not None]
        _emit("RUNNING", {"opened": len(opened), "seconds": time.monotonic() - started, "errors": errors[:3]})
        await _read_line(stdin)
        lost = sum(1 for c in opened if c.closed.done())
        for client in opened:
            if client.transport is not None:
                client.transport.close()
        _emit("RESULT", {"lost_while_idle": lost})
    elif role == "publishers":
        clients = await gather_limited([lambda: connect(uri)] * spec["count"], 50)
        channels = [await c.open_channel() for c in clients]
        _emit("READY", {})
        await _read_line(stdin)
        interval = 1.0 / spec["rate"]
        deadline = time.monotonic() + spec["seconds"]
        published = [0]

        async def run(client: Client, channel: int) -> None:
            await asyncio.sleep(random.random() * interval)
            next_at = time.monotonic()
            while next_at < deadline and not client.closed.done():
                client.write(publish_frames(channel, spec["exchange"], spec["routing_key"], stamped_body()))
                published[0] += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        _emit("RUNNING", {})
        await asyncio.gather(*(run(c, ch) for c, ch in zip(clients, channels, strict=True)))
        await _read_line(stdin)
        _emit("RESULT", {"published": published[0], "cpu_s": sum(os.times()[:2])})
        for client in clients:
            await client.close()
    elif role == "consumers":
        queues: list[str] = spec["queues"]
        per_connection = spec["channels_per_connection"]
        consumers: list[Consumer] = []
        groups = [queues[i : i + per_connection] for i in range(0, len(queues), per_connection)]

        async def setup(names: list[str]) -> Consumer:
            client = await connect(uri)
            consumer = Consumer(client, ack_every=spec.get("ack_every", 0), sample_every=spec.get("sample_every", 1))
            for name in names:
                channel = await client.open_channel()
                await consumer.consume(channel, name, spec.get("prefetch", 0))
            return consumer

        consumers = await gather_limited([lambda n=names: setup(n) for names in groups], 20)
        _emit("READY", {})
        await _read_line(stdin)
        for consumer in consumers:
            consumer.delivered = 0
            consumer.latencies.clear()
        cpu0 = sum(os.times()[:2])
        _emit("RUNNING", {})
        await _read_line(stdin)
        latencies = [x for c in consumers for x in c.latencies]
        random.shuffle(latencies)
        _emit(
            "RESULT",
            {
                "delivered": sum(c.delivered for c in consumers),
                "latencies": latencies[:20000],
                "cpu_s": sum(os.times()[:2]) - cpu0,
            },
        )
        for consumer in consumers:
            consumer.client.transport.close()  # type: ignore[union-attr]
    else:
        raise SystemExit(f"unknown worker role {role}")


class Worker:
    """The parent's handle on a worker process."""

    running: set[Worker] = set()  # killed when a scenario ends, whatever happened

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        Worker.running.add(self)

    @classmethod
    async def kill_all(cls) -> None:
        for worker in list(cls.running):
            if worker.process.returncode is None:
                worker.process.kill()
                await worker.process.wait()
        cls.running.clear()

    @classmethod
    async def start(cls, role: str, spec: dict[str, Any]) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            role,
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        return cls(process)

    async def expect(self, tag: str, timeout: float = 120) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.process.stdout.readline(), timeout)).decode()
            if not line:
                raise RuntimeError(f"worker exited before {tag} (status {await self.process.wait()})")
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1 :])

    def tell(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(word.encode() + b"\n")

    async def finish(self) -> None:
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        Worker.running.discard(self)


async def all_expect(workers: list[Worker], tag: str, timeout: float = 120) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(w.expect(tag, timeout) for w in workers)))


def tell_all(workers: list[Worker], word: str) -> None:
    for worker in workers:
        worker.tell(word)


# -- the broker under test -------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Target:
    """The broker being measured: given (``--uri``, ``--pid``) or started here per scenario."""

    def __init__(self, uri: str | None, pid: int | None, broker_args: list[str]) -> None:
        self.given = uri is not None
        self.uri = uri or ""
        self.pid = pid or 0
        self.broker_args = broker_args
        self.process: subprocess.Popen[bytes] | None = None
        self.data_dir: str | None = None

    async def __aenter__(self) -> Target:
        if not self.given:
            self.data_dir = tempfile.mkdtemp(prefix="scale-test-")
            port = free_port()
            command = [
                sys.executable, "-m", "amqp_server", "--host", "127.0.0.1", "--port", str(port),
                "--management-port", str(free_port()), "--prometheus-port", "0", "--data-dir", self.data_dir,
                "--log-level", "WARNING",
                *self.broker_args,
            ]  # fmt: skip
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
            self.pid = self.process.pid
            self.uri = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
            deadline = time.monotonic() + 20
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError("broker exited at start")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("broker did not start listening") from None
                    await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def data_dir_bytes(self, name: str) -> int | None:
        if self.data_dir is None:
            return None
        total = 0
        for path in Path(self.data_dir).glob(name + "*"):
            total += path.stat().st_size
        return total


async def settle_rss(target: Target, seconds: float = 1.0) -> int:
    await asyncio.sleep(seconds)
    return target.rss()


def mib(value: float) -> float:
    return round(value / (1024 * 1024), 1)


def unique_prefix() -> str:
    return f"scale-{uuid.uuid4().hex[:6]}-"


async def queue_count(client: Client, channel: int, name: str) -> int:
    ok = await client.rpc(channel, commands.Queue.Declare(queue=name, passive=True))
    return int(ok.message_count)


async def wait_count(client: Client, channel: int, name: str, count: int, timeout: float) -> float:
    """Poll until ``name`` holds ``count`` ready messages; the time it took."""
    started = time.monotonic()
    while await queue_count(client, channel, name) < count:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"queue {name} did not reach {count}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


# -- scenarios -------------------------------------------------------------------------------


async def _streams(target: Target, connections: int, per_connection: int) -> list[tuple[Client, int]]:
    streams = []
    for _ in range(connections):
        client = await connect(target.uri)
        for _ in range(per_connection):
            streams.append((client, await client.open_channel()))
    return streams


async def _run_streams(
    streams: list[tuple[Client, int]], items: list[Any], work: Callable[[Client, int, Any], Awaitable[None]]
) -> float:
    """Each stream (connection, channel) takes every n-th item and does ``work`` on it in
    turn (one RPC at a time per channel); the seconds it took."""
    started = time.monotonic()

    async def run(index: int, client: Client, channel: int) -> None:
        for item in items[index :: len(streams)]:
            await work(client, channel, item)

    await asyncio.gather(*(run(i, c, ch) for i, (c, ch) in enumerate(streams)))
    return time.monotonic() - started


async def scenario_queues(target: Target, args: argparse.Namespace, bind: bool, durable: bool) -> list[dict[str, Any]]:
    """10,000 queues (each bound to a direct exchange with ``bind``) declared, then deleted,
    over ``--streams`` channels on two connections, one RPC at a time per channel."""
    prefix = unique_prefix()
    streams = await _streams(target, 2, args.streams // 2)
    client, channel = streams[0]
    exchange = prefix + "direct"
    if bind:
        await client.rpc(channel, commands.Exchange.Declare(exchange=exchange, exchange_type="direct", durable=durable))
    names = [f"{prefix}q-{i}" for i in range(args.queues)]

    async def declare(c: Client, ch: int, name: str) -> None:
        await c.rpc(ch, commands.Queue.Declare(queue=name, durable=durable))
        if bind:
            await c.rpc(ch, commands.Queue.Bind(queue=name, exchange=exchange, routing_key=name))

    async def delete(c: Client, ch: int, name: str) -> None:
        await c.rpc(ch, commands.Queue.Delete(queue=name))

    rss0 = await settle_rss(target)
    declare_s = await _run_streams(streams, names, declare)
    rss1 = await settle_rss(target)
    delete_s = await _run_streams(streams, names, delete)
    rss2 = await settle_rss(target)
    if bind:
        await client.rpc(channel, commands.Exchange.Delete(exchange=exchange))
    for c in {c for c, _ in streams}:
        await c.close()
    what = "declare+bind" if bind else "declare"
    return [
        {
            "queues": args.queues,
            "durable": durable,
            "streams": len(streams),
            f"{what}_per_s": round(args.queues / declare_s),
            "delete_per_s": round(args.queues / delete_s),
            "rss_before_mib": mib(rss0),
            "rss_after_declare_mib": mib(rss1),
            "rss_after_delete_mib": mib(rss2),
            "rss_per_queue_bytes": round((rss1 - rss0) / args.queues),
        }
    ]


def open_files_limit(pid: int) -> int | None:
    """The soft limit on open files of process ``pid``."""
    try:
        with open(f"/proc/{pid}/limits", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Max open files"):
                    soft = line.split()[3]
                    return None if soft == "unlimited" else int(soft)
    except OSError:
        pass
    return None


async def scenario_connections(target: Target, args: argparse.Namespace) -> list[dict[str, Any]]:
    count, processes = args.connections, args.client_processes
    # Each connection is a file descriptor of the broker. A broker that runs out of them may
    # fail worse than refusing connections (RabbitMQ's Mnesia cannot open its log and the node
    # stops working), so stay at half its limit.
    limit = open_files_limit(target.pid)
    capped = limit is not None and count > limit // 2
    if capped:
        count = limit // 2
    rss0 = await settle_rss(target)
    workers = [
        await Worker.start("idle", {"uri": target.uri, "count": count // processes + (i < count % processes)})
        for i in range(processes)
    ]
    await all_expect(workers, "READY")
    started = time.monotonic()
    tell_all(workers, "GO")
    running = await all_expect(workers, "RUNNING", timeout=300)
    open_s = time.monotonic() - started
    opened = sum(r["opened"] for r in running)
    rss1 = await settle_rss(target, 2.0)
    # Responsiveness: a publish/consume round trip on a new connection while they are open.
    connect_started = time.monotonic()
    client = await connect(target.uri)
    connect_ms = (time.monotonic() - connect_started) * 1000
    channel = await client.open_channel()
    queue = unique_prefix() + "rtt"
    await client.rpc(channel, commands.Queue.Declare(queue=queue, auto_delete=True))
    got: asyncio.Queue[float] = asyncio.Queue()
    client.on_body = lambda ch, payload: got.put_nowait((time.monotonic_ns() - _TIMESTAMP.unpack_from(payload)[0]) / 1e9)
    await client.rpc(channel, commands.Basic.Consume(queue=queue, no_ack=True))
    round_trips = []
    for _ in range(50):
        client.write(publish_frames(channel, "", queue, stamped_body()))
        round_trips.append(await asyncio.wait_for(got.get(), 10))
        await asyncio.sleep(0.01)
    await client.close()
    tell_all(workers, "STOP")
    results = await all_expect(workers, "RESULT")
    for worker in workers:
        await worker.finish()
    rss2 = await settle_rss(target, 2.0)
    return [
        {
            "connections": opened,
            "broker_open_files_limit": limit,
            "capped_by_open_files_limit": capped,
            "errors": [e for r in running for e in r["errors"]][:3],
            "open_s": round(open_s, 2),
            "opens_per_s": round(opened / open_s),
            "rss_before_mib": mib(rss0),
            "rss_with_connections_mib": mib(rss1),
            "rss_after_close_mib": mib(rss2),
            "rss_per_connection_bytes": round((rss1 - rss0) / max(1, opened)),
            "new_connection_ms": round(connect_ms, 1),
            "round_trip_p50_ms": round(statistics.median(round_trips) * 1000, 2),
            "round_trip_max_ms": round(max(round_trips) * 1000, 2),
            "lost_while_idle": sum(r["lost_while_idle"] for r in results),
        }
    ]


async def _fill(publisher: Publisher, exchange: str, key: str, count: int, chunk: int = 1000) -> None:
    """Publish ``count`` 16-byte messages as fast as the socket takes them."""
    block = publish_frames(publisher.channel, exchange, key, b"0123456789abcdef") * chunk
    sent = 0
    while sent + chunk <= count:
        await publisher.send(block, chunk)
        sent += chunk
    rest = count - sent
    if rest:
        await publisher.send(publish_frames(publisher.channel, exchange, key, b"0123456789abcdef") * rest, rest)


async def scenario_queued_messages(target: Target, args: argparse.Namespace) -> list[dict[str, Any]]:
    client = await connect(target.uri)
    channel = await client.open_channel()
    control = await client.open_channel()
    queue = unique_prefix() + "deep"
    await client.rpc(channel, commands.Queue.Declare(queue=queue))
    publisher = Publisher(client, channel)
    rss0 = await settle_rss(target)
    rows = []
    total = 0
    started = time.monotonic()
    for level in (100_000, 1_000_000):
        await _fill(publisher, "", queue, level - total)
        total = level
        await wait_count(client, control, queue, level, 120)
        elapsed = time.monotonic() - started
        rss = await settle_rss(target, 2.0)
        rows.append(
            {
                "messages": level,
                "publish_per_s": round(level / elapsed),
                "rss_before_mib": mib(rss0),
                "rss_mib": mib(rss),
                "rss_per_message_bytes": round((rss - rss0) / level, 1),
                "messages_db_mib": None if target.given else mib(target.data_dir_bytes("messages.db") or 0),
            }
        )
        started = time.monotonic() - elapsed
    deleted = time.monotonic()
    await client.rpc(control, commands.Queue.Delete(queue=queue))
    rows[-1]["delete_s"] = round(time.monotonic() - deleted, 2)
    rows[-1]["rss_after_delete_mib"] = mib(await settle_rss(target, 2.0))
    await client.close()
    return rows


async def scenario_churn(target: Target, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for durable in (False, True):
        prefix = unique_prefix()
        client = await connect(target.uri)
        channel = await client.open_channel()
        exchange = prefix + "x"
        await client.rpc(channel, commands.Exchange.Declare(exchange=exchange, exchange_type="direct", durable=durable))
        cycles = 0
        started = time.monotonic()
        while time.monotonic() - started < args.churn_seconds:
            name = f"{prefix}q-{cycles}"
            await client.rpc(channel, commands.Queue.Declare(queue=name, durable=durable))
            await client.rpc(channel, commands.Queue.Bind(queue=name, exchange=exchange, routing_key=name))
            await client.rpc(channel, commands.Queue.Unbind(queue=name, exchange=exchange, routing_key=name))
            await client.rpc(channel, commands.Queue.Delete(queue=name))
            cycles += 1
        queue_s = time.monotonic() - started
        await client.rpc(channel, commands.Exchange.Delete(exchange=exchange))
        exchange_cycles = 0
        started = time.monotonic()
        while time.monotonic() - started < args.churn_seconds:
            name = f"{prefix}x-{exchange_cycles}"
            await client.rpc(channel, commands.Exchange.Declare(exchange=name, exchange_type="direct", durable=durable))
            await client.rpc(channel, commands.Exchange.Delete(exchange=name))
            exchange_cycles += 1
        exchange_s = time.monotonic() - started
        await client.close()
        rows.append(
            {
                "durable": durable,
                "queue_cycles_per_s": round(cycles / queue_s),
                "queue_ops_per_s": round(4 * cycles / queue_s),
                "exchange_cycles_per_s": round(exchange_cycles / exchange_s),
                "exchange_ops_per_s": round(2 * exchange_cycles / exchange_s),
            }
        )
    return rows


async def scenario_backlog(target: Target, args: argparse.Namespace) -> list[dict[str, Any]]:
    count = args.backlog_messages
    client = await connect(target.uri)
    channel = await client.open_channel()
    control = await client.open_channel()
    queue = unique_prefix() + "backlog"
    await client.rpc(channel, commands.Queue.Declare(queue=queue))
    publisher = Publisher(client, channel)
    rss0 = target.rss()
    started = time.monotonic()
    await _fill(publisher, "", queue, count)
    await wait_count(client, control, queue, count, 120)
    publish_s = time.monotonic() - started
    rss1 = target.rss()
    consumer_client = await connect(target.uri)
    consumer = Consumer(consumer_client, ack_every=100, sample_every=0)
    consumer_channel = await consumer_client.open_channel()
    started = time.monotonic()
    await consumer.consume(consumer_channel, queue, prefetch=1000)
    while consumer.delivered < count and time.monotonic() - started < 60:
        await asyncio.sleep(0.01)
    consume_s = time.monotonic() - started
    consumer.flush_acks()
    rss2 = target.rss()
    await client.rpc(control, commands.Queue.Delete(queue=queue))
    await consumer_client.close()
    await client.close()
    return [
        {
            "messages": count,
            "publish_per_s": round(count / publish_s),
            "consumed": consumer.delivered,
            "consume_per_s": round(consumer.delivered / consume_s),
            "rss_before_mib": mib(rss0),
            "rss_full_mib": mib(rss1),
            "rss_drained_mib": mib(rss2),
        }
    ]


async def scenario_fan_in(target: Target, args: argparse.Namespace) -> list[dict[str, Any]]:
    publishers, rate, seconds = args.fan_in_publishers, args.fan_in_rate, args.fan_in_seconds
    client = await connect(target.uri)
    control = await client.open_channel()
    queue = unique_prefix() + "fan-in"
    await client.rpc(control, commands.Queue.Declare(queue=queue))
    consumer_client = await connect(target.uri)
    consumer = Consumer(consumer_client, ack_every=100, sample_every=1)
    await consumer.consume(await consumer_client.open_channel(), queue, prefetch=1000)
    processes = args.client_processes
    spec = {"uri": target.uri, "rate": rate, "seconds": seconds, "exchange": "", "routing_key": queue}
    workers = [
        await Worker.start("publishers", {**spec, "count": publishers // processes + (i < publishers % processes)})
        for i in range(processes)
    ]
    await all_expect(workers, "READY")
    rss0 = target.rss()
    tell_all(workers, "GO")
    await all_expect(workers, "RUNNING")
    started = time.monotonic()
    cpu0 = cpu_seconds(target.pid)
    peak_backlog = 0
    samples = []
    while time.monotonic() - started < seconds:
        await asyncio.sleep(1)
        peak_backlog = max(peak_backlog, await queue_count(client, control, queue))
        samples.append(target.rss())
    delivered_in_window = consumer.delivered
    window = time.monotonic() - started
    broker_cpu = (cpu_seconds(target.pid) - cpu0) / window
    tell_all(workers, "STOP")
    published = sum(r["published"] for r in await all_expect(workers, "RESULT"))
    for worker in workers:
        await worker.finish()
    drain_started = time.monotonic()
    while consumer.delivered < published and time.monotonic() - drain_started < 15:
        await asyncio.sleep(0.05)
    consumer.flush_acks()
    await client.rpc(control, commands.Queue.Delete(queue=queue))
    await consumer_client.close()
    await client.close()
    return [
        {
            "publishers": publishers,
            "rate_each": rate,
            "offered_per_s": publishers * rate,
            "published_per_s": round(published / seconds),
            "consumed_per_s_in_window": round(delivered_in_window / window),
            "consumed_total": consumer.delivered,
            "published_total": published,
            "peak_backlog": peak_backlog,
            **latency_summary(consumer.latencies),
            "broker_cpu_pct": round(100 * broker_cpu),
            "rss_before_mib": mib(rss0),
            "rss_peak_mib": mib(max(samples)),
        }
    ]


async def scenario_consumers(target: Target, args: argparse.Namespace, kind: str) -> list[dict[str, Any]]:
    count, seconds = args.consumer_queues, args.consumer_seconds
    prefix = unique_prefix()
    exchange = prefix + kind
    names = [f"{prefix}c-{i}" for i in range(count)]
    streams = await _streams(target, 1, 4)
    client, channel = streams[0]
    await client.rpc(channel, commands.Exchange.Declare(exchange=exchange, exchange_type=kind))
    rss0 = await settle_rss(target)

    async def declare(c: Client, ch: int, name: str) -> None:
        await c.rpc(ch, commands.Queue.Declare(queue=name))
        await c.rpc(ch, commands.Queue.Bind(queue=name, exchange=exchange, routing_key=name))

    await _run_streams(streams, names, declare)
    processes = args.client_processes
    workers = []
    for i in range(processes):
        mine = names[i::processes]
        workers.append(
            await Worker.start(
                "consumers",
                {"uri": target.uri, "queues": mine, "channels_per_connection": 10, "sample_every": 50},
            )
        )
    await all_expect(workers, "READY")
    rss1 = await settle_rss(target)
    publish_client = await connect(target.uri)
    publish_channel = await publish_client.open_channel()
    publisher = Publisher(publish_client, publish_channel)
    # Fanout: every message is `count` deliveries, so the confirm window is small.
    window = args.fanout_window if kind == "fanout" else args.direct_window
    await publisher.confirm_mode(window)
    tell_all(workers, "GO")
    await all_expect(workers, "RUNNING")
    started = time.monotonic()
    cpu0 = cpu_seconds(target.pid)
    stop = time.monotonic() + seconds
    rss_samples = []
    next_sample = time.monotonic() + 1
    index = 0
    while time.monotonic() < stop:
        if kind == "fanout":
            data = publish_frames(publish_channel, exchange, "", stamped_body())
        else:
            data = b"".join(
                publish_frames(publish_channel, exchange, names[(index + j) % count], stamped_body()) for j in range(10)
            )
        await publisher.send(data, 1 if kind == "fanout" else 10)
        index += 10
        if time.monotonic() >= next_sample:
            rss_samples.append(target.rss())
            next_sample += 1
    published = publisher.published
    publish_s = time.monotonic() - started
    tell_all(workers, "STOP")
    results = await all_expect(workers, "RESULT")
    window_s = time.monotonic() - started
    broker_cpu = (cpu_seconds(target.pid) - cpu0) / window_s
    for worker in workers:
        await worker.finish()
    delivered = sum(r["delivered"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    backlog = 0
    for name in names[:: max(1, count // 50)]:  # a sample of the queues, scaled up
        backlog += await queue_count(client, channel, name)
    backlog = backlog * count // len(names[:: max(1, count // 50)])

    async def delete(c: Client, ch: int, name: str) -> None:
        await c.rpc(ch, commands.Queue.Delete(queue=name))

    await _run_streams(streams, names, delete)
    await client.rpc(channel, commands.Exchange.Delete(exchange=exchange))
    await client.close()
    await publish_client.close()
    fanout = kind == "fanout"
    return [
        {
            "queues": count,
            "exchange": kind,
            "published_per_s": round(published / publish_s),
            "routed_per_s": round(published * (count if fanout else 1) / publish_s),
            "delivered_per_s": round(delivered / window_s),
            "backlog_at_end_estimate": backlog,
            **latency_summary(latencies),
            "broker_cpu_pct": round(100 * broker_cpu),
            "consumer_cpu_pct": round(100 * sum(r["cpu_s"] for r in results) / window_s),
            "rss_idle_mib": mib(rss0),
            "rss_with_consumers_mib": mib(rss1),
            "rss_peak_mib": mib(max(rss_samples or [rss1])),
        }
    ]


SCENARIOS: dict[str, Callable[[Target, argparse.Namespace], Awaitable[list[dict[str, Any]]]]] = {
    "queues": lambda t, a: scenario_queues(t, a, bind=False, durable=False),
    "queues-durable": lambda t, a: scenario_queues(t, a, bind=False, durable=True),
    "bound-queues": lambda t, a: scenario_queues(t, a, bind=True, durable=False),
    "bound-queues-durable": lambda t, a: scenario_queues(t, a, bind=True, durable=True),
    "connections": scenario_connections,
    "queued-messages": scenario_queued_messages,
    "churn": scenario_churn,
    "backlog": scenario_backlog,
    "fan-in": scenario_fan_in,
    "consumers-fanout": lambda t, a: scenario_consumers(t, a, "fanout"),
    "consumers-direct": lambda t, a: scenario_consumers(t, a, "direct"),
}


def _describe(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in row.items() if k not in ("scenario", "broker"))


async def product_of(uri: str) -> str:
    """The broker's product and version from connection.start."""
    parts = urlparse(uri)
    reader, writer = await asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 5672)
    writer.write(b"AMQP\x00\x00\x09\x01")
    head = await reader.readexactly(7)
    size = _FRAME_HEADER.unpack(head)[2]
    payload = await reader.readexactly(size + 1)
    writer.close()
    _n, _c, start = pamqp_frame.unmarshal(head + payload)
    properties = start.server_properties
    product = properties.get("product", "?")
    version = properties.get("version", "?")
    return f"{product.decode() if isinstance(product, bytes) else product} {version.decode() if isinstance(version, bytes) else version}"


async def main_async(args: argparse.Namespace) -> int:
    names = list(SCENARIOS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        target = Target(args.uri, args.pid, args.broker_arg or [])
        try:
            async with target:
                label = await product_of(target.uri)
                rows = await asyncio.wait_for(SCENARIOS[name](target, args), args.timeout)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next scenario
            await Worker.kill_all()
            failed += 1
            traceback.print_exc()
            print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", flush=True)
            print("JSON " + json.dumps({"scenario": name, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
            continue
        for row in rows:
            row = {"scenario": name, "broker": label, **row}
            print(f"[{label}] {name}: {_describe(row)}", flush=True)
            print("JSON " + json.dumps(row), flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        import uvloop
    except ImportError:
        run: Callable[..., Any] = asyncio.run
    else:
        run = uvloop.run
    if argv[:1] == ["--worker"]:
        run(worker_main(argv[1], json.loads(argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", help="measure this running broker instead of starting amqp_server")
    parser.add_argument("--pid", type=int, help="the broker's process id (for RSS), with --uri")
    parser.add_argument("--only", help="comma-separated scenario names: " + ", ".join(SCENARIOS))
    parser.add_argument("--broker-arg", action="append", help="extra argument for the started broker (repeatable)")
    parser.add_argument("--queues", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=8, help="channels (over 2 connections) declaring queues")
    parser.add_argument("--connections", type=int, default=5_000)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--churn-seconds", type=float, default=5.0)
    parser.add_argument("--backlog-messages", type=int, default=500_000)
    parser.add_argument("--fan-in-publishers", type=int, default=500)
    parser.add_argument("--fan-in-rate", type=float, default=20.0, help="msg/s per publisher")
    parser.add_argument("--fan-in-seconds", type=float, default=20.0)
    parser.add_argument("--consumer-queues", type=int, default=1_000)
    parser.add_argument("--consumer-seconds", type=float, default=15.0)
    parser.add_argument("--fanout-window", type=int, default=20, help="unconfirmed fanout publishes")
    parser.add_argument("--direct-window", type=int, default=1000, help="unconfirmed direct publishes")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a scenario is given up")
    args = parser.parse_args(argv)
    if (args.uri is None) != (args.pid is None):
        parser.error("--uri and --pid go together")
    return run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
