"""Consumers and deliveries of a channel: basic.consume/cancel/get/qos/recover, the prefetch
windows, the unacked deliveries (``Channel.unacked``, delivery tag -> entry, in tag order) and
how basic.ack/nack/reject settle them.

``Channel.deliver`` (the queue's way into the channel) and the single-ack fast path in
``Channel.handle_frame`` stay on the channel, since they run per message; the fast path calls
``settle_entries`` here.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import TYPE_CHECKING, Any

from pamqp import commands

from amqp_server.channel import direct_reply_to
from amqp_server.protocol.errors import (
    ACCESS_REFUSED,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    ChannelError,
    ConnectionError,
)
from amqp_server.protocol.field_types import amqp_type_name
from amqp_server.protocol.frame_codec import BASIC_ACK, BASIC_CLASS, Ack, build, deliver_prefix, encode_get_ok
from queues.arguments import is_integer
from queues.base import QueueEntry, QueueType

if TYPE_CHECKING:
    from amqp_server.channel.channel import Channel

# What an ack, nack or reject does with its messages.
ACKED, REQUEUED, REJECTED = 0, 1, 2
# The credit of a consumer no window limits (no_ack, or prefetch 0): spent one by one, never out.
UNLIMITED = sys.maxsize


class ChannelConsumer:
    """A basic.consume subscription; the queue sees it through ``queues.base.Consumer``."""

    __slots__ = (
        "tag", "channel", "queue", "no_ack", "exclusive", "priority", "arguments", "prefetch", "unacked", "credit",
        "prefix", "deliver",
    )

    def __init__(
        self, tag: str, channel: Channel, queue: QueueType, no_ack: bool, exclusive: bool, priority: int,
        arguments: dict[str, Any],
    ) -> None:  # fmt: skip
        self.tag = tag
        self.channel = channel
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.priority = priority
        self.arguments = arguments  # basic.consume's, for the admin surfaces
        self.prefetch = channel.consumer_prefetch
        self.unacked = 0
        self.credit = 0
        self.prefix = deliver_prefix(tag)
        # deliver(entry): the queue calls the channel directly (no method layer in between).
        self.deliver = partial(channel.deliver, self)
        self.refresh_credit()

    def refresh_credit(self) -> None:
        """Credit = what the prefetch windows (this consumer's and the channel's global one)
        allow now, 0 while the channel cannot deliver (socket full, tx.commit settling,
        closing). Called when one of those changes; the queue spends it per delivery."""
        channel = self.channel
        if not channel.flow_active or channel.closing or not channel.connection.writable:  # deliverable, inlined
            self.credit = 0
            return
        if self.no_ack:
            self.credit = UNLIMITED
            return
        credit = self.prefetch - self.unacked if self.prefetch else UNLIMITED
        if channel.global_prefetch:
            credit = min(credit, channel.global_prefetch - channel.consumer_unacked)
        self.credit = credit if credit > 0 else 0

    def cancelled_by_server(self) -> None:
        """The queue went away: basic.cancel to clients that asked for it."""
        channel = self.channel
        if channel.consumers.pop(self.tag, None) is None:
            return
        self._deleted()
        connection = channel.connection
        if connection.capabilities.get("consumer_cancel_notify"):
            connection.write_method(channel.number, build(commands.Basic.Cancel, consumer_tag=self.tag))

    def remove(self) -> None:
        """basic.cancel, or its channel closing."""
        self.channel.consumers.pop(self.tag, None)
        self.queue.remove_consumer(self)
        self._deleted()

    def _deleted(self) -> None:
        queue = self.queue
        self.channel.connection.broker.events.emit(
            "consumer.deleted", self, consumer_tag=self.tag, channel=self.channel.name, queue=queue.name,
            vhost=queue.vhost,
        )  # fmt: skip


def exclusive_use_error(queue: QueueType, exclusive: bool) -> ChannelError | None:
    """RabbitMQ's refusal of a consumer where an exclusive one is, or of an exclusive one where
    any is (single active consumer queues count as having one)."""
    existing = getattr(queue, "consumers", ())
    sac = queue.settings.single_active_consumer  # an exclusive consumer is refused there too
    if (existing or sac) and (exclusive or any(c.exclusive for c in existing)):
        return ChannelError(ACCESS_REFUSED, f"queue '{queue.name}' in vhost '{queue.vhost}' in exclusive use")
    return None


# -- method handlers ---------------------------------------------------------------------


def qos(channel: Channel, method: commands.Basic.Qos) -> None:
    if method.prefetch_size:
        raise ConnectionError(NOT_IMPLEMENTED, f"prefetch_size!=0 ({method.prefetch_size})", (60, 10))
    channel.reply(commands.Basic.QosOk())
    if method.global_:
        channel.global_prefetch = method.prefetch_count
        channel.grant_credit()
    else:
        channel.consumer_prefetch = method.prefetch_count  # for consumers made from now on


def consume(channel: Channel, method: commands.Basic.Consume) -> Any:
    # Checks in rabbit_channel's order: tag reuse, queue name, permission, queue exists,
    # exclusive owner, consumer arguments, exclusive consumers.
    connection = channel.connection
    if method.consumer_tag and method.consumer_tag in channel.consumers:
        raise ConnectionError(530, f"attempt to reuse consumer tag '{method.consumer_tag}'", (60, 20))
    if method.queue == direct_reply_to.PSEUDO_QUEUE:
        reply = direct_reply_to.consume(channel, method.consumer_tag or connection.new_consumer_tag(), method.no_ack)
        if not method.nowait:
            channel.reply(build(commands.Basic.ConsumeOk, consumer_tag=reply.tag))
        return
    vhost = channel.vhost
    name = channel.queue_name(method.queue)
    channel.check("read", "queue", name)
    queue = vhost.queue_or_404(name)
    vhost.check_exclusive(queue, connection.id)
    priority = (method.arguments or {}).get("x-priority", 0)
    if not is_integer(priority):
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid arg 'x-priority' for queue '{name}' in vhost '{vhost.name}': "
            f'"expected integer, got {amqp_type_name(priority)}"',
        )
    if not queue.is_remote:  # (the home node checks a remote queue's)
        error = exclusive_use_error(queue, method.exclusive)
        if error is not None:
            raise error
    tag = method.consumer_tag or connection.new_consumer_tag()
    consumer = ChannelConsumer(tag, channel, queue, method.no_ack, method.exclusive, priority, dict(method.arguments or {}))
    channel.consumers[tag] = consumer
    if queue.is_remote:
        return _consume_remote(channel, method, consumer)
    if not method.nowait:
        channel.reply(build(commands.Basic.ConsumeOk, consumer_tag=tag))
    queue.add_consumer(consumer)
    _created(channel, method, consumer)
    return None


async def _consume_remote(channel: Channel, method: commands.Basic.Consume, consumer: ChannelConsumer) -> None:
    """basic.consume of a queue homed on another node: consume-ok once the home node took the
    consumer (deliveries that come before it wait for it)."""
    queue = consumer.queue
    try:
        await queue.add_consumer(consumer)
    except BaseException:
        channel.consumers.pop(consumer.tag, None)
        raise
    if not method.nowait:
        channel.reply(build(commands.Basic.ConsumeOk, consumer_tag=consumer.tag))
    queue.subscribed(consumer)  # type: ignore[attr-defined]
    _created(channel, method, consumer)


def _created(channel: Channel, method: commands.Basic.Consume, consumer: ChannelConsumer) -> None:
    channel.connection.broker.events.emit(
        "consumer.created", consumer, consumer_tag=consumer.tag, exclusive=method.exclusive,
        ack_required=not method.no_ack, prefetch_count=consumer.prefetch, arguments=consumer.arguments,
        channel=channel.name, queue=consumer.queue.name, vhost=channel.vhost.name,
    )  # fmt: skip


def cancel(channel: Channel, method: commands.Basic.Cancel) -> None:
    consumer = channel.consumers.get(method.consumer_tag)
    if consumer is not None:
        consumer.remove()
    elif channel.reply_consumer is not None and channel.reply_consumer.tag == method.consumer_tag:
        direct_reply_to.cancel(channel)
    if not method.nowait:
        channel.reply(build(commands.Basic.CancelOk, consumer_tag=method.consumer_tag))


def get(channel: Channel, method: commands.Basic.Get) -> Any:
    vhost = channel.vhost
    name = channel.queue_name(method.queue)
    channel.check("read", "queue", name)
    queue = vhost.queue_or_404(name)
    vhost.check_exclusive(queue, channel.connection.id)
    if queue.is_remote:
        return _get_remote(channel, method, queue)
    entry = queue.get()
    _answer_get(channel, method, queue, entry, queue.message_count if entry is not None else 0)
    return None


async def _get_remote(channel: Channel, method: commands.Basic.Get, queue: QueueType) -> None:
    entry, count = await queue.fetch(method.no_ack)  # type: ignore[attr-defined]
    _answer_get(channel, method, queue, entry, count)


def _answer_get(
    channel: Channel, method: commands.Basic.Get, queue: QueueType, entry: QueueEntry | None, count: int
) -> None:
    """basic.get-ok with ``entry`` (``count`` ready messages left), or get-empty."""
    if entry is None:
        channel.stat_get_empty += 1
        channel.reply(commands.Basic.GetEmpty())
        return
    channel.next_delivery_tag = tag = channel.next_delivery_tag + 1
    if entry.redelivered:
        channel.stat_redeliver += 1
    if method.no_ack:
        channel.stat_get_no_ack += 1
        queue.settle(entry)
    else:
        channel.stat_get += 1
        channel.unacked[tag] = entry
    message = entry.message
    tracer = channel.vhost.tracer
    if tracer is not None:
        tracer.delivered(channel, queue.name, message, entry.redelivered)
    connection = channel.connection
    connection.write_chunks(
        encode_get_ok(
            channel.number,
            tag,
            entry.redelivered,
            message.exchange_and_key,
            count,
            message.header,
            message.body,
            connection.frame_max,
        )
    )


def recover(channel: Channel, method: commands.Basic.Recover) -> None:
    if not method.requeue:
        raise ConnectionError(NOT_IMPLEMENTED, "requeue=false", (60, 110))
    channel.reply(commands.Basic.RecoverOk())
    _recover(channel)


def recover_async(channel: Channel, method: commands.Basic.RecoverAsync) -> None:
    if not method.requeue:
        raise ConnectionError(NOT_IMPLEMENTED, "requeue=false", (60, 100))
    _recover(channel)


def _recover(channel: Channel) -> None:
    """Every unacked message of the channel goes back to its queue, to be redelivered."""
    entries = list(channel.unacked.values())
    channel.unacked.clear()
    release_counts(channel, entries)
    requeue(entries)


# -- basic.ack, basic.nack, basic.reject -------------------------------------------------


def settle(channel: Channel, ack: Ack) -> None:
    """An ack, nack or reject (other than a single ack, which ``Channel.handle_frame`` settles)."""
    outcome = ACKED if ack.method_id == BASIC_ACK else REQUEUED if ack.requeue else REJECTED
    tx = channel.tx
    if tx:
        # The messages leave ``unacked`` now (a second ack of them is an unknown tag) but
        # are settled at tx.commit; tx.rollback puts them back.
        tx.acks.append((_take_unacked_tagged(channel.unacked, ack), outcome))
        return
    settle_entries(channel, _take_unacked(channel.unacked, ack), outcome)


def _unknown_tag(ack: Ack) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED, f"unknown delivery tag {ack.delivery_tag}", (BASIC_CLASS, ack.method_id & 0xFFFF)
    )


def _take_unacked(unacked: dict[int, QueueEntry], ack: Ack) -> list[QueueEntry]:
    """The entries ``ack`` names (one tag, or every tag up to it for ``multiple``), taken out."""
    tag = ack.delivery_tag
    if not ack.multiple:
        entry = unacked.pop(tag, None)
        if entry is None:
            raise _unknown_tag(ack)
        return [entry]
    if tag == 0:
        entries = list(unacked.values())
        unacked.clear()
        return entries
    if tag not in unacked:
        raise _unknown_tag(ack)
    keys = []
    for key in unacked:
        if key > tag:
            break
        keys.append(key)
    return [unacked.pop(key) for key in keys]


def _take_unacked_tagged(unacked: dict[int, QueueEntry], ack: Ack) -> list[tuple[int, QueueEntry]]:
    """``_take_unacked`` with the tags, which tx.rollback needs to put the entries back."""
    tag = ack.delivery_tag
    if not ack.multiple:
        entry = unacked.pop(tag, None)
        if entry is None:
            raise _unknown_tag(ack)
        return [(tag, entry)]
    if tag and tag not in unacked:
        raise _unknown_tag(ack)
    taken = [(key, entry) for key, entry in unacked.items() if not tag or key <= tag]
    for key, _ in taken:
        del unacked[key]
    return taken


def release_counts(channel: Channel, entries: list[QueueEntry]) -> None:
    """Entries leave their consumers' prefetch windows (acked, rejected or requeued): the
    consumers get the credit back before anything is requeued or dispatched."""
    touched: dict[ChannelConsumer, None] = {}
    for entry in entries:
        consumer = entry.consumer
        if consumer is not None:
            consumer.unacked -= 1  # type: ignore[attr-defined]
            channel.consumer_unacked -= 1
            touched[consumer] = None  # type: ignore[index]
    for consumer in channel.consumers.values() if channel.global_prefetch else touched:
        consumer.refresh_credit()


def settle_entries(channel: Channel, entries: list[QueueEntry], outcome: int) -> None:
    """Entries taken from ``unacked`` are acked, requeued or rejected (ACKED ...)."""
    if len(entries) == 1 and not channel.global_prefetch:  # release_counts, inlined: every ack's path
        consumer = entries[0].consumer
        if consumer is not None:
            consumer.unacked -= 1  # type: ignore[attr-defined]
            channel.consumer_unacked -= 1
            consumer.refresh_credit()  # type: ignore[attr-defined]
    else:
        release_counts(channel, entries)
    if outcome == REQUEUED:
        requeue(entries)
    elif outcome == REJECTED:
        touched: dict[QueueType, None] = {}
        for entry in entries:
            entry.queue.discard(entry, "rejected")
            touched[entry.queue] = None
        for queue in touched:
            queue.dispatch()
    elif len(entries) == 1:
        channel.stat_ack += 1
        entry = entries[0]
        queue = entry.queue
        queue.settle(entry)
        queue.dispatch()
    else:
        channel.stat_ack += len(entries)
        touched: dict[QueueType, None] = {}
        for entry in entries:
            queue = entry.queue
            queue.settle(entry)
            touched[queue] = None
        for queue in touched:
            queue.dispatch()
    if channel.global_prefetch:
        channel.grant_credit()  # the channel's window opened for every consumer


def requeue(entries: list[QueueEntry]) -> None:
    """Entries go back to their queues, in their original places, marked redelivered."""
    by_queue: dict[QueueType, list[QueueEntry]] = {}
    for entry in entries:
        by_queue.setdefault(entry.queue, []).append(entry)
    for queue, queue_entries in by_queue.items():
        queue.requeue(queue_entries)
