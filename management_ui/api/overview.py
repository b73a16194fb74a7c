"""/api/overview, /api/cluster-name (GET, PUT) and /api/auth (rabbit_mgmt_wm_overview,
_cluster_name, _auth); /api/extensions is in ``extensions``.

The overview's totals are live (queue lengths, object counts) and its rates come from the
``Sampler``. A user who is not monitoring sees the totals of the vhosts they can use, and not
the node's listeners.
"""

from __future__ import annotations

import platform
from typing import Any

from amqp_server import __version__
from amqp_server.admin.definitions import RABBIT_VERSION
from management_ui import auth, rates
from management_ui.resource import Context, Resource

RETENTION = {"global": [600], "basic": [600], "detailed": [600]}


def exchange_types(ctx: Context) -> list[dict[str, Any]]:
    types = ctx.broker.exchange_types
    return [{"name": name, "description": types[name].description, "enabled": True} for name in sorted(types)]


def listeners(ctx: Context) -> list[dict[str, Any]]:
    node = ctx.broker.node_name
    amqp_host, amqp_port = ctx.listeners.amqp
    http_host, http_port = ctx.listeners.http
    return [
        {"node": node, "protocol": "amqp", "ip_address": amqp_host, "port": amqp_port,
         "socket_opts": {"backlog": 1024, "nodelay": True}},
        {"node": node, "protocol": "http", "ip_address": http_host, "port": http_port,
         "socket_opts": {"port": http_port}},
    ]  # fmt: skip


def contexts(ctx: Context) -> list[dict[str, Any]]:
    return [{"node": ctx.broker.node_name, "description": "RabbitMQ Management", "path": "/",
             "port": str(ctx.listeners.http[1]), "ssl_opts": []}]  # fmt: skip


class Overview(Resource):
    async def to_json(self, ctx: Context) -> Any:
        ranges = rates.ranges(ctx.query)
        broker = ctx.broker
        monitor = auth.is_monitor(ctx.user)
        names = sorted(broker.vhosts) if monitor else auth.login_vhosts(broker, ctx.user)
        ready = unacked = queues = exchanges = 0
        for name in names:
            vhost = broker.vhosts[name]
            queues += len(vhost.queues)
            exchanges += len(vhost.exchanges)
            for queue in vhost.queues.values():
                ready += queue.message_count
                unacked += queue.unacked_count
        chosen = set(names)
        connections = [c for c in broker.connections if c.vhost is not None and c.vhost.name in chosen]
        if not monitor:
            connections = [c for c in connections if c.username == ctx.user.name]
        channels = [channel for c in connections for channel in c.channels.values()]
        traffic = [0] * len(rates.ZERO_TRAFFIC)
        for name, counters in ctx.sampler.traffic().items():
            if name in chosen:
                for index, value in enumerate(counters):
                    traffic[index] += value
        messages = dict(zip(rates.CHANNEL_COUNTERS, traffic[len(rates.OCTETS) :], strict=True))
        layout = rates.OVERVIEW_LAYOUT
        sampler = ctx.sampler
        lengths = {"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked}
        message_stats = sampler.details("overview", rates.CHANNEL_COUNTERS, layout["messages"], messages,
                                        ranges.get("msg_rates"))  # fmt: skip
        message_stats.update({"disk_reads": 0, "disk_reads_details": {"rate": 0.0}, "disk_writes": 0,
                              "disk_writes_details": {"rate": 0.0}})  # fmt: skip
        overview: dict[str, Any] = {
            "management_version": RABBIT_VERSION,
            "rates_mode": "basic",
            "sample_retention_policies": RETENTION,
            "exchange_types": exchange_types(ctx),
            "product_version": __version__,
            "product_name": "amqp-server",
            "rabbitmq_version": RABBIT_VERSION,
            "cluster_name": ctx.admin.cluster_name(),
            "erlang_version": platform.python_version(),
            "erlang_full_version": f"Python {platform.python_version()} ({platform.python_implementation()})",
            "release_series_support_status": "supported",
            "disable_stats": False,
            "enable_queue_totals": False,
            "churn_rates": sampler.details("overview", rates.CHURN, layout["churn"], sampler.churn,
                                           ranges.get("msg_rates")),  # fmt: skip
            "message_stats": message_stats,
            "object_totals": {
                "channels": len(channels),
                "connections": len(connections),
                "consumers": sum(len(channel.consumers) for channel in channels),
                "exchanges": exchanges,
                "queues": queues,
            },
            "queue_totals": sampler.details("overview", rates.LENGTHS, layout["lengths"], lengths,
                                            ranges.get("lengths"), lengths=True),  # fmt: skip
            "statistics_db_event_queue": 0,
        }
        if monitor:
            overview["node"] = broker.node_name
            overview["listeners"] = listeners(ctx)
            overview["contexts"] = contexts(ctx)
        return overview


class ClusterName(Resource):
    methods = ("HEAD", "GET", "PUT", "OPTIONS")

    def authorize(self, ctx: Context) -> None:
        (auth.ADMIN if ctx.request.method == "PUT" else auth.ANY).enforce(ctx)

    async def to_json(self, ctx: Context) -> Any:
        return {"name": ctx.admin.cluster_name()}

    async def accept(self, ctx: Context) -> Any:
        _body, (name,) = await ctx.fields("name")
        await ctx.admin.set_cluster_name(str(name))
        return None


class Auth(Resource):
    """How the dashboard logs in: basic auth (no OAuth 2)."""

    login = False

    async def to_json(self, ctx: Context) -> Any:
        return {"enable_uaa": False, "uaa_client_id": "", "uaa_location": ""}


ROUTES = [
    ("/overview", Overview()),
    ("/cluster-name", ClusterName()),
    ("/auth", Auth()),
]
