"""Permissions and topic permissions (rabbit_mgmt_wm_permission*, rabbit_mgmt_wm_topic_permission*):

- /api/permissions, /api/permissions/{vhost}/{user} (GET, PUT, DELETE),
  /api/users/{user}/permissions, /api/vhosts/{vhost}/permissions;
- /api/topic-permissions, /api/topic-permissions/{vhost}/{user} (GET, PUT, DELETE),
  /api/topic-permissions/{vhost}/{user}/{exchange} (one exchange's),
  /api/users/{user}/topic-permissions, /api/vhosts/{vhost}/topic-permissions.

All for administrators. A PUT for a user or vhost that does not exist is 400
``vhost_or_user_not_found``.
"""

from __future__ import annotations

from typing import Any

from management_ui import auth, paging
from management_ui.errors import bad_request, not_found
from management_ui.resource import Body, Context, Resource

SORT = ("vhost", "user")


def _permission(ctx: Context) -> dict[str, str] | None:
    user, vhost = ctx.param("user"), ctx.param("vhost")
    found = ctx.admin.list_permissions(vhost)
    return next((p for p in found if p["user"] == user), None)


def _both_exist(ctx: Context) -> bool:
    return ctx.param("user") in ctx.broker.users and ctx.param("vhost") in ctx.broker.vhosts


class AllPermissions(Resource):
    rule = auth.ADMIN

    async def to_json(self, ctx: Context) -> Any:
        return Body(paging.reply_list(ctx.query, ctx.admin.list_permissions(), SORT))


class OnePermission(Resource):
    methods = ("HEAD", "GET", "PUT", "DELETE", "OPTIONS")
    rule = auth.ADMIN

    def exists(self, ctx: Context) -> bool:
        return _both_exist(ctx) and _permission(ctx) is not None

    async def to_json(self, ctx: Context) -> Any:
        permission = _permission(ctx)
        if permission is None:
            raise not_found()
        return permission

    async def accept(self, ctx: Context) -> Any:
        if not _both_exist(ctx):
            raise bad_request("vhost_or_user_not_found")
        _body, (configure, write, read) = await ctx.fields("configure", "write", "read")
        await ctx.admin.set_permissions(ctx.param("user"), ctx.param("vhost"), configure, write, read)
        return None

    async def delete(self, ctx: Context) -> None:
        await ctx.admin.clear_permissions(ctx.param("user"), ctx.param("vhost"))


class UserPermissions(Resource):
    """A user's (``topic``: topic) permissions on every vhost."""

    rule = auth.ADMIN

    def __init__(self, topic: bool) -> None:
        self.topic = topic

    def exists(self, ctx: Context) -> bool:
        return ctx.param("user") in ctx.broker.users

    async def to_json(self, ctx: Context) -> Any:
        user = ctx.param("user")
        if self.topic:
            items = ctx.admin.list_topic_permissions(user=user)
        else:
            items = [p for p in ctx.admin.list_permissions() if p["user"] == user]
        return Body(paging.reply_list(ctx.query, items, SORT))


class VhostPermissions(Resource):
    """A vhost's (``topic``: topic) permissions of every user."""

    rule = auth.ADMIN

    def __init__(self, topic: bool) -> None:
        self.topic = topic

    def exists(self, ctx: Context) -> bool:
        return ctx.param("vhost") in ctx.broker.vhosts

    async def to_json(self, ctx: Context) -> Any:
        vhost = ctx.param("vhost")
        items = ctx.admin.list_topic_permissions(vhost=vhost) if self.topic else ctx.admin.list_permissions(vhost)
        return Body(paging.reply_list(ctx.query, items, SORT))


class AllTopicPermissions(Resource):
    rule = auth.ADMIN

    async def to_json(self, ctx: Context) -> Any:
        return Body(paging.reply_list(ctx.query, ctx.admin.list_topic_permissions(), SORT))


class TopicPermission(Resource):
    methods = ("HEAD", "GET", "PUT", "DELETE", "OPTIONS")
    rule = auth.ADMIN

    def _found(self, ctx: Context) -> list[dict[str, str]]:
        found = ctx.admin.list_topic_permissions(vhost=ctx.param("vhost"), user=ctx.param("user"))
        exchange = ctx.request.match_info.get("exchange")
        return [p for p in found if exchange is None or p["exchange"] == exchange]

    def exists(self, ctx: Context) -> bool:
        return _both_exist(ctx) and bool(self._found(ctx))

    async def to_json(self, ctx: Context) -> Any:
        found = self._found(ctx)
        if not found:
            raise not_found()
        return found

    async def accept(self, ctx: Context) -> Any:
        if not _both_exist(ctx):
            raise bad_request("vhost_or_user_not_found")
        _body, (exchange, write, read) = await ctx.fields("exchange", "write", "read")
        await ctx.admin.set_topic_permissions(ctx.param("user"), ctx.param("vhost"), exchange, write, read)
        return None

    async def delete(self, ctx: Context) -> None:
        await ctx.admin.clear_topic_permissions(
            ctx.param("user"), ctx.param("vhost"), ctx.request.match_info.get("exchange")
        )


ROUTES = [
    ("/permissions", AllPermissions()),
    ("/permissions/{vhost}/{user}", OnePermission()),
    ("/users/{user}/permissions", UserPermissions(topic=False)),
    ("/users/{user}/topic-permissions", UserPermissions(topic=True)),
    ("/vhosts/{vhost}/permissions", VhostPermissions(topic=False)),
    ("/vhosts/{vhost}/topic-permissions", VhostPermissions(topic=True)),
    ("/topic-permissions", AllTopicPermissions()),
    ("/topic-permissions/{vhost}/{user}", TopicPermission()),
    ("/topic-permissions/{vhost}/{user}/{exchange}", TopicPermission()),
]
