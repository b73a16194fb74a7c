"""/api/channels, /api/channels/{name}, /api/connections/{name}/channels and
/api/vhosts/{vhost}/channels (rabbit_mgmt_wm_channel*). A channel is named
``"<connection name> (<number>)"``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from management_ui import auth, paging, rates
from management_ui.api.connections import endpoints, find, visible_connections
from management_ui.errors import not_found
from management_ui.format import json_value, rfc3339
from management_ui.resource import Body, Context, Resource

if TYPE_CHECKING:
    from amqp_server.channel.channel import Channel
    from amqp_server.channel.deliveries import ChannelConsumer


def channel_item(ctx: Context, channel: Channel, ranges: dict[str, rates.Range]) -> dict[str, Any]:
    stats = channel.stats()
    connection = channel.connection
    peer_host, peer_port, _host, _port = endpoints(connection)
    item = {
        "acks_uncommitted": stats["acks_uncommitted"],
        "confirm": stats["confirm"],
        "connection_details": {"name": connection.name, "peer_host": peer_host, "peer_port": peer_port},
        "consumer_count": stats["consumer_count"],
        "global_prefetch_count": stats["global_prefetch_count"],
        "messages_unacknowledged": stats["messages_unacknowledged"],
        "messages_uncommitted": stats["messages_uncommitted"],
        "messages_unconfirmed": stats["messages_unconfirmed"],
        "name": channel.name,
        "node": ctx.broker.node_name,
        "number": channel.number,
        "pending_raft_commands": 0,
        "prefetch_count": stats["prefetch_count"],
        "state": "closing" if channel.closing else "running",
        "transactional": stats["transactional"],
        "user": connection.username,
        "user_who_performed_action": connection.username,
        "vhost": channel.vhost.name if channel.vhost is not None else None,
    }
    history = ctx.sampler.history(channel)
    if history is not None and history.last_change is not None:
        item["idle_since"] = rfc3339(history.last_change)
    item["message_stats"] = ctx.sampler.details(
        channel, rates.CHANNEL_COUNTERS, rates.CHANNEL_LAYOUT["messages"], stats["message_stats"],
        ranges.get("msg_rates"),
    )  # fmt: skip
    return item


def consumer_item(ctx: Context, consumer: ChannelConsumer) -> dict[str, Any]:
    """A consumer as /api/consumers and a queue's or channel's consumer_details show it."""
    channel = consumer.channel
    connection = channel.connection
    peer_host, peer_port, _host, _port = endpoints(connection)
    queue = consumer.queue
    active_consumer = getattr(queue, "active_consumer", None)
    single_active = getattr(queue.settings, "single_active_consumer", False)
    active = not single_active or active_consumer is consumer
    return {
        "arguments": json_value(consumer.arguments),
        "ack_required": not consumer.no_ack,
        "active": active,
        "activity_status": ("single_active" if active else "waiting") if single_active else "up",
        "channel_details": {
            "connection_name": connection.name,
            "name": channel.name,
            "node": ctx.broker.node_name,
            "number": channel.number,
            "peer_host": peer_host,
            "peer_port": peer_port,
            "user": connection.username,
        },
        "consumer_tag": consumer.tag,
        "exclusive": consumer.exclusive,
        "prefetch_count": consumer.prefetch,
        "queue": {"name": queue.name, "vhost": queue.vhost},
    }


def visible_channels(ctx: Context, vhost: str | None = None) -> list[Channel]:
    return [
        channel
        for connection in visible_connections(ctx, vhost)
        for _, channel in sorted(connection.channels.items())
    ]


def find_channel(ctx: Context, name: str) -> Channel | None:
    connection_part, _, number = name.rpartition(" (")
    if not number.endswith(")") or not number[:-1].isdigit():
        return None
    connection = find(ctx, connection_part)
    return connection.channels.get(int(number[:-1])) if connection is not None else None


class Channels(Resource):
    async def to_json(self, ctx: Context) -> Any:
        ranges = rates.ranges(ctx.query)
        items = [channel_item(ctx, channel, ranges) for channel in visible_channels(ctx)]
        return Body(paging.reply_list(ctx.query, items, ("vhost", "name"), paginated=True))


class VhostChannels(Resource):
    rule = auth.VHOST

    def exists(self, ctx: Context) -> bool:
        return ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        ranges = rates.ranges(ctx.query)
        items = [channel_item(ctx, channel, ranges) for channel in visible_channels(ctx, ctx.vhost)]
        return Body(paging.reply_list(ctx.query, items, ("vhost", "name")))


class OneChannel(Resource):
    def authorize(self, ctx: Context) -> None:
        channel = find_channel(ctx, ctx.param("name"))
        auth.enforce_owner(ctx, channel.connection.username if channel is not None else None)

    def exists(self, ctx: Context) -> bool:
        return find_channel(ctx, ctx.param("name")) is not None

    async def to_json(self, ctx: Context) -> Any:
        channel = find_channel(ctx, ctx.param("name"))
        if channel is None:
            raise not_found()
        item = channel_item(ctx, channel, rates.ranges(ctx.query))
        item["consumer_details"] = [consumer_item(ctx, consumer) for consumer in channel.consumers.values()]
        item["deliveries"] = []
        item["publishes"] = []
        return item


class ConnectionChannels(Resource):
    def authorize(self, ctx: Context) -> None:
        connection = find(ctx, ctx.param("name"))
        auth.enforce_owner(ctx, connection.username if connection is not None else None)

    def exists(self, ctx: Context) -> bool:
        return find(ctx, ctx.param("name")) is not None

    async def to_json(self, ctx: Context) -> Any:
        connection = find(ctx, ctx.param("name"))
        if connection is None:
            raise not_found()
        ranges = rates.ranges(ctx.query)
        items = [channel_item(ctx, channel, ranges) for _, channel in sorted(connection.channels.items())]
        return Body(paging.reply_list(ctx.query, items, ("vhost", "name")))


ROUTES = [
    ("/channels", Channels()),
    ("/channels/{name}", OneChannel()),
    ("/connections/{name}/channels", ConnectionChannels()),
    ("/vhosts/{vhost}/channels", VhostChannels()),
]
