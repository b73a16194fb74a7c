"""A published message: raw content-header payload and body, properties decoded on demand."""

from __future__ import annotations

import struct
from typing import Any

from amqp_server.protocol.content import (
    FLAG_DELIVERY_MODE,
    FLAG_HEADERS,
    FLAG_USER_ID,
    decode_properties,
    property_span,
)
from amqp_server.protocol.errors import PRECONDITION_FAILED, ChannelError
from amqp_server.protocol.rabbit_text import erlang_char_list, erlang_term
from amqp_server.protocol.tables import FIELD_TYPE_NAMES, entry_spans

# rabbit_misc:check_expiry's ceiling for a message TTL (ten years in ms).
MAX_EXPIRATION = 315_360_000_000
# RabbitMQ's sender-selected distribution headers; BCC is removed before delivery.
ROUTING_HEADERS = ("CC", "BCC")
BASIC_PUBLISH = (60, 40)


class Message:
    """One published message, shared by every queue it was routed to.

    ``header`` is the content-header frame payload as the publisher sent it and is written
    back out unchanged on delivery (except that a BCC header is cut out, see ``strip_bcc``);
    ``exchange_and_key`` likewise holds the raw shortstrs from basic.publish.
    """

    __slots__ = ("exchange", "routing_key", "exchange_and_key", "header", "body", "_properties", "_keys")

    def __init__(
        self, exchange: str, routing_key: str, exchange_and_key: bytes, header: bytes, body: bytes
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.exchange_and_key = exchange_and_key
        self.header = header
        self.body = body
        self._properties: dict[str, Any] | None = None
        self._keys: tuple[str, ...] | None = None

    @property
    def flags(self) -> int:
        """The property flags; 0 for a header too short to hold them."""
        header = self.header
        if len(header) < 14:
            return 0
        return header[12] << 8 | header[13]

    @property
    def properties(self) -> dict[str, Any]:
        """All properties present; ConnectionError(541) if they do not decode (as RabbitMQ)."""
        props = self._properties
        if props is None:
            props = self._properties = decode_properties(self.header)
        return props

    @property
    def headers(self) -> dict[str, Any] | None:
        if not self.flags & FLAG_HEADERS:
            return None
        return self.properties.get("headers")

    @property
    def routing_keys(self) -> tuple[str, ...]:
        """The routing key plus CC and BCC keys (RabbitMQ's sender-selected distribution).

        As RabbitMQ's ``rabbit_basic:header_routes``: CC/BCC must be arrays (anything else is
        ``406 PRECONDITION_FAILED - invalid message: ...``) and only their longstr elements
        count. Computing the keys also strips the BCC header, as RabbitMQ does at publish, so
        they are computed once (exchange-to-exchange routing asks again).
        """
        if not self.flags & FLAG_HEADERS:
            return (self.routing_key,)
        if self._keys is not None:
            return self._keys
        headers = self.headers or {}
        keys = [self.routing_key]
        for name in ROUTING_HEADERS:
            if name not in headers:
                continue
            extra = headers[name]
            if not isinstance(extra, list):
                raise self._unacceptable_type(name)
            keys.extend(
                key if isinstance(key, str) else key.decode("utf-8", "replace")
                for key in extra
                if isinstance(key, str | bytes)  # longstr elements (bytes: not UTF-8)
            )
        self._keys = tuple(keys)
        if "BCC" in headers:
            self.strip_bcc()
        return self._keys

    def check(self) -> None:
        """RabbitMQ's checks of a published message, in its order (``rabbit_basic:message``).

        Decodes every property (541 if they do not parse), refuses an unknown delivery-mode
        and CC/BCC headers that are not arrays (406 with RabbitMQ's text) and strips BCC. The
        channel is meant to call this after the exchange and user-id checks.
        """
        props = self.properties
        if self.header[12] & 1:  # expiration (rabbit_channel:check_expiration_header)
            expiration = props.get("expiration")
            error = expiration_error(expiration)
            if error is not None:
                prefix = f"invalid expiration '{expiration}': "
                raise ChannelError(PRECONDITION_FAILED, prefix + erlang_term(error, len(prefix)), BASIC_PUBLISH)
        if self.flags & FLAG_DELIVERY_MODE:
            mode = props.get("delivery_mode")
            if mode not in (1, 2):
                raise ChannelError(
                    PRECONDITION_FAILED, f"invalid message: {{delivery_mode_unknown,{mode}}}", BASIC_PUBLISH
                )
        self.routing_keys  # noqa: B018 - validates CC/BCC and strips BCC

    def strip_bcc(self) -> None:
        """Cut the (first) BCC entry out of the raw headers table, leaving all else byte-exact."""
        span = property_span(self.header, FLAG_HEADERS)
        if span is None:
            return
        start, end = span[0] + 4, span[1]  # the entries, after the table's length
        header = self.header
        for key, _kind, entry_start, entry_end in entry_spans(header, start, end):
            if key == b"BCC":
                size = (end - start) - (entry_end - entry_start)
                self.header = (
                    header[: start - 4] + struct.pack(">I", size) + header[start:entry_start] + header[entry_end:]
                )
                self._properties = None
                return

    def _unacceptable_type(self, name: str) -> ChannelError:
        kind = "undefined"
        span = property_span(self.header, FLAG_HEADERS)
        if span is not None:
            for key, type_octet, _start, _end in entry_spans(self.header, span[0] + 4, span[1]):
                if key == name.encode():
                    kind = FIELD_TYPE_NAMES.get(type_octet, kind)
        return ChannelError(
            PRECONDITION_FAILED, f'invalid message: {{unacceptable_type_in_header,"{name}",{kind}}}', BASIC_PUBLISH
        )

    @property
    def expiration(self) -> str | None:
        """The ``expiration`` property as published (what x-death's original-expiration keeps)."""
        if not self.header[12] & 1:  # FLAG_EXPIRATION, read from its octet
            return None
        return self.properties.get("expiration")

    @property
    def expiration_ms(self) -> int | None:
        """The per-message TTL in ms; None without a (valid) ``expiration`` property.

        Only read when the header's expiration flag is set, so plain messages pay nothing.
        """
        if not self.header[12] & 1:  # FLAG_EXPIRATION, read from its octet
            return None
        parsed = parse_expiration(self.properties.get("expiration"))
        return parsed if isinstance(parsed, int) else None

    @property
    def priority(self) -> int:
        """The ``priority`` property, 0 when absent (as RabbitMQ counts a message without one)."""
        if not self.header[12] & 0x08:  # FLAG_PRIORITY, read from its octet
            return 0
        return self.properties.get("priority") or 0

    @property
    def user_id(self) -> str | None:
        if not self.flags & FLAG_USER_ID:
            return None
        return self.properties.get("user_id")

    @property
    def body_size(self) -> int:
        return len(self.body)


def parse_expiration(text: str | None) -> int | tuple[str, str]:
    """``string:to_integer`` then ``rabbit_misc:check_expiry`` as rabbit_basic:parse_expiration.

    Returns the TTL in ms, or the error as (kind, detail) where kind is "no_integer",
    "leftover_string", "value_negative" or "value_too_large".
    """
    text = text or ""
    pos = 1 if text[:1] in ("+", "-") else 0
    end = pos
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    if end == pos:
        return ("no_integer", "")
    if end < len(text):
        return ("leftover_string", text[end:])
    value = int(text[:end])
    if value < 0:
        return ("value_negative", str(value))
    if value > MAX_EXPIRATION:
        return ("value_too_large", str(value))
    return value


def expiration_error(text: str | None) -> str | tuple[str, str] | None:
    """The error term for a bad ``expiration``, for ``rabbit_text.erlang_term`` (an atom, or a
    tagged tuple of printed terms); None when valid."""
    parsed = parse_expiration(text)
    if isinstance(parsed, int):
        return None
    kind, detail = parsed
    if kind == "no_integer":
        return kind
    if kind == "leftover_string":
        detail = erlang_char_list(detail)
    return (kind, detail)
