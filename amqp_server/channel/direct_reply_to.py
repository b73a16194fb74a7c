"""Direct reply-to (RabbitMQ's ``amq.rabbitmq.reply-to`` pseudo-queue).

A requester consumes ``amq.rabbitmq.reply-to`` in no-ack mode; its publishes carrying
``reply_to='amq.rabbitmq.reply-to'`` leave with ``reply_to`` rewritten to
``amq.rabbitmq.reply-to.<token>``, where the token names the requesting channel's reply
consumer. A reply published to the default exchange with that name as routing key goes
straight to that consumer (no queue), as ``rabbit_exchange:route`` does for virtual reply
queues: the reply is not counted as routed, so a mandatory reply is also returned 312
(RabbitMQ 3.10 does exactly that). A token that names no live reply consumer drops the reply.

Each consume makes a new token (RabbitMQ's key changes per consume too), so a reply meant
for a cancelled consumer, or a closed channel, is dropped.
"""

from __future__ import annotations

import base64
import os
import struct
import weakref
from typing import TYPE_CHECKING

from amqp_server.protocol.errors import PRECONDITION_FAILED, ChannelError
from amqp_server.protocol.field_types import short_str
from amqp_server.protocol.frame_codec import deliver_prefix, encode_deliver

if TYPE_CHECKING:
    from amqp_server.channel.channel import Channel
    from amqp_server.core.broker import Broker
    from amqp_server.core.message import Message

PSEUDO_QUEUE = "amq.rabbitmq.reply-to"
PREFIX = PSEUDO_QUEUE + "."
FLAG_REPLY_TO = 0x0200
_long = struct.Struct(">I")

# token -> reply consumer, one table per broker (several brokers may share a process in tests).
_registries: weakref.WeakKeyDictionary[Broker, dict[str, ReplyConsumer]] = weakref.WeakKeyDictionary()


def _registry(broker: Broker) -> dict[str, ReplyConsumer]:
    table = _registries.get(broker)
    if table is None:
        table = _registries[broker] = {}
    return table


class ReplyConsumer:
    """A channel's consumer of the reply pseudo-queue: not a queue consumer, just a tag and
    the token that replies must carry."""

    __slots__ = ("tag", "channel", "token", "reply_to", "prefix")

    def __init__(self, tag: str, channel: Channel) -> None:
        self.tag = tag
        self.channel = channel
        where = f"{channel.connection.id}/{channel.number}".encode()
        self.token = (
            base64.urlsafe_b64encode(where).decode().rstrip("=")
            + "."
            + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        )
        self.reply_to = PREFIX + self.token
        self.prefix = deliver_prefix(tag)


def consume(channel: Channel, tag: str, no_ack: bool) -> ReplyConsumer:
    """basic.consume on the pseudo-queue, with rabbit_channel's checks in its order."""
    if not no_ack:
        raise ChannelError(PRECONDITION_FAILED, "reply consumer cannot acknowledge")
    if channel.reply_consumer is not None:
        raise ChannelError(PRECONDITION_FAILED, "reply consumer already set")
    consumer = ReplyConsumer(tag, channel)
    _registry(channel.connection.broker)[consumer.token] = consumer
    channel.reply_consumer = consumer
    return consumer


def cancel(channel: Channel) -> None:
    """The reply consumer goes (basic.cancel or channel close): its token stops working."""
    consumer = channel.reply_consumer
    if consumer is None:
        return
    channel.reply_consumer = None
    table = _registries.get(channel.connection.broker)
    if table is not None and table.get(consumer.token) is consumer:
        del table[consumer.token]


def exists(broker: Broker, name: str) -> bool:
    """queue.declare of ``amq.rabbitmq.reply-to[.token]``: the bare name always exists, a
    suffixed one while its reply consumer lives (``declare_fast_reply_to``)."""
    if name == PSEUDO_QUEUE:
        return True
    if not name.startswith(PREFIX):
        return False
    table = _registries.get(broker)
    return table is not None and name[len(PREFIX) :] in table


def rewrite_reply_to(channel: Channel, message: Message) -> None:
    """A publish with the reply_to flag set: if it names the pseudo-queue, put the channel's
    reply address in its place (the content header is re-encoded for these messages only)."""
    if message.properties.get("reply_to") != PSEUDO_QUEUE:
        return
    consumer = channel.reply_consumer
    if consumer is None:
        raise ChannelError(PRECONDITION_FAILED, "fast reply consumer does not exist")
    header = message.header
    flags = header[12]
    pos = 14
    if flags & 0x80:  # content-type
        pos += 1 + header[pos]
    if flags & 0x40:  # content-encoding
        pos += 1 + header[pos]
    if flags & 0x20:  # headers
        pos += 4 + _long.unpack_from(header, pos)[0]
    if flags & 0x10:  # delivery-mode
        pos += 1
    if flags & 0x08:  # priority
        pos += 1
    if flags & 0x04:  # correlation-id
        pos += 1 + header[pos]
    end = pos + 1 + header[pos]
    message.header = header[:pos] + short_str(consumer.reply_to) + header[end:]
    message._properties = None  # noqa: SLF001 - decoded again from the new header on demand


def deliver_replies(broker: Broker, message: Message, keys: tuple[str, ...]) -> None:
    """Hand a reply to each live reply consumer its routing keys name (default exchange)."""
    table = _registries.get(broker)
    if not table:
        return
    for key in dict.fromkeys(keys):
        if not key.startswith(PREFIX):
            continue
        consumer = table.get(key[len(PREFIX) :])
        if consumer is None:
            continue
        channel = consumer.channel
        if channel.closing or channel.connection.closed:
            continue
        channel.deliver_reply(consumer, message)


def encode_reply(channel: Channel, consumer: ReplyConsumer, message: Message) -> list[bytes]:
    """basic.deliver of a reply. Its delivery tag is the channel's next tag, not consumed
    (RabbitMQ sends ``next_tag`` without advancing it: no-ack, so nothing refers to it)."""
    connection = channel.connection
    return encode_deliver(
        channel.number,
        consumer.prefix,
        channel.next_delivery_tag + 1,
        False,
        message.exchange_and_key,
        message.header,
        message.body,
        connection.frame_max,
    )
