"""Content assembly: a content-bearing method (basic.publish), its content header and its body
frames become one complete command, or RabbitMQ's error (rabbit_command_assembler). Sans-IO:
frames in, a command or a ``ConnectionError`` out.

An open channel assembles the content it will publish; a channel that is not open yet still
assembles a content method's frames, only to refuse the complete command (RabbitMQ makes a
channel process for it, whose assembler runs first). The common case, a publish whose three
frames came in one read, never gets here (``Channel.publish_whole``).
"""

from __future__ import annotations

from typing import Any

from amqp_server.protocol.errors import UNEXPECTED_FRAME, ConnectionError
from amqp_server.protocol.frame_codec import CONTENT_HEADER_FIXED, decode_content_header


class _Discard(list):
    """Where the body of a message over the size limit goes: nowhere."""

    def append(self, item: object) -> None:
        pass

    def __bool__(self) -> bool:
        return True  # never taken for "no body frames yet"


_DISCARD = _Discard()


def method_expected() -> ConnectionError:
    """A content header or body frame came with no content method before it."""
    return ConnectionError(UNEXPECTED_FRAME, "expected method frame, got non method frame instead")


class ContentAssembler:
    """The content of one content method, taken frame by frame.

    ``header`` and ``body`` return the complete command ``(method, header, body)`` once the
    body is all there, else None; ``body`` is None when it was not kept (over the size limit,
    or not kept at all). Any other frame while content is due is ``expected()``.
    """

    __slots__ = ("method", "index", "keep", "max_size", "_header", "_body", "_remaining")

    def __init__(self, method: Any, index: int, keep: bool = True, max_size: int = 0) -> None:
        """``index`` is the method's ``class_id << 16 | method_id``. ``keep`` False: only count
        the content (a channel that is not open refuses the command anyway, and RabbitMQ's
        assembler reads no properties), so neither the body nor the properties are looked at.
        A body larger than ``max_size`` (the node's max_message_size) is not kept either."""
        self.method = method
        self.max_size = max_size
        self.index = index
        self.keep = keep
        self._header = b""  # empty until the content header came
        self._body: list[bytes] = [] if keep else _DISCARD
        self._remaining = 0

    def expected(self) -> ConnectionError:
        """Another frame came where the content was due."""
        class_id = self.index >> 16
        if self._header:
            text = "expected content body, got non content body frame instead"
        else:
            text = f"expected content header for class {class_id}, got non content header frame instead"
        return ConnectionError(UNEXPECTED_FRAME, text, (class_id, self.index & 0xFFFF))

    def discard(self) -> None:
        """Assemble the rest of the content without keeping it (its channel is closing)."""
        self._body = _DISCARD

    def header(self, payload: bytes) -> tuple[Any, bytes, bytes | None] | None:
        if self._header:
            raise self.expected()
        class_id = self.index >> 16
        if self.keep:
            got, body_size = decode_content_header(payload)  # its properties must be decodable too
        else:
            got, weight, body_size = CONTENT_HEADER_FIXED.unpack_from(payload)
            if weight:
                raise self.expected()  # not a content header
        if got != class_id:
            raise ConnectionError(
                UNEXPECTED_FRAME,
                f"expected content header for class {class_id}, got one for class {got} instead",
                (class_id, self.index & 0xFFFF),
            )
        self._header = payload
        self._remaining = body_size
        if body_size > self.max_size:
            self._body = _DISCARD  # RabbitMQ refuses it once it has all arrived; keep none of it
        elif body_size == 0:
            return self.method, payload, b""
        return None

    def body(self, payload: bytes) -> tuple[Any, bytes, bytes | None] | None:
        if not self._header:
            raise self.expected()
        remaining = self._remaining - len(payload)
        if remaining == 0 and not self._body:
            return self.method, self._header, payload
        self._remaining = remaining
        if remaining < 0:
            # More than the header announced: RabbitMQ keeps waiting for a body that can never
            # add up, and fails on the next frame that is not a body frame.
            self._body = [b""]
            return None
        self._body.append(payload)
        if remaining:
            return None
        parts = self._body
        return self.method, self._header, None if parts is _DISCARD else b"".join(parts)
