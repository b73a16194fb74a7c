"""Wire-level fuzzing of the live broker: after a correct handshake, send garbage, mutated
frames and well-formed methods with random fields, and check that the broker answers
with connection.close (a valid frame with an AMQP reply code), closes the socket, or keeps
working; that it never hangs; that it logs no internal error; and that after every case a
fresh pika connection still works. Loopback only, seeded, bounded.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import struct
import time
from collections import Counter
from typing import Any

import pika
import pytest
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.header import ContentHeader

from amqp_server.errors import REPLY_NAMES
from amqp_server.frame_codec import HEARTBEAT_FRAME, PROTOCOL_HEADER, build, encode_method, frame
from tests.conftest import BrokerHandle, start_broker

REPLY_CODES = {200, 311, 312, 313, 320, 402, 403, 404, 405, 406, 501, 502, 503, 504, 505, 506, 530, 540, 541}
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CHANNEL_OPEN_OK = (20, 11)
PROBE_CHANNEL = 2047  # channel_max: the cases below use channels 0-3
TIMEOUT = 3.0  # an answer must come within this
# Silence after which a case is taken to wait for the rest of a partial frame, and padded.
# Padding too early is harmless (the zeros are a frame error: a valid outcome), so short.
QUIET = 0.1
EOF_WAIT = 0.3
FRAME_MAX = 131072
# WIRE_FUZZ_SEED / WIRE_FUZZ_CASES run a longer or different hunt than the default.
SEED = int(os.environ.get("WIRE_FUZZ_SEED", "41969"))
CASES = int(os.environ.get("WIRE_FUZZ_CASES", "200"))


class Wire:
    """A raw AMQP connection to the broker under test."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:  # the broker may already have closed the socket: that is an outcome
            self.eof = True

    def read_frame(self, timeout: float) -> tuple[int, int, bytes] | None:
        """The next frame, or None at EOF or on timeout (``self.eof`` tells which)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 7:
                frame_type, channel, size = struct.unpack_from(">BHI", self.buffer)
                if len(self.buffer) >= size + 8:
                    assert self.buffer[size + 7] == 0xCE, "the broker sent a frame without a frame-end"
                    payload = self.buffer[7 : size + 7]
                    self.buffer = self.buffer[size + 8 :]
                    return frame_type, channel, payload
            remaining = deadline - time.monotonic()
            if self.eof or remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                return None
            except OSError:
                data = b""
            if not data:
                self.eof = True
            self.buffer += data

    def method(self, timeout: float = TIMEOUT) -> tuple[int, Any]:
        """The next method frame (other frames skipped) as (channel, pamqp method)."""
        while True:
            got = self.read_frame(timeout)
            assert got is not None, "handshake: no reply from the broker"
            frame_type, channel, payload = got
            if frame_type == 1:
                return channel, pamqp_frame.unmarshal(frame(1, channel, payload))[2]

    def handshake(self, frame_max: int = FRAME_MAX) -> None:
        """Protocol header, start-ok PLAIN guest/guest, tune-ok, open '/', channel.open 1."""
        self.send(PROTOCOL_HEADER)
        assert isinstance(self.method()[1], commands.Connection.Start)
        self.send(encode_method(0, start_ok()))
        tune = self.method()[1]
        assert isinstance(tune, commands.Connection.Tune)
        self.send(encode_method(0, build(commands.Connection.TuneOk, channel_max=tune.channel_max, frame_max=frame_max)))
        self.send(encode_method(0, build(commands.Connection.Open, virtual_host="/")))
        assert isinstance(self.method()[1], commands.Connection.OpenOk)
        self.send(encode_method(1, commands.Channel.Open()))
        assert self.method()[0] == 1

    def close(self) -> None:
        self.sock.close()


def start_ok() -> commands.Connection.StartOk:
    return build(
        commands.Connection.StartOk,
        client_properties={"product": "wire-fuzz", "capabilities": {"authentication_failure_close": True}},
        mechanism="PLAIN",
        response=b"\x00guest\x00guest",
        locale="en_US",
    )


def outcome(wire: Wire, probe: bool) -> str:
    """How the broker took a case: 'close <code>', 'eof', 'client close' or 'alive'; fails on a hang.

    With ``probe``, a channel.open on a fresh channel must be answered unless the broker
    closed. If nothing comes back, a partial frame may be waiting for its payload: frame_max
    zero octets then complete it and must provoke an answer (the zeros are a bad frame).
    """
    if probe:
        wire.send(encode_method(PROBE_CHANNEL, commands.Channel.Open()))
    padded = False
    while True:
        got = wire.read_frame(TIMEOUT if padded else QUIET)
        if got is None:
            if wire.eof:
                return "eof"
            assert not padded, "the broker hung: no answer, no close, no EOF"
            wire.send(b"\x00" * (FRAME_MAX + 8))
            padded = True
            continue
        frame_type, channel, payload = got
        if frame_type != 1 or len(payload) < 4:
            continue
        ids = struct.unpack_from(">HH", payload)
        if channel == 0 and ids == CONNECTION_CLOSE:
            close = pamqp_frame.unmarshal(frame(1, 0, payload))[2]
            # A hard error, with RabbitMQ's "NAME - explanation" text.
            assert close.reply_code in REPLY_CODES and close.reply_code >= 320, close.reply_code
            name = REPLY_NAMES[close.reply_code]
            assert close.reply_text == name or close.reply_text.startswith(name + " - "), close.reply_text
            wire.send(encode_method(0, commands.Connection.CloseOk()))
            if close.reply_code == 501:
                # A frame error can leave the rest of the stream out of step, so the close-ok
                # may be lost in it: the broker then drops the connection after a delay
                # (RabbitMQ: 3 s after a fatal frame error, whatever the client sends).
                return "close 501"
            deadline = time.monotonic() + EOF_WAIT
            while not wire.eof and time.monotonic() < deadline:
                wire.read_frame(deadline - time.monotonic())
            return f"close {close.reply_code}" + ("" if wire.eof else " noeof")
        if channel == 0 and ids == CONNECTION_CLOSE_OK:
            # The case held a connection.close of its own. Like RabbitMQ, the broker then
            # waits for the client to hang up (or for its closing timeout).
            return "client close"
        if probe and channel == PROBE_CHANNEL and ids == CHANNEL_OPEN_OK:
            return "alive"


def pika_still_works(broker: BrokerHandle) -> None:
    connection = broker.connect()
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"still here")
        method, _properties, body = channel.basic_get(queue, auto_ack=True)
        assert method is not None and body == b"still here"
    finally:
        connection.close()


# --------------------------------------------------------------------------- case generators

NAMES = ["", "fz.q", "fz.x", "fz.é-ü", "amq.direct", "amq.topic", "amq.fanout", "amq.headers", "amq.gen-fz", "fz." + "n" * 200]
ARGUMENTS = [
    {},
    {"x-message-ttl": 100},
    {"x-message-ttl": -1},
    {"x-message-ttl": "soon"},
    {"x-expires": 0},
    {"x-max-length": 1, "x-overflow": "reject-publish"},
    {"x-max-length": 1, "x-overflow": "bogus"},
    {"x-max-priority": 300},
    {"x-queue-type": "quorum"},
    {"x-dead-letter-exchange": "fz.x", "x-dead-letter-routing-key": "k"},
    {"alternate-exchange": "fz.x"},
    {"x-match": "any", "a": 1},
    {"x-match": "bogus"},
    {"x-priority": 5},
    {"x-cancel-on-ha-failover": True},
    {"nested": {"deep": [1, "two", None]}},
]
# Methods a client may send, and (rarely used) the ones only a server sends.
SERVER_ONLY = {
    commands.Connection.Start,
    commands.Connection.Secure,
    commands.Connection.Tune,
    commands.Connection.OpenOk,
    commands.Channel.OpenOk,
    commands.Exchange.DeclareOk,
    commands.Exchange.DeleteOk,
    commands.Exchange.BindOk,
    commands.Exchange.UnbindOk,
    commands.Queue.DeclareOk,
    commands.Queue.BindOk,
    commands.Queue.PurgeOk,
    commands.Queue.DeleteOk,
    commands.Queue.UnbindOk,
    commands.Basic.QosOk,
    commands.Basic.ConsumeOk,
    commands.Basic.CancelOk,
    commands.Basic.Return,
    commands.Basic.Deliver,
    commands.Basic.GetOk,
    commands.Basic.GetEmpty,
    commands.Basic.RecoverOk,
    commands.Tx.SelectOk,
    commands.Tx.CommitOk,
    commands.Tx.RollbackOk,
    commands.Confirm.SelectOk,
}
ALL_METHODS = [cls for _, cls in sorted(commands.INDEX_MAPPING.items()) if cls is not commands.Basic.RecoverAsync]
CLIENT_METHODS = [cls for cls in ALL_METHODS if cls not in SERVER_ONLY]


def _names(classes: tuple[type, ...]) -> set[str]:
    return {cls.__name__ for cls in classes}


def random_field(rng: random.Random, method_class: type, name: str) -> Any:
    kind = method_class.amqp_type(name)
    if kind == "bit":
        return rng.random() < 0.2
    if kind == "octet":
        return rng.choice([0, 1, 2, 255])
    if kind == "short":
        return rng.choice([0, 0, 1, 5, 200, 404, 541, 65535])
    if kind == "long":
        return rng.choice([0, 0, 1, 10, 4096, 2**32 - 1])
    if kind == "longlong":
        return rng.choice([0, 1, 2, 3, 100, 2**64 - 1])
    if kind == "shortstr":
        if name in ("exchange_type", "type"):
            return rng.choice(["direct", "fanout", "topic", "headers", "x-bogus", ""])
        if name == "virtual_host":
            return rng.choice(["/", "nosuch"])
        return rng.choice(NAMES)
    if kind == "longstr":
        return rng.choice(["", "x", "\x00guest\x00guest"])
    return rng.choice(ARGUMENTS)


def random_method(rng: random.Random, channel: int, classes: tuple[type, ...] | None = None) -> bytes:
    if classes is None:
        candidates = ALL_METHODS
    else:
        candidates = [m for m in CLIENT_METHODS if m.__qualname__.split(".")[0] in _names(classes)]
    method_class = rng.choice(candidates)
    fields = {name: random_field(rng, method_class, name) for name in method_class.__slots__}
    data = encode_method(channel, build(method_class, **fields))
    if method_class is commands.Basic.Publish and rng.random() < 0.8:
        body = rng.randbytes(rng.choice([0, 1, 10, 5000]))
        properties = commands.Basic.Properties()
        if rng.random() < 0.5:
            properties.headers = rng.choice([{"CC": ["fz.q"]}, {"BCC": ["fz.q"]}, {"CC": "fz.q"}, {"x": 1}])
        if rng.random() < 0.3:
            properties.delivery_mode = rng.choice([1, 2, 7])
        if rng.random() < 0.2:
            properties.user_id = rng.choice(["guest", "other"])
        if rng.random() < 0.2:
            properties.expiration = rng.choice(["0", "100", "-5", "soon"])
        declared = len(body) + rng.choice([0, 0, 0, 1, -1])
        data += frame(2, channel, ContentHeader(0, max(declared, 0), properties).marshal())
        for start in range(0, len(body), FRAME_MAX - 8):
            data += frame(3, channel, body[start : start + FRAME_MAX - 8])
    return data


CHANNEL_CLASSES = (commands.Channel, commands.Exchange, commands.Queue, commands.Basic, commands.Tx, commands.Confirm)


def valid_sequence(rng: random.Random) -> bytes:
    """Well-formed frames: mostly methods of the open channel 1, sometimes anything anywhere."""
    out = b""
    for _ in range(rng.randint(1, 5)):
        roll = rng.random()
        if roll < 0.05:
            out += HEARTBEAT_FRAME
        elif roll < 0.85:
            out += random_method(rng, 1, CHANNEL_CLASSES)
        else:
            out += random_method(rng, rng.choice([0, 1, 2, 3]))
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["flip", "set", "insert", "delete", "truncate"])
        pos = rng.randrange(max(len(buf), 1))
        if op == "flip" and buf:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == "set" and buf:
            buf[pos] = rng.choice([0, 1, 0x7F, 0x80, 0xCE, 0xFF])
        elif op == "insert":
            buf[pos:pos] = rng.randbytes(rng.randint(1, 4))
        elif op == "delete":
            del buf[pos : pos + rng.randint(1, 4)]
        elif op == "truncate" and len(buf) > 8:
            del buf[rng.randrange(8, len(buf)) :]
    return bytes(buf)


def garbage_case(rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["mutated", "mutated", "methods", "methods", "random", "frames"])
    if kind == "mutated":
        return kind, mutate(rng, valid_sequence(rng))
    if kind == "methods":
        return kind, valid_sequence(rng)
    if kind == "random":
        return kind, rng.randbytes(rng.randint(1, 64))
    # Well-delimited frames of any type with random payloads.
    out = b""
    for _ in range(rng.randint(1, 3)):
        frame_type = rng.choice([1, 1, 2, 3, 8, 0, 4, 9, 255])
        payload = rng.randbytes(rng.randint(0, 40))
        if frame_type == 1 and rng.random() < 0.8:
            payload = struct.pack(">I", rng.choice(list(commands.INDEX_MAPPING))) + payload
        out += frame(frame_type, rng.choice([0, 1, 2]), payload)
    return kind, out


# --------------------------------------------------------------------------- tests


@pytest.fixture
def broker_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """ERROR records from the broker or its event loop: an exception that escaped."""
    caplog.set_level(logging.WARNING)
    return caplog.records


def internal_errors(records: list[logging.LogRecord]) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.ERROR and (r.name.startswith(("amqp_server", "asyncio", "queues", "exchanges")))
    ]


def cleanup(broker: BrokerHandle) -> None:
    """Delete what the random methods declared (all names start with 'fz.')."""
    connection = broker.connect()
    channel = connection.channel()
    for name in [n for n in NAMES if n.startswith("fz.")]:
        channel.queue_delete(name)
        channel.exchange_delete(name)
    connection.close()


def test_garbage_after_handshake(broker: BrokerHandle, broker_errors: list[logging.LogRecord]) -> None:
    rng = random.Random(SEED)
    seen: Counter[str] = Counter()
    try:
        for case in range(CASES):
            kind, data = garbage_case(rng)
            wire = Wire(broker.port)
            started = time.monotonic()
            try:
                wire.handshake()
                wire.send(data)
                result = outcome(wire, probe=True)
            finally:
                wire.close()
            # Only a case that ended in a partial frame needs the QUIET wait and the padding.
            assert time.monotonic() - started < QUIET + TIMEOUT, (case, kind, data)
            seen[result.split(" noeof")[0]] += 1
            assert not internal_errors(broker_errors), (case, kind, data, internal_errors(broker_errors))
            pika_still_works(broker)
    finally:
        cleanup(broker)
    # The cases reach every outcome, so the test is not vacuous.
    other_closes = sum(n for result, n in seen.items() if result.startswith("close") and result != "close 501")
    assert seen["close 501"] >= 20 and seen["alive"] >= 20 and other_closes >= 20, seen


def test_garbage_split_across_writes(broker: BrokerHandle, broker_errors: list[logging.LogRecord]) -> None:
    """The same kind of cases, written in small pieces: the outcome may not depend on it."""
    rng = random.Random(SEED + 1)
    for case in range(max(30, CASES // 7)):
        kind, data = garbage_case(rng)
        wire = Wire(broker.port)
        try:
            wire.handshake()
            for start in range(0, len(data), 7):
                wire.send(data[start : start + 7])
            outcome(wire, probe=True)
        finally:
            wire.close()
        assert not internal_errors(broker_errors), (case, kind, data, internal_errors(broker_errors))
    pika_still_works(broker)
    cleanup(broker)


def test_mutated_handshake() -> None:
    """Mutated protocol header, start-ok, tune-ok and open: the broker closes, hangs up or
    completes the handshake, and never waits forever. A broker of its own, so that failed
    handshakes need not wait out RabbitMQ's 3 s silent-close delay."""
    handle = start_broker(silent_close_delay=0.05, handshake_timeout=2.0)
    rng = random.Random(SEED + 2)
    try:
        for _case in range(max(60, CASES * 3 // 10)):
            steps = [
                PROTOCOL_HEADER,
                encode_method(0, start_ok()),
                encode_method(0, build(commands.Connection.TuneOk, channel_max=2047, frame_max=FRAME_MAX)),
                encode_method(0, build(commands.Connection.Open, virtual_host="/")),
            ]
            target = rng.randrange(len(steps))
            steps[target] = mutate(rng, steps[target])
            wire = Wire(handle.port)
            try:
                wire.send(b"".join(steps))
                result = outcome(wire, probe=False)
            finally:
                wire.close()
            assert result == "eof" or result.startswith("close"), result
            pika_still_works(handle)
    finally:
        handle.stop()


# --------------------------------------------------------------------------- codec errors end to end
# Reply texts recorded from RabbitMQ 3.10.8 with raw sockets (recorded against RabbitMQ 3.10.8).


def close_after(broker: BrokerHandle, data: bytes) -> commands.Connection.Close:
    wire = Wire(broker.port)
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
    wire = Wire(broker.port)
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
    wire = Wire(broker.port)
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
    wire = Wire(broker.port)
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
