"""/api/nodes and /api/nodes/{node} (rabbit_mgmt_wm_node*), for monitoring users: this one
node, its memory, disk, file descriptors and sockets (with their rates), its limits and alarms.
Figures Erlang has and Python does not (reductions, GC, run queue, IO) are left out."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from amqp_server.transport.sasl import MECHANISMS
from cluster.operations import members, partitions
from management_ui import auth, paging, rates
from management_ui.api.overview import contexts, exchange_types
from management_ui.errors import not_found
from management_ui.resource import Body, Context, Resource

MECHANISM_DESCRIPTIONS = {"PLAIN": "SASL PLAIN authentication mechanism", "AMQPLAIN": "QPid AMQPLAIN mechanism"}


def node_item(ctx: Context, ranges: dict[str, rates.Range]) -> dict[str, Any]:
    broker = ctx.broker
    alarms = broker.alarms
    sampler = ctx.sampler
    figures = dict(zip(rates.NODE, sampler.node_figures(), strict=True))
    soft_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    item: dict[str, Any] = {
        "name": broker.node_name,
        "type": "disc" if broker.config.data_dir else "ram",
        "running": True,
        "os_pid": str(os.getpid()),
        "uptime": int(time.time() * 1000) - ctx.listeners.started_ms,
        "processors": os.cpu_count() or 1,
        "rates_mode": "basic",
        "mem_limit": alarms.memory_limit,
        "mem_alarm": "memory" in alarms.alarms,
        "mem_calculation_strategy": "rss",
        "disk_free_limit": alarms.disk_limit,
        "disk_free_alarm": "disk" in alarms.alarms,
        "fd_total": soft_fds,
        "sockets_total": soft_fds,
        "proc_total": 1048576,
        "run_queue": 0,
        "net_ticktime": 60,
        "db_dir": broker.config.data_dir or "",
        "exchange_types": exchange_types(ctx),
        "auth_mechanisms": [
            {"name": name, "description": MECHANISM_DESCRIPTIONS.get(name, ""), "enabled": True} for name in MECHANISMS
        ],
        "applications": [],
        "contexts": contexts(ctx),
        "log_files": ["<stderr>"],
        "config_files": [],
        "enabled_plugins": sorted(["rabbitmq_management", *broker.plugins.explicit]),  # (the file's, as RabbitMQ's)
        "partitions": [],
        "cluster_links": [],
    }
    item.update(sampler.details("node", rates.NODE, 0, figures, ranges.get("node_stats"), lengths=True))
    churn = {key: value for key, value in sampler.churn.items()}
    item.update(sampler.details("overview", rates.CHURN, rates.OVERVIEW_LAYOUT["churn"], churn, ranges.get("msg_rates")))
    return item


def member_items(ctx: Context) -> list[dict[str, Any]]:
    """Every member of the cluster (this node alone when not clustered): this node in full,
    the others by what this node knows of them (type, whether it reaches them)."""
    found, running = members(ctx.broker)
    unreachable = partitions(ctx.broker).get(ctx.broker.node_name, [])
    items = []
    for name, kind in found.items():
        if name == ctx.broker.node_name:
            item = node_item(ctx, rates.ranges(ctx.query))
            item.update(type=kind, partitions=unreachable)
        else:
            item = {"name": name, "type": kind, "running": name in running, "partitions": []}
        items.append(item)
    return items


class Nodes(Resource):
    rule = auth.MONITOR

    async def to_json(self, ctx: Context) -> Any:
        return Body(paging.reply_list(ctx.query, member_items(ctx), ("vhost", "name")))


class OneNode(Resource):
    rule = auth.MONITOR

    def exists(self, ctx: Context) -> bool:
        return any(item["name"] == ctx.param("node") for item in member_items(ctx))

    async def to_json(self, ctx: Context) -> Any:
        for item in member_items(ctx):
            if item["name"] == ctx.param("node"):
                return item
        raise not_found()


ROUTES = [
    ("/nodes", Nodes()),
    ("/nodes/{node}", OneNode()),
]
