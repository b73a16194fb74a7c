"""/api/consumers and /api/consumers/{vhost} (rabbit_mgmt_wm_consumers): every consumer of
every channel; a user who is not monitoring sees the consumers of their own connections."""

from __future__ import annotations

from typing import Any

from management_ui import auth, paging
from management_ui.api.channels import consumer_item
from management_ui.resource import Body, Context, Resource


class Consumers(Resource):
    def exists(self, ctx: Context) -> bool:
        return "vhost" not in ctx.request.match_info or ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        vhost = ctx.request.match_info.get("vhost")
        monitor = auth.is_monitor(ctx.user)
        items = [
            consumer_item(ctx, consumer)
            for connection in ctx.broker.connections
            if connection.vhost is not None
            and (vhost is None or connection.vhost.name == vhost)
            and (monitor or connection.username == ctx.user.name)
            for _, channel in sorted(connection.channels.items())
            for consumer in channel.consumers.values()
        ]
        return Body(paging.reply_list(ctx.query, items, ("vhost", "name")))


ROUTES = [
    ("/consumers", Consumers()),
    ("/consumers/{vhost}", Consumers()),
]
