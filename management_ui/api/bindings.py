"""Bindings (rabbit_mgmt_wm_bindings, rabbit_mgmt_wm_binding):

- /api/bindings, /api/bindings/{vhost}: every binding;
- /api/exchanges/{vhost}/{name}/bindings/source and .../destination;
- /api/queues/{vhost}/{name}/bindings;
- /api/bindings/{vhost}/e/{source}/q|e/{destination}: GET the bindings between the two, POST
  binds (201, ``Location`` relative to the request: ``<destination>/<properties_key>``);
- /api/bindings/{vhost}/e/{source}/q|e/{destination}/{properties_key}: GET, DELETE unbinds.

As in RabbitMQ, the default exchange's bindings (one per queue, keyed by the queue's name) are
listed, though no table holds them. ``properties_key`` is ``format.binding_key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from exchanges.base import EXCHANGE, QUEUE, Binding, Destination
from management_ui import auth, paging
from management_ui.api.exchanges import exchange_name
from management_ui.errors import not_found
from management_ui.format import args_hash, binding_key, quote_plus, table
from management_ui.resource import API_CONNECTION, Body, Context, Created, Resource

if TYPE_CHECKING:
    from amqp_server.core.vhost import VirtualHost

SORT = ("vhost", "source", "type", "destination", "routing_key", "properties_key")
KINDS = {"q": QUEUE, "e": EXCHANGE}


def binding_item(vhost: str, binding: Binding) -> dict[str, Any]:
    return {
        "source": binding.source,
        "vhost": vhost,
        "destination": binding.destination.name,
        "destination_type": binding.destination.kind,
        "routing_key": binding.routing_key,
        "arguments": table(binding.arguments),
        "properties_key": binding_key(binding.routing_key, binding.arguments),
    }


def default_binding(queue: str) -> Binding:
    """The default exchange's binding to a queue (implicit: routing by the queue's name)."""
    return Binding("", Destination(QUEUE, queue), queue, {})


def all_bindings(vhost: VirtualHost) -> list[Binding]:
    return [default_binding(name) for name in vhost.queues] + list(vhost.bindings.values())


def _reply(ctx: Context, vhost: str, bindings: list[Binding]) -> Body:
    items = [binding_item(vhost, binding) for binding in bindings]
    return Body(paging.reply_list(ctx.query, items, SORT))


def _visible(ctx: Context, vhost: str) -> bool:
    """rabbit_mgmt_util:filter_vhost on a list of one vhost's bindings."""
    return vhost in auth.listed_vhosts(ctx.broker, ctx.user)


class AllBindings(Resource):
    rule = auth.VHOST

    def exists(self, ctx: Context) -> bool:
        return "vhost" not in ctx.request.match_info or ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        broker = ctx.broker
        items = [
            binding_item(name, binding) for name in ctx.listed_vhosts() for binding in all_bindings(broker.vhosts[name])
        ]
        return Body(paging.reply_list(ctx.query, items, SORT))


class ExchangeBindings(Resource):
    """An exchange's bindings as source (``source=True``) or as destination."""

    rule = auth.VHOST

    def __init__(self, source: bool) -> None:
        self.source = source

    async def to_json(self, ctx: Context) -> Any:
        vhost = ctx.vhost_named()
        if vhost is None or not _visible(ctx, vhost.name):
            return Body([])
        name = exchange_name(ctx.param("name"))
        if self.source:
            found = [default_binding(q) for q in vhost.queues] if name == "" else []
            found += [b for b in vhost.bindings.values() if b.source == name]
        else:
            found = [b for b in vhost.bindings.values() if b.destination == Destination(EXCHANGE, name)]
        return _reply(ctx, vhost.name, found)


class QueueBindings(Resource):
    rule = auth.VHOST

    async def to_json(self, ctx: Context) -> Any:
        vhost = ctx.vhost_named()
        if vhost is None or not _visible(ctx, vhost.name):
            return Body([])
        name = ctx.param("name")
        found = [default_binding(name)] if name in vhost.queues else []
        return _reply(ctx, vhost.name, found + vhost.bindings_of_queue(name))


def _between(vhost: VirtualHost, source: str, destination: Destination) -> list[Binding]:
    if source == "":
        return [default_binding(destination.name)] if destination.kind == QUEUE and destination.name in vhost.queues else []
    return [b for b in vhost.bindings.values() if b.source == source and b.destination == destination]


def _ends(ctx: Context) -> tuple[str, Destination]:
    return exchange_name(ctx.param("source")), Destination(KINDS[ctx.param("dtype")], ctx.param("destination"))


class SourceDestination(Resource):
    methods = ("HEAD", "GET", "POST", "OPTIONS")
    rule = auth.VHOST

    async def to_json(self, ctx: Context) -> Any:
        vhost = ctx.vhost_named()
        if vhost is None or not _visible(ctx, vhost.name):
            return Body([])
        source, destination = _ends(ctx)
        return _reply(ctx, vhost.name, _between(vhost, source, destination))

    async def accept(self, ctx: Context) -> Any:
        vhost = ctx.vhost_named()
        if vhost is None:
            raise not_found("vhost_not_found", "not_found")
        body = await ctx.body()
        source, destination = _ends(ctx)
        routing_key = body.get("routing_key") or ""
        arguments = body.get("arguments") or {}
        if not isinstance(arguments, dict):
            arguments = {}
        await vhost.bind(
            source, destination, str(routing_key), arguments, check=ctx.check(vhost.name), connection_id=API_CONNECTION
        )
        return Created(f"{quote_plus(destination.name)}/{quote_plus(binding_key(str(routing_key), arguments))}")


def find_binding(ctx: Context) -> Binding | None:
    """The binding the path's ``props`` names (rabbit_mgmt_wm_binding:unpack): the routing key,
    then ``~`` and the arguments' hash when there are arguments."""
    vhost = ctx.vhost_named()
    if vhost is None:
        return None
    source, destination = _ends(ctx)
    parts = ctx.param("props").split("~")
    if len(parts) > 1 and parts[-1] == "":  # rabbit_mgmt_format:tokenise drops a last empty token
        parts.pop()
    if len(parts) not in (1, 2):
        return None
    key = unquote_plus(parts[0])
    hashed = unquote_plus(parts[1]) if len(parts) == 2 else None
    for binding in _between(vhost, source, destination):
        if binding.routing_key != key:
            continue
        if (hashed is None and not binding.arguments) or (hashed is not None and args_hash(binding.arguments) == hashed):
            return binding
    return None


class OneBinding(Resource):
    methods = ("HEAD", "GET", "DELETE", "OPTIONS")
    rule = auth.VHOST

    def exists(self, ctx: Context) -> bool:
        return find_binding(ctx) is not None

    async def to_json(self, ctx: Context) -> Any:
        binding = find_binding(ctx)
        if binding is None:
            raise not_found()
        return binding_item(ctx.param("vhost"), binding)

    async def delete(self, ctx: Context) -> None:
        binding = find_binding(ctx)
        vhost = ctx.vhost_named()
        if binding is None or vhost is None:
            raise not_found()
        await vhost.unbind(
            binding.source, binding.destination, binding.routing_key, binding.arguments,
            check=ctx.check(vhost.name), connection_id=API_CONNECTION,
        )  # fmt: skip


ROUTES = [
    ("/bindings", AllBindings()),
    ("/bindings/{vhost}", AllBindings()),
    ("/bindings/{vhost}/e/{source}/{dtype:[eq]}/{destination}", SourceDestination()),
    ("/bindings/{vhost}/e/{source}/{dtype:[eq]}/{destination}/{props}", OneBinding()),
    ("/exchanges/{vhost}/{name}/bindings/source", ExchangeBindings(source=True)),
    ("/exchanges/{vhost}/{name}/bindings/destination", ExchangeBindings(source=False)),
    ("/queues/{vhost}/{name}/bindings", QueueBindings()),
]
