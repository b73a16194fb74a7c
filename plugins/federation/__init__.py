"""rabbitmq_federation: exchanges and queues federated from upstream brokers, as RabbitMQ's.

Upstreams are runtime parameters (``federation-upstream``, ``federation-upstream-set``); a
policy with the key ``federation-upstream`` or ``federation-upstream-set`` makes the exchanges
and queues it matches federated, one link per upstream. ``amqp-ctl federation_status``."""

from __future__ import annotations

import asyncio
from typing import Any

from amqp_server.plugin_api import EXCHANGE, QUEUE, Event, NodeContext, Plugin
from plugins.federation import status
from plugins.federation.links import ExchangeLink, FederationLink, QueueLink
from plugins.federation.upstreams import (
    POLICY_KEYS,
    UPSTREAM,
    UPSTREAM_SET,
    upstreams_for,
    validate_upstream,
    validate_upstream_set,
)
from plugins.shovel import http

LinkKey = tuple[str, str, str, str]  # kind, vhost, exchange or queue, upstream
RECONCILE = ("policy.set", "policy.cleared", "exchange.created", "exchange.deleted", "queue.created",
             "queue.deleted", "parameter.set", "parameter.cleared", "vhost.deleted")  # fmt: skip


class Federation:
    """The node's federation links, kept as policies, upstreams and entities say."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.links: dict[LinkKey, FederationLink] = {}
        self._pending: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        node = self.node
        node.add_parameter_component(UPSTREAM, validate_upstream)
        node.add_parameter_component(UPSTREAM_SET, validate_upstream_set)
        node.subscribe(self._reconcile_event, *RECONCILE)
        node.subscribe(self._binding_changed, "binding.created", "binding.deleted")
        node.subscribe(self._consumers_changed, "consumer.created", "consumer.deleted")
        node.add_command(
            "federation_status", lambda _args: [status.cli_row(link) for link in self.sorted_links()]
        )
        node.add_routes(http.routes("/federation-links", self.http_rows))
        node.add_dashboard_extension("federation.js")
        for vhost in node.vhosts():
            self.reconcile(vhost)

    async def stop(self) -> None:
        for task in list(self._pending):
            await task
        for key in list(self.links):
            await self.links.pop(key).stop()

    def sorted_links(self) -> list[FederationLink]:
        return [link for _key, link in sorted(self.links.items())]

    def http_rows(self) -> list[dict[str, Any]]:
        return [status.http_row(link, self.node.node_name) for link in self.sorted_links()]

    def reconcile(self, vhost: str) -> None:
        """Start the links the vhost's policies and upstreams ask for and stop the others; a
        link whose upstream or policy changed starts again."""
        wanted: dict[LinkKey, tuple[type[FederationLink], Any, str]] = {}
        for kind, link_type in ((EXCHANGE, ExchangeLink), (QUEUE, QueueLink)):
            for name in self.node.names(vhost, kind):
                policy = self.node.policy_in_force(vhost, kind, name) or {}
                if (
                    name == ""
                    or name.startswith("amq.")
                    or not (UPSTREAM in policy or UPSTREAM_SET in policy)
                ):
                    continue
                label = policy.get(UPSTREAM) or policy.get(UPSTREAM_SET)
                for upstream in upstreams_for(self.node, vhost, policy):
                    wanted[(kind, vhost, name, upstream.name)] = (link_type, upstream, label)
        for key in [k for k in self.links if k[1] == vhost]:
            link = self.links[key]
            if key not in wanted or (link.upstream, link.policy) != wanted[key][1:]:
                self._later(self.links.pop(key).stop())
        for key, (link_type, upstream, label) in wanted.items():
            if key not in self.links:
                link = link_type(self.node, vhost, key[2], upstream, label, self.node.log)
                self.links[key] = link
                link.start()

    def _reconcile_event(self, event: Event) -> None:
        payload = event.payload
        if event.name.startswith("parameter.") and payload.get("component") not in (UPSTREAM, UPSTREAM_SET):
            return
        vhost = payload.get("name") if event.name == "vhost.deleted" else payload.get("vhost")
        if vhost is not None:
            self.reconcile(vhost)

    def _binding_changed(self, event: Event) -> None:
        payload = event.payload
        for key, link in self.links.items():
            if key[0] == EXCHANGE and key[1] == payload.get("vhost") and key[2] == payload.get("source_name"):
                self._later(link.sync_bindings())  # type: ignore[attr-defined]

    def _consumers_changed(self, event: Event) -> None:
        payload = event.payload
        queue = payload.get("queue")
        for key, link in self.links.items():
            if key[0] == QUEUE and key[1] == payload.get("vhost") and key[2] == queue:
                link.wake.set()  # type: ignore[attr-defined]

    def _later(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


# The running plugin's links, by node (several brokers may share a process: tests do).
NODES: dict[int, Federation] = {}


def _start(node: NodeContext) -> None:
    federation = Federation(node)
    NODES[id(node)] = federation
    federation.start()


async def _stop(node: NodeContext) -> None:
    federation = NODES.pop(id(node), None)
    if federation is not None:
        await federation.stop()


PLUGIN = Plugin(
    "rabbitmq_federation",
    description="RabbitMQ Federation",
    policy_keys=POLICY_KEYS,
    start=_start,
    stop=_stop,
)
