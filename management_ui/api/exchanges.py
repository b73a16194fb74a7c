"""/api/exchanges, /api/exchanges/{vhost}, /api/exchanges/{vhost}/{name} (GET, PUT, DELETE)
and /api/exchanges/{vhost}/{name}/publish (rabbit_mgmt_wm_exchange*).

The default exchange is ``amq.default`` in paths. Declaring and deleting run the vhost's
exchange.declare/delete rules with the user's permissions. A publish runs basic.publish's
checks (write permission, internal exchanges, topic permissions, the message's properties),
routes the message and waits until the queues took it (persistent messages: on disk), as
RabbitMQ's publish in confirm mode: ``{"routed": true|false}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from amqp_server.channel import direct_reply_to
from amqp_server.core import access
from amqp_server.plugin_api import new_message
from amqp_server.protocol.errors import (
    ACCESS_REFUSED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    AMQPError,
    ChannelError,
)
from management_ui import auth, paging, rates
from management_ui.errors import bad_request, from_channel, not_authorised, not_found
from management_ui.format import parse_bool, properties_from_json, table
from management_ui.resource import Body, Context, Resource
from queues.base import Settlement, all_settled

if TYPE_CHECKING:
    from amqp_server.core.changes import Exchange
    from amqp_server.core.vhost import VirtualHost

DEFAULT = "amq.default"

BASIC: dict[str, paging.Getter] = {
    "vhost": lambda pair: pair[0],
    "name": lambda pair: pair[1].name,
    "type": lambda pair: pair[1].type_name,
    "durable": lambda pair: pair[1].durable,
    "auto_delete": lambda pair: pair[1].auto_delete,
    "internal": lambda pair: pair[1].internal,
    "arguments": lambda pair: table(pair[1].arguments),
}


def exchange_name(path_name: str) -> str:
    """rabbit_mgmt_util:id: ``amq.default`` in a path is the default exchange."""
    return "" if path_name == DEFAULT else path_name


def exchange_item(vhost: str, exchange: Exchange, full: bool = False) -> dict[str, Any]:
    item = {
        "arguments": table(exchange.arguments),
        "auto_delete": exchange.auto_delete,
        "durable": exchange.durable,
        "internal": exchange.internal,
        "name": exchange.name,
        "type": exchange.type_name,
        "vhost": vhost,
    }
    if exchange.policy is not None:
        item["policy"] = exchange.policy
    if exchange.router is not None:
        item.update(exchange.router.info())  # the type's own fields (rabbit_exchange:info/1)
    if full:
        item["incoming"] = []
        item["outgoing"] = []
    return item


class Exchanges(Resource):
    rule = auth.VHOST

    def exists(self, ctx: Context) -> bool:
        return "vhost" not in ctx.request.match_info or ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        rates.ranges(ctx.query)  # refused as RabbitMQ refuses them, though exchanges have no rates
        broker = ctx.broker
        pairs = [(name, x) for name in ctx.listed_vhosts() for x in broker.vhosts[name].exchanges.values()]
        return Body(
            paging.augmented(ctx.query, pairs, ("vhost", "name"), BASIC, lambda pair: exchange_item(*pair))
        )


def _exchange(ctx: Context) -> Exchange | None:
    vhost = ctx.vhost_named()
    return vhost.exchanges.get(exchange_name(ctx.param("name"))) if vhost is not None else None


def _vhost_or_404(ctx: Context) -> VirtualHost:
    vhost = ctx.vhost_named()
    if vhost is None:
        raise not_found("vhost_not_found", "not_found")
    return vhost


def _bool(body: dict[str, Any], key: str) -> bool:
    return parse_bool(body.get(key)) or False


class OneExchange(Resource):
    methods = ("HEAD", "GET", "PUT", "DELETE", "OPTIONS")
    rule = auth.VHOST

    def exists(self, ctx: Context) -> bool:
        return _exchange(ctx) is not None

    async def to_json(self, ctx: Context) -> Any:
        exchange = _exchange(ctx)
        if exchange is None:
            raise not_found()
        rates.ranges(ctx.query)
        return exchange_item(ctx.param("vhost"), exchange, full=True)

    async def accept(self, ctx: Context) -> Any:
        vhost = _vhost_or_404(ctx)
        body = await ctx.body()
        arguments = body.get("arguments") or {}
        type_name = body.get("type", "direct")
        await vhost.declare_exchange(
            exchange_name(ctx.param("name")),
            type_name if isinstance(type_name, str) else str(type_name),
            passive=_bool(body, "passive"),
            durable=_bool(body, "durable"),
            auto_delete=_bool(body, "auto_delete"),
            internal=_bool(body, "internal"),
            arguments=arguments if isinstance(arguments, dict) else {},
            check=ctx.check(vhost.name),
        )
        return None

    async def delete(self, ctx: Context) -> None:
        vhost = _vhost_or_404(ctx)
        await vhost.delete_exchange(
            exchange_name(ctx.param("name")),
            if_unused=ctx.query.get("if-unused") == "true",
            check=ctx.check(vhost.name),
        )


def _payload(payload: str, encoding: Any) -> bytes:
    if encoding == "string":
        return payload.encode()
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(["not_base64", payload]) from None
    raise bad_request(["unsupported_encoding", encoding])


class Publish(Resource):
    """POST; a missing exchange is the publish's 404 (RabbitMQ answers it as a 400)."""

    methods = ("POST", "OPTIONS")
    rule = auth.VHOST

    async def accept(self, ctx: Context) -> Any:
        _body, (routing_key, properties, payload, encoding) = await ctx.fields(
            "routing_key", "properties", "payload", "payload_encoding"
        )
        if not isinstance(payload, str):
            raise bad_request("payload_not_string")
        vhost = ctx.vhost_named()
        if vhost is None or (ctx.user.name, vhost.name) not in ctx.broker.permissions:
            raise not_authorised("Access refused.")  # RabbitMQ's channel for the request cannot open
        props = properties_from_json(properties)
        data = _payload(payload, encoding)
        name = exchange_name(ctx.param("name"))
        message = new_message(name, str(routing_key), data, props)
        try:
            routed = await publish(ctx, vhost, name, message)
        except AMQPError as error:
            raise from_channel(error, call=False) from None
        except Rejected:
            raise bad_request("rejected Unable to publish message. Check queue limits.") from None
        return {"routed": routed}


class Rejected(Exception):
    """A queue refused the message (overflow reject-publish): in confirm mode, a nack."""


async def publish(ctx: Context, vhost: VirtualHost, name: str, message: Any) -> bool:
    """basic.publish through ``name`` in confirm mode: whether any queue took it."""
    username = ctx.user.name
    ctx.check(vhost.name)("write", "exchange", name)
    exchange = vhost.exchanges.get(name)
    if exchange is None:
        raise ChannelError(NOT_FOUND, f"no exchange '{name}' in vhost '{vhost.name}'")
    if exchange.internal:
        raise ChannelError(ACCESS_REFUSED, f"cannot publish to internal exchange '{name}' in vhost '{vhost.name}'")
    if exchange.type_name == "topic":
        access.check_topic(
            ctx.broker.topic_permissions.get((username, vhost.name, name)),
            "write", name, message.routing_key, vhost.name, username,
        )  # fmt: skip
    user_id = message.user_id
    if user_id is not None and user_id != username:
        raise ChannelError(
            PRECONDITION_FAILED, f"user_id property set to '{user_id}' but authenticated user was '{username}'"
        )
    message.check()
    queues = vhost.route(exchange, message)
    if exchange.router is None and not queues:
        direct_reply_to.deliver_replies(ctx.broker, message, message.routing_keys)
    settlements = []
    for queue in queues:
        result = queue.publish(message)
        if result is False:
            raise Rejected
        if isinstance(result, Settlement):
            settlements.append(result)
    if settlements and not await all_settled(settlements):
        raise Rejected
    return bool(queues)


ROUTES = [
    ("/exchanges", Exchanges()),
    ("/exchanges/{vhost}", Exchanges()),
    ("/exchanges/{vhost}/{name}", OneExchange()),
    ("/exchanges/{vhost}/{name}/publish", Publish()),
]
