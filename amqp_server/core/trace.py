"""Firehose tracing, as RabbitMQ's ``rabbit_trace``: while a vhost traces, every publish into it
is also published to its ``amq.rabbitmq.trace`` exchange with routing key ``publish.<exchange>``,
and every delivery (basic.deliver and basic.get-ok) with ``deliver.<queue>``, carrying the
original body and RabbitMQ's headers (exchange_name, routing_keys, properties, node, then who
published or received it).

A vhost traces while ``VirtualHost.tracer`` is a ``Tracer``; off, it is None, and the publish
and delivery paths pay one attribute check. As in RabbitMQ, the setting lives in memory only
(``trace_on`` does not survive a restart) and messages of the trace exchange itself are never
traced again.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING, Any

from amqp_server.core.message import Message
from amqp_server.protocol.content import FLAG_HEADERS, PROPERTIES, split_properties
from amqp_server.protocol.field_types import short_str
from amqp_server.protocol.frame_codec import BASIC_CLASS, CONTENT_HEADER_FIXED
from amqp_server.protocol.tables import A, F, S, Table, decode_entries, encode_entries

if TYPE_CHECKING:
    from amqp_server.core.vhost import VirtualHost
    from queues.base import QueueType

log = logging.getLogger(__name__)

TRACE_EXCHANGE = "amq.rabbitmq.trace"
_I = ord("I")  # signedint: RabbitMQ's type for every integer in a trace's headers
_flags = struct.Struct(">H")
_timestamp = struct.Struct(">Q")


def set_tracing(vhost: VirtualHost, on: bool) -> None:
    """rabbit_trace:start/stop, with its log lines."""
    if (vhost.tracer is not None) == on:
        log.info("Tracing is already %s for vhost '%s'", "enabled" if on else "disabled", vhost.name)
        return
    log.info("%s tracing for vhost '%s'", "Enabling" if on else "Disabling", vhost.name)
    vhost.tracer = Tracer(vhost) if on else None


class Tracer:
    """The trace of one vhost; the channel calls it (what rabbit_channel's trace_state does)."""

    def __init__(self, vhost: VirtualHost) -> None:
        self.vhost = vhost
        self._node = (S, vhost.broker.node_name.encode())
        self._vhost_name = (S, vhost.name.encode())

    def published(self, channel: Any, message: Message, queues: list[QueueType]) -> None:
        """rabbit_trace:tap_in: a publish was routed to ``queues``."""
        if message.exchange == TRACE_EXCHANGE:
            return
        routed = [(S, queue.name.encode()) for queue in queues]
        self._trace(message, "publish." + message.exchange,
                    [*self._who(channel), (b"routed_queues", A, routed)])  # fmt: skip

    def delivered(self, channel: Any, queue: str, message: Message, redelivered: bool) -> None:
        """rabbit_trace:tap_out: a message of ``queue`` went to a consumer or a basic.get."""
        if message.exchange == TRACE_EXCHANGE:
            return
        self._trace(
            message, "deliver." + queue, [(b"redelivered", _I, int(redelivered)), *self._who(channel)]
        )

    def _who(self, channel: Any) -> Table:
        connection = channel.connection
        return [
            (b"vhost", *self._vhost_name),
            (b"connection", S, connection.name.encode()),
            (b"channel", _I, channel.number),
            (b"user", S, (connection.username or "").encode()),
        ]

    def _trace(self, message: Message, routing_key: str, extra: Table) -> None:
        exchange = self.vhost.exchanges.get(TRACE_EXCHANGE)
        if exchange is None:
            return
        try:
            exchange_and_key = short_str(TRACE_EXCHANGE) + short_str(routing_key)
        except ValueError:  # a key of over 255 octets cannot go out in basic.deliver
            return
        headers: Table = [
            (b"exchange_name", S, message.exchange.encode()),
            (b"routing_keys", A, [(S, key.encode()) for key in message.routing_keys]),
            (b"properties", F, _properties_table(message.header)),
            (b"node", *self._node),
            *extra,
        ]
        body = message.body
        header = CONTENT_HEADER_FIXED.pack(BASIC_CLASS, 0, len(body)) + _flags.pack(FLAG_HEADERS)
        trace = Message(TRACE_EXCHANGE, routing_key, exchange_and_key, header + encode_entries(headers), body)
        for queue in self.vhost.route(exchange, trace):  # at most once: no confirm, no return
            queue.publish(trace)


def _properties_table(header: bytes) -> Table:
    """rabbit_trace's msg_to_table properties: each property present, last one first (its fold
    prepends); integers (delivery_mode, priority, timestamp) as signedint, headers as the table
    they are, the rest as longstr."""
    fields = split_properties(header)
    table: Table = []
    for name, bit, _kind in PROPERTIES:
        raw = fields.get(bit)
        if raw is None:
            continue
        key = b"type" if name == "message_type" else name.encode()
        if bit == FLAG_HEADERS:
            table.append((key, F, decode_entries(raw, 4, len(raw))))
        elif name in ("delivery_mode", "priority"):  # octets
            table.append((key, _I, raw[0]))
        elif name == "timestamp":
            # Erlang's 32-bit signed field keeps the low bits of a larger value.
            table.append((key, _I, (_timestamp.unpack(raw)[0] + 2**31) % 2**32 - 2**31))
        else:
            table.append((key, S, raw[1:]))
    table.reverse()
    return table
