"""The exchange.* and queue.* methods: declare, bind, unbind, purge, delete. Each runs RabbitMQ's
checks through the vhost (``core.vhost``); the ones that change metadata are coroutines, run as
one task each while later commands of the channel wait (``Channel._backlog``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pamqp import commands

from amqp_server.channel import direct_reply_to
from amqp_server.protocol.errors import NOT_FOUND, ChannelError
from amqp_server.protocol.frame_codec import build
from exchanges.base import EXCHANGE, QUEUE, Destination

if TYPE_CHECKING:
    from amqp_server.channel.channel import Channel
    from amqp_server.core.topology import Check


async def exchange_declare(channel: Channel, method: commands.Exchange.Declare) -> None:
    await channel.vhost.declare_exchange(
        method.exchange,
        method.exchange_type,
        passive=method.passive,
        durable=method.durable,
        auto_delete=method.auto_delete,
        internal=method.internal,
        arguments=method.arguments,
        check=channel.check,
    )
    if not method.nowait:
        channel.reply(commands.Exchange.DeclareOk())


async def exchange_delete(channel: Channel, method: commands.Exchange.Delete) -> None:
    await channel.vhost.delete_exchange(method.exchange, method.if_unused, check=channel.check)
    if not method.nowait:
        channel.reply(commands.Exchange.DeleteOk())


async def exchange_bind(channel: Channel, method: commands.Exchange.Bind) -> None:
    await channel.vhost.bind(
        method.source,
        Destination(EXCHANGE, method.destination),
        method.routing_key,
        method.arguments,
        check=_binding_check(channel, method.source, method.routing_key),
    )
    if not method.nowait:
        channel.reply(commands.Exchange.BindOk())


async def exchange_unbind(channel: Channel, method: commands.Exchange.Unbind) -> None:
    await channel.vhost.unbind(
        method.source,
        Destination(EXCHANGE, method.destination),
        method.routing_key,
        method.arguments,
        check=_binding_check(channel, method.source, method.routing_key),
    )
    if not method.nowait:
        channel.reply(commands.Exchange.UnbindOk())


def queue_declare(channel: Channel, method: commands.Queue.Declare) -> Any:
    if method.queue.startswith(direct_reply_to.PSEUDO_QUEUE):
        # rabbit_channel's declare_fast_reply_to, passive or not: 0 messages, 1 consumer.
        name = method.queue
        if not direct_reply_to.exists(channel.connection.broker, name):
            raise ChannelError(NOT_FOUND, f"no queue '{name}' in vhost '{channel.vhost.name}'")
        channel.connection.last_queue[channel.number] = name
        if not method.nowait:
            channel.reply(build(commands.Queue.DeclareOk, queue=name, message_count=0, consumer_count=1))
        return None
    return _declare_queue(channel, method)


async def _declare_queue(channel: Channel, method: commands.Queue.Declare) -> None:
    connection = channel.connection
    name = method.queue or channel.server_queue_name(method)
    queue = await channel.vhost.declare_queue(
        name,
        passive=method.passive,
        durable=method.durable,
        exclusive_owner=connection.id if method.exclusive else None,
        auto_delete=method.auto_delete,
        arguments=method.arguments,
        server_named=not method.queue,
        check=channel.check,
        connection_id=connection.id,
    )
    replicas = connection.broker.replicas
    if replicas is not None and getattr(queue, "replica_info", None) is not None:
        queue = await replicas.ready(channel.vhost.name, name)  # its group has a leader
    queue.touch()  # a (passive) redeclare restarts the x-expires countdown
    connection.last_queue[channel.number] = name
    # A queue homed elsewhere answers from its home node, which then has it (a publish that
    # follows finds it there), nowait or not.
    ready, consumers = (
        await queue.counts() if queue.is_remote else (queue.message_count, queue.consumer_count)  # type: ignore[attr-defined]
    )
    if not method.nowait:
        channel.reply(build(commands.Queue.DeclareOk, queue=name, message_count=ready, consumer_count=consumers))


async def queue_bind(channel: Channel, method: commands.Queue.Bind) -> None:
    name = channel.queue_name(method.queue)
    await channel.vhost.bind(
        method.exchange,
        Destination(QUEUE, name),
        method.routing_key,
        method.arguments,
        check=_binding_check(channel, method.exchange, method.routing_key),
        connection_id=channel.connection.id,
    )
    if not method.nowait:
        channel.reply(commands.Queue.BindOk())


async def queue_unbind(channel: Channel, method: commands.Queue.Unbind) -> None:
    name = channel.queue_name(method.queue)
    await channel.vhost.unbind(
        method.exchange,
        Destination(QUEUE, name),
        method.routing_key,
        method.arguments,
        check=_binding_check(channel, method.exchange, method.routing_key),
        connection_id=channel.connection.id,
    )
    channel.reply(commands.Queue.UnbindOk())


def queue_purge(channel: Channel, method: commands.Queue.Purge) -> Any:
    name = channel.queue_name(method.queue)
    channel.check("read", "queue", name)
    queue = channel.vhost.queue_or_404(name)
    channel.vhost.check_exclusive(queue, channel.connection.id)
    if queue.is_remote:
        return _purge_remote(channel, method, queue)
    count = queue.purge()
    if not method.nowait:
        channel.reply(build(commands.Queue.PurgeOk, message_count=count))
    return None


async def _purge_remote(channel: Channel, method: commands.Queue.Purge, queue: Any) -> None:
    count = await queue.purge_home()
    if not method.nowait:
        channel.reply(build(commands.Queue.PurgeOk, message_count=count))


async def queue_delete(channel: Channel, method: commands.Queue.Delete) -> None:
    name = channel.queue_name(method.queue)
    count = await channel.vhost.delete_queue(
        name, method.if_unused, method.if_empty, check=channel.check, connection_id=channel.connection.id
    )
    if not method.nowait:
        channel.reply(build(commands.Queue.DeleteOk, message_count=count))


def _binding_check(channel: Channel, source: str, routing_key: str) -> Check:
    """The permission checks of a (un)bind, as rabbit_channel:binding_action makes them:
    right after read on the source, read on the routing key's topic when the source is an
    existing topic exchange."""

    def check(kind: str, resource: str, name: str) -> None:
        channel.check(kind, resource, name)
        if kind == "read" and resource == "exchange" and channel.topic_permissions:
            exchange = channel.vhost.exchanges.get(source)
            if exchange is not None and exchange.type_name == "topic":
                channel.check_topic("read", source, routing_key)

    return check
