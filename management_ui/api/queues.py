"""/api/queues, /api/queues/{vhost}, /api/queues/{vhost}/{name} (GET, PUT, DELETE),
/api/queues/{vhost}/{name}/contents (DELETE: purge) and /api/queues/{vhost}/{name}/get
(rabbit_mgmt_wm_queue*).

Declaring, deleting and purging run the vhost's queue.declare/delete rules with the user's
permissions, as RabbitMQ runs them as channel methods. ``get`` takes messages from the queue as
basic.get does; they are settled by the ack mode once all are taken (requeued ones come back
marked redelivered, rejected ones are dead-lettered).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from amqp_server.protocol.errors import AMQPError
from management_ui import auth, paging, rates
from management_ui.api.channels import consumer_item
from management_ui.api.connections import endpoints
from management_ui.errors import bad_request, from_channel, not_authorised, not_found
from management_ui.format import parse_bool, properties_json, rfc3339, table
from management_ui.resource import API_CONNECTION, Body, Context, Resource

if TYPE_CHECKING:
    from queues.base import QueueEntry, QueueType

ACK_MODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false")

#: The fields a queue has without its statistics (sorting and filtering on them is cheap).
BASIC: dict[str, paging.Getter] = {
    "vhost": lambda q: q.vhost,
    "name": lambda q: q.name,
    "durable": lambda q: q.durable,
    "auto_delete": lambda q: q.auto_delete,
    "exclusive": lambda q: q.exclusive_owner is not None,
    "arguments": lambda q: table(q.arguments),
    "state": lambda q: "running",
    "type": lambda q: q.type_name,
    "node": lambda q: q.home_node,
    "policy": lambda q: getattr(q, "policy", None),
    "consumers": lambda q: q.consumer_count,
    "messages": lambda q: q.message_count + q.unacked_count,
    "messages_ready": lambda q: q.message_count,
    "messages_unacknowledged": lambda q: q.unacked_count,
}


#: The fields of BASIC a queue keeps for life: sorting on them is cached (``paging.OrderCache``).
LIFELONG = frozenset(("vhost", "name", "durable", "auto_delete", "exclusive", "arguments", "type", "node"))


def queue_item(ctx: Context, queue: QueueType, ranges: dict[str, rates.Range], full: bool = False) -> dict[str, Any]:
    """A queue as /api/queues lists it (``full``: as /api/queues/{vhost}/{name} shows it)."""
    stats = queue.stats()
    ready, unacked = queue.message_count, queue.unacked_count
    current = {"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked}
    consumers = tuple(getattr(queue, "consumers", ()))
    exclusive_tag = next((c.tag for c in consumers if c.exclusive), None)
    item: dict[str, Any] = {
        "arguments": table(queue.arguments),
        "auto_delete": queue.auto_delete,
        "consumers": queue.consumer_count,
        "durable": queue.durable,
        "effective_policy_definition": dict(getattr(queue, "effective_policy", {}) or {}),
        "exclusive": queue.exclusive_owner is not None,
        "exclusive_consumer_tag": exclusive_tag,
        "head_message_timestamp": None,
        "message_bytes": stats.get("message_bytes", 0),
        "message_bytes_ready": stats.get("message_bytes_ready", 0),
        "message_bytes_unacknowledged": stats.get("message_bytes_unacknowledged", 0),
        "messages_paged_out": stats.get("messages_paged_out", 0),
        "messages_ram": stats.get("messages_ready_ram", ready) + unacked,
        "messages_ready_ram": stats.get("messages_ready_ram", ready),
        "messages_unacknowledged_ram": unacked,
        "name": queue.name,
        "node": queue.home_node,
        "operator_policy": getattr(queue, "operator_policy", None),
        "policy": getattr(queue, "policy", None),
        "recoverable_slaves": None,
        "single_active_consumer_tag": stats.get("single_active_consumer_tag"),
        "state": stats.get("state", "running"),
        "type": queue.type_name,
        "vhost": queue.vhost,
    }
    item.update(_replicas(queue))
    owner = queue.exclusive_owner
    if owner is not None:
        connection = next((c for c in ctx.broker.connections if c.id == owner), None)
        if connection is not None:
            peer_host, peer_port, _host, _port = endpoints(connection)
            item["owner_pid_details"] = {"name": connection.name, "peer_host": peer_host, "peer_port": peer_port}
    history = ctx.sampler.history(queue)
    if history is not None and history.last_change is not None:
        item["idle_since"] = rfc3339(history.last_change)
    sampler = ctx.sampler
    item.update(sampler.details(queue, rates.LENGTHS, rates.QUEUE_LAYOUT["lengths"], current,
                                ranges.get("lengths"), lengths=True))  # fmt: skip
    item["message_stats"] = sampler.details(
        queue, rates.QUEUE_COUNTERS, rates.QUEUE_LAYOUT["messages"], stats, ranges.get("msg_rates")
    )
    if full:
        # (consumers of other nodes, cluster.queue_link's stand-ins, are listed by their nodes)
        item["consumer_details"] = [consumer_item(ctx, c) for c in consumers if c.channel is not None]
        item["deliveries"] = []
        item["incoming"] = []
    return item


def _replicas(queue: QueueType) -> dict[str, Any]:
    """A replicated queue's fields, as RabbitMQ 3.10 shows them: a mirrored classic queue's
    node (its master) and mirrors, a quorum queue's leader, members and online members."""
    info = getattr(queue, "replica_info", None)
    if info is None or info.leader is None:
        return {}
    if queue.type_name == "classic":
        mirrors, synchronised = info.mirrors()
        return {"node": info.leader, "slave_nodes": mirrors, "synchronised_slave_nodes": synchronised,
                "recoverable_slaves": mirrors}  # fmt: skip
    return {"node": info.leader, "leader": info.leader, "members": info.members, "online": info.members}


def visible_queues(ctx: Context) -> list[QueueType]:
    broker = ctx.broker
    return [queue for name in ctx.listed_vhosts() for queue in broker.vhosts[name].queues.values()]


class Queues(Resource):
    rule = auth.VHOST

    def exists(self, ctx: Context) -> bool:
        return "vhost" not in ctx.request.match_info or ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        ranges = rates.ranges(ctx.query)
        scope = tuple(ctx.listed_vhosts())
        return Body(
            paging.augmented(
                ctx.query, visible_queues(ctx), ("vhost", "name"), BASIC, lambda q: queue_item(ctx, q, ranges),
                cached=(ctx.queue_orders, scope, LIFELONG),
            )  # fmt: skip
        )


def _queue(ctx: Context) -> QueueType | None:
    vhost = ctx.vhost_named()
    return vhost.queues.get(ctx.param("name")) if vhost is not None else None


def _vhost_or_404(ctx: Context) -> Any:
    vhost = ctx.vhost_named()
    if vhost is None:
        raise not_found("vhost_not_found", "not_found")
    return vhost


class OneQueue(Resource):
    methods = ("HEAD", "GET", "PUT", "DELETE", "OPTIONS")
    rule = auth.VHOST

    def exists(self, ctx: Context) -> bool:
        return _queue(ctx) is not None

    async def to_json(self, ctx: Context) -> Any:
        queue = _queue(ctx)
        if queue is None:
            raise not_found()
        return queue_item(ctx, queue, rates.ranges(ctx.query), full=True)

    async def accept(self, ctx: Context) -> Any:
        name = ctx.param("name")
        size = len(name.encode("utf-8", "surrogateescape"))
        if size > 255:
            raise bad_request(f"queue should be less than 255 bytes, actually was {size}\n")
        vhost = _vhost_or_404(ctx)
        body = await ctx.body()
        arguments = body.get("arguments") or {}
        if not isinstance(arguments, dict):
            arguments = {}
        await vhost.declare_queue(
            name,
            passive=parse_bool(body.get("passive")) or False,
            durable=parse_bool(body.get("durable")) or False,
            auto_delete=parse_bool(body.get("auto_delete")) or False,
            arguments=arguments,
            check=ctx.check(vhost.name),
            connection_id=API_CONNECTION,
        )
        return None

    async def delete(self, ctx: Context) -> None:
        vhost = _vhost_or_404(ctx)
        await vhost.delete_queue(
            ctx.param("name"),
            if_unused=ctx.query.get("if-unused") == "true",
            if_empty=ctx.query.get("if-empty") == "true",
            check=ctx.check(vhost.name),
            connection_id=API_CONNECTION,
        )


class Contents(Resource):
    """DELETE purges the queue (queue.purge: read permission, not another's exclusive queue)."""

    methods = ("DELETE", "OPTIONS")
    rule = auth.VHOST

    def exists(self, ctx: Context) -> bool:
        return _queue(ctx) is not None

    async def delete(self, ctx: Context) -> None:
        vhost = _vhost_or_404(ctx)
        name = ctx.param("name")
        ctx.check(vhost.name)("read", "queue", name)
        queue = vhost.queue_or_404(name)
        vhost.check_exclusive(queue, API_CONNECTION)
        queue.purge()


def parse_int(value: Any) -> int:
    """rabbit_misc:parse_int."""
    if isinstance(value, bool):
        raise bad_request(["not_integer", value])
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    try:
        return int(str(value), 10)
    except ValueError:
        raise bad_request(["not_integer", value]) from None


class Get(Resource):
    """POST (a missing queue is the basic.get's 404, as in RabbitMQ, not the resource's)."""

    methods = ("POST", "OPTIONS")
    rule = auth.VHOST

    async def accept(self, ctx: Context) -> Any:
        body, (ack_mode, count, encoding) = await ctx.fields("ackmode", "count", "encoding")
        vhost = ctx.vhost_named()
        if vhost is None:  # the channel RabbitMQ opens for the request cannot open the vhost
            raise not_authorised("Access refused.")
        count = parse_int(count)
        if encoding not in ("auto", "base64"):
            raise bad_request("Unsupported encoding. Please use auto or base64.")
        truncate = parse_int(body["truncate"]) if body.get("truncate") is not None else None
        if ack_mode not in ACK_MODES:
            raise bad_request(["unsupported_ackmode", ack_mode])
        name = ctx.param("name")
        try:
            ctx.check(vhost.name)("read", "queue", name)
            queue = vhost.queue_or_404(name)
            vhost.check_exclusive(queue, API_CONNECTION)
        except AMQPError as error:
            raise from_channel(error) from None
        taken: list[tuple[QueueEntry, int]] = []
        while count != len(taken):
            entry = queue.get()
            if entry is None:
                break
            taken.append((entry, queue.message_count))
        replies = [_message(entry, left, encoding, truncate) for entry, left in taken]
        entries = [entry for entry, _left in taken]
        if ack_mode == "ack_requeue_false":
            for entry in entries:
                queue.settle(entry)
        elif ack_mode == "reject_requeue_false":
            for entry in entries:
                queue.discard(entry, "rejected")
        elif entries:
            queue.requeue(entries)
            queue.dispatch()
        return replies


def _message(entry: QueueEntry, left: int, encoding: str, truncate: int | None) -> dict[str, Any]:
    message = entry.message
    body = bytes(message.body)
    payload = body if truncate is None or len(body) < truncate else body[:truncate]
    text: str | None = None
    if encoding == "auto":
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            text = None
    return {
        "payload_bytes": len(body),
        "redelivered": entry.redelivered,
        "exchange": message.exchange,
        "routing_key": message.routing_key,
        "message_count": left,
        "properties": properties_json(message.properties),
        "payload": text if text is not None else base64.b64encode(payload).decode(),
        "payload_encoding": "string" if text is not None else "base64",
    }


ROUTES = [
    ("/queues", Queues()),
    ("/queues/{vhost}", Queues()),
    ("/queues/{vhost}/{name}", OneQueue()),
    ("/queues/{vhost}/{name}/contents", Contents()),
    ("/queues/{vhost}/{name}/get", Get()),
]
