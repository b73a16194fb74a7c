"""amqp-perf without a broker: the pre-encoded frames (checked with pamqp's decoder), the
consumer's byte-level delivery parser, histograms, topology planning and argument parsing."""

from __future__ import annotations

import asyncio
import random
import shlex
from typing import Any

import pytest
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from amqp_perf import cli, frames, topology
from amqp_perf.client import Connection, parse_uri
from amqp_perf.settings import Settings
from amqp_perf.stats import Histogram, bucket, bucket_value
from amqp_perf.workers import Consumer, Producer


def decode_all(data: bytes) -> list[Any]:
    """Every frame in ``data`` as pamqp makes of it."""
    values, pos = [], 0
    while pos < len(data):
        consumed, _channel, value = pamqp_frame.unmarshal(data[pos:])
        values.append(value)
        pos += consumed
    return values


# -- publish frames -------------------------------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("mandatory", [False, True])
def test_publish_batch_round_trips_through_pamqp(persistent: bool, mandatory: bool) -> None:
    template = frames.PublishTemplate(
        channel=3,
        exchange="ex",
        routing_key="rk.é",
        size=100,
        producer=7,
        run=0xBEEF,
        persistent=persistent,
        mandatory=mandatory,
    )
    values = decode_all(bytes(template.batch(3, 123456789, 41)))
    assert len(values) == 9
    for i in range(3):
        publish, header, body = values[3 * i : 3 * i + 3]
        assert isinstance(publish, commands.Basic.Publish)
        assert (publish.exchange, publish.routing_key, publish.mandatory) == ("ex", "rk.é", mandatory)
        assert isinstance(header, ContentHeader)
        assert header.body_size == 100
        assert header.properties.delivery_mode == (2 if persistent else None)
        assert isinstance(body, ContentBody)
        assert len(body.value) == 100
        assert frames.STAMP.unpack_from(body.value) == (123456789, 41 + i, 7, 0xBEEF)
        assert body.value[frames.STAMP_SIZE :] == frames.filler(100)


def test_stamp_is_at_the_fixed_offset() -> None:
    template = frames.PublishTemplate(channel=1, exchange="", routing_key="q", size=16, producer=0, run=1)
    batch = template.batch(2, 99, 5)
    step = len(template)
    assert frames.TIME_SEQ.unpack_from(batch, template.stamp_offset) == (99, 5)
    assert frames.TIME_SEQ.unpack_from(batch, template.stamp_offset + step) == (99, 6)
    assert bytes(batch[:step]) == bytes(batch[step:]).replace(b"\x00\x00\x00\x06", b"\x00\x00\x00\x05")


def test_body_larger_than_frame_max_is_split() -> None:
    template = frames.PublishTemplate(
        channel=1, exchange="", routing_key="q", size=10000, producer=1, run=2, frame_max=4096
    )
    values = decode_all(bytes(template.batch(1, 5, 0)))
    bodies = [v for v in values if isinstance(v, ContentBody)]
    assert [len(b.value) for b in bodies] == [4088, 4088, 1824]
    body = b"".join(b.value for b in bodies)
    assert frames.STAMP.unpack_from(body) == (5, 0, 1, 2)
    assert body[16:] == frames.filler(10000)


def test_sequence_numbers_wrap() -> None:
    template = frames.PublishTemplate(channel=1, exchange="", routing_key="q", size=16, producer=0, run=0)
    batch = bytes(template.batch(3, 1, frames.SEQ_MASK - 1))
    seqs = [frames.STAMP.unpack_from(v.value)[1] for v in decode_all(batch) if isinstance(v, ContentBody)]
    assert seqs == [frames.SEQ_MASK - 1, frames.SEQ_MASK, 0]
    assert frames.sequence_step(frames.SEQ_MASK, 0) == 1
    assert frames.sequence_step(5, 5) == 0
    assert frames.sequence_step(5, 4) >= frames.OUT_OF_ORDER


def test_ack_frame() -> None:
    (ack,) = decode_all(frames.encode_ack(2, 2**40 + 3, True))
    assert isinstance(ack, commands.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (2**40 + 3, True)


def test_template_rejects_bodies_without_room_for_the_stamp() -> None:
    with pytest.raises(ValueError):
        frames.PublishTemplate(channel=1, exchange="", routing_key="q", size=15, producer=0, run=0)


# -- the consumer's delivery parser ---------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> None:
        return None


def delivery(
    tag: int,
    body: bytes,
    ctag: str = "amqp-perf-0-000000",
    frame_max: int = 131072,
    redelivered: bool = False,
) -> bytes:
    """basic.deliver + header + body frames, encoded by pamqp."""
    out = pamqp_frame.marshal(
        commands.Basic.Deliver(
            consumer_tag=ctag, delivery_tag=tag, redelivered=redelivered, exchange="x", routing_key="k"
        ),
        1,
    )
    out += pamqp_frame.marshal(
        ContentHeader(body_size=len(body), properties=commands.Basic.Properties(delivery_mode=2)), 1
    )
    for i in range(0, len(body), frame_max - 8):
        out += pamqp_frame.marshal(ContentBody(body[i : i + frame_max - 8]), 1)
    return out


def body(seq: int, producer: int = 0, run: int = 77, size: int = 64, stamp: int = 1) -> bytes:
    return frames.STAMP.pack(stamp, seq, producer, run) + frames.filler(size)


async def make_consumer(settings: Settings, sole: bool = True) -> tuple[Consumer, FakeTransport]:
    consumer = Consumer(
        parse_uri("amqp://localhost"),
        "test",
        131072,
        settings=settings,
        topology=topology.plan(settings),
        consumer=0,
        run_tag=77,
        latency=Histogram(),
    )
    transport = FakeTransport()
    consumer.transport = transport  # type: ignore[assignment]
    consumer.track(0, sole)
    return consumer, transport


def feed(conn: Connection, data: bytes, seed: int) -> None:
    """``data`` in random pieces, as a socket may deliver it."""
    rnd = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = rnd.randint(1, 300)
        conn.data_received(data[pos : pos + step])
        pos += step


@pytest.mark.parametrize("seed", range(5))
async def test_consumer_counts_and_checks_deliveries(seed: int) -> None:
    settings = Settings(producers=2, consumers=1, size=64, qos=10, multi_ack_every=3)
    consumer, transport = await make_consumer(settings)
    stream = b"".join(
        [
            delivery(1, body(0, size=64)),
            delivery(2, body(1, size=64)),
            delivery(3, body(0, producer=1, size=64)),
            delivery(4, body(3, size=64)),  # seq 2 of producer 0 is missing: a gap
            delivery(5, body(2, size=64), redelivered=True),  # older: out of order
            delivery(6, body(4, size=64)[:-1] + b"!"),  # filler does not match: bad
            delivery(7, body(5, run=78, size=64)),  # another run's message: foreign
            delivery(8, b"short"),  # not ours at all: foreign
            pamqp_frame.marshal(commands.Basic.QosOk(), 1),  # anything else goes the generic way
            delivery(9, body(4, size=64)),  # a bad body does not count as seen
        ]
    )
    feed(consumer, stream, seed)
    assert consumer.pending_bytes == 0
    assert (consumer.received, consumer.gaps, consumer.out_of_order, consumer.bad, consumer.foreign) == (
        9,
        1,
        1,
        1,
        2,
    )
    assert consumer.redelivered == 1
    assert consumer.latency.n == 6
    acks = decode_all(bytes(transport.written))
    assert [(a.delivery_tag, a.multiple) for a in acks] == [(3, True), (6, True), (9, True)]
    assert consumer.error is None


async def test_consumer_reassembles_multi_frame_bodies_and_acks_each() -> None:
    settings = Settings(producers=1, consumers=1, size=20000)
    consumer, transport = await make_consumer(settings)
    stream = b"".join(delivery(t + 1, body(t, size=20000), frame_max=4096) for t in range(3))
    feed(consumer, stream, 1)
    assert (consumer.received, consumer.bad, consumer.out_of_order) == (3, 0, 0)
    assert [(a.delivery_tag, a.multiple) for a in decode_all(bytes(transport.written))] == [
        (1, False),
        (2, False),
        (3, False),
    ]


async def test_consumer_autoack_sends_nothing_and_shared_queue_counts_no_gaps() -> None:
    settings = Settings(producers=1, consumers=2, autoack=True, queues=("q",))
    consumer, transport = await make_consumer(settings, sole=False)
    feed(consumer, delivery(1, body(0, size=0, run=77)[:16]) + delivery(2, body(5)[:16]), 2)
    assert (consumer.received, consumer.gaps, consumer.out_of_order) == (2, 0, 0)
    assert transport.written == b""


async def test_consumer_drops_a_broken_stream() -> None:
    consumer, transport = await make_consumer(Settings())
    data = bytearray(delivery(1, body(0)))
    data[-1] = 0  # frame end byte of the body frame
    consumer.data_received(bytes(data))
    assert consumer.error is not None and "protocol error" in consumer.error
    assert transport.closed


async def test_producer_settles_confirms_from_the_wire() -> None:
    settings = Settings(confirm=10)
    producer = Producer(
        parse_uri("amqp://localhost"),
        "test",
        131072,
        settings=settings,
        topology=topology.plan(settings),
        producer=0,
        run_tag=1,
        confirm_latency=Histogram(),
    )
    transport = FakeTransport()
    producer.transport = transport  # type: ignore[assignment]
    producer.template = frames.PublishTemplate(channel=1, exchange="", routing_key="q", size=16, producer=0, run=1)
    producer.start()
    # the confirm window lets out 10 publishes, tags 1..10, then the producer waits for confirms
    for _ in range(100):
        await asyncio.sleep(0)
        if producer.published >= 10:
            break
    for _ in range(5):
        await asyncio.sleep(0)
    assert producer.published == 10
    assert sorted(producer.unconfirmed) == list(range(1, 11))
    assert producer.next_tag == 11
    assert producer.settled_below == 1
    assert [type(v) for v in decode_all(bytes(transport.written))].count(commands.Basic.Publish) == 10
    stream = b"".join(
        pamqp_frame.marshal(method, 1)
        for method in (
            commands.Basic.Ack(delivery_tag=3),
            commands.Basic.Ack(delivery_tag=5, multiple=True),
            commands.Basic.Nack(delivery_tag=7, multiple=True),
            commands.Basic.Ack(delivery_tag=10),
            commands.Basic.Ack(delivery_tag=2),  # already settled: ignored
        )
    )
    feed(producer, stream, 3)
    assert (producer.confirmed, producer.nacked) == (6, 2)
    assert sorted(producer.unconfirmed) == [8, 9]
    assert producer.settled_below == 8
    assert producer.confirm_latency.n == 6
    producer.stop()
    assert producer.task is not None
    await asyncio.wait_for(producer.task, 5)
    assert producer.published == 10  # stopped before using the room the confirms made


# -- histograms -----------------------------------------------------------------------------


def test_histogram_buckets_are_monotonic_and_close() -> None:
    last = -1
    for value in [*range(0, 2000), *range(2000, 10**7, 997)]:
        index = bucket(value)
        assert index >= last
        last = index
        assert abs(bucket_value(index) - value) <= max(1, value // 100)


def test_histogram_percentiles() -> None:
    h = Histogram()
    for v in range(1, 101):
        h.add(v)
    s = h.summary()
    assert (s["min"], s["median"], s["p75"], s["p95"], s["p99"], s["max"], s["n"]) == (
        1,
        50,
        75,
        95,
        99,
        100,
        100,
    )
    other = Histogram()
    other.add(10**6, 100)
    h.merge(other)
    assert h.percentile(0.25) == 50 and h.max == 10**6 and h.n == 200
    taken = h.take()
    assert taken.n == 200 and h.n == 0 and h.summary()["median"] == 0


# -- topology -------------------------------------------------------------------------------


def test_topology_server_named_queue_per_consumer() -> None:
    plan = topology.plan(Settings(producers=2, consumers=3, routing_key="rk"))
    assert plan.exchange == "direct" and plan.declares_exchange
    assert plan.named_queues == () and plan.consumer_queues == ((), (), ())
    assert plan.own_queue_key == "rk" and plan.producer_keys == ("rk", "rk")
    assert plan.fanout == (3, 3)


def test_topology_queue_pattern_and_named_queues() -> None:
    s = Settings(
        producers=3, consumers=2, queue_pattern="perf-%02d", queue_pattern_from=1, queue_pattern_to=2
    )
    plan = topology.plan(s)
    assert plan.named_queues == (("perf-01", "perf-01"), ("perf-02", "perf-02"))
    assert plan.producer_keys == ("perf-01", "perf-02", "perf-01")
    assert plan.consumer_queues == (("perf-01",), ("perf-02",))
    assert plan.fanout == (1, 1, 1) and plan.sole_consumer == ((True,), (True,))
    fan = topology.plan(Settings(producers=1, consumers=3, queues=("a", "b"), exchange_type="fanout"))
    assert (
        fan.consumer_queues == (("a", "b"),) * 3
        and fan.fanout == (2,)
        and fan.sole_consumer[0] == (False, False)
    )
    default = topology.plan(Settings(producers=1, consumers=1, queues=("q",), exchange="amq.default"))
    assert default.exchange == "" and default.producer_keys == ("q",) and default.named_queues == (("q", ""),)
    assert default.fanout == (1,) and not default.declares_exchange


# -- command line ---------------------------------------------------------------------------


def test_perftest_flags() -> None:
    settings, as_json = cli.parse_args(
        shlex.split(
            "-x 2 -y 3 -s 1000 -f persistent -f mandatory -c 100 -q 50 -A 10 -a -r 250 -z 5 -u a,b "
            "-e ex -t fanout -k key -h amqp://u:p%40@host:5673/v%2Fh -p --auto-delete false --id mine "
            "--processes 2 --max-inflight 1000 -M 8192 --json"
        )
    )
    assert as_json
    assert (settings.producers, settings.consumers, settings.size) == (2, 3, 1000)
    assert settings.flags == ("persistent", "mandatory") and settings.persistent and settings.mandatory
    assert (settings.confirm, settings.qos, settings.multi_ack_every, settings.autoack) == (100, 50, 10, True)
    assert (settings.rate, settings.time, settings.queues) == (250.0, 5.0, ("a", "b"))
    assert (settings.exchange, settings.exchange_type, settings.routing_key) == ("ex", "fanout", "key")
    assert (settings.predeclared, settings.auto_delete, settings.test_id) == (True, False, "mine")
    assert (settings.processes, settings.max_inflight, settings.frame_max) == (2, 1000, 8192)
    endpoint = parse_uri(settings.uri)
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.password, endpoint.vhost) == (
        "host",
        5673,
        "u",
        "p@",
        "v/h",
    )


def test_defaults_are_perftests() -> None:
    settings, as_json = cli.parse_args([])
    assert not as_json
    assert (settings.producers, settings.consumers, settings.size, settings.confirm) == (1, 1, 16, None)
    assert settings.exchange is None and settings.exchange_type == "direct" and settings.auto_delete
    assert settings.test_id.startswith("test-")
    assert parse_uri(settings.uri).vhost == "/" and parse_uri("amqp://h").vhost == "/"
    assert cli.parse_args(["-e"])[0].exchange == ""
    assert cli.parse_args(["-c", "0"])[0].confirms


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(["-?"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--producers" in out and "amqp://guest:guest@localhost:5672/%2F" in out


def test_small_sizes_are_raised(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.parse_args(["-s", "12"])[0].size == frames.STAMP_SIZE
    assert "raised" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        "-x 0 -y 0",
        "-x -1",
        "-q 70000",
        "-f durable",
        "--queue-pattern q-%d",
        "--queue-pattern q-%d --queue-pattern-from 3 --queue-pattern-to 1",
        "--queue-pattern q --queue-pattern-from 1 --queue-pattern-to 2",
        "-u a --queue-pattern q-%d --queue-pattern-from 1 --queue-pattern-to 2",
        "--auto-delete maybe",
        "-h amqps://host",
        "--nonsense",
    ],
)
def test_bad_usage_exits_1(args: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(args.split())
    assert exc.value.code == 1
    assert "error" in capsys.readouterr().err


def test_output_lines() -> None:
    settings = Settings(test_id="test-1", confirm=10, flags=("mandatory",))
    h = Histogram()
    h.add(100, 10)
    rates = {"published": 1234.5, "confirmed": 5.25, "nacked": 0.0, "returned": 0.5, "received": 1200.0}
    line = cli.tick_line(settings, cli.runner.Tick(1.0004, rates, h, Histogram()))
    assert line == (
        "id: test-1, time: 1.000s, sent: 1234 msg/s, returned: 0.50 msg/s, confirmed: 5.2 msg/s, nacked: 0 msg/s, "
        "received: 1200 msg/s, min/median/75th/95th/99th consumer latency: 100/100/100/100/100 µs, "
        "confirm latency: 0/0/0/0/0 µs"
    )
