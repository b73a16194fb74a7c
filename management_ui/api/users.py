"""/api/users, /api/users/without-permissions, /api/users/bulk-delete (POST),
/api/users/{user} (GET, PUT, DELETE) and /api/whoami (rabbit_mgmt_wm_user*).

PUT takes ``password`` or ``password_hash`` (+ ``hashing_algorithm``) and ``tags`` (a list or a
comma-separated string), as rabbit_auth_backend_internal:put_user; a user given neither has
no password (RabbitMQ stores the hash of an empty one, which cannot log in either).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from amqp_server.core.access import SHA256, User
from management_ui import auth, paging
from management_ui.errors import bad_request, not_found
from management_ui.format import parse_bool
from management_ui.resource import Body, Context, Resource


def user_item(ctx: Context, user: User) -> dict[str, Any]:
    """rabbit_mgmt_format:internal_user."""
    return {
        "name": user.name,
        "password_hash": user.password_hash,
        "hashing_algorithm": user.hashing_algorithm,
        "tags": list(user.tags),
        "limits": dict(ctx.broker.user_limits.get(user.name, {})),
    }


class Users(Resource):
    rule = auth.ADMIN

    def __init__(self, without_permissions: bool = False) -> None:
        self.without_permissions = without_permissions

    async def to_json(self, ctx: Context) -> Any:
        users = ctx.broker.users
        names = ctx.admin.users_without_permissions() if self.without_permissions else sorted(users)
        items = [user_item(ctx, users[name]) for name in names]
        return Body(paging.reply_list(ctx.query, items, ("vhost", "name")))


def tag_list(value: Any) -> list[str]:
    """rabbit_auth_backend_internal:tag_list_from: a list, or a comma-separated string."""
    if isinstance(value, list):
        return [str(tag).strip() for tag in value]
    return [tag.strip() for tag in str(value).split(",") if tag.strip()]


class OneUser(Resource):
    methods = ("HEAD", "GET", "PUT", "DELETE", "OPTIONS")
    rule = auth.ADMIN

    def exists(self, ctx: Context) -> bool:
        return ctx.param("user") in ctx.broker.users

    async def to_json(self, ctx: Context) -> Any:
        user = ctx.broker.users.get(ctx.param("user"))
        if user is None:
            raise not_found()
        return user_item(ctx, user)

    async def accept(self, ctx: Context) -> Any:
        body = await ctx.body()
        name = ctx.param("user")
        if "tags" in body:
            tags = tag_list(body["tags"])
        elif "administrator" in body:
            tags = ["administrator"] if parse_bool(body["administrator"]) else []
        else:
            raise bad_request("tags_not_present")
        password, password_hash = body.get("password"), body.get("password_hash")
        if "password" in body and "password_hash" in body:
            raise bad_request("both_password_and_password_hash_are_provided")
        if password_hash is not None:
            try:
                base64.b64decode(str(password_hash), validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(["not_base64", password_hash]) from None
        limits = body.get("limits")
        await ctx.admin.put_user(
            name,
            tags,
            password=None if password is None else str(password),
            password_hash=None if password_hash is None else str(password_hash),
            hashing_algorithm=str(body.get("hashing_algorithm") or SHA256),
        )
        if isinstance(limits, dict) and limits:
            await ctx.admin.set_user_limits(name, limits)
        return None

    async def delete(self, ctx: Context) -> None:
        await ctx.admin.delete_user(ctx.param("user"))


class BulkDelete(Resource):
    methods = ("POST", "OPTIONS")
    rule = auth.ADMIN

    async def accept(self, ctx: Context) -> Any:
        _body, (names,) = await ctx.fields("users")
        for name in names if isinstance(names, list) else []:
            if name not in ctx.broker.users:
                raise bad_request(["no_such_user", name])
            await ctx.admin.delete_user(name)
        return None


class Whoami(Resource):
    async def to_json(self, ctx: Context) -> Any:
        return {"name": ctx.user.name, "tags": list(ctx.user.tags)}


ROUTES = [
    ("/users/bulk-delete", BulkDelete()),
    ("/users/without-permissions", Users(without_permissions=True)),
    ("/users", Users()),
    ("/users/{user}", OneUser()),
    ("/whoami", Whoami()),
]
