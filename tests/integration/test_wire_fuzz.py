"""Wire-level fuzzing of the live broker (generator, connection and oracle: wire_harness.py):
after a handshake walked to some stage, send garbage, mutated frames and well-formed methods
with adversarial fields, and check that the broker answers with a valid connection.close,
closes the socket or keeps working; that it never hangs; that after every case a fresh pika
connection still works; and that it logs no error and no traceback. Loopback only, bounded,
deterministic: a seeded run and a derandomized Hypothesis run of the same generator.
WIRE_FUZZ_CASES / WIRE_FUZZ_EXAMPLES run longer hunts; scripts/wire_fuzz.py runs the long one.

Then codec errors end to end, with RabbitMQ's exact replies.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import operator
import os
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pika
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.header import ContentHeader
from wire_harness import (
    CONNECTION_CLOSE,
    FRAME_MAX,
    KINDS,
    STAGES,
    Case,
    Target,
    Wire,
    cleanup,
    outcome,
    random_case,
    run_case,
)

from amqp_server.protocol.frame_codec import build, encode_method, frame
from tests.conftest import BrokerHandle, start_broker

SEED = int(os.environ.get("WIRE_FUZZ_SEED", "41969"))
CASES = int(os.environ.get("WIRE_FUZZ_CASES", "200"))
# Deterministic in CI: derandomized, no example database. The default keeps the test at ~15 s.
EXAMPLES = int(os.environ.get("WIRE_FUZZ_EXAMPLES", "300"))
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The generator drawing from a Random whose every choice is Hypothesis's, so a failure shrinks.
CASES_STRATEGY = st.randoms(use_true_random=False).map(random_case)


class LogWatch(logging.Handler):
    """What the broker logged that means an exception escaped somewhere: any ERROR record
    (its 'background task failed' and '<method> failed', asyncio's 'Exception in callback'
    and 'Task exception was never retrieved') and any record carrying a traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("pika"):  # the tests' own client
            return
        if record.levelno >= logging.ERROR or record.exc_info:
            self.errors.append(self.format(record))

    def take(self) -> list[str]:
        with self.lock:  # type: ignore[union-attr]
            errors, self.errors = self.errors, []
        return errors


@pytest.fixture(scope="module")
def fuzz() -> Iterator[tuple[Target, LogWatch]]:
    """A broker of its own, whose log is watched from INFO up (so that a traceback logged below
    ERROR counts too). RabbitMQ's 3 s silent-close delay is cut short: cases that end a
    handshake then take no longer than the others."""
    handle = start_broker(silent_close_delay=0.05, handshake_timeout=2.0)
    target = Target(handle.port, silent_close=0.05)
    watch = LogWatch()
    root = logging.getLogger()
    level = root.level
    root.addHandler(watch)
    root.setLevel(logging.INFO)
    try:
        yield target, watch
        cleanup(target)
        gc.collect()  # "Task exception was never retrieved" is logged when the task is collected
        assert not watch.take()
    finally:
        root.removeHandler(watch)
        root.setLevel(level)
        handle.stop()


def check(fuzz: tuple[Target, LogWatch], case: Case) -> str:
    target, watch = fuzz
    result = run_case(target, case)
    errors = watch.take()
    assert not errors, (case, errors)
    return result


def test_seeded_cases(fuzz: tuple[Target, LogWatch]) -> None:
    rng = random.Random(SEED)
    seen: Counter[str] = Counter()
    for _ in range(CASES):
        case = random_case(rng)
        result = check(fuzz, case)
        seen.update((case.kind, case.stage, result.split(" noeof")[0]))
    # The cases reach every stage, kind and outcome, so the test is not vacuous.
    assert all(seen[name] for name in (*STAGES, *KINDS, "handshake")), seen
    other_closes = sum(n for result, n in seen.items() if result.startswith("close") and result != "close 501")
    assert min(seen["close 501"], seen["alive"], seen["eof"], other_closes) >= 10, seen


@HYPOTHESIS
@given(case=CASES_STRATEGY)
def test_hypothesis_cases(fuzz: tuple[Target, LogWatch], case: Case) -> None:
    event(f"{case.kind} after {case.stage}: {check(fuzz, case).split(' noeof')[0]}")


# --------------------------------------------------------------------------- the oracle itself
# Checked against fake peers and on records of its own, so that a passing fuzz run means something.


@contextmanager
def fake_broker(answer: bytes) -> Iterator[Target]:
    """A peer that reads whatever comes and answers the first bytes with ``answer``, then nothing."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            if connection.recv(1 << 16):
                connection.sendall(answer)
            while connection.recv(1 << 16):
                pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield Target(server.getsockname()[1], silent_close=0.0)
    finally:
        server.close()


def _close(channel: int, code: int, text: str) -> bytes:
    close = commands.Connection.Close if channel == 0 else commands.Channel.Close
    return encode_method(channel, build(close, reply_code=code, reply_text=text))


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (b"", "hung"),
        (_close(0, 200, "NORMAL"), "reply code 200"),
        (_close(0, 312, "NO_ROUTE"), "reply code 312"),  # basic.return's, never a close's
        (_close(0, 504, "oops"), "oops"),
        (_close(1, 999, "WHAT - 999"), "reply code 999"),
        (frame(1, 0, b"\x00\x14\x00\x0b")[:-1] + b"\x00", "frame-end"),
    ],
)
def test_the_oracle_rejects(answer: bytes, complaint: str) -> None:
    with fake_broker(answer) as target:
        wire = Wire(target)
        try:
            wire.handshake("header")
            with pytest.raises(AssertionError, match=complaint):
                outcome(wire)
        finally:
            wire.close()


def test_log_watch_takes_errors_and_tracebacks_of_the_broker() -> None:
    watch = LogWatch()
    error = ValueError("escaped")
    exc_info = (ValueError, error, None)
    for name, level, info in [
        ("amqp_server.transport.connection", logging.WARNING, None),
        ("amqp_server.core.broker", logging.ERROR, None),
        ("amqp_server.channel.channel", logging.INFO, exc_info),
        ("pika.adapters", logging.ERROR, None),  # the tests' client
    ]:
        watch.handle(logging.LogRecord(name, level, __file__, 1, name, None, info))
    assert [error.splitlines()[0] for error in watch.take()] == ["amqp_server.core.broker", "amqp_server.channel.channel"]
    assert watch.take() == []


async def _lose_a_task_exception() -> None:
    async def fail() -> None:
        raise ValueError("lost")

    asyncio.get_running_loop().create_task(fail())
    await asyncio.sleep(0.01)


def test_log_watch_sees_what_the_event_loop_logs() -> None:
    """A callback's exception, and a task's that nobody retrieved (logged when the task is
    collected): asyncio logs both at ERROR."""
    watch = LogWatch()
    logger = logging.getLogger("asyncio")
    logger.addHandler(watch)
    logger.propagate = False  # kept from the root logger, where a fuzz test's watch may be
    loop = asyncio.new_event_loop()
    try:
        loop.call_soon(operator.truediv, 1, 0)
        loop.run_until_complete(_lose_a_task_exception())
        gc.collect()
    finally:
        loop.close()
        logger.removeHandler(watch)
        logger.propagate = True
    firsts = [error.splitlines()[0] for error in watch.take()]
    assert len(firsts) == 2 and firsts[0].startswith("Exception in callback"), firsts
    assert firsts[1] == "Task exception was never retrieved", firsts


# --------------------------------------------------------------------------- codec errors end to end
# Reply texts recorded from RabbitMQ 3.10.8 with raw sockets (recorded against RabbitMQ 3.10.8).


def close_after(broker: BrokerHandle, data: bytes) -> commands.Connection.Close:
    wire = Wire(Target(broker.port))
    try:
        wire.handshake()
        wire.send(data)
        while True:
            got = wire.read_frame(1.5)
            assert got is not None, "expected connection.close"
            frame_type, channel, payload = got
            if frame_type == 1 and channel == 0 and struct.unpack_from(">HH", payload) == CONNECTION_CLOSE:
                close = pamqp_frame.unmarshal(frame(1, 0, payload))[2]
                wire.send(encode_method(0, commands.Connection.CloseOk()))
                return close
    finally:
        wire.close()


def raw_frame(frame_type: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


@pytest.mark.parametrize(
    ("data", "code", "text", "ids"),
    [
        (
            raw_frame(1, 1, struct.pack(">HHIHB", 60, 10, 0, 1, 0), b"\x00"),
            501,
            "FRAME_ERROR - type 1, all octets = <<0,60,0,10,0,0,0,0,0,1,0>>: {invalid_frame_end_marker,0}",
            (0, 0),
        ),
        (raw_frame(8, 0, b"", b"\xff"), 501, "FRAME_ERROR - type 8, all octets = <<>>: {invalid_frame_end_marker,255}", (0, 0)),
        (raw_frame(9, 1, b"abc"), 501, 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame', (0, 0)),
        (raw_frame(8, 0, b"ab"), 501, 'FRAME_ERROR - type 8, all octets = <<"ab">>: unknown_frame', (0, 0)),
        (raw_frame(1, 1, b"\x00"), 501, "FRAME_ERROR - type 1, all octets = <<0>>: unknown_frame", (0, 0)),
        (raw_frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00"), 501, "FRAME_ERROR - cannot decode <<0>>", (50, 10)),
        (
            raw_frame(1, 1, struct.pack(">HH", 60, 10) + b"\x00" * 7 + b"\xff"),
            501,
            "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,255>>",
            (60, 10),
        ),
        (
            raw_frame(1, 1, struct.pack(">HH", 50, 10) + b"\x00\x00\x02\xff\xfe\x04\x00\x00\x00\x00"),
            501,
            "FRAME_ERROR - Malformed UTF-8 in shortstr",
            (0, 0),
        ),
        (
            encode_method(1, build(commands.Basic.Publish, routing_key="q")) + raw_frame(2, 1, struct.pack(">HHQH", 60, 5, 1, 0)),
            505,
            "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead",
            (60, 40),
        ),
    ],
)
def test_codec_errors_close_the_connection_as_rabbitmq(
    broker: BrokerHandle, data: bytes, code: int, text: str, ids: tuple[int, int]
) -> None:
    close = close_after(broker, data)
    assert (close.reply_code, close.reply_text, (close.class_id, close.method_id)) == (code, text, ids)


def test_frame_too_large_is_refused_before_its_payload(broker: BrokerHandle) -> None:
    """Only the 7-octet header is sent: the broker must not wait for the payload."""
    close = close_after(broker, struct.pack(">BHI", 3, 1, 131073))
    assert (close.reply_code, close.reply_text) == (
        501,
        "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,131073,131064}",
    )


def test_payload_of_exactly_frame_max_is_accepted(broker: BrokerHandle) -> None:
    """RabbitMQ checks the payload, not the frame, against frame_max (recorded: accepted)."""
    wire = Wire(Target(broker.port))
    try:
        wire.handshake()
        body = b"x" * FRAME_MAX
        wire.send(
            encode_method(1, build(commands.Basic.Publish, routing_key="no-such-queue"))
            + frame(2, 1, ContentHeader(0, len(body), commands.Basic.Properties()).marshal())
            + frame(3, 1, body)
            + encode_method(1, build(commands.Basic.Qos, prefetch_count=3))
        )
        channel, method = wire.method()
        assert channel == 1 and isinstance(method, commands.Basic.QosOk)
    finally:
        wire.close()


def test_publish_names_are_not_checked_for_utf8(broker: BrokerHandle) -> None:
    """RabbitMQ takes basic.publish's names as bytes: a publish to exchange b'\\xff' is a 404
    (RabbitMQ echoes the raw octet; a str reply text carries U+FFFD), not a frame error."""
    wire = Wire(Target(broker.port))
    try:
        wire.handshake()
        publish = struct.pack(">HH", 60, 40) + b"\x00\x00\x01\xff\x01k\x00"
        wire.send(raw_frame(1, 1, publish) + frame(2, 1, struct.pack(">HHQH", 60, 0, 0, 0)))
        channel, method = wire.method()
        assert channel == 1 and isinstance(method, commands.Channel.Close)
        assert (method.reply_code, method.class_id, method.method_id) == (404, 60, 40)
        assert method.reply_text == "NOT_FOUND - no exchange '\ufffd' in vhost '/'"
    finally:
        wire.close()


def test_cc_header_must_be_an_array(broker: BrokerHandle, unique: str) -> None:
    connection = broker.connect()
    try:
        channel = connection.channel()
        channel.queue_declare(unique, exclusive=True)
        with pytest.raises(Exception) as info:
            channel.basic_publish("", unique, b"x", pika.BasicProperties(headers={"CC": unique}))
            channel.queue_declare(unique, passive=True)
        assert getattr(info.value, "reply_code", None) == 406
        assert info.value.reply_text == 'PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"CC",longstr}'
    finally:
        if connection.is_open:
            connection.close()


def test_cc_and_bcc_route_and_bcc_is_not_delivered(broker: BrokerHandle, unique: str) -> None:
    connection = broker.connect()
    try:
        channel = connection.channel()
        first, second, third = (channel.queue_declare(f"{unique}-{n}", exclusive=True).method.queue for n in (1, 2, 3))
        channel.basic_publish("", first, b"x", pika.BasicProperties(headers={"CC": [second], "BCC": [third], "k": "v"}))
        for queue in (first, second, third):
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            assert method is not None and body == b"x", queue
            assert properties.headers == {"CC": [second], "k": "v"}
    finally:
        connection.close()


def test_bcc_is_stripped_whatever_the_exchange_type(broker: BrokerHandle, unique: str) -> None:
    connection = broker.connect()
    try:
        channel = connection.channel()
        channel.queue_declare(unique, exclusive=True)
        channel.exchange_declare(unique, "fanout", auto_delete=True)
        channel.queue_bind(unique, unique)
        channel.basic_publish(unique, "", b"x", pika.BasicProperties(headers={"BCC": ["elsewhere"], "k": "v"}))
        method, properties, _body = channel.basic_get(unique, auto_ack=True)
        assert method is not None and properties.headers == {"k": "v"}
    finally:
        connection.close()


def test_unknown_delivery_mode_is_refused(broker: BrokerHandle, unique: str) -> None:
    connection = broker.connect()
    try:
        channel = connection.channel()
        channel.queue_declare(unique, exclusive=True)
        with pytest.raises(Exception) as info:
            channel.basic_publish("", unique, b"x", pika.BasicProperties(delivery_mode=7))
            channel.queue_declare(unique, passive=True)
        assert getattr(info.value, "reply_code", None) == 406
        assert info.value.reply_text == "PRECONDITION_FAILED - invalid message: {delivery_mode_unknown,7}"
    finally:
        if connection.is_open:
            connection.close()


def test_properties_that_do_not_decode_are_an_internal_error(broker: BrokerHandle) -> None:
    header = struct.pack(">HHQH", 60, 0, 1, 0x8000) + b"\x03a/bXYZ"  # octets after the last property
    close = close_after(
        broker, encode_method(1, build(commands.Basic.Publish, routing_key="q")) + frame(2, 1, header) + frame(3, 1, b"x")
    )
    assert close.reply_code == 541


def test_nothing_follows_connection_close_ok(broker: BrokerHandle) -> None:
    """RabbitMQ lets the channels finish (exchange.unbind-ok) before it sends close-ok, and
    sends nothing after it."""
    wire = Wire(Target(broker.port))
    try:
        wire.handshake()
        wire.send(
            encode_method(1, build(commands.Exchange.Unbind, destination="amq.headers", source="amq.topic", routing_key="x"))
            + encode_method(0, build(commands.Connection.Close, reply_code=200, reply_text="bye"))
        )
        seen = []
        while (got := wire.read_frame(0.5)) is not None:
            seen.append(struct.unpack_from(">HH", got[2]) if got[0] == 1 else got[0])
        assert seen == [(40, 51), (10, 51)]
    finally:
        wire.close()
