"""One HTTP resource of the API and the order in which a request meets it, as cowboy_rest
runs RabbitMQ's handlers (rabbit_mgmt_wm_*):

1. a method the resource does not take: 405, an ``Allow`` header and no body;
2. OPTIONS: 200 with ``Allow``, no login needed;
3. login (``auth.authenticate``) and the resource's rule (``Resource.authorize``): 401;
4. GET/HEAD/DELETE of something that does not exist (``exists``): 404 "Object Not Found";
5. GET: ``to_json``; PUT: ``accept``, answered 201 when the thing did not exist before and
   204 when it did; POST: ``accept``; DELETE: ``delete``, answered 204.

A resource is a class; one instance serves every request (state lives in the ``Context``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

from amqp_server.admin.errors import AdminError
from amqp_server.core import access
from amqp_server.core.access import User
from amqp_server.core.topology import Check
from amqp_server.protocol.errors import AMQPError
from management_ui import auth, paging
from management_ui.errors import HttpError, bad_request, from_direct_request, missing_keys, not_found
from management_ui.format import json_value

if TYPE_CHECKING:
    from amqp_server.admin.operations import Admin
    from amqp_server.core.broker import Broker
    from amqp_server.core.vhost import VirtualHost
    from management_ui.rates import Sampler


# The API's own "connection" in the exclusivity checks: an exclusive queue belongs to an AMQP
# connection, so the API may not use it (RabbitMQ's direct connection for a request may not).
API_CONNECTION = "management-api"


@dataclass(frozen=True)
class Created:
    """A POST that made something: 201 with ``Location``."""

    location: str


@dataclass(frozen=True)
class Body:
    """A finished answer body: lists already cut to their columns (``paging``)."""

    data: Any
    headers: dict[str, str] | None = None


@dataclass
class Listeners:
    """Where this node listens and since when (for the overview, nodes and health checks)."""

    amqp: tuple[str, int]
    http: tuple[str, int]
    started_ms: int


@dataclass(frozen=True)
class State:
    """What the API's requests share: the broker, its administration, the statistics, the
    listeners, and the cached sort orders of the queues."""

    broker: Broker
    admin: Admin
    sampler: Sampler
    listeners: Listeners
    queue_orders: paging.OrderCache


class Context:
    """One request: who asks, the broker it asks about, and the request's parameters."""

    __slots__ = ("request", "broker", "admin", "sampler", "listeners", "queue_orders", "user", "_body")

    def __init__(self, request: web.Request, state: State) -> None:
        self.request = request
        self.broker = state.broker
        self.admin = state.admin
        self.sampler = state.sampler
        self.listeners = state.listeners
        self.queue_orders = state.queue_orders
        self.user: User = None  # type: ignore[assignment]  # set by the login, before any rule
        self._body: Any = None

    @property
    def query(self) -> Any:
        return self.request.query

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def vhost(self) -> str | None:
        """rabbit_mgmt_util:vhost: the vhost named in the path (else in an ``X-Vhost`` header),
        None when none is named or it does not exist."""
        name = self.request.match_info.get("vhost")
        if name is None:
            name = self.request.headers.get("X-Vhost") or None
        return name if name in self.broker.vhosts else None

    def vhost_named(self) -> VirtualHost | None:
        """The vhost of the path, None if it does not exist."""
        return self.broker.vhosts.get(self.request.match_info["vhost"])

    def listed_vhosts(self) -> list[str]:
        """The vhosts a list shows this user: the path's one (if visible) or all visible."""
        names = auth.listed_vhosts(self.broker, self.user)
        if "vhost" in self.request.match_info:
            name = self.request.match_info["vhost"]
            return [name] if name in names else []
        return names

    def check(self, vhost: str) -> Check:
        """The permission check of AMQP methods, for this user in ``vhost`` (RabbitMQ runs an
        API write as the channel method it stands for, with the user's permissions)."""
        permission = self.broker.permissions.get((self.user.name, vhost))
        username = self.user.name

        def check(kind: str, resource: str, name: str) -> None:
            access.check(permission, kind, resource, name, vhost, username)

        return check

    async def body(self) -> dict[str, Any]:
        """rabbit_mgmt_util:decode: an empty body, ``null`` or a JSON atom is ``{}``; a JSON
        string, a list or a number is refused."""
        if self._body is None:
            raw = await self.request.read()
            if raw in (b"", b"null", b"undefined"):
                self._body = {}
            else:
                try:
                    value = json.loads(raw.decode())
                except ValueError:  # (UnicodeDecodeError is one)
                    raise bad_request("not_json") from None
                if isinstance(value, str):
                    raise bad_request(
                        "invalid payload: the request body JSON-decoded to a string. "
                        "Is the input doubly-JSON-encoded?"
                    )
                if value is None or isinstance(value, bool):
                    value = {}
                if not isinstance(value, dict):
                    raise bad_request("not_json")
                self._body = value
        return self._body

    async def fields(self, *keys: str) -> tuple[dict[str, Any], list[Any]]:
        """rabbit_mgmt_util:with_decode: the body and the values of ``keys``, all required."""
        body = await self.body()
        missing = [key for key in keys if key not in body]
        if missing:
            raise missing_keys(missing)
        return body, [body[key] for key in keys]


class Resource:
    """Override what the resource does; the defaults are cowboy_rest's."""

    #: In RabbitMQ's order (the ``Allow`` header lists them so).
    methods: ClassVar[tuple[str, ...]] = ("HEAD", "GET", "OPTIONS")
    rule: ClassVar[auth.Rule] = auth.ANY
    #: False for the one resource anyone may read (/api/auth: how to log in).
    login: ClassVar[bool] = True

    def authorize(self, ctx: Context) -> None:
        self.rule.enforce(ctx)

    def exists(self, ctx: Context) -> bool:
        return True

    async def to_json(self, ctx: Context) -> Any:
        raise NotImplementedError

    async def accept(self, ctx: Context) -> Any:
        """PUT or POST; None: no body (201/204), ``Created``, or data (200)."""
        raise NotImplementedError

    async def delete(self, ctx: Context) -> None:
        raise NotImplementedError


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def handler(resource: Resource, state: Callable[[web.Request], Context]) -> Handler:
    """The aiohttp handler running ``resource`` for every method."""
    allow = ", ".join(resource.methods)

    async def handle(request: web.Request) -> web.StreamResponse:
        method = request.method
        if method not in resource.methods:
            return web.Response(status=405, headers={"Allow": allow})
        if method == "OPTIONS":
            return web.Response(status=200, headers={"Allow": allow})
        ctx = state(request)
        try:
            if resource.login:
                ctx.user = await auth.authenticate(request, ctx.broker)
                resource.authorize(ctx)
            return await _run(resource, ctx, method)
        except HttpError as error:
            return error.response()
        except AMQPError as error:
            return from_direct_request(error).response()
        except AdminError as error:
            return bad_request(str(error)).response()

    return handle


async def _run(resource: Resource, ctx: Context, method: str) -> web.StreamResponse:
    if method in ("GET", "HEAD"):
        if not resource.exists(ctx):
            raise not_found()
        data = await resource.to_json(ctx)
        if isinstance(data, Body):
            return reply(data.data, data.headers)
        return reply(paging.extract(data, paging.columns(ctx.query)))
    if method == "DELETE":
        if not resource.exists(ctx):
            raise not_found()
        await resource.delete(ctx)
        return web.Response(status=204)
    existed = resource.exists(ctx) if method == "PUT" else True
    result = await resource.accept(ctx)
    if isinstance(result, Created):
        return web.Response(status=201, headers={"Location": result.location})
    if result is not None:
        return reply(result.data if isinstance(result, Body) else result)
    return web.Response(status=204 if existed else 201)


def reply(data: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":"), default=_json_default, allow_nan=False),
        content_type="application/json",
        headers={"Cache-Control": "no-cache", "Vary": "accept, accept-encoding, origin", **(headers or {})},
    )


def _json_default(value: Any) -> Any:
    """A field value an item kept as the broker decoded it (bytes, a decimal, a timestamp)."""
    converted = json_value(value)
    if converted is value:
        raise TypeError(f"{type(value).__name__} is not JSON")
    return converted
