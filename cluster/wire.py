"""What nodes say to each other over a link, sans-IO: frames, messages and the handshake.

A frame is a 5-byte header, the payload's length (uint32, big-endian) and its kind (uint8),
then the payload. ``HANDSHAKE`` frames carry one JSON object each; ``MESSAGE`` frames one
registered dataclass in the tagged binary encoding below; ``TICK`` frames are empty (the
link's keepalive).

The encoding is self-describing, one tag byte per value: None, False, True, int (zigzag
LEB128, 64 bits at most), float (IEEE double), str (UTF-8) and bytes (a LEB128 length, then
the raw bytes: message bodies travel as they are), list, tuple and dict (a LEB128 count, then
the items), and a registered message (its type id, uint16, the count of its fields, then the
fields in declaration order). Dataclasses become messages with ``@message(type_id)``; the id is
what travels, so it must stay the same across versions. Decoding checks structure and field
counts, never runs code from the wire (no pickle) and reports any malformed input as a
``DecodeError``; message frames are only decoded after the handshake has authenticated the
peer.

The handshake proves that both sides know the cluster's shared secret (the cookie) without
sending it, as Erlang distribution's challenge does, with HMAC-SHA256 and a nonce from each
side: the dialer sends ``hello`` (its node name, protocol version, incarnation and advertised
ports), the acceptor answers ``challenge`` (the same of its own and its nonce), the dialer
``reply`` (its nonce and its proof), and the acceptor, having checked the proof and decided to
keep the connection, ``ack`` (its own proof) or ``refused`` (a reason). Each proof is an HMAC
of the whole transcript (hello, challenge and the dialer's nonce) under a label naming the
prover's role, so one side's proof is never valid as the other's.

A dialer may be a control client (``amqp-ctl -n``, as Erlang's hidden nodes): its hello says
``"control": true``. It authenticates as any node does but never becomes a cluster member; over
its link travel ``ControlRequest``s, each answered by a ``ControlReply`` (both a control-socket
JSON document, ``amqp_server.control``).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import json
import secrets
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from amqp_server.core.alarms import erlang_atom

# -- frames ---------------------------------------------------------------------------------------

HANDSHAKE = 1
MESSAGE = 2
TICK = 3
KINDS = frozenset((HANDSHAKE, MESSAGE, TICK))
HEADER = struct.Struct(">IB")
#: The largest payload accepted before the peer is authenticated, and after.
HANDSHAKE_MAX = 64 * 1024
FRAME_MAX = 256 * 1024 * 1024


class WireError(Exception):
    """Input a link cannot go on with; the link closes with this as its reason."""


class FrameError(WireError):
    pass


class DecodeError(WireError):
    pass


class EncodeError(WireError):
    pass


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload), kind) + payload


class FrameReader:
    """Splits a byte stream into ``(kind, payload)`` frames, refusing oversized and unknown
    ones. Frames are taken one at a time (``next``) so that a new ``max_payload`` (the
    handshake done) applies from the frame after."""

    def __init__(self, max_payload: int = HANDSHAKE_MAX) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._position = 0  # where the next frame starts

    def append(self, data: bytes) -> None:
        if self._position:
            del self._buffer[: self._position]
            self._position = 0
        self._buffer += data

    def next(self) -> tuple[int, bytes] | None:
        """The next complete frame, or None until more bytes come."""
        buffer, position = self._buffer, self._position
        if len(buffer) - position < HEADER.size:
            return None
        size, kind = HEADER.unpack_from(buffer, position)
        if kind not in KINDS:
            raise FrameError(f"unknown frame kind {kind}")
        if size > self.max_payload:
            raise FrameError(f"frame of {size} bytes is over the limit of {self.max_payload}")
        end = position + HEADER.size + size
        if len(buffer) < end:
            return None
        self._position = end
        return kind, bytes(buffer[position + HEADER.size : end])

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """``append`` then every complete frame."""
        self.append(data)
        frames = []
        while (item := self.next()) is not None:
            frames.append(item)
        return frames


# -- messages -------------------------------------------------------------------------------------

_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _BYTES, _LIST, _TUPLE, _DICT, _MESSAGE = range(11)
_DOUBLE = struct.Struct(">d")
_TYPE_ID = struct.Struct(">H")
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH = 32  # nesting deeper than any message needs: refused rather than recursing

T = TypeVar("T")
_BY_ID: dict[int, type] = {}
_BY_TYPE: dict[type, tuple[int, tuple[str, ...]]] = {}


def message(type_id: int) -> Callable[[type[T]], type[T]]:
    """Class decorator: the dataclass travels as message ``type_id`` (0-65535, stable)."""
    if not 0 <= type_id <= 0xFFFF:
        raise ValueError(f"message type id {type_id} is not in 0-65535")

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__qualname__} is not a dataclass")
        taken = _BY_ID.get(type_id)
        if taken is not None and taken is not cls:
            raise ValueError(f"message type {type_id} is already {taken.__qualname__}")
        _BY_ID[type_id] = cls
        _BY_TYPE[cls] = (type_id, tuple(f.name for f in dataclasses.fields(cls) if f.init))
        return cls

    return register


def encode(value: Any) -> bytes:
    """``value`` (a registered message, or any value the encoding has) as bytes."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def message_frame(value: Any) -> bytes:
    """A ``MESSAGE`` frame carrying ``value``, built in one buffer."""
    out = bytearray(HEADER.size)
    _encode(value, out, 0)
    HEADER.pack_into(out, 0, len(out) - HEADER.size, MESSAGE)
    return bytes(out)


def decode(data: bytes) -> Any:
    """The value ``data`` encodes; ``DecodeError`` for anything malformed or left over."""
    decoder = _Decoder(data)
    value = decoder.value(0)
    if decoder.position != len(data):
        raise DecodeError(f"{len(data) - decoder.position} bytes after the value")
    return value


def _uvarint(out: bytearray, number: int) -> None:
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise EncodeError(f"values nested deeper than {_MAX_DEPTH}")
    if value is None:
        out.append(_NONE)
    elif value is True or value is False:
        out.append(_TRUE if value else _FALSE)
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise EncodeError(f"integer {value} does not fit in 64 bits")
        out.append(_INT)
        _uvarint(out, (value << 1) ^ (value >> 63))  # zigzag: small magnitudes stay short
    elif isinstance(value, float):
        out.append(_FLOAT)
        out += _DOUBLE.pack(value)
    elif isinstance(value, str):
        data = value.encode()
        out.append(_STR)
        _uvarint(out, len(data))
        out += data
    elif isinstance(value, bytes | bytearray | memoryview):
        out.append(_BYTES)
        _uvarint(out, len(value) if not isinstance(value, memoryview) else value.nbytes)
        out += value
    elif isinstance(value, list | tuple):
        out.append(_LIST if isinstance(value, list) else _TUPLE)
        _uvarint(out, len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        out.append(_DICT)
        _uvarint(out, len(value))
        for key, item in value.items():
            _encode(key, out, depth + 1)
            _encode(item, out, depth + 1)
    else:
        registered = _BY_TYPE.get(type(value))
        if registered is None:
            raise EncodeError(f"cannot encode a {type(value).__qualname__} (not a registered message)")
        type_id, names = registered
        out.append(_MESSAGE)
        out += _TYPE_ID.pack(type_id)
        _uvarint(out, len(names))
        for name in names:
            _encode(getattr(value, name), out, depth + 1)


class _Decoder:
    __slots__ = ("data", "position")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def take(self, size: int) -> bytes:
        end = self.position + size
        if end > len(self.data):
            raise DecodeError(
                f"truncated: {size} bytes wanted at offset {self.position}, {len(self.data) - self.position} left"
            )
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def uvarint(self) -> int:
        number = shift = 0
        while True:
            if self.position >= len(self.data):
                raise DecodeError("truncated varint")
            byte = self.data[self.position]
            self.position += 1
            number |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if number >> 64:
                    raise DecodeError("varint over 64 bits")
                return number
            shift += 7
            if shift > 63:
                raise DecodeError("varint over 64 bits")

    def count(self) -> int:
        """A length or item count: never more than the bytes left (each item takes one)."""
        number = self.uvarint()
        if number > len(self.data) - self.position:
            raise DecodeError(f"count {number} is more than the {len(self.data) - self.position} bytes left")
        return number

    def value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise DecodeError(f"values nested deeper than {_MAX_DEPTH}")
        tag = self.take(1)[0]
        if tag == _NONE:
            return None
        if tag == _FALSE:
            return False
        if tag == _TRUE:
            return True
        if tag == _INT:
            number = self.uvarint()
            return (number >> 1) ^ -(number & 1)
        if tag == _FLOAT:
            return _DOUBLE.unpack(self.take(8))[0]
        if tag == _STR:
            raw = self.take(self.count())
            try:
                return raw.decode()
            except UnicodeDecodeError as exc:
                raise DecodeError(f"string is not UTF-8: {exc.reason}") from None
        if tag == _BYTES:
            return self.take(self.count())
        if tag == _LIST:
            return [self.value(depth + 1) for _ in range(self.count())]
        if tag == _TUPLE:
            return tuple(self.value(depth + 1) for _ in range(self.count()))
        if tag == _DICT:
            result = {}
            for _ in range(self.count()):
                key = self.value(depth + 1)
                try:
                    result[key] = self.value(depth + 1)
                except TypeError:
                    raise DecodeError(f"dict key of type {type(key).__name__} is not hashable") from None
            return result
        if tag == _MESSAGE:
            return self.message(depth)
        raise DecodeError(f"unknown tag {tag} at offset {self.position - 1}")

    def message(self, depth: int) -> Any:
        (type_id,) = _TYPE_ID.unpack(self.take(2))
        cls = _BY_ID.get(type_id)
        if cls is None:
            raise DecodeError(f"unknown message type {type_id}")
        names = _BY_TYPE[cls][1]
        count = self.count()
        if count != len(names):
            raise DecodeError(f"{cls.__qualname__} has {len(names)} fields, got {count}")
        values = [self.value(depth + 1) for _ in names]
        try:
            return cls(*values)
        except Exception as exc:  # the class's own checks (__post_init__) refusing peer data
            raise DecodeError(f"invalid {cls.__qualname__}: {exc}") from None


# -- handshake ------------------------------------------------------------------------------------

PROTOCOL_VERSION = 1
NONCE_BYTES = 32
_NAME_MAX = 255


def new_incarnation() -> int:
    """A node's incarnation: microseconds since the epoch at its start, so a restarted node's
    is larger than before (links and heartbeats tell a restart from a reconnection by it)."""
    return time.time_ns() // 1000


class Role(enum.Enum):
    DIAL = "dial"
    ACCEPT = "accept"


class State(enum.Enum):
    HELLO = "hello"  # the acceptor waits for it
    CHALLENGE = "challenge"  # the dialer waits for it
    REPLY = "reply"  # the acceptor waits for it
    AUTHENTICATED = "authenticated"  # the acceptor: admit() or refuse() next
    ACK = "ack"  # the dialer waits for it
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who is at the other end, as its handshake said."""

    node: str
    version: int
    incarnation: int
    ports: Mapping[str, int] = field(default_factory=dict)
    control: bool = False  # a control client (amqp-ctl), not a cluster member


class HandshakeError(WireError):
    """The handshake failed: ``str()`` is what to log; ``reply``, a frame to send before closing."""

    def __init__(self, text: str, reply: bytes | None = None) -> None:
        super().__init__(text)
        self.reply = reply


def refused_frame(reason: str) -> bytes:
    return _handshake_frame({"type": "refused", "reason": reason})


def _handshake_frame(document: dict[str, Any]) -> bytes:
    return frame(HANDSHAKE, json.dumps(document, separators=(",", ":")).encode())


class Handshake:
    """One side of a link's handshake, sans-IO: ``start()`` and ``receive(payload)`` return the
    frames to send; they raise ``HandshakeError`` when the link must close. The acceptor stops
    at ``AUTHENTICATED`` for its owner to ``admit()`` or ``refuse()`` the peer (one link per
    pair of nodes is the owner's decision)."""

    def __init__(
        self,
        role: Role,
        node: str,
        cookie: bytes,
        *,
        incarnation: int,
        ports: Mapping[str, int] | None = None,
        expected: str | None = None,
        nonce: bytes | None = None,
        control: bool = False,
    ) -> None:
        """``control``: the dialer is a control client (amqp-ctl), not a node."""
        if not cookie:
            raise ValueError("the cookie is empty")
        self.role = role
        self.node = node
        self.expected = expected  # the node the dialer means to reach
        self.peer: PeerInfo | None = None
        self.state = State.HELLO if role is Role.ACCEPT else State.CHALLENGE
        self._cookie = cookie
        self._nonce = nonce or secrets.token_bytes(NONCE_BYTES)
        self._own = {
            "node": node,
            "version": PROTOCOL_VERSION,
            "incarnation": incarnation,
            "ports": dict(ports or {}),
        }
        if control:
            self._own["control"] = True
        self._transcript = b""

    @property
    def done(self) -> bool:
        return self.state is State.DONE

    def start(self) -> list[bytes]:
        if self.role is Role.ACCEPT:
            return []
        hello = self._json({"type": "hello", **self._own})
        self._transcript = _chunk(hello)
        return [frame(HANDSHAKE, hello)]

    def receive(self, payload: bytes) -> list[bytes]:
        try:
            return self._receive(payload)
        except HandshakeError:
            self.state = State.FAILED
            raise

    def _receive(self, payload: bytes) -> list[bytes]:
        try:
            document = json.loads(payload)
        except ValueError:  # UnicodeDecodeError included
            raise self._fail("malformed handshake frame (not JSON)") from None
        if not isinstance(document, dict):
            raise self._fail("malformed handshake frame (not an object)")
        kind = document.get("type")
        if kind == "refused" and self.role is Role.DIAL:
            reason = document.get("reason")
            raise HandshakeError(f"Connection attempt to node {self._peer_atom()} refused: {reason}")
        if (kind, self.state) == ("hello", State.HELLO):
            return self._on_hello(payload, document)
        if (kind, self.state) == ("challenge", State.CHALLENGE):
            return self._on_challenge(payload, document)
        if (kind, self.state) == ("reply", State.REPLY):
            return self._on_reply(document)
        if (kind, self.state) == ("ack", State.ACK):
            return self._on_ack(document)
        raise self._fail(f"unexpected handshake frame {kind!r} in state {self.state.value}")

    def admit(self) -> list[bytes]:
        """The acceptor keeps the link: its proof goes to the dialer."""
        if self.state is not State.AUTHENTICATED:
            raise RuntimeError(f"admit() in state {self.state.value}")
        self.state = State.DONE
        return [_handshake_frame({"type": "ack", "digest": self._digest(Role.ACCEPT).hex()})]

    def refuse(self, reason: str) -> list[bytes]:
        self.state = State.FAILED
        return [refused_frame(reason)]

    # -- the steps

    def _on_hello(self, payload: bytes, document: dict[str, Any]) -> list[bytes]:
        self.peer = self._peer_info(document)
        if self.peer.version != PROTOCOL_VERSION:
            raise self._fail(
                f"Connection attempt from node {self._peer_atom()} rejected. "
                f"Cluster protocol version {self.peer.version}, this node speaks {PROTOCOL_VERSION}.",
                reply=f"incompatible cluster protocol version {self.peer.version} "
                f"(node {self.node} speaks {PROTOCOL_VERSION})",
            )
        challenge = self._json({"type": "challenge", **self._own, "nonce": self._nonce.hex()})
        self._transcript = _chunk(payload) + _chunk(challenge)
        self.state = State.REPLY
        return [frame(HANDSHAKE, challenge)]

    def _on_challenge(self, payload: bytes, document: dict[str, Any]) -> list[bytes]:
        self.peer = self._peer_info(document)
        _hex(document, "nonce")  # checked here; it is covered by the transcript
        if self.expected is not None and self.peer.node != self.expected:
            raise self._fail(f"Connection attempt to node {erlang_atom(self.expected)} reached node "
                             f"{self._peer_atom()} instead")  # fmt: skip
        if self.peer.version != PROTOCOL_VERSION:
            raise self._fail(f"Connection attempt to node {self._peer_atom()} cancelled. Cluster protocol "
                             f"version {self.peer.version}, this node speaks {PROTOCOL_VERSION}.")  # fmt: skip
        self._transcript += _chunk(payload) + self._nonce
        self.state = State.ACK
        reply = {"type": "reply", "nonce": self._nonce.hex(), "digest": self._digest(Role.DIAL).hex()}
        return [_handshake_frame(reply)]

    def _on_reply(self, document: dict[str, Any]) -> list[bytes]:
        nonce = _hex(document, "nonce")
        if len(nonce) != NONCE_BYTES:
            raise self._fail(f"malformed handshake frame (a nonce of {len(nonce)} bytes)")
        self._transcript += nonce
        if not hmac.compare_digest(_hex(document, "digest"), self._digest(Role.DIAL)):
            # Erlang distribution's words, which RabbitMQ logs for a wrong cookie.
            raise self._fail(f"** Connection attempt from node {self._peer_atom()} rejected. "
                             "Invalid challenge reply. **", reply="invalid challenge reply")  # fmt: skip
        self.state = State.AUTHENTICATED
        return []

    def _on_ack(self, document: dict[str, Any]) -> list[bytes]:
        if not hmac.compare_digest(_hex(document, "digest"), self._digest(Role.ACCEPT)):
            raise self._fail(f"** Connection attempt to node {self._peer_atom()} cancelled. "
                             "Invalid challenge ack. **")  # fmt: skip
        self.state = State.DONE
        return []

    # -- helpers

    def _digest(self, prover: Role) -> bytes:
        label = b"amqp-server cluster link " + prover.value.encode() + b"\0"
        return hmac.new(self._cookie, label + self._transcript, hashlib.sha256).digest()

    def _peer_info(self, document: dict[str, Any]) -> PeerInfo:
        node, version = document.get("node"), document.get("version")
        incarnation, ports = document.get("incarnation"), document.get("ports")
        control = document.get("control", False)
        if control is not False and (control is not True or self.role is Role.DIAL):
            raise self._fail("malformed handshake frame (control)")  # (an acceptor is a node)
        if not isinstance(node, str) or not 0 < len(node) <= _NAME_MAX:
            raise self._fail("malformed handshake frame (node)")
        if type(version) is not int or type(incarnation) is not int:
            raise self._fail("malformed handshake frame (version or incarnation)")
        if not isinstance(ports, dict) or not all(
            isinstance(k, str) and type(v) is int and 0 <= v <= 65535 for k, v in ports.items()
        ):
            raise self._fail("malformed handshake frame (ports)")
        return PeerInfo(node, version, incarnation, ports, control)

    def _peer_atom(self) -> str:
        name = self.peer.node if self.peer is not None else self.expected
        return erlang_atom(name) if name is not None else "(unknown)"

    @staticmethod
    def _fail(text: str, reply: str | None = None) -> HandshakeError:
        return HandshakeError(text, refused_frame(reply) if reply is not None else None)

    @staticmethod
    def _json(document: dict[str, Any]) -> bytes:
        return json.dumps(document, separators=(",", ":")).encode()


# -- control clients ------------------------------------------------------------------------------


@message(100)
@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A control client's request: the control socket's JSON line, without its secret."""

    id: int
    request: str


@message(101)
@dataclass(frozen=True, slots=True)
class ControlReply:
    """The node's answer to request ``id``: the control socket's JSON reply."""

    id: int
    reply: str


def _chunk(data: bytes) -> bytes:
    """``data`` length-prefixed, so that the transcript's parts cannot be shifted between."""
    return struct.pack(">I", len(data)) + data


def _hex(document: dict[str, Any], key: str) -> bytes:
    value = document.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError
        return bytes.fromhex(value)
    except ValueError:
        raise HandshakeError(f"malformed handshake frame ({key})") from None
