"""The inter-node codec and handshake, sans-IO: round trips, malformed input (fuzzed: always a
clear error, never a crash), and the cookie challenge both ways."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.wire import (
    FRAME_MAX,
    HANDSHAKE,
    MESSAGE,
    PROTOCOL_VERSION,
    TICK,
    DecodeError,
    EncodeError,
    FrameError,
    FrameReader,
    Handshake,
    HandshakeError,
    Role,
    State,
    decode,
    encode,
    frame,
    message,
    message_frame,
)


@message(60001)
@dataclass(frozen=True)
class Entry:
    term: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@message(60002)
@dataclass(frozen=True)
class Append:
    term: int
    leader: str
    entries: tuple[Entry, ...]
    commit: int | None


@message(60003)
@dataclass(frozen=True)
class Positive:
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError("n must be positive")


scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text() | st.binary()
scalars |= st.floats(allow_nan=False)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers(-(2**63), 2**63 - 1), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_values_round_trip(value: object) -> None:
    assert decode(encode(value)) == value


def test_a_message_with_bodies_round_trips_and_carries_bytes_as_they_are() -> None:
    body = bytes(range(256)) * 40
    append = Append(7, "rabbit@a", (Entry(6, body, {"k": "v"}), Entry(7, b"")), None)
    data = encode(append)
    assert decode(data) == append
    assert body in data  # raw, not base64 or escaped
    assert len(data) < len(body) + 64


def test_message_frame_is_a_length_prefixed_message() -> None:
    data = message_frame(Positive(3))
    [(kind, payload)] = FrameReader(FRAME_MAX).feed(data)
    assert (kind, decode(payload)) == (MESSAGE, Positive(3))


def test_small_integers_are_short() -> None:
    assert len(encode(0)) == 2 and len(encode(-64)) == 2 and len(encode(2**40)) == 7


def test_what_cannot_be_encoded_is_refused() -> None:
    with pytest.raises(EncodeError, match="not a registered message"):
        encode(object())
    with pytest.raises(EncodeError, match="64 bits"):
        encode(2**64)
    nested: list[object] = []
    for _ in range(40):
        nested = [nested]
    with pytest.raises(EncodeError, match="nested"):
        encode(nested)


def test_registry_refuses_a_taken_id_and_non_dataclasses() -> None:
    with pytest.raises(ValueError, match="already Entry"):

        @message(60001)
        @dataclass
        class Other:
            x: int

    with pytest.raises(TypeError, match="not a dataclass"):
        message(60010)(int)
    with pytest.raises(ValueError, match="0-65535"):
        message(70000)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "truncated"),
        (b"\x03", "truncated varint"),
        (b"\x03" + b"\xff" * 10, "over 64 bits"),
        (b"\x03" + b"\xff" * 9 + b"\x02", "over 64 bits"),
        (b"\x05\x05ab", "count 5 is more than the 2 bytes left"),
        (b"\x05\x02\xff\xfe", "not UTF-8"),
        (b"\x63", "unknown tag 99"),
        (b"\x00\x00", "1 bytes after the value"),
        (b"\x09\x01\x07\x00\x00", "not hashable"),
        (b"\x0a\xff\xfe\x00", "unknown message type 65534"),
        (b"\x0a\xea\x63\x00", "Positive has 1 fields, got 0"),
        (b"\x0a\xea\x63\x01\x03\x00", "invalid Positive: n must be positive"),
        (b"\x07\x01" * 40 + b"\x00", "nested deeper"),
    ],
)
def test_malformed_values_are_clear_errors(data: bytes, error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        decode(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_decoding_any_bytes_gives_a_value_or_a_decode_error(data: bytes) -> None:
    assert_decodes_or_explains(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_decoding_damaged_messages_gives_a_value_or_a_decode_error(data: st.DataObject) -> None:
    good = bytearray(encode(Append(1, "n@h", (Entry(1, b"body", {"a": "b"}),), 5)))
    for _ in range(data.draw(st.integers(1, 4))):
        good[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    assert_decodes_or_explains(bytes(good[:cut]))


def assert_decodes_or_explains(data: bytes) -> None:
    """A value that encodes back the same, or a DecodeError that says what is wrong."""
    try:
        value = decode(data)
    except DecodeError as exc:
        assert str(exc)
    else:
        encoded = encode(value)
        assert encode(decode(encoded)) == encoded


# -- frames


def test_frames_split_across_reads() -> None:
    stream = frame(HANDSHAKE, b"{}") + frame(TICK) + message_frame(Positive(1))
    reader = FrameReader()
    frames = [f for i in range(len(stream)) for f in reader.feed(stream[i : i + 1])]
    assert [kind for kind, _ in frames] == [HANDSHAKE, TICK, MESSAGE]
    assert frames[0][1] == b"{}" and frames[1][1] == b""


def test_oversized_and_unknown_frames_are_refused_from_the_header() -> None:
    with pytest.raises(FrameError, match="frame of 65537 bytes is over the limit of 65536"):
        FrameReader().feed(b"\x00\x01\x00\x01\x01")
    with pytest.raises(FrameError, match="unknown frame kind 9"):
        FrameReader().feed(b"\x00\x00\x00\x00\x09")


@settings(deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=10))
def test_frame_reader_on_any_bytes_gives_frames_or_a_frame_error(chunks: list[bytes]) -> None:
    reader = FrameReader()
    try:
        for chunk in chunks:
            for kind, _ in reader.feed(chunk):
                assert kind in (HANDSHAKE, MESSAGE, TICK)
    except FrameError:
        pass


# -- the handshake


def handshakes(
    dial_cookie: bytes = b"secret", accept_cookie: bytes = b"secret", **dial: object
) -> tuple[Handshake, Handshake]:
    dialer = Handshake(Role.DIAL, "rabbit@a", dial_cookie, incarnation=11, ports={"amqp": 5672}, **dial)  # type: ignore[arg-type]
    acceptor = Handshake(Role.ACCEPT, "rabbit-b@b", accept_cookie, incarnation=22, ports={"amqp": 5673})
    return dialer, acceptor


def exchange(dialer: Handshake, acceptor: Handshake) -> list[bytes]:
    """Pump frames between the two until neither has more to say; every frame sent is returned.
    The acceptor admits the dialer once authenticated."""
    sent: list[bytes] = []
    outbox = [(acceptor, data) for data in dialer.start()]
    while outbox:
        to, data = outbox.pop(0)
        sent.append(data)
        [(kind, payload)] = FrameReader().feed(data)
        assert kind == HANDSHAKE
        answer = to.receive(payload)
        if to.state is State.AUTHENTICATED:
            answer += to.admit()
        other = acceptor if to is dialer else dialer
        outbox += [(other, d) for d in answer]
    return sent


def test_the_right_cookie_links_and_both_learn_each_other() -> None:
    dialer, acceptor = handshakes(expected="rabbit-b@b")
    sent = exchange(dialer, acceptor)
    assert dialer.done and acceptor.done
    assert acceptor.peer is not None and dialer.peer is not None
    assert (acceptor.peer.node, acceptor.peer.incarnation, dict(acceptor.peer.ports)) == (
        "rabbit@a",
        11,
        {"amqp": 5672},
    )
    assert (dialer.peer.node, dialer.peer.incarnation, dict(dialer.peer.ports)) == (
        "rabbit-b@b",
        22,
        {"amqp": 5673},
    )
    assert dialer.peer.version == acceptor.peer.version == PROTOCOL_VERSION
    assert [json.loads(d[5:])["type"] for d in sent] == ["hello", "challenge", "reply", "ack"]
    assert not any(b"secret" in d for d in sent)  # the cookie never travels


def test_a_wrong_cookie_is_rejected_by_the_acceptor_with_erlangs_words() -> None:
    dialer, acceptor = handshakes(dial_cookie=b"wrong")
    with pytest.raises(HandshakeError) as refused:
        exchange(dialer, acceptor)
    assert (
        str(refused.value) == "** Connection attempt from node rabbit@a rejected. Invalid challenge reply. **"
    )
    assert acceptor.state is State.FAILED and not acceptor.done
    # The refusal frame tells the dialer why.
    assert refused.value.reply is not None
    [(_, payload)] = FrameReader().feed(refused.value.reply)
    with pytest.raises(
        HandshakeError, match="Connection attempt to node 'rabbit-b@b' refused: invalid challenge reply"
    ):
        dialer.receive(payload)


def test_an_acceptor_without_the_cookie_is_caught_by_the_dialer() -> None:
    dialer, acceptor = handshakes(accept_cookie=b"other")
    challenge = acceptor.receive(dialer.start()[0][5:])
    reply = dialer.receive(challenge[0][5:])
    with pytest.raises(HandshakeError, match="Invalid challenge reply"):
        acceptor.receive(reply[0][5:])
    acceptor.state = State.AUTHENTICATED  # a rogue acceptor that answers all the same
    ack = acceptor.admit()
    with pytest.raises(HandshakeError) as cancelled:
        dialer.receive(ack[0][5:])
    assert (
        str(cancelled.value)
        == "** Connection attempt to node 'rabbit-b@b' cancelled. Invalid challenge ack. **"
    )


def test_the_dialer_checks_it_reached_the_node_it_meant() -> None:
    dialer, acceptor = handshakes(expected="rabbit@c")
    with pytest.raises(HandshakeError, match="to node rabbit@c reached node 'rabbit-b@b' instead"):
        exchange(dialer, acceptor)


def test_a_control_client_says_so_and_only_a_dialer_may() -> None:
    """amqp-ctl -n dials as a control client: the acceptor learns it from the authenticated
    hello; a challenge claiming it is refused by the dialer."""
    dialer, acceptor = handshakes(control=True)
    exchange(dialer, acceptor)
    assert acceptor.peer is not None and acceptor.peer.control
    assert dialer.peer is not None and not dialer.peer.control
    dialer, acceptor = handshakes()
    [challenge] = acceptor.receive(dialer.start()[0][5:])
    forged = json.dumps({**json.loads(challenge[5:]), "control": True}).encode()
    with pytest.raises(HandshakeError, match=r"malformed handshake frame \(control\)"):
        dialer.receive(forged)


def test_another_protocol_version_is_refused() -> None:
    acceptor = Handshake(Role.ACCEPT, "rabbit@b", b"k", incarnation=1)
    hello = {"type": "hello", "node": "rabbit@a", "version": 99, "incarnation": 1, "ports": {}}
    with pytest.raises(HandshakeError, match="Cluster protocol version 99, this node speaks 1") as refused:
        acceptor.receive(json.dumps(hello).encode())
    assert b"incompatible cluster protocol version 99" in (refused.value.reply or b"")


def test_frames_out_of_order_are_refused() -> None:
    acceptor = Handshake(Role.ACCEPT, "rabbit@b", b"k", incarnation=1)
    with pytest.raises(HandshakeError, match="unexpected handshake frame 'reply' in state hello"):
        acceptor.receive(b'{"type":"reply","nonce":"00","digest":"00"}')


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=100) | st.dictionaries(st.sampled_from(["type", "node", "version", "incarnation", "ports", "nonce"]),
                                                  st.none() | st.integers() | st.text(max_size=5) | st.sampled_from(["hello", "reply"])).map(lambda d: json.dumps(d).encode()))  # fmt: skip
def test_any_handshake_input_gives_an_answer_or_a_handshake_error(payload: bytes) -> None:
    acceptor = Handshake(Role.ACCEPT, "rabbit@b", b"k", incarnation=1)
    try:
        answer = acceptor.receive(payload)
    except HandshakeError as exc:
        assert acceptor.state is State.FAILED and str(exc)
    else:
        assert acceptor.state is State.REPLY and len(answer) == 1
