"""A published message: raw content-header payload and body, properties decoded on demand."""

from __future__ import annotations

from typing import Any

from amqp_server.frame_codec import decode_properties

# Basic-class property flag bits in the content header (bytes 12-13 of its payload).
FLAG_HEADERS = 0x2000
FLAG_USER_ID = 0x0010


class Message:
    """One published message, shared by every queue it was routed to.

    ``header`` is the content-header frame payload as the publisher sent it and is written
    back out unchanged on delivery; ``exchange_and_key`` likewise holds the raw shortstrs from
    basic.publish.
    """

    __slots__ = ("exchange", "routing_key", "exchange_and_key", "header", "body", "_properties")

    def __init__(
        self, exchange: str, routing_key: str, exchange_and_key: bytes, header: bytes, body: bytes
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.exchange_and_key = exchange_and_key
        self.header = header
        self.body = body
        self._properties: dict[str, Any] | None = None

    @property
    def flags(self) -> int:
        header = self.header
        return header[12] << 8 | header[13]

    @property
    def properties(self) -> dict[str, Any]:
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
        """The routing key plus CC and BCC keys (RabbitMQ's sender-selected distribution)."""
        if not self.flags & FLAG_HEADERS:
            return (self.routing_key,)
        headers = self.headers or {}
        keys = [self.routing_key]
        for name in ("CC", "BCC"):
            extra = headers.get(name)
            if isinstance(extra, list):
                keys.extend(k.decode() if isinstance(k, bytes) else k for k in extra if isinstance(k, str | bytes))
        return tuple(keys)

    @property
    def user_id(self) -> str | None:
        if not self.flags & FLAG_USER_ID:
            return None
        return self.properties.get("user_id")

    @property
    def body_size(self) -> int:
        return len(self.body)
