"""/api/vhosts, /api/vhosts/{vhost} (GET, PUT, DELETE) (rabbit_mgmt_wm_vhost*); the vhost's
permissions are in ``permissions``. A vhost made through the API gives its maker full
permissions on it, as RabbitMQ's put_vhost does."""

from __future__ import annotations

from typing import Any

from management_ui import auth, paging, rates
from management_ui.errors import not_found
from management_ui.format import parse_bool
from management_ui.resource import Body, Context, Resource


def basic(ctx: Context) -> dict[str, paging.Getter]:
    """The fields of a vhost that cost nothing to read (for sorting and columns)."""
    vhosts = ctx.broker.vhosts
    return {"name": lambda name: name, "tracing": lambda name: vhosts[name].tracer is not None}


def vhost_item(
    ctx: Context, name: str, ranges: dict[str, rates.Range], traffic: dict[str, list[int]]
) -> dict[str, Any]:
    """A vhost with its totals; ``traffic`` is ``Sampler.traffic()`` (computed once a request)."""
    broker = ctx.broker
    vhost = broker.vhosts[name]
    ready = unacked = 0
    for queue in vhost.queues.values():
        ready += queue.message_count
        unacked += queue.unacked_count
    counters = traffic.get(name, rates.ZERO_TRAFFIC)
    octets = dict(zip(rates.OCTETS, counters, strict=False))
    messages = dict(zip(rates.CHANNEL_COUNTERS, counters[len(rates.OCTETS) :], strict=True))
    key = ("vhost", name)
    layout = rates.VHOST_LAYOUT
    item: dict[str, Any] = {
        "cluster_state": {broker.node_name: "running"},
        "default_queue_type": "undefined",
        "description": vhost.description,
        "metadata": {"description": vhost.description, "tags": list(vhost.tags)},
        "name": name,
        "tags": list(vhost.tags),
        "tracing": vhost.tracer is not None,
    }
    current = {"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked}
    sampler = ctx.sampler
    item.update(sampler.details(key, rates.LENGTHS, layout["lengths"], current, ranges.get("lengths"), lengths=True))
    item.update(sampler.details(key, rates.OCTETS, layout["octets"], octets, ranges.get("data_rates")))
    item["message_stats"] = sampler.details(
        key, rates.CHANNEL_COUNTERS, layout["messages"], messages, ranges.get("msg_rates")
    )
    return item


class Vhosts(Resource):
    async def to_json(self, ctx: Context) -> Any:
        ranges = rates.ranges(ctx.query)
        names = auth.visible_vhosts(ctx.broker, ctx.user)
        traffic = ctx.sampler.traffic()
        return Body(
            paging.augmented(ctx.query, names, ("name",), basic(ctx), lambda name: vhost_item(ctx, name, ranges, traffic))
        )


class OneVhost(Resource):
    methods = ("HEAD", "GET", "PUT", "DELETE", "OPTIONS")
    rule = auth.ADMIN

    def exists(self, ctx: Context) -> bool:
        return ctx.param("vhost") in ctx.broker.vhosts

    async def to_json(self, ctx: Context) -> Any:
        name = ctx.param("vhost")
        if name not in ctx.broker.vhosts:
            raise not_found()
        return vhost_item(ctx, name, rates.ranges(ctx.query), ctx.sampler.traffic())

    async def accept(self, ctx: Context) -> Any:
        body = await ctx.body()
        tracing = parse_bool(body.get("tracing"))  # refused when not a boolean
        description = body.get("description") or ""
        name = ctx.param("vhost")
        created = await ctx.admin.put_vhost(
            name, description if isinstance(description, str) else str(description), _tags(body.get("tags"))
        )
        if created:  # rabbit_vhost:maybe_grant_full_permissions
            await ctx.admin.set_permissions(ctx.user.name, name)
        if tracing is not None:  # absent: unchanged, as rabbit_vhost:put_vhost
            ctx.admin.set_tracing(name, tracing)
        return None

    async def delete(self, ctx: Context) -> None:
        if ctx.param("vhost") in ctx.broker.vhosts:
            await ctx.admin.delete_vhost(ctx.param("vhost"))


def _tags(value: Any) -> list[str]:
    """rabbit_vhost:parse_tags: a comma-separated string or a list, each trimmed."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [tag.strip() for tag in value.split(",")]
    if isinstance(value, list):
        return [str(tag).strip() for tag in value]
    return []


ROUTES = [
    ("/vhosts", Vhosts()),
    ("/vhosts/{vhost}", OneVhost()),
]
