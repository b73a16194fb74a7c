"""Wire fuzzing of a live broker: the case generator, a raw AMQP connection and the oracle.

Shared by tests/integration/test_wire_fuzz.py (CI: seeded and Hypothesis-driven cases against an
in-process broker) and scripts/wire_fuzz.py (long runs against a broker process), so both send
the same kinds of input and judge the answers the same way (docs/fuzzing.md).

A case (``random_case``) walks the handshake to a ``stage``, then writes its bytes: well-formed
frames of every method with ordinary and adversarial field values (field tables with every field
type, bad UTF-8, lying lengths, deep nesting), publishes with random content headers and
irregular bodies, frames on wrong or random channels, heartbeats where none belong, frames with
huge sizes, truncated or oversized payloads, mutated sequences and plain garbage.

The oracle (``run_case``): the broker answers a probe (a channel.open), or sends a valid
connection.close (a known error reply code and RabbitMQ's ``NAME - text``), or closes the
socket; any channel.close it sends is valid too; it never leaves the client waiting; and
afterwards a fresh pika connection still works. Whoever runs the broker also checks its log
for errors and tracebacks (the test module and the script each do it their way).

The generator is written against ``random.Random``'s interface: ``random.Random`` drives it in
the seeded test and the script, Hypothesis drives it through ``st.randoms()`` (every choice is
then Hypothesis's, and a failure shrinks).
"""

from __future__ import annotations

import random
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import pika
import pika.exceptions
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.encode import field_table

from amqp_server.protocol.errors import REPLY_NAMES
from amqp_server.protocol.frame_codec import HEARTBEAT_FRAME, PROTOCOL_HEADER, build, encode_method, frame

CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CHANNEL_CLOSE = (20, 40)
CHANNEL_OPEN_OK = (20, 11)
PROBE_CHANNEL = 2047  # channel_max: cases use it only by chance
TIMEOUT = 3.0  # an answer must come within this (plus the broker's silent-close delay)
# Silence after which a case is taken to wait for the rest of a partial frame, and padded.
# Padding too early is harmless (the zeros are a frame error: a valid outcome), so short.
QUIET = 0.1
EOF_WAIT = 0.3
FRAME_MAX = 131072
# The cases log in as RabbitMQ's default user on the default vhost.
USER, PASSWORD, VHOST = "guest", "guest", "/"


@dataclass(frozen=True)
class Target:
    """The broker under test, and how long it keeps a connection it gave up on during the
    handshake before closing the socket (RabbitMQ's silent-close delay: 3 s)."""

    port: int
    host: str = "127.0.0.1"
    silent_close: float = 3.0

    def pika_params(self) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(self.host, self.port, VHOST, pika.PlainCredentials(USER, PASSWORD))


class Case(NamedTuple):
    """What to send: walk the handshake to ``stage`` (see ``Wire.handshake``), then write
    ``data`` at once or, with ``chunk``, in pieces of that many octets."""

    kind: str
    stage: str
    data: bytes
    chunk: int


# --------------------------------------------------------------------------- the connection


class Wire:
    """A raw AMQP connection to the broker under test."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.sock = socket.create_connection((target.host, target.port), timeout=TIMEOUT)
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

    def expect(self, method_class: type) -> Any:
        method = self.method()[1]
        assert isinstance(method, method_class), method
        return method

    def handshake(self, stage: str = "running") -> None:
        """Walk the handshake as far as ``stage``: "header" (nothing sent), "start" (protocol
        header sent, connection.start read), "tune" (start-ok sent, tune read), "open" (tune-ok
        sent), "opened" (open-ok read), "running" (channel 1 open), "closing" (then a
        connection.close of the client's) or "closed" (then a second connection.open, which
        the broker closes the connection for: the case is written after it)."""
        if stage == "header":
            return
        self.send(PROTOCOL_HEADER)
        self.expect(commands.Connection.Start)
        if stage == "start":
            return
        self.send(encode_method(0, start_ok()))
        tune = self.expect(commands.Connection.Tune)
        if stage == "tune":
            return
        self.send(encode_method(0, build(commands.Connection.TuneOk, channel_max=tune.channel_max, frame_max=FRAME_MAX)))
        if stage == "open":
            return
        self.send(OPEN)
        self.expect(commands.Connection.OpenOk)
        if stage == "opened":
            return
        self.send(encode_method(1, commands.Channel.Open()))
        assert self.method()[0] == 1
        if stage == "closing":
            self.send(encode_method(0, build(commands.Connection.Close, reply_code=200, reply_text="bye")))
        elif stage == "closed":
            self.send(OPEN)

    def close(self) -> None:
        self.sock.close()


def start_ok() -> commands.Connection.StartOk:
    return build(
        commands.Connection.StartOk,
        client_properties={"product": "wire-fuzz", "capabilities": {"authentication_failure_close": True}},
        mechanism="PLAIN",
        response=f"\x00{USER}\x00{PASSWORD}",
        locale="en_US",
    )


OPEN = encode_method(0, build(commands.Connection.Open, virtual_host=VHOST))


# --------------------------------------------------------------------------- the oracle


def check_close(payload: bytes) -> int:
    """The reply code of a connection.close or channel.close, which must be a known error code
    (not one of basic.return's) with RabbitMQ's "NAME - explanation" text. Parsed by hand: a
    reply text may carry a client's octets that are not UTF-8, as RabbitMQ's do."""
    code = struct.unpack_from(">H", payload, 4)[0]
    text = payload[7 : 7 + payload[6]]
    assert len(payload) == 7 + len(text) + 4, f"malformed close: {payload!r}"
    name = REPLY_NAMES.get(code)
    assert name is not None and code >= 320, f"reply code {code}"
    assert text == name.encode() or text.startswith(name.encode() + b" - "), text
    return code


def outcome(wire: Wire) -> str:
    """How the broker took what was sent: 'alive', 'close <code>' (with ' noeof' if it kept the
    socket after close-ok), 'client close' or 'eof'; AssertionError if it leaves the client
    waiting or answers wrongly.

    A channel.open on a fresh channel must be answered unless the broker closed. If nothing
    comes back, a partial frame may be waiting for its payload: frame_max zero octets then
    complete it and must provoke an answer (the zeros are a bad frame).
    """
    wire.send(encode_method(PROBE_CHANNEL, commands.Channel.Open()))
    answer_within = TIMEOUT + wire.target.silent_close
    # A broker that keeps sending (deliveries, say) but never answers hangs too.
    deadline = time.monotonic() + QUIET + 2 * answer_within
    padded = False
    while True:
        assert time.monotonic() < deadline, "the broker never answered the probe"
        got = wire.read_frame(answer_within if padded else QUIET)
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
        if channel != 0 and ids == CHANNEL_CLOSE:
            check_close(payload)
        elif channel == 0 and ids == CONNECTION_CLOSE:
            code = check_close(payload)
            wire.send(encode_method(0, commands.Connection.CloseOk()))
            if code == 501:
                # A frame error can leave the rest of the stream out of step, so the close-ok
                # may be lost in it: the broker then drops the connection after a delay
                # (RabbitMQ: 3 s after a fatal frame error, whatever the client sends).
                return "close 501"
            eof_by = time.monotonic() + EOF_WAIT
            while not wire.eof and time.monotonic() < eof_by:
                wire.read_frame(eof_by - time.monotonic())
            return f"close {code}" + ("" if wire.eof else " noeof")
        elif channel == 0 and ids == CONNECTION_CLOSE_OK:
            # The case held a connection.close of its own. Like RabbitMQ, the broker then
            # waits for the client to hang up (or for its closing timeout).
            return "client close"
        elif channel == PROBE_CHANNEL and ids == CHANNEL_OPEN_OK:
            return "alive"


def pika_still_works(target: Target) -> None:
    connection = pika.BlockingConnection(target.pika_params())
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"still here")
        method, _properties, body = channel.basic_get(queue, auto_ack=True)
        assert method is not None and body == b"still here"
    finally:
        if connection.is_open:  # else the error that closed it is the one to see
            connection.close()


def run_case(target: Target, case: Case) -> str:
    """Send ``case`` on a connection of its own and judge the answer (``outcome``); then a
    fresh pika connection must still work. Returns the outcome; AssertionError on a failure."""
    wire = Wire(target)
    try:
        wire.handshake(case.stage)
        step = case.chunk or len(case.data) or 1
        for start in range(0, len(case.data), step):
            wire.send(case.data[start : start + step])
        result = outcome(wire)
    finally:
        wire.close()
    pika_still_works(target)
    return result


def cleanup(target: Target) -> None:
    """Delete the queues and exchanges the cases may have declared under fixed names, and the
    messages in them (those under random names are few and get none but by chance)."""
    connection = pika.BlockingConnection(target.pika_params())
    try:
        for name in (*NAMES, *STRINGS, ODD_NAME):
            if not name or name.startswith("amq."):
                continue
            for delete in ("queue_delete", "exchange_delete"):
                channel = connection.channel()
                try:
                    getattr(channel, delete)(name)
                except pika.exceptions.ChannelClosedByBroker:
                    continue  # another connection's exclusive queue, say
                channel.close()
    finally:
        if connection.is_open:
            connection.close()


# --------------------------------------------------------------------------- field values

NAMES = [
    "", "fz.q", "fz.x", "fz.é-ü", "amq.direct", "amq.topic", "amq.fanout", "amq.headers", "amq.gen-fz",
    "amq.rabbitmq.reply-to", "amq.rabbitmq.reply-to.Zno.dG9rZW4", "fz." + "n" * 200,
]  # fmt: skip
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
# Keys some part of the broker reads (arguments, headers, client properties), for tables whose
# values are of any type.
KEYS = [
    "x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-overflow", "x-max-priority",
    "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-queue-type", "x-queue-mode",
    "x-single-active-consumer", "x-queue-master-locator", "x-delivery-limit", "x-max-age",
    "alternate-exchange", "x-match", "x-priority", "x-cancel-on-ha-failover", "hash-header",
    "hash-property", "CC", "BCC", "x-death", "capabilities", "authentication_failure_close",
    "consumer_cancel_notify", "connection.blocked", "publisher_confirms",
]  # fmt: skip
STRINGS = [
    "0", "100", "-5", "soon", "all", "any", "drop-head", "reject-publish", "reject-publish-dlx", "lazy",
    "classic", "quorum", "stream", "direct", "guest", "other", "99999999999999999999", "1e3",
]  # fmt: skip
ODD_NAME = "fz.\x00\u2028😀"  # NUL, a line separator, a 4-octet character
BAD_UTF8 = [b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xfe\xff"]
FIELD_TYPES = "tbBsuIilLfdDSxTFAV"
FIXED_WIDTHS = {"t": 1, "b": 1, "B": 1, "s": 2, "u": 2, "I": 4, "i": 4, "l": 8, "L": 8, "D": 5, "T": 8}
FLOATS = [0.0, -0.0, 1.5, -2.0, 3e38, 5e-324, float("inf"), float("-inf"), float("nan")]
INTEGERS = {
    "octet": (">B", (0, 1, 2, 3, 9, 255)),
    "short": (">H", (0, 1, 5, 200, 404, 541, 2047, 2048, 32768, 65535)),
    "long": (">I", (0, 1, 10, 4095, 4096, 131072, 2**31, 2**32 - 1)),
    "longlong": (">Q", (0, 1, 2, 3, 100, 2**63, 2**64 - 1)),
    "timestamp": (">Q", (0, 1_700_000_000, 2**32, 2**63, 2**64 - 1)),
}
# Beyond the broker's nesting limit (100) and around it.
DEPTHS = (2, 99, 100, 101, 102, 3000)


def filler(rng: random.Random, size: int) -> bytes:
    """``size`` octets cheaply: large values come from a short random pattern."""
    return (rng.randbytes(rng.randint(1, 8)) * (size // 2 + 1))[:size]


def text(rng: random.Random, limit: int) -> bytes:
    """A string's octets: mostly a name or a value some reader knows, else adversarial
    (bad UTF-8, control octets, the longest allowed, beyond a shortstr)."""
    roll = rng.randrange(10)
    if roll < 4:
        return rng.choice(NAMES).encode()
    if roll < 6:
        return rng.choice(STRINGS).encode()
    if roll == 6:
        return rng.choice(NAMES).encode()[:20] + rng.choice(BAD_UTF8)
    if roll == 7:
        return rng.randbytes(rng.randint(0, 12))
    if roll == 8:
        return ODD_NAME.encode()
    return filler(rng, rng.choice((255, limit)))


def length(rng: random.Random, size: int) -> bytes:
    """A long length field: almost always true, sometimes a lie (huge, one off)."""
    roll = rng.randrange(40)
    if roll == 0:
        size = 2**32 - 1
    elif roll == 1:
        size += 1
    elif roll == 2:
        size = max(size - 1, 0)
    return struct.pack(">I", size)


def longstr(rng: random.Random, raw: bytes) -> bytes:
    return length(rng, len(raw)) + raw


def shortstr(raw: bytes) -> bytes:
    return bytes((min(len(raw), 255),)) + raw[:255]


def fixed(rng: random.Random, width: int) -> bytes:
    """``width`` octets of a number: zero, all ones, the signed extremes, one, or random."""
    roll = rng.randrange(6)
    if roll == 0:
        return bytes(width)
    if roll == 1:
        return b"\xff" * width
    if roll == 2:
        return b"\x80" + bytes(width - 1)
    if roll == 3:
        return b"\x7f" + b"\xff" * (width - 1)
    if roll == 4:
        return bytes(width - 1) + b"\x01"
    return rng.randbytes(width)


def value(rng: random.Random, depth: int = 0) -> bytes:
    """A field value of any type (type octet first), now and then of an unknown type."""
    kind = rng.choice(FIELD_TYPES if depth < 3 else FIELD_TYPES[:-3] + "V")
    if rng.randrange(50) == 0:
        kind = rng.choice("?\x00Uc")
    tag = kind.encode()
    if kind in "fd":
        width = 4 if kind == "f" else 8
        if rng.randrange(2):
            return tag + fixed(rng, width)
        return tag + struct.pack(">f" if kind == "f" else ">d", rng.choice(FLOATS))
    if kind in FIXED_WIDTHS:
        return tag + fixed(rng, FIXED_WIDTHS[kind])
    if kind in "Sx":
        return tag + longstr(rng, text(rng, 70000))
    if kind == "F":
        return tag + table(rng, depth + 1)
    if kind == "A":
        return tag + longstr(rng, b"".join(value(rng, depth + 1) for _ in range(rng.randint(0, 3))))
    return tag  # V, or an unknown type with nothing after it


def entries(rng: random.Random, depth: int) -> bytes:
    out = b""
    for _ in range(rng.randint(0, 3)):
        key = rng.choice(KEYS).encode() if rng.randrange(3) else text(rng, 255)
        out += shortstr(key) + value(rng, depth)
    return out


def table(rng: random.Random, depth: int = 0) -> bytes:
    """A field table with its length: a sensible one, or entries of every type under keys
    the broker reads, or a value nested around and far beyond the broker's depth limit."""
    roll = rng.randrange(8)
    if roll < 3 and depth == 0:
        return field_table(rng.choice(ARGUMENTS))
    if roll == 7:
        return longstr(rng, shortstr(rng.choice(KEYS).encode()) + nested(rng, rng.choice(DEPTHS)))
    return longstr(rng, entries(rng, depth))


def nested(rng: random.Random, depth: int) -> bytes:
    """A value that is ``depth`` tables and arrays deep (built outside in, in linear time)."""
    core = value(rng, depth=3)
    heads = []
    size = len(core)
    for level in range(depth):
        if level % 2:
            heads.append(b"A" + struct.pack(">I", size))
            size += 5
        else:
            heads.append(b"F" + struct.pack(">I", size + 2) + b"\x01k")
            size += 7
    return b"".join(reversed(heads)) + core


# --------------------------------------------------------------------------- methods and content

# Methods only a server sends: a client sending one is an error too, so they are in ALL_METHODS.
SERVER_ONLY = {
    commands.Connection.Start, commands.Connection.Secure, commands.Connection.Tune,
    commands.Connection.OpenOk, commands.Channel.OpenOk, commands.Exchange.DeclareOk,
    commands.Exchange.DeleteOk, commands.Exchange.BindOk, commands.Exchange.UnbindOk,
    commands.Queue.DeclareOk, commands.Queue.BindOk, commands.Queue.PurgeOk, commands.Queue.DeleteOk,
    commands.Queue.UnbindOk, commands.Basic.QosOk, commands.Basic.ConsumeOk, commands.Basic.CancelOk,
    commands.Basic.Return, commands.Basic.Deliver, commands.Basic.GetOk, commands.Basic.GetEmpty,
    commands.Basic.RecoverOk, commands.Tx.SelectOk, commands.Tx.CommitOk, commands.Tx.RollbackOk,
    commands.Confirm.SelectOk,
}  # fmt: skip
ALL_METHODS = [cls for _, cls in sorted(commands.INDEX_MAPPING.items()) if cls is not commands.Basic.RecoverAsync]
CHANNEL_CLASSES = {"Channel", "Exchange", "Queue", "Basic", "Tx", "Confirm"}
CHANNEL_METHODS = [
    cls for cls in ALL_METHODS if cls not in SERVER_ONLY and cls.__qualname__.split(".")[0] in CHANNEL_CLASSES
]
# Channel numbers: mostly the open one, else the connection's, unopened ones, channel_max and beyond.
CHANNELS = (1, 1, 1, 0, 2, 3, 2047, 2048, 65535)
PROPERTIES = sorted(commands.Basic.Properties.flags.items(), key=lambda item: -item[1])


def field(rng: random.Random, method_class: type, name: str) -> bytes:
    """One non-bit field of a method, encoded."""
    kind = method_class.amqp_type(name)
    if kind in INTEGERS:
        fmt, choices = INTEGERS[kind]
        return struct.pack(fmt, rng.choice(choices))
    if kind == "shortstr":
        if rng.randrange(4) == 0:
            return shortstr(text(rng, 255))
        if name in ("exchange_type", "type"):
            return shortstr(rng.choice(["direct", "fanout", "topic", "headers", "x-consistent-hash", "x-bogus"]).encode())
        if name in ("virtual_host", "mechanism"):
            return shortstr(rng.choice([VHOST, "PLAIN", "AMQPLAIN", "nosuch"]).encode())
        return shortstr(rng.choice(NAMES).encode())
    if kind == "longstr":
        roll = rng.randrange(3)
        if roll == 0:
            return longstr(rng, text(rng, 70000))
        return longstr(rng, f"\x00{USER}\x00{PASSWORD}".encode() if roll == 1 else b"")
    return table(rng)


def method_payload(rng: random.Random, method_class: type) -> bytes:
    """A method with every field random (bits packed as AMQP packs them)."""
    out = struct.pack(">I", method_class.index)
    bits: list[bool] = []
    for name in method_class.__slots__:
        if method_class.amqp_type(name) == "bit":
            bits.append(rng.randrange(6) == 0)
            continue
        if bits:
            out += bytes((sum(bit << i for i, bit in enumerate(bits)),))
            bits = []
        out += field(rng, method_class, name)
    if bits:
        out += bytes((sum(bit << i for i, bit in enumerate(bits)),))
    return out


def method_frame(rng: random.Random, channel: int, methods: list[type]) -> bytes:
    return frame(1, channel, method_payload(rng, rng.choice(methods)))


def property_value(rng: random.Random, name: str) -> bytes:
    kind = commands.Basic.Properties.amqp_type(name)
    if kind == "table":
        return table(rng)
    if kind in INTEGERS:
        fmt, choices = INTEGERS["timestamp" if name == "timestamp" else kind]
        return struct.pack(fmt, rng.choice(choices))
    return shortstr(text(rng, 255))


def content_header(rng: random.Random, body_size: int) -> bytes:
    """A content-header payload: basic's class (mostly) with random properties; sometimes
    flags that do not match the values (continuation bit, a flag with no value, extra octets)."""
    class_id = 60 if rng.randrange(16) else rng.choice((0, 10, 20, 61, 65535))
    weight = 0 if rng.randrange(16) else rng.choice((1, 65535))
    flags, values = 0, b""
    for name, flag in PROPERTIES:
        if rng.randrange(4) == 0:
            flags |= flag
            values += property_value(rng, name)
    roll = rng.randrange(16)
    if roll == 0:
        flags ^= 1 << rng.randrange(16)
    elif roll == 1:
        values += rng.randbytes(rng.randint(1, 8))
    elif roll == 2:
        values = values[: rng.randint(0, len(values))]
    return struct.pack(">HHQH", class_id, weight, body_size, flags) + values


def publish(rng: random.Random, channel: int) -> bytes:
    """basic.publish and its content: declared and sent body sizes that agree or not (or a
    huge declared size), bodies in small or maximal frames, and now and then no header, a
    method amid the content or one of its frames on another channel."""
    size = rng.choice((0, 1, 10, 300, 5000, FRAME_MAX + 1))
    declared = size
    roll = rng.randrange(20)
    if roll < 2:
        declared += rng.choice((1, -1))
    elif roll == 2:
        declared = rng.choice((2**63, 2**64 - 1, 2**27 + 1))
    body = filler(rng, size)
    piece = rng.choice((FRAME_MAX - 8, FRAME_MAX) + ((100, 1) if size <= 300 else ()))
    parts = [(2, channel, content_header(rng, max(declared, 0)))]
    parts += [(3, channel, body[start : start + piece]) for start in range(0, len(body), piece)]
    roll = rng.randrange(20)
    if roll == 0:
        del parts[0]
    elif roll == 1:
        parts.insert(rng.randint(0, len(parts)), (1, channel, method_payload(rng, rng.choice(CHANNEL_METHODS))))
    elif roll == 2:
        index = rng.randrange(len(parts))
        parts[index] = (parts[index][0], rng.choice(CHANNELS), parts[index][2])
    return frame(1, channel, method_payload(rng, commands.Basic.Publish)) + b"".join(frame(*part) for part in parts)


def heartbeat(rng: random.Random) -> bytes:
    """A heartbeat as it should be (channel 0, empty), on another channel, or with a payload."""
    roll = rng.randrange(3)
    if roll == 0:
        return HEARTBEAT_FRAME
    if roll == 1:
        return frame(8, rng.choice(CHANNELS[:3] + CHANNELS[4:]), b"")
    return frame(8, rng.choice(CHANNELS), rng.randbytes(rng.randint(1, 8)))


def frame_item(rng: random.Random) -> bytes:
    """One well-delimited frame (or a publish's frames)."""
    roll = rng.randrange(20)
    if roll < 11:
        return method_frame(rng, 1, CHANNEL_METHODS)
    if roll < 15:
        return publish(rng, 1 if rng.randrange(5) else rng.choice(CHANNELS))
    if roll == 15:
        return method_frame(rng, rng.choice(CHANNELS), ALL_METHODS)
    if roll == 16:
        return heartbeat(rng)
    if roll == 17:
        return frame(2, rng.choice(CHANNELS), content_header(rng, rng.choice((0, 1, 100))))
    if roll == 18:
        return frame(3, rng.choice(CHANNELS), filler(rng, rng.choice((0, 1, 100))))
    # Any frame type, random payload (for a method frame, usually after a real method id).
    frame_type = rng.choice((1, 2, 3, 8, 0, 4, 9, 206, 255))
    payload = rng.randbytes(rng.randint(0, 40))
    if frame_type == 1 and rng.randrange(5):
        payload = struct.pack(">I", rng.choice(ALL_METHODS).index) + payload
    return frame(frame_type, rng.choice(CHANNELS), payload)


def sequence(rng: random.Random, most: int = 5) -> bytes:
    return b"".join(frame_item(rng) for _ in range(rng.randint(1, most)))


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


def bad_length(rng: random.Random) -> bytes:
    """A frame whose size is a problem: a huge or frame_max-sized size followed by a few
    octets (the rest never comes), a payload beyond frame_max, or a good frame cut short."""
    frame_type = rng.choice((1, 2, 3, 8))
    channel = rng.choice(CHANNELS)
    roll = rng.randrange(3)
    if roll == 0:
        size = rng.choice((FRAME_MAX - 8, FRAME_MAX - 7, FRAME_MAX, FRAME_MAX + 1, 2**31, 2**32 - 1))
        return struct.pack(">BHI", frame_type, channel, size) + rng.randbytes(rng.randint(0, 16))
    if roll == 1:
        return frame(frame_type, channel, filler(rng, FRAME_MAX + rng.choice((1, 8, 100))))
    item = frame_item(rng)
    return item[: rng.randrange(len(item))]


def handshake_case(rng: random.Random) -> bytes:
    """The whole handshake and a channel.open, with frames slipped in before or between the
    steps, a step mutated or sent with random fields, or the sequence cut short."""
    steps = [
        PROTOCOL_HEADER,
        encode_method(0, start_ok()),
        encode_method(0, build(commands.Connection.TuneOk, channel_max=2047, frame_max=FRAME_MAX)),
        OPEN,
        encode_method(1, commands.Channel.Open()),
    ]
    classes = [None, commands.Connection.StartOk, commands.Connection.TuneOk, commands.Connection.Open, None]
    out = b""
    for step, method_class in zip(steps, classes, strict=True):
        roll = rng.randrange(10)
        if roll == 0:
            out += rng.choice((HEARTBEAT_FRAME, frame_item(rng)))
        elif roll == 1:
            step = mutate(rng, step)
        elif roll == 2 and method_class is not None:
            step = frame(1, 0, method_payload(rng, method_class))
        out += step
    if rng.randrange(4) == 0:
        out = out[: rng.randrange(len(out))]
    return out + (sequence(rng, 3) if rng.randrange(2) else b"")


# The handshake stages after which a case is written, the usual one first (shrinking goes there).
STAGES = ("running",) * 8 + ("header", "header", "start", "tune", "open", "opened", "closing", "closed")
KINDS = ("frames", "frames", "frames", "mutated", "mutated", "lengths", "random")


def random_case(rng: random.Random) -> Case:
    """A case of any kind: see the module's docstring."""
    stage = rng.choice(STAGES)
    if stage == "header":
        kind, data = "handshake", handshake_case(rng)
    else:
        kind = rng.choice(KINDS)
        if kind == "frames":
            data = sequence(rng)
        elif kind == "mutated":
            data = mutate(rng, sequence(rng))
        elif kind == "lengths":
            data = (sequence(rng, 2) if rng.randrange(2) else b"") + bad_length(rng)
        else:
            data = rng.randbytes(rng.randint(1, 64))
    # Now and then in small writes: how the bytes arrive must not matter.
    chunk = rng.randint(1, 7) if len(data) < 4096 and rng.randrange(8) == 0 else 0
    return Case(kind, stage, data, chunk)
