"""/api/vhost-limits, /api/vhost-limits/{vhost}, /api/vhost-limits/{vhost}/{name} (PUT,
DELETE), and the same for /api/user-limits (rabbit_mgmt_wm_limit*, rabbit_mgmt_wm_user_limit*).

Setting or clearing one limit keeps the others; as in RabbitMQ a PUT answers 204 whether
the limit was there or not.
"""

from __future__ import annotations

from typing import Any

from amqp_server.admin.errors import AdminError
from management_ui import auth, paging
from management_ui.errors import bad_request, not_found
from management_ui.resource import Body, Context, Resource


class VhostLimits(Resource):
    methods = ("GET", "OPTIONS")
    rule = auth.VHOST_VISIBLE

    def exists(self, ctx: Context) -> bool:
        return "vhost" not in ctx.request.match_info or ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        vhost = ctx.request.match_info.get("vhost")
        visible = set(auth.visible_vhosts(ctx.broker, ctx.user)) if vhost is None else {vhost}
        items = [item for item in ctx.admin.list_vhost_limits(vhost) if item["vhost"] in visible]
        return Body(paging.reply_list(ctx.query, items, ()))


class OneVhostLimit(Resource):
    methods = ("PUT", "DELETE", "OPTIONS")
    rule = auth.ADMIN

    async def accept(self, ctx: Context) -> Any:
        vhost = ctx.vhost
        if vhost is None:
            raise not_found("vhost_not_found", "not_found")
        _body, (value,) = await ctx.fields("value")
        try:
            await ctx.admin.set_vhost_limit(vhost, ctx.param("name"), value)
        except AdminError as error:
            raise bad_request(f"{error}\n") from None
        return None

    async def delete(self, ctx: Context) -> None:
        if ctx.vhost is not None:
            await ctx.admin.clear_vhost_limit(ctx.vhost, ctx.param("name"))


class UserLimits(Resource):
    methods = ("GET", "OPTIONS")
    rule = auth.VHOST_VISIBLE

    def exists(self, ctx: Context) -> bool:
        user = ctx.request.match_info.get("user")
        return user is None or user in ctx.broker.users

    async def to_json(self, ctx: Context) -> Any:
        items = ctx.admin.list_user_limits(ctx.request.match_info.get("user"))
        return Body(paging.reply_list(ctx.query, items, ()))


class OneUserLimit(Resource):
    methods = ("PUT", "DELETE", "OPTIONS")
    rule = auth.ADMIN

    async def accept(self, ctx: Context) -> Any:
        _body, (value,) = await ctx.fields("value")
        await ctx.admin.set_user_limits(ctx.param("user"), {ctx.param("name"): value})
        return None

    async def delete(self, ctx: Context) -> None:
        await ctx.admin.clear_user_limits(ctx.param("user"), ctx.param("name"))


ROUTES = [
    ("/vhost-limits", VhostLimits()),
    ("/vhost-limits/{vhost}", VhostLimits()),
    ("/vhost-limits/{vhost}/{name}", OneVhostLimit()),
    ("/user-limits", UserLimits()),
    ("/user-limits/{user}", UserLimits()),
    ("/user-limits/{user}/{name}", OneUserLimit()),
]
