"""Dead-lettering as RabbitMQ 3.10 does it (recorded against RabbitMQ 3.10.8).

The x-death header is checked at the byte level: ``raw_get`` reads the content-header frame
off the wire with a raw client and ``typed`` decodes its headers table keeping every AMQP
type tag, so ``count`` must be an ``l``, ``time`` a ``T``, ``routing-keys`` an ``A`` of ``S``
and the keys must come in RabbitMQ's order.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import pika
import pytest
from helpers import message_count, wait_until
from pamqp import commands

from tests.integration.rawamqp import RawClient

# ---------------------------------------------------------------------------------------------
# Helpers


def ss(data: bytes) -> bytes:
    return bytes((len(data),)) + data


def ls(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def typed(data: bytes, pos: int = 0, end: int | None = None) -> list[tuple[str, tuple[str, Any]]]:
    """A field table's entries (without its length) as ``(key, (type tag, value))``, in order.

    Independent of the server's codec: tables and arrays nest, scalars keep their tag.
    """
    end = len(data) if end is None else end
    entries = []
    while pos < end:
        key = data[pos + 1 : pos + 1 + data[pos]].decode()
        pos += 1 + data[pos]
        value, pos = _typed_value(data, pos)
        entries.append((key, value))
    return entries


def _typed_value(data: bytes, pos: int) -> tuple[tuple[str, Any], int]:
    tag = chr(data[pos])
    pos += 1
    fixed = {"b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I", "l": ">q", "T": ">Q"}
    if tag in fixed:
        size = struct.calcsize(fixed[tag])
        return (tag, struct.unpack_from(fixed[tag], data, pos)[0]), pos + size
    if tag == "t":
        return (tag, data[pos]), pos + 1
    if tag == "V":
        return (tag, None), pos
    size = struct.unpack_from(">I", data, pos)[0]
    start, stop = pos + 4, pos + 4 + size
    if tag == "S":
        return (tag, data[start:stop].decode()), stop
    if tag == "x":
        return (tag, data[start:stop]), stop
    if tag == "F":
        return (tag, typed(data, start, stop)), stop
    if tag == "A":
        items = []
        while start < stop:
            item, start = _typed_value(data, start)
            items.append(item)
        return (tag, items), stop
    raise AssertionError(f"unexpected field type {tag!r}")


def header_table(header: bytes) -> list[tuple[str, tuple[str, Any]]]:
    """The headers table of a content-header payload (content-type/encoding skipped)."""
    flags = header[12] << 8 | header[13]
    assert flags & 0x2000, "no headers property"
    pos = 14
    if flags & 0x8000:
        pos += 1 + header[pos]
    if flags & 0x4000:
        pos += 1 + header[pos]
    size = struct.unpack_from(">I", header, pos)[0]
    return typed(header, pos + 4, pos + 4 + size)


def death(entry: tuple[str, Any]) -> dict[str, Any]:
    """An x-death array element (F table) as a dict of (tag, value)."""
    assert entry[0] == "F"
    return dict(entry[1])


def death_keys(entry: tuple[str, Any]) -> list[str]:
    assert entry[0] == "F"
    return [key for key, _ in entry[1]]


FIRST_ORDER = ["count", "reason", "queue", "time", "exchange", "routing-keys"]
SORTED_ORDER = ["count", "exchange", "queue", "reason", "routing-keys", "time"]


class Raw:
    """A raw client with channel 1 open: publish with a hand-made header, get the raw header."""

    def __init__(self, broker: Any) -> None:
        self.client = RawClient(broker.port)
        assert isinstance(self.client.handshake(), commands.Connection.OpenOk)
        assert isinstance(self.client.open_channel(1), commands.Channel.OpenOk)

    def publish(self, exchange: str, routing_key: str, body: bytes, flags: int, properties: bytes) -> None:
        """basic.publish with a content header built from raw property octets."""
        payload = (
            struct.pack(">HH", 60, 40)
            + b"\x00\x00"
            + ss(exchange.encode())
            + ss(routing_key.encode())
            + b"\x00"
        )
        self.client.send_frame(1, 1, payload)
        self.client.send_frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), flags) + properties)
        if body:
            self.client.send_frame(3, 1, body)

    def get(self, queue: str, no_ack: bool = True) -> tuple[Any, bytes, bytes]:
        """basic.get: (GetOk, raw content-header payload, body); asserts a message is there."""
        self.client.send(1, commands.Basic.Get(queue=queue, no_ack=no_ack))
        get_ok = self.client.expect(1, commands.Basic.GetOk)
        header = self.client.read()
        assert header is not None and header.type == 2
        size = struct.unpack_from(">Q", header.payload, 4)[0]
        body = b""
        while len(body) < size:
            frame = self.client.read()
            assert frame is not None and frame.type == 3
            body += frame.payload
        return get_ok, header.payload, body

    def reject(self, delivery_tag: int, requeue: bool = False) -> None:
        self.client.send(1, commands.Basic.Reject(delivery_tag=delivery_tag, requeue=requeue))

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def raw(broker: Any) -> Any:
    client = Raw(broker)
    yield client
    client.close()


def declare(channel: Any, name: str, **arguments: Any) -> None:
    channel.queue_declare(name, arguments=arguments or None)


def dlx_setup(channel: Any, unique: str, kind: str = "topic") -> tuple[str, str]:
    """A dead-letter exchange ``<unique>-dlx`` and a capture queue bound to it with '#'."""
    dlx, capture = f"{unique}-dlx", f"{unique}-cap"
    channel.exchange_declare(dlx, kind)
    channel.queue_declare(capture)
    channel.queue_bind(capture, dlx, "#" if kind == "topic" else "")
    return dlx, capture


def reject_head(channel: Any, queue: str, requeue: bool = False) -> None:
    method, _, _ = channel.basic_get(queue)
    assert method is not None, f"nothing in {queue}"
    channel.basic_reject(method.delivery_tag, requeue=requeue)


def hook_dead_letter(broker: Any, queue: str, reason: str) -> None:
    """Take the head of ``queue`` and hand it to the queue's dead-letter hook with ``reason``,
    the way the queue does on expiry or overflow (tests cycle rules without timers)."""

    def go() -> None:
        source = broker.broker.vhosts["/"].queues[queue]
        entry = source.get()
        assert entry is not None
        source.settle(entry)
        source.dead_letter(source, [entry.message], reason)

    broker.call(go)


# ---------------------------------------------------------------------------------------------
# Reasons: rejected


def test_reject_dead_letters_to_the_dlx(channel: Any, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    channel.basic_publish("", source, b"rej", pika.BasicProperties(headers={"app-h": "v1"}, delivery_mode=2))
    reject_head(channel, source)
    method, props, body = channel.basic_get(capture, auto_ack=True)
    assert body == b"rej"
    assert (method.exchange, method.routing_key, method.redelivered) == (dlx, source, False)
    assert props.delivery_mode == 2
    headers = props.headers
    assert headers["app-h"] == "v1"
    (entry,) = headers["x-death"]
    assert entry["count"] == 1
    assert (entry["reason"], entry["queue"], entry["exchange"]) == ("rejected", source, "")
    assert entry["routing-keys"] == [source]
    assert "original-expiration" not in entry
    assert headers["x-first-death-exchange"] == ""
    assert headers["x-first-death-queue"] == source
    assert headers["x-first-death-reason"] == "rejected"
    assert message_count(channel, source) == 0


def test_nack_multiple_dead_letters_each_message(channel: Any, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    for i in range(3):
        channel.basic_publish("", source, b"nack%d" % i)
    tags = [channel.basic_get(source)[0].delivery_tag for _ in range(3)]
    channel.basic_nack(tags[-1], multiple=True, requeue=False)
    bodies = []
    for _ in range(3):
        _, props, body = channel.basic_get(capture, auto_ack=True)
        bodies.append(body)
        (entry,) = props.headers["x-death"]
        assert (entry["count"], entry["reason"], entry["queue"]) == (1, "rejected", source)
    assert bodies == [b"nack0", b"nack1", b"nack2"]
    assert message_count(channel, capture) == 0


def test_single_nack_and_requeue_true(channel: Any, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    channel.basic_publish("", source, b"a")
    channel.basic_publish("", source, b"b")
    first = channel.basic_get(source)[0]
    channel.basic_reject(first.delivery_tag, requeue=True)  # requeued: not dead-lettered
    assert message_count(channel, capture) == 0
    first = channel.basic_get(source)[0]
    channel.basic_nack(first.delivery_tag, multiple=False, requeue=False)
    _, props, body = channel.basic_get(capture, auto_ack=True)
    assert body == b"a"
    assert props.headers["x-death"][0]["reason"] == "rejected"
    assert message_count(channel, source) == 1


def test_consumer_reject_dead_letters(connection: Any, unique: str) -> None:
    channel = connection.channel()
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    channel.basic_publish("", source, b"c")
    seen = []

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        seen.append(body)
        ch.basic_reject(method.delivery_tag, requeue=False)
        ch.stop_consuming()

    channel.basic_consume(source, on_message)
    channel.start_consuming()
    assert seen == [b"c"]
    _, props, body = channel.basic_get(capture, auto_ack=True)
    assert body == b"c" and props.headers["x-death"][0]["queue"] == source


def test_without_dlx_rejected_messages_are_dropped(channel: Any, unique: str) -> None:
    source = f"{unique}-src"
    declare(channel, source)
    channel.basic_publish("", source, b"x")
    reject_head(channel, source)
    assert message_count(channel, source) == 0


def test_missing_dlx_drops_silently(connection: Any, unique: str) -> None:
    channel = connection.channel()
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": f"{unique}-nowhere"})
    channel.basic_publish("", source, b"x")
    reject_head(channel, source)
    assert message_count(channel, source) == 0
    assert channel.is_open and connection.is_open


def test_amq_default_is_not_the_default_exchange(channel: Any, unique: str) -> None:
    # RabbitMQ looks the name up as is: there is no exchange called 'amq.default'.
    target = f"{unique}-target"
    declare(channel, target)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": "amq.default", "x-dead-letter-routing-key": target})
    channel.basic_publish("", source, b"x")
    reject_head(channel, source)
    assert message_count(channel, target) == 0


def test_dlx_deleted_after_declare_drops(channel: Any, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    channel.basic_publish("", source, b"x")
    channel.exchange_delete(dlx)
    reject_head(channel, source)
    assert message_count(channel, capture) == 0
    assert message_count(channel, source) == 0


def test_default_exchange_as_dlx_with_routing_key(channel: Any, unique: str) -> None:
    target, source = f"{unique}-target", f"{unique}-src"
    declare(channel, target)
    declare(channel, source, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": target})
    channel.basic_publish("", source, b"x")
    reject_head(channel, source)
    method, props, _ = channel.basic_get(target, auto_ack=True)
    assert (method.exchange, method.routing_key) == ("", target)
    entry = props.headers["x-death"][0]
    assert entry["routing-keys"] == [source] and entry["exchange"] == ""


# ---------------------------------------------------------------------------------------------
# Routing keys: DLRK, CC and BCC


def test_dead_letter_routing_key_replaces_keys_and_removes_cc(channel: Any, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique, "direct")
    channel.queue_bind(capture, dlx, "new.key")
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "new.key"})
    channel.queue_bind(source, "amq.direct", f"{unique}.orig")
    channel.basic_publish(
        "amq.direct",
        f"{unique}.orig",
        b"k",
        pika.BasicProperties(headers={"CC": ["cc.key"], "BCC": ["bcc.key"]}),
    )
    reject_head(channel, source)
    method, props, _ = channel.basic_get(capture, auto_ack=True)
    assert (method.exchange, method.routing_key) == (dlx, "new.key")
    headers = props.headers
    assert "CC" not in headers and "BCC" not in headers
    entry = headers["x-death"][0]
    assert entry["routing-keys"] == [f"{unique}.orig", "cc.key"]
    assert entry["exchange"] == "amq.direct"
    assert headers["x-first-death-exchange"] == "amq.direct"


def test_without_dlrk_routes_by_original_cc_and_bcc_keys(channel: Any, unique: str) -> None:
    dlx = f"{unique}-dlx"
    channel.exchange_declare(dlx, "direct")
    caps = {}
    for name, key in (("orig", "o.k"), ("cc", "cc.k"), ("bcc", "bcc.k")):
        caps[name] = f"{unique}-{name}"
        declare(channel, caps[name])
        channel.queue_bind(caps[name], dlx, key)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    channel.queue_bind(source, "amq.direct", "o.k")
    channel.basic_publish(
        "amq.direct", "o.k", b"y", pika.BasicProperties(headers={"CC": ["cc.k"], "BCC": ["bcc.k"]})
    )
    reject_head(channel, source)
    for name in ("orig", "cc", "bcc"):  # RabbitMQ routes by all three (checked on 3.10.8)
        method, props, body = channel.basic_get(caps[name], auto_ack=True)
        assert body == b"y", name
        assert method.routing_key == "o.k"  # the first original key
        assert props.headers["CC"] == ["cc.k"]  # CC kept without a DLRK
        assert "BCC" not in props.headers
        assert props.headers["x-death"][0]["routing-keys"] == ["o.k", "cc.k"]
    channel.queue_unbind(source, "amq.direct", "o.k")


# ---------------------------------------------------------------------------------------------
# The header as RabbitMQ writes it, byte for byte


# RabbitMQ 3.10.8's content header recorded for dead-lettering case 3a (queue
# 'ref3-dl-src', rejected): the same publish here must give the same bytes, time aside.
REF_3A = bytes.fromhex(
    "003c0000000000000000000338c00000011f056170702d6853000000027631036e756d490000000707782d646561746841"
    "0000009a460000009505636f756e746c000000000000000106726561736f6e530000000872656a656374656405717565"
    "7565530000000b726566332d646c2d7372630474696d6554000000006b0260120865786368616e676553000000000c72"
    "6f7574696e672d6b6579734100000010530000000b726566332d646c2d737263136f726967696e616c2d657870697261"
    "74696f6e5300000005363030303016782d66697273742d64656174682d65786368616e6765530000000013782d666972"
    "73742d64656174682d7175657565530000000b726566332d646c2d73726314782d66697273742d64656174682d726561"
    "736f6e530000000872656a65637465640200056d69642d31000000006553f100"
)


def test_raw_header_matches_rabbitmq_bytes(broker: Any, channel: Any, raw: Raw, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    # The queue name is part of the bytes: use the reference's, made unique by a vhost-wide
    # delete first (tests share the broker, not this name).
    source = "ref3-dl-src"
    channel.queue_delete(source)
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    try:
        headers = ss(b"app-h") + b"S" + ls(b"v1") + ss(b"num") + b"I" + struct.pack(">i", 7)
        properties = (
            ls(headers) + b"\x02" + b"\x00" + ss(b"60000") + ss(b"mid-1") + struct.pack(">Q", 1700000000)
        )
        raw.publish("", source, b"rej", 0x2000 | 0x1000 | 0x0800 | 0x0100 | 0x0080 | 0x0040, properties)
        get_ok, _, _ = raw.get(source, no_ack=False)
        raw.reject(get_ok.delivery_tag)
        get_ok, header, body = raw.get(capture)
        assert body == b"rej"
        assert (get_ok.exchange, get_ok.routing_key, get_ok.redelivered) == (dlx, source, False)
        time_at = REF_3A.index(b"\x04time") + 6
        assert header[time_at - 1 : time_at] == b"T"
        assert abs(struct.unpack_from(">Q", header, time_at)[0] - time.time()) < 60
        assert header[:time_at] + header[time_at + 8 :] == REF_3A[:time_at] + REF_3A[time_at + 8 :]
    finally:
        channel.queue_delete(source)


def test_x_death_types_and_key_order(channel: Any, raw: Raw, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    headers = ss(b"keep") + b"S" + ls(b"me")
    raw.publish("", source, b"pm", 0x2000 | 0x0100, ls(headers) + ss(b"60000"))
    get_ok, _, _ = raw.get(source, no_ack=False)
    raw.reject(get_ok.delivery_tag)
    _, header, _ = raw.get(capture)
    assert not (header[12] << 8 | header[13]) & 0x0100  # expiration removed
    table = header_table(header)
    assert [key for key, _ in table] == [
        "keep",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
    ]
    tags = dict(table)
    assert tags["x-death"][0] == "A"
    (entry,) = tags["x-death"][1]
    assert death_keys(entry) == [*FIRST_ORDER, "original-expiration"]
    fields = death(entry)
    assert fields["count"] == ("l", 1)
    assert fields["reason"] == ("S", "rejected")
    assert fields["queue"] == ("S", source)
    assert fields["time"][0] == "T" and abs(fields["time"][1] - time.time()) < 60
    assert fields["exchange"] == ("S", "")
    assert fields["routing-keys"] == ("A", [("S", source)])
    assert fields["original-expiration"] == ("S", "60000")
    assert tags["x-first-death-exchange"] == ("S", "")
    assert tags["x-first-death-queue"] == ("S", source)
    assert tags["x-first-death-reason"] == ("S", "rejected")


def test_headers_table_is_resorted_and_values_keep_their_types(channel: Any, raw: Raw, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    headers = (
        ss(b"zzz") + b"b" + struct.pack(">b", -3)
        + ss(b"AAA") + b"u" + struct.pack(">H", 9)
        + ss(b"mmm") + b"F" + ls(ss(b"n") + b"L" + struct.pack(">q", 5) + ss(b"f") + b"t\x02")
        + ss(b"x-death-foo") + b"A" + ls(b"T" + struct.pack(">Q", 7) + b"x" + ls(b"\xff\x00"))
    )  # fmt: skip
    raw.publish("", source, b"s", 0x2000, ls(headers))
    get_ok, _, _ = raw.get(source, no_ack=False)
    raw.reject(get_ok.delivery_tag)
    _, header, _ = raw.get(capture)
    table = header_table(header)
    assert [key for key, _ in table] == [
        "AAA",
        "mmm",
        "x-death",
        "x-death-foo",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "zzz",
    ]
    values = dict(table)
    assert values["zzz"] == ("b", -3)
    assert values["AAA"] == ("u", 9)
    # RabbitMQ decodes 'L' as a signed long and a non-zero bool as true: they come back as l / 1.
    assert values["mmm"] == ("F", [("n", ("l", 5)), ("f", ("t", 1))])
    assert values["x-death-foo"] == ("A", [("T", 7), ("x", b"\xff\x00")])


# ---------------------------------------------------------------------------------------------
# Repeated dead-lettering


def test_repeated_dead_lettering_counts_and_order(channel: Any, raw: Raw, unique: str) -> None:
    """A -> B -> A -> B by rejection (RabbitMQ's 3h sequence)."""
    qa, qb = f"{unique}-A", f"{unique}-B"
    declare(channel, qa, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qb})
    declare(channel, qb, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qa})
    channel.basic_publish("", qa, b"hop")
    steps = []
    first_time = None
    for source in (qa, qb, qa, qb):
        get_ok, _, _ = raw.get(source, no_ack=False)
        raw.reject(get_ok.delivery_tag)
        target = qb if source == qa else qa
        get_ok, header, body = raw.get(target, no_ack=False)
        assert body == b"hop" and get_ok.routing_key == target and get_ok.exchange == ""
        raw.client.send(1, commands.Basic.Reject(delivery_tag=get_ok.delivery_tag, requeue=True))
        table = dict(header_table(header))
        assert table["x-first-death-queue"] == ("S", qa)
        assert table["x-first-death-reason"] == ("S", "rejected")
        entries = table["x-death"][1]
        steps.append([(death(e)["queue"][1], death(e)["count"], death_keys(e)) for e in entries])
        for entry in entries:
            if death(entry)["queue"][1] == qa:
                first_time = first_time or death(entry)["time"]
                assert death(entry)["time"] == first_time  # time of the first death, kept
    assert steps == [
        [(qa, ("l", 1), FIRST_ORDER)],
        [(qb, ("l", 1), SORTED_ORDER), (qa, ("l", 1), FIRST_ORDER)],
        [(qa, ("l", 2), SORTED_ORDER), (qb, ("l", 1), SORTED_ORDER)],
        [(qb, ("l", 2), SORTED_ORDER), (qa, ("l", 2), SORTED_ORDER)],
    ]


def test_three_queue_ring_orders_entries_as_rabbitmq(channel: Any, unique: str) -> None:
    """RabbitMQ's regrouping of x-death reverses the other entries (checked on 3.10.8)."""
    names = {n: f"{unique}-{n}" for n in "ABC"}
    for n, nxt in (("A", "B"), ("B", "C"), ("C", "A")):
        declare(channel, names[n], **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": names[nxt]})
    channel.basic_publish("", names["A"], b"ring")
    seen = []
    for n in "ABCAB":
        method, props, _ = channel.basic_get(names[n])
        seen.append([(d["queue"][-1], d["count"]) for d in (props.headers or {}).get("x-death", [])])
        channel.basic_reject(method.delivery_tag, requeue=False)
    method, props, _ = channel.basic_get(names["C"], auto_ack=True)
    seen.append([(d["queue"][-1], d["count"]) for d in props.headers["x-death"]])
    assert seen == [
        [],
        [("A", 1)],
        [("B", 1), ("A", 1)],
        [("C", 1), ("A", 1), ("B", 1)],
        [("A", 2), ("B", 1), ("C", 1)],
        [("B", 2), ("C", 1), ("A", 2)],
    ]


def test_reject_self_loop_is_not_a_cycle(channel: Any, unique: str) -> None:
    source = f"{unique}-self"
    declare(channel, source, **{"x-dead-letter-exchange": ""})
    channel.basic_publish("", source, b"loop")
    for expected in (1, 2, 3):
        method, props, body = channel.basic_get(source)
        assert body == b"loop"
        if expected > 1:
            (entry,) = props.headers["x-death"]
            assert entry["count"] == expected - 1
        channel.basic_reject(method.delivery_tag, requeue=False)
    _, props, _ = channel.basic_get(source, auto_ack=True)
    assert props.headers["x-death"][0]["count"] == 3


def test_client_x_death_that_is_not_an_array_is_replaced(channel: Any, raw: Raw, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    raw.publish("", source, b"b", 0x2000, ls(ss(b"x-death") + b"S" + ls(b"bogus")))
    get_ok, _, _ = raw.get(source, no_ack=False)
    raw.reject(get_ok.delivery_tag)
    _, header, _ = raw.get(capture)
    table = header_table(header)
    assert [key for key, _ in table] == ["x-death"]  # no x-first-death-*
    (entry,) = dict(table)["x-death"][1]
    assert death_keys(entry) == FIRST_ORDER
    assert death(entry)["count"] == ("l", 1)


def test_client_x_death_entry_without_count_counts_as_a_match(channel: Any, raw: Raw, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    entry = (
        ss(b"queue")
        + b"S"
        + ls(source.encode())
        + ss(b"reason")
        + b"S"
        + ls(b"rejected")
        + ss(b"exchange")
        + b"S"
        + ls(b"")
    )
    raw.publish("", source, b"c", 0x2000, ls(ss(b"x-death") + b"A" + ls(b"F" + ls(entry))))
    get_ok, _, _ = raw.get(source, no_ack=False)
    raw.reject(get_ok.delivery_tag)
    _, header, _ = raw.get(capture)
    table = header_table(header)
    assert [key for key, _ in table] == ["x-death"]
    (entry_out,) = dict(table)["x-death"][1]
    assert entry_out == (
        "F",
        [
            ("count", ("l", 1)),
            ("exchange", ("S", "")),
            ("queue", ("S", source)),
            ("reason", ("S", "rejected")),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Cycle detection (reasons other than rejected), driven through the queue's hook


def test_expired_self_loop_is_dropped(broker: Any, channel: Any, unique: str) -> None:
    source = f"{unique}-self"
    declare(channel, source, **{"x-dead-letter-exchange": ""})
    channel.basic_publish("", source, b"x")
    message_count(channel, source)  # the publish is in
    hook_dead_letter(broker, source, "expired")
    assert message_count(channel, source) == 0


def test_expired_cycle_back_to_a_queue_is_dropped(broker: Any, channel: Any, unique: str) -> None:
    qa, qb = f"{unique}-A", f"{unique}-B"
    declare(channel, qa, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qb})
    declare(channel, qb, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qa})
    channel.basic_publish("", qa, b"x")
    message_count(channel, qa)
    hook_dead_letter(broker, qa, "expired")
    assert message_count(channel, qb) == 1
    hook_dead_letter(broker, qb, "maxlen")
    assert message_count(channel, qa) == 0 and message_count(channel, qb) == 0


def test_fanout_dlx_skips_only_the_cycling_queue(broker: Any, channel: Any, unique: str) -> None:
    dlx = f"{unique}-fan"
    channel.exchange_declare(dlx, "fanout")
    source, other = f"{unique}-src", f"{unique}-other"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    declare(channel, other)
    channel.queue_bind(source, dlx)
    channel.queue_bind(other, dlx)
    channel.basic_publish("", source, b"x")
    message_count(channel, source)
    hook_dead_letter(broker, source, "expired")
    assert message_count(channel, source) == 0
    _, props, _ = channel.basic_get(other, auto_ack=True)
    assert props.headers["x-death"][0]["reason"] == "expired"


def test_cycle_with_a_rejection_in_it_continues(broker: Any, channel: Any, unique: str) -> None:
    """A expires -> B, rejected in B -> A, expires again -> B: delivered (RabbitMQ's 3h2)."""
    qa, qb = f"{unique}-A2", f"{unique}-B2"
    declare(channel, qa, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qb})
    declare(channel, qb, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qa})
    channel.basic_publish("", qa, b"mixed")
    message_count(channel, qa)
    hook_dead_letter(broker, qa, "expired")
    reject_head(channel, qb)
    assert message_count(channel, qa) == 1
    hook_dead_letter(broker, qa, "expired")
    _, props, _ = channel.basic_get(qb, auto_ack=True)
    deaths = [(d["queue"], d["reason"], d["count"]) for d in props.headers["x-death"]]
    assert deaths == [(qa, "expired", 2), (qb, "rejected", 1)]
    assert props.headers["x-first-death-reason"] == "expired"


# ---------------------------------------------------------------------------------------------
# Expiry and overflow, driven by the queue (TTL and length limits)


def test_queue_ttl_expiry_dead_letters(channel: Any, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx, "x-message-ttl": 100})
    channel.basic_publish("", source, b"qttl")
    wait_until(None, lambda: message_count(channel, capture) == 1)
    method, props, body = channel.basic_get(capture, auto_ack=True)
    assert body == b"qttl" and method.routing_key == source
    (entry,) = props.headers["x-death"]
    assert (entry["reason"], entry["queue"], entry["count"]) == ("expired", source, 1)
    assert "original-expiration" not in entry
    assert props.headers["x-first-death-reason"] == "expired"


def test_per_message_ttl_expiry_keeps_original_expiration(channel: Any, raw: Raw, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx})
    raw.publish("", source, b"pmttl", 0x2000 | 0x0100, ls(ss(b"keep") + b"S" + ls(b"me")) + ss(b"100"))
    wait_until(None, lambda: message_count(channel, capture) == 1)
    _, header, body = raw.get(capture)
    assert body == b"pmttl"
    assert not (header[12] << 8 | header[13]) & 0x0100
    table = dict(header_table(header))
    (entry,) = table["x-death"][1]
    assert death_keys(entry) == [*FIRST_ORDER, "original-expiration"]
    assert death(entry)["reason"] == ("S", "expired")
    assert death(entry)["original-expiration"] == ("S", "100")
    assert table["keep"] == ("S", "me")


def test_queue_ttl_self_loop_drops_at_first_expiry(channel: Any, unique: str) -> None:
    source = f"{unique}-cyc"
    declare(channel, source, **{"x-dead-letter-exchange": "", "x-message-ttl": 100})
    channel.basic_publish("", source, b"loop")
    wait_until(None, lambda: message_count(channel, source) == 0)
    time.sleep(0.2)  # had it been re-enqueued it would be back by now
    assert message_count(channel, source) == 0


def test_maxlen_drop_head_dead_letters(channel: Any, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx, "x-max-length": 1})
    channel.basic_publish("", source, b"first")
    channel.basic_publish("", source, b"second")
    wait_until(None, lambda: message_count(channel, capture) == 1)
    _, props, body = channel.basic_get(capture, auto_ack=True)
    assert body == b"first"
    (entry,) = props.headers["x-death"]
    assert (entry["reason"], entry["queue"], entry["routing-keys"]) == ("maxlen", source, [source])
    assert channel.basic_get(source, auto_ack=True)[2] == b"second"


def test_reject_publish_dlx_dead_letters_the_refused_message(channel: Any, unique: str) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(
        channel,
        source,
        **{"x-dead-letter-exchange": dlx, "x-max-length": 1, "x-overflow": "reject-publish-dlx"},
    )
    channel.basic_publish("", source, b"kept")
    channel.basic_publish("", source, b"refused")
    wait_until(None, lambda: message_count(channel, capture) == 1)
    _, props, body = channel.basic_get(capture, auto_ack=True)
    assert body == b"refused"
    assert props.headers["x-death"][0]["reason"] == "maxlen"
    assert message_count(channel, source) == 1


def test_queue_ttl_expiry_of_a_message_with_expiration_keeps_original_expiration(
    channel: Any, unique: str
) -> None:
    dlx, capture = dlx_setup(channel, unique)
    source = f"{unique}-src"
    declare(channel, source, **{"x-dead-letter-exchange": dlx, "x-message-ttl": 50})
    channel.basic_publish("", source, b"pm+q", pika.BasicProperties(expiration="60000"))
    wait_until(None, lambda: message_count(channel, capture) == 1)
    _, props, _ = channel.basic_get(capture, auto_ack=True)
    assert props.expiration is None
    (entry,) = props.headers["x-death"]
    assert (entry["reason"], entry["original-expiration"]) == ("expired", "60000")


def test_ttl_ring_is_dropped_when_it_comes_back(channel: Any, unique: str) -> None:
    qa, qb = f"{unique}-A", f"{unique}-B"
    declare(
        channel, qa, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qb, "x-message-ttl": 50}
    )
    declare(
        channel, qb, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qa, "x-message-ttl": 50}
    )
    channel.basic_publish("", qa, b"ring")
    wait_until(None, lambda: message_count(channel, qa) == 0 and message_count(channel, qb) == 0)
    time.sleep(0.2)  # a message that went round again would be visible now
    assert (message_count(channel, qa), message_count(channel, qb)) == (0, 0)


def test_ttl_cycle_with_a_rejection_continues(channel: Any, unique: str) -> None:
    """RabbitMQ's 3h2 with real expiry: A(ttl) -> B, reject in B -> A, expire -> B again."""
    qa, qb = f"{unique}-A2", f"{unique}-B2"
    declare(
        channel, qa, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qb, "x-message-ttl": 50}
    )
    declare(channel, qb, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": qa})
    channel.basic_publish("", qa, b"mixed")
    wait_until(None, lambda: message_count(channel, qb) == 1)
    reject_head(channel, qb)
    wait_until(None, lambda: message_count(channel, qb) == 1)
    _, props, body = channel.basic_get(qb, auto_ack=True)
    assert body == b"mixed"
    deaths = [(d["queue"], d["reason"], d["count"]) for d in props.headers["x-death"]]
    assert deaths == [(qa, "expired", 2), (qb, "rejected", 1)]


# ---------------------------------------------------------------------------------------------
# Dead-letter exchange and routing key from a policy


def test_policy_dead_letter_exchange_and_routing_key(broker: Any, channel: Any, unique: str) -> None:
    target, source = f"{unique}-target", f"{unique}-src"
    declare(channel, target)
    declare(channel, source)
    broker.run(
        broker.admin.set_policy(
            "/",
            f"{unique}-pol",
            f"^{unique}-src$",
            {"dead-letter-exchange": "", "dead-letter-routing-key": target},
        )
    )
    try:
        channel.basic_publish("", source, b"p")
        reject_head(channel, source)
        _, props, body = channel.basic_get(target, auto_ack=True)
        assert body == b"p" and props.headers["x-death"][0]["queue"] == source
    finally:
        broker.run(broker.admin.clear_policy("/", f"{unique}-pol"))


def test_argument_dead_letter_exchange_wins_over_policy(broker: Any, channel: Any, unique: str) -> None:
    by_arg, by_policy, source = f"{unique}-arg", f"{unique}-pol", f"{unique}-src"
    declare(channel, by_arg)
    declare(channel, by_policy)
    declare(channel, source, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": by_arg})
    broker.run(
        broker.admin.set_policy(
            "/",
            f"{unique}-p",
            f"^{unique}-src$",
            {"dead-letter-exchange": "", "dead-letter-routing-key": by_policy},
        )
    )
    try:
        channel.basic_publish("", source, b"a")
        reject_head(channel, source)
        assert (message_count(channel, by_arg), message_count(channel, by_policy)) == (1, 0)
    finally:
        broker.run(broker.admin.clear_policy("/", f"{unique}-p"))
