"""Producers and consumers, and the worker process that runs a share of them on one event loop.

Hot paths, all without pamqp:

- ``Producer._publish``: writes ``PublishTemplate.batch`` buffers (many publishes per write),
  paced by the transport's flow control, the confirm window (-c), the rate limit (-r) and the
  optional closed loop (--max-inflight); confirms are parsed in ``Producer.on_frame``.
- ``Consumer.scan``: a byte-level loop over basic.deliver + header + body, which checks each
  body and its sequence number, records the latency and writes all acks of a read at once.

A worker process talks to the coordinator (``runner.py``) over a pipe: it sends ``ready``, a
``tick`` snapshot every second after ``go``, a ``final`` one at the stop, ``error`` when a
connection or channel fails, and ``done`` when its connections are closed.
"""

from __future__ import annotations

import asyncio
import signal
import struct
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

from pamqp import commands

from amqp_perf import client, frames
from amqp_perf.settings import Settings
from amqp_perf.stats import COUNTERS, Histogram, Snapshot
from amqp_perf.topology import Topology

CHANNEL = 1
#: bytes per producer write (at most MAX_BATCH messages)
BATCH_BYTES = 64 * 1024
MAX_BATCH = 256
#: how often a producer looks again at the closed-loop count when it is full (first, at most)
INFLIGHT_POLL = 0.001
INFLIGHT_POLL_MAX = 0.004
#: a basic.deliver method frame up to its consumer tag: frame header, class and method, tag length
DELIVER_PREFIX = 12
#: a consumer stops learning delivery layouts after this many in a row that no delivery fitted
LEARN_MISSES = 8
#: basic.ack on CHANNEL: the frame up to the delivery tag, then tag, multiple bit, frame end
ACK_HEAD = frames.encode_ack(CHANNEL, 0, False)[:11]
ACK_SINGLE, ACK_MULTIPLE = b"\x00" + frames.FRAME_END_BYTE, b"\x01" + frames.FRAME_END_BYTE
ACK_PACK = struct.Struct(">11sQ2s").pack
#: deliveries checked at once by the bulk path of ``Consumer.scan``
BULK_MAX = 64
_ACK_RUNS: dict[int, Any] = {}


def ack_run(count: int) -> Any:
    """``pack`` of ``count`` basic.ack frames: arguments ACK_HEAD, tag, tail for each."""
    pack = _ACK_RUNS.get(count)
    if pack is None:
        pack = _ACK_RUNS[count] = struct.Struct(">" + "11sQ2s" * count).pack
    return pack


class Layout:
    """The fixed layout of one consumer's deliveries (``Consumer._learn``): the ``struct`` format
    of one (consumer tag head, delivery tag, bits, fixed middle, send time, sequence, producer,
    fixed tail), the fixed bytes, and consumer tag head -> last sequence numbers."""

    __slots__ = ("fmt", "size", "iter_unpack", "mid", "tail", "by_head", "_runs")

    def __init__(self, fmt: str, mid: bytes, tail: bytes, by_head: dict[bytes, list[int]]) -> None:
        layout = struct.Struct(">" + fmt)
        self.fmt = fmt
        self.size = layout.size
        self.iter_unpack = layout.iter_unpack
        self.mid = mid
        self.tail = tail
        self.by_head = by_head
        self._runs: dict[int, Any] = {}

    def run(self, count: int) -> Any:
        """``unpack_from`` of ``count`` deliveries in a row: 8 fields each."""
        unpack = self._runs.get(count)
        if unpack is None:
            unpack = self._runs[count] = struct.Struct(">" + self.fmt * count).unpack_from
        return unpack


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process's share of a run."""

    index: int
    settings: Settings
    topology: Topology
    run_tag: int
    producer_ids: tuple[int, ...]
    consumer_ids: tuple[int, ...]


class Peer(client.Connection):
    """What producers and consumers count (class attributes: zero until counted)."""

    published = confirmed = nacked = returned = 0
    received = bad = out_of_order = gaps = foreign = redelivered = 0

    def __init__(
        self,
        endpoint: client.Endpoint,
        name: str,
        frame_max: int,
        *,
        settings: Settings,
        topology: Topology,
        run_tag: int,
        inflight: Any = None,
    ) -> None:
        super().__init__(endpoint, name, frame_max)
        self.settings = settings
        self.topology = topology
        self.run_tag = run_tag
        self.stopping = False
        self._inflight = inflight

    def reset(self) -> None:
        """Start counting from zero (at ``go``)."""
        for name in COUNTERS:
            if name != "blocked" and name in self.__dict__:
                setattr(self, name, 0)
        self.blocked = 0


class Producer(Peer):
    def __init__(self, *args: Any, producer: int, confirm_latency: Histogram, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.producer = producer
        self.confirm_latency = confirm_latency
        self.template: frames.PublishTemplate | None = None
        self.task: asyncio.Task[None] | None = None
        #: delivery tag -> send time of unconfirmed publishes
        self.unconfirmed: dict[int, int] = {}
        self._next_tag = 1
        self._low_tag = 1
        self._room: asyncio.Future[None] | None = None
        # closed loop: shared counts of this producer's messages per consumer
        settings = self.settings
        if not (settings.max_inflight and self.topology.fanout[producer]):
            self._inflight = None
        consumers = settings.consumers
        self._inflight_slice = slice(producer * consumers, (producer + 1) * consumers)

    @property
    def next_tag(self) -> int:
        """The delivery tag (publish sequence number) the next publish gets in confirm mode."""
        return self._next_tag

    @property
    def settled_below(self) -> int:
        """Every delivery tag below this one is confirmed or nacked: a multiple confirm settles
        from here up."""
        return self._low_tag

    async def setup(self) -> None:
        await self.open_channel(CHANNEL)
        if self.settings.confirms:
            await self.rpc(CHANNEL, commands.Confirm.Select(), commands.Confirm.SelectOk)
        self.template = frames.PublishTemplate(
            channel=CHANNEL,
            exchange=self.topology.exchange,
            routing_key=self.topology.producer_keys[self.producer],
            size=self.settings.size,
            producer=self.producer,
            run=self.run_tag,
            persistent=self.settings.persistent,
            mandatory=self.settings.mandatory,
            frame_max=self.frame_max,
        )

    def start(self) -> None:
        self.task = self.loop.create_task(self._publish())

    def stop(self) -> None:
        self.stopping = True
        self._wake()

    def _wake(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def _inflight_room(self) -> int:
        """How many more deliveries of this producer's messages the closed loop allows now."""
        consumed = sum(self._inflight[self._inflight_slice])
        return self.settings.max_inflight - (self.published * self.topology.fanout[self.producer] - consumed)

    async def _publish(self) -> None:
        assert self.template is not None
        template = self.template
        settings = self.settings
        batch_max = max(1, min(MAX_BATCH, BATCH_BYTES // len(template)))
        window = settings.confirm or 0
        confirms = settings.confirms
        rate = settings.rate
        fanout = max(1, self.topology.fanout[self.producer])
        resume = (settings.max_inflight + 9) // 10  # once full, wait until a tenth has drained
        started = time.monotonic()
        rate_sent = 0
        seq = 0
        unconfirmed = self.unconfirmed
        clock = time.monotonic_ns
        sleep = asyncio.sleep
        while not self.stopping and self.error is None:
            if self.paused:
                await self.drained()
                continue
            count = batch_max
            if window:
                room = window - len(unconfirmed)
                if room <= 0:
                    self._room = self.loop.create_future()
                    await self._room
                    continue
                count = min(count, room)
            if self._inflight is not None:
                room = self._inflight_room()
                if room < fanout:  # full: nap, backing off, until a tenth has drained
                    nap = INFLIGHT_POLL
                    while not self.stopping and self._inflight_room() < resume:
                        await sleep(nap)
                        nap = min(nap * 2, INFLIGHT_POLL_MAX)
                    continue
                count = min(count, room // fanout)
            if rate:
                now = time.monotonic()
                due = int((now - started) * rate) - rate_sent
                if due <= 0:  # event-loop timers have 1 ms resolution: above 1000 msg/s, bursts
                    await sleep(max(0.001, (rate_sent + 1) / rate - (now - started)))
                    continue
                if due > rate * 0.1 + batch_max:  # far behind (the loop stalled): do not burst
                    started = now - rate_sent / rate
                    due = 1
                count = min(count, due)
                rate_sent += count
            stamp = clock()
            self.write(template.batch(count, stamp, seq))
            seq += count
            self.published += count
            if confirms:
                tag = self._next_tag
                unconfirmed.update(dict.fromkeys(range(tag, tag + count), stamp))
                self._next_tag = tag + count
            await sleep(0)

    def on_frame(self, frame_type: int, channel: int, data: bytes, start: int, end: int) -> None:
        if frame_type == frames.FRAME_METHOD and end - start == 13:
            method = data[start : start + 4]
            if method == frames.BASIC_ACK or method == frames.BASIC_NACK:
                tag, bits = frames.TAG_BITS.unpack_from(data, start + 4)
                self._confirm(tag, bits & 1, method == frames.BASIC_NACK)
                return
        super().on_frame(frame_type, channel, data, start, end)

    def _confirm(self, tag: int, multiple: int, nack: bool) -> None:
        """basic.ack / basic.nack from the broker: settle the tags, record confirm latencies
        (messages of one batch share a send time, so they are added to the histogram as runs)."""
        unconfirmed = self.unconfirmed
        tags = range(self._low_tag, tag + 1) if multiple else (tag,)
        if nack:
            done = sum(1 for t in tags if unconfirmed.pop(t, 0))
            self.nacked += done
        else:
            now = time.monotonic_ns()
            latency = self.confirm_latency
            done = run = run_stamp = 0
            for t in tags:
                stamp = unconfirmed.pop(t, 0)
                if not stamp:
                    continue
                done += 1
                if stamp != run_stamp:
                    if run:
                        latency.add((now - run_stamp) // 1000, run)
                    run_stamp, run = stamp, 0
                run += 1
            if run:
                latency.add((now - run_stamp) // 1000, run)
            self.confirmed += done
        if multiple or tag == self._low_tag:
            low = max(tag + 1, self._low_tag) if multiple else self._low_tag
            while low < self._next_tag and low not in unconfirmed:
                low += 1
            self._low_tag = low
        self._wake()

    def on_other_method(self, channel: int, method: Any) -> None:
        if isinstance(method, commands.Basic.Return):
            self.returned += 1


class Consumer(Peer):
    def __init__(self, *args: Any, consumer: int, latency: Histogram, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.settings
        self.consumer = consumer
        self.latency = latency
        self.queues: list[str] = []
        self.own_queue: str | None = None
        self.tags: list[str] = []
        producers = max(1, settings.producers)
        #: consumer tag (raw) -> last sequence number seen per producer on that queue
        self._last: dict[bytes, list[int]] = {}
        #: consumer tag (raw) -> count gaps (this is the queue's only consumer)
        self._sole: dict[bytes, bool] = {}
        self._from = [0] * producers  # messages received per producer, for the closed loop
        self._ack_every = 0 if settings.autoack else settings.ack_every
        self._unacked = 0
        self._last_tag = 0
        self._idle_tag = 0
        self._filler = frames.filler(settings.size)
        self._deliver_head = frames.deliver_head(0)
        self._ctag_size = 0
        #: the fixed layout of the deliveries (``_learn``)
        self._fast: Layout | None = None
        #: layouts learnt since the last delivery that fitted one
        self._misses = 0

    async def setup(self) -> None:
        settings, topology = self.settings, self.topology
        await self.open_channel(CHANNEL)
        if settings.qos:
            await self.rpc(CHANNEL, commands.Basic.Qos(prefetch_count=settings.qos), commands.Basic.QosOk)
        queues = list(topology.consumer_queues[self.consumer])
        sole = list(topology.sole_consumer[self.consumer])
        if not queues:
            ok = await self.rpc(
                CHANNEL,
                commands.Queue.Declare(
                    queue="", durable=settings.persistent, exclusive=True, auto_delete=True
                ),
                commands.Queue.DeclareOk,
            )
            self.own_queue = ok.queue
            queues = [ok.queue]
            if topology.own_queue_key is not None:
                bind = commands.Queue.Bind(
                    queue=ok.queue, exchange=topology.exchange, routing_key=topology.own_queue_key
                )
                await self.rpc(CHANNEL, bind, commands.Queue.BindOk)
        self.queues = queues
        for k, queue in enumerate(queues):
            tag = self.track(k, sole[k])
            consume = commands.Basic.Consume(queue=queue, consumer_tag=tag, no_ack=settings.autoack)
            await self.rpc(CHANNEL, consume, commands.Basic.ConsumeOk)
            self.tags.append(tag)

    def track(self, k: int, sole: bool) -> str:
        """The consumer tag of this consumer's ``k``-th queue, with fresh sequence tracking;
        ``sole``: it is the queue's only consumer (count gaps)."""
        tag = f"amqp-perf-{self.consumer}-{k:06d}"  # one length for all: parsed with one struct
        self._last[tag.encode()] = [frames.SEQ_MASK] * max(1, self.settings.producers)
        self._sole[tag.encode()] = sole
        self._deliver_head = frames.deliver_head(len(tag))
        self._ctag_size = len(tag)
        self._fast = None  # learnt again with this tag
        return tag

    def on_cancel(self, channel: int, method: commands.Basic.Cancel) -> None:
        if not self.stopping:
            super().on_cancel(channel, method)

    def flush_idle_ack(self) -> None:
        """Ack a partial multiple-ack batch that saw no new delivery since the last call."""
        if self._unacked and self._last_tag == self._idle_tag:
            self.write(frames.encode_ack(CHANNEL, self._last_tag, True))
            self._unacked = 0
        self._idle_tag = self._last_tag

    async def teardown(self) -> None:
        """Cancel, delete the server-named queue, close."""
        self.stopping = True
        try:
            for tag in self.tags:
                await self.rpc(
                    CHANNEL, commands.Basic.Cancel(consumer_tag=tag), commands.Basic.CancelOk, timeout=5
                )
            if self.own_queue is not None:
                await self.rpc(
                    CHANNEL, commands.Queue.Delete(queue=self.own_queue), commands.Queue.DeleteOk, timeout=5
                )
        finally:
            await self.close()

    def _learn(self, data: bytearray, pos: int, stamp_at: int, end: int) -> None:
        """Take the delivery ``data[pos:end]`` (one body frame, its stamp at ``stamp_at``, found
        good by the frame-by-frame path) as the layout of the deliveries to come: everything but
        the consumer tag, the delivery tag and bits, and the send time, sequence number and
        producer of the stamp is then the same bytes in each, checked in one comparison."""
        if self._misses >= LEARN_MISSES:
            return  # the layouts change from delivery to delivery: stay frame by frame
        self._misses += 1
        head_size = DELIVER_PREFIX + self._ctag_size
        mid = bytes(data[pos + head_size + 9 : stamp_at])  # exchange ... body frame header
        tail = bytes(data[stamp_at + frames.STAMP_VARYING : end])  # run tag, filler, frame end
        prefix = bytes(data[pos : pos + DELIVER_PREFIX])
        by_head = {prefix + ctag: lasts for ctag, lasts in self._last.items()}
        self._fast = Layout(f"{head_size}sQB{len(mid)}sQIH{len(tail)}s", mid, tail, by_head)

    def scan(self, data: bytearray, n: int) -> int:  # long loops on purpose: the hot path
        """Deliveries of the learnt fixed layout (``_learn``) in one ``struct`` pass each; other
        deliveries (method + header + single or multiple body frames) by hand; anything else
        frame by frame through ``Connection.on_frame``."""
        pos = 0
        now = time.monotonic_ns()
        producers = len(self._from)
        last_by_tag = self._last
        received_from = self._from
        ack_every = self._ack_every
        acks: list[bytes] = []
        received = bad = out_of_order = gaps = foreign = redelivered = fast_count = 0
        latency = self.latency
        run_stamp, run = 0, 0
        unacked = self._unacked
        delivery_tag = self._last_tag
        fast = self._fast
        view = memoryview(data)
        while n - pos >= 8:
            if fast is not None and n - pos >= fast.size:
                fast_size, fixed_mid, fixed_tail, by_head = fast.size, fast.mid, fast.tail, fast.by_head
                count = (n - pos) // fast_size
                # the common case first: k deliveries of the fixed layout, all on one queue, from
                # one producer, in sequence, none redelivered: checked with C loops over the
                # fields of one unpack (tuple slices, count, max, a range compared)
                k = min(count, BULK_MAX)
                t = fast.run(k)(data, pos)
                head = t[0]
                producer = t[6]
                seqs = t[5::8]
                seq = seqs[0]
                lasts = by_head.get(head)
                if (
                    lasts is not None
                    and producer < producers
                    and seq == (lasts[producer] + 1) & 0xFFFFFFFF
                    and t[3::8].count(fixed_mid) == k
                    and t[7::8].count(fixed_tail) == k
                    and t[0::8].count(head) == k
                    and t[6::8].count(producer) == k
                    and t[2::8].count(0) == k
                    and seqs == tuple(range(seq, seq + k))
                    and max(stamps := t[4::8]) <= now
                ):
                    lasts[producer] = seqs[-1]
                    received_from[producer] += k
                    stamp = stamps[0]
                    if stamps.count(stamp) == k:
                        if stamp != run_stamp:
                            if run:
                                latency.add((now - run_stamp) // 1000, run)
                            run_stamp, run = stamp, 0
                        run += k
                    else:
                        for stamp in stamps:
                            if stamp != run_stamp:
                                if run:
                                    latency.add((now - run_stamp) // 1000, run)
                                run_stamp, run = stamp, 0
                            run += 1
                    delivery_tag = t[-7]
                    if ack_every:
                        tags = t[1::8]
                        if ack_every == 1:
                            args = [ACK_HEAD, 0, ACK_SINGLE] * k
                            args[1::3] = tags
                            acks.append(ack_run(k)(*args))
                        else:
                            i = ack_every - unacked - 1
                            while i < k:
                                acks.append(ACK_PACK(ACK_HEAD, tags[i], ACK_MULTIPLE))
                                i += ack_every
                            unacked = (unacked + k) % ack_every
                    pos += k * fast_size
                    fast_count += k
                    continue
                del t
                # else one by one while they are of the fixed layout; stops at the first that is not
                done = 0
                multiple = ack_every > 1
                for head, tag, bits, mid, stamp, seq, producer, tail in fast.iter_unpack(
                    view[pos : pos + count * fast_size]
                ):
                    if mid != fixed_mid or tail != fixed_tail or stamp > now or producer >= producers:
                        break
                    lasts = by_head.get(head)
                    if lasts is None:
                        break
                    step = (seq - lasts[producer]) & 0xFFFFFFFF
                    if step == 1:
                        lasts[producer] = seq
                    elif step == 0 or step >= frames.OUT_OF_ORDER:
                        out_of_order += 1
                    else:
                        lasts[producer] = seq
                        if self._sole[head[DELIVER_PREFIX:]]:
                            gaps += step - 1
                    received_from[producer] += 1
                    if stamp != run_stamp:
                        if run:
                            latency.add((now - run_stamp) // 1000, run)
                        run_stamp, run = stamp, 0
                    run += 1
                    if bits & 1:
                        redelivered += 1
                    delivery_tag = tag
                    done += 1
                    if ack_every:
                        unacked += 1
                        if unacked >= ack_every:
                            acks.append(ACK_PACK(ACK_HEAD, tag, ACK_MULTIPLE if multiple else ACK_SINGLE))
                            unacked = 0
                pos += done * fast_size
                fast_count += done
                if n - pos < 8:
                    break
            # one delivery or frame the fast path did not take, then back to it
            frame_type = 0
            head_size = self._deliver_head.size
            if n - pos >= head_size:
                frame_type, _channel, length, method, ctag_length, ctag, tag, bits = (
                    self._deliver_head.unpack_from(data, pos)
                )
            if frame_type == 1 and method == frames.BASIC_DELIVER:
                if ctag_length != self._ctag_size:
                    self.protocol_error(f"basic.deliver for a consumer tag it did not ask for ({ctag!r})")
                    return n
                h = pos + 8 + length  # the content header frame
                if h + frames.CONTENT_HEAD.size > n:
                    break
                header_type, _channel, header_size, _class, _weight, body_size = (
                    frames.CONTENT_HEAD.unpack_from(data, h)
                )
                if header_type != frames.FRAME_HEADER or data[h - 1] != frames.FRAME_END:
                    self.protocol_error("basic.deliver not followed by a content header")
                    return n
                b = h + 8 + header_size  # the first body frame
                single = False
                if body_size == 0:
                    if b > n:
                        break
                    body, start, end = b"", 0, b
                elif b + 7 > n:
                    break
                else:
                    body_type, _channel, first = frames.FRAME.unpack_from(data, b)
                    if first == body_size:  # the whole body in one frame: checked in place
                        end = b + 8 + first
                        if end > n:
                            break
                        body, start, single = data, b + 7, True
                    elif first > body_size:
                        self.protocol_error("content body frame larger than the body size")
                        return n
                    else:
                        parts: list[bytearray] = []
                        got, q = 0, b
                        while got < body_size and q + 7 <= n:
                            part_type, _channel, part = frames.FRAME.unpack_from(data, q)
                            if q + 8 + part > n:
                                break
                            if part_type != frames.FRAME_BODY or data[q + 7 + part] != frames.FRAME_END:
                                self.protocol_error("malformed content body frame")
                                return n
                            parts.append(data[q + 7 : q + 7 + part])
                            got += part
                            q += 8 + part
                        if got < body_size:
                            break
                        if got > body_size:
                            self.protocol_error("content body frames larger than the body size")
                            return n
                        body, start, end = b"".join(parts), 0, q
                    if (
                        body_type != frames.FRAME_BODY
                        or data[b - 1] != frames.FRAME_END
                        or data[end - 1] != frames.FRAME_END
                    ):
                        self.protocol_error("malformed content body frame")
                        return n
                delivery_tag = tag
                received += 1
                if bits & 1:
                    redelivered += 1
                if body_size < frames.STAMP_SIZE:
                    foreign += 1
                else:
                    stamp, seq, producer, run_of = frames.STAMP.unpack_from(body, start)
                    if run_of != self.run_tag:
                        foreign += 1
                    elif (
                        body_size != self.settings.size
                        or producer >= producers
                        or stamp > now
                        or not body.startswith(self._filler, start + frames.STAMP_SIZE)
                    ):
                        bad += 1
                    else:
                        lasts = last_by_tag.get(ctag)
                        if lasts is None:
                            foreign += 1  # a consumer tag we did not ask for
                        else:
                            step = (seq - lasts[producer]) & 0xFFFFFFFF
                            if step == 1:
                                lasts[producer] = seq
                            elif step == 0 or step >= frames.OUT_OF_ORDER:
                                out_of_order += 1
                            else:
                                lasts[producer] = seq
                                if self._sole[ctag]:
                                    gaps += step - 1
                            received_from[producer] += 1
                            if stamp != run_stamp:
                                if run:
                                    latency.add((now - run_stamp) // 1000, run)
                                run_stamp, run = stamp, 0
                            run += 1
                            if single:
                                self._learn(data, pos, start, end)
                                fast = self._fast
                pos = end
                if ack_every:
                    unacked += 1
                    if unacked >= ack_every:
                        acks.append(frames.encode_ack(CHANNEL, delivery_tag, ack_every > 1))
                        unacked = 0
                continue
            frame_type, channel, length = frames.FRAME.unpack_from(data, pos)
            end = pos + 7 + length
            if end >= n:
                break
            if data[end] != frames.FRAME_END:
                self.protocol_error("frame end byte missing")
                return n
            self.on_frame(frame_type, channel, data, pos + 7, end)
            pos = end + 1
        del view
        if run:
            latency.add((now - run_stamp) // 1000, run)
        if acks:
            self.write(b"".join(acks))
        self._unacked = unacked
        self._last_tag = delivery_tag
        if fast_count:
            received += fast_count
            self._misses = 0
        if received:
            self.received += received
            if bad or out_of_order or gaps or foreign or redelivered:
                self.bad += bad
                self.out_of_order += out_of_order
                self.gaps += gaps
                self.foreign += foreign
                self.redelivered += redelivered
            shared = self._inflight
            if shared is not None:
                consumers = self.settings.consumers
                for producer in range(producers):
                    shared[producer * consumers + self.consumer] = received_from[producer]
        return pos


class Worker:
    """One process's producers and consumers, and its conversation with the coordinator."""

    def __init__(self, plan: WorkerPlan, pipe: Pipe, inflight: Any) -> None:
        self.plan = plan
        self.pipe = pipe
        self.inflight = inflight
        self.latency = Histogram()
        self.confirm_latency = Histogram()
        self.producers: list[Producer] = []
        self.consumers: list[Consumer] = []
        self.stopped: asyncio.Event | None = None
        self.failed = False
        self.t0 = 0.0
        self.cpu0 = 0.0
        self.tick = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def peers(self) -> Sequence[Peer]:
        return [*self.consumers, *self.producers]

    def send(self, *message: Any) -> None:
        try:
            self.pipe.send(message)
        except (BrokenPipeError, OSError):  # the coordinator is gone: stop
            if self.stopped is not None:
                self.stopped.set()

    def fail(self, text: str) -> None:
        self.send("error", text)
        self.failed = True
        if self.stopped is not None:
            self.stopped.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

        def on_pipe() -> None:
            try:
                inbox.put_nowait(self.pipe.recv())
            except (EOFError, OSError):
                loop.remove_reader(self.pipe.fileno())
                inbox.put_nowait(("stop",))

        loop.add_reader(self.pipe.fileno(), on_pipe)
        warnings: list[str] = []
        try:
            if await self._start():
                self.send("ready")
                message = await inbox.get()
                if message[0] == "go":
                    await self._measure(message[1], message[2], inbox)
        except Exception as exc:
            traceback.print_exc()
            self.fail(f"worker {self.plan.index}: internal error: {exc!r}")
        finally:
            warnings = await self._teardown()
            loop.remove_reader(self.pipe.fileno())
            self.send("done", warnings)

    async def _start(self) -> bool:
        plan = self.plan
        settings = plan.settings
        endpoint = client.parse_uri(settings.uri)
        common = {
            "settings": settings,
            "topology": plan.topology,
            "run_tag": plan.run_tag,
            "inflight": self.inflight,
        }

        async def start(factory: type[Peer], name: str, **kwargs: Any) -> Peer:
            peer = await client.connect(
                endpoint, name, frame_max=settings.frame_max, factory=factory, **common, **kwargs
            )
            peer.on_error = self.fail
            (self.producers if isinstance(peer, Producer) else self.consumers).append(peer)  # type: ignore[arg-type]
            await peer.setup()  # type: ignore[attr-defined]
            return peer

        # consumers first: every queue has its consumers before the first publish
        results = await asyncio.gather(
            *(
                start(
                    Consumer, f"amqp-perf {settings.test_id} consumer {c}", consumer=c, latency=self.latency
                )
                for c in plan.consumer_ids
            ),
            return_exceptions=True,
        )
        if not any(isinstance(r, BaseException) for r in results):
            results += await asyncio.gather(
                *(
                    start(
                        Producer,
                        f"amqp-perf {settings.test_id} producer {p}",
                        producer=p,
                        confirm_latency=self.confirm_latency,
                    )
                    for p in plan.producer_ids
                ),
                return_exceptions=True,
            )
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, client.AmqpError | OSError):
                    raise result
                if not self.failed:
                    self.fail(str(result))
        return not self.failed

    async def _measure(self, t0: float, stop_at: float | None, inbox: asyncio.Queue[tuple[Any, ...]]) -> None:
        loop = asyncio.get_running_loop()
        assert self.stopped is not None
        self.t0 = t0
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        self.cpu0 = time.process_time()
        for peer in self.peers:
            peer.reset()
        self.latency.take()
        self.confirm_latency.take()
        for producer in self.producers:
            producer.start()
        self._schedule_tick()
        if stop_at is not None:  # just after the last tick, so that the last second is reported
            loop.call_later(max(0.0, stop_at - time.monotonic()) + 0.002, self.stopped.set)
        waiter = loop.create_task(inbox.get())
        stopped = loop.create_task(self.stopped.wait())
        await asyncio.wait((waiter, stopped), return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopped.cancel()
        if self._timer is not None:
            self._timer.cancel()
        for producer in self.producers:
            producer.stop()
        self.send("final", self.snapshot())

    def _schedule_tick(self) -> None:
        self.tick += 1
        delay = self.t0 + self.tick - time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._on_tick)

    def _on_tick(self) -> None:
        self.send("tick", self.tick, self.snapshot())
        for consumer in self.consumers:
            consumer.flush_idle_ack()
        self._schedule_tick()

    def snapshot(self) -> Snapshot:
        peers = self.peers
        counters = tuple(sum(getattr(peer, name) for peer in peers) for name in COUNTERS)
        elapsed, cpu = time.monotonic() - self.t0, time.process_time() - self.cpu0
        return Snapshot(elapsed, counters, cpu, self.latency.take(), self.confirm_latency.take())

    async def _teardown(self) -> list[str]:
        """Stop publishing, cancel consumers, delete server-named queues, close; what went wrong
        here is a warning, not a failure of the run."""
        warnings: list[str] = []
        for producer in self.producers:
            producer.stop()
        tasks = [p.task for p in self.producers if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        results = await asyncio.gather(
            *(c.teardown() for c in self.consumers if c.error is None),
            *(p.close() for p in self.producers if p.error is None),
            return_exceptions=True,
        )
        warnings += [f"clean-up: {r}" for r in results if isinstance(r, BaseException)]
        for peer in self.peers:
            if peer.error is not None:
                peer.abort()
        return warnings


def process_main(plan: WorkerPlan, pipe: Pipe, inflight: Any = None) -> None:
    """Entry point of a worker process (the coordinator handles Ctrl-C and tells it to stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    client.run(Worker(plan, pipe, inflight).run())
