"""rabbitmq_shovel: dynamic shovels, defined by runtime parameters of component ``shovel``
(``amqp-ctl set_parameter shovel NAME '{...}'``, PUT /api/parameters/shovel/VHOST/NAME), each
moving messages from a queue or exchange of one broker to another over AMQP 0-9-1, as
RabbitMQ's. ``amqp-ctl shovel_status``, ``delete_shovel``, ``restart_shovel``."""

from __future__ import annotations

import asyncio
from typing import Any

from amqp_server.admin.errors import AdminError
from amqp_server.plugin_api import Event, NodeContext, Plugin
from plugins.shovel import definition, http, status
from plugins.shovel.worker import Shovel

COMPONENT = "shovel"
NOT_FOUND = "Shovel with the given name was not found on the target node '{}' and / or virtual host '{}'"


class Shovels:
    """The node's dynamic shovels by (vhost, name), kept as the parameters say."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.running: dict[tuple[str, str], Shovel] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        node = self.node
        node.add_parameter_component(COMPONENT, definition.validate)
        node.subscribe(self._changed, "parameter.set", "parameter.cleared", "vhost.deleted")
        node.add_command(
            "shovel_status", lambda _args: [status.cli_row(s) for _k, s in sorted(self.running.items())]
        )
        node.add_command("delete_shovel", self.delete)
        node.add_command("restart_shovel", self.restart)
        node.add_routes(http.routes("/shovels", self.http_rows))
        node.add_dashboard_extension("shovel.js")
        for (vhost, name), value in sorted(node.parameters(COMPONENT).items()):
            self._launch(vhost, name, value)

    async def stop(self) -> None:
        for task in list(self._pending):
            await task
        for key in list(self.running):
            await self.running.pop(key).stop()

    def http_rows(self) -> list[dict[str, Any]]:
        return [status.http_row(shovel, self.node.node_name) for _key, shovel in sorted(self.running.items())]

    def _changed(self, event: Event) -> None:
        payload = event.payload
        if event.name == "vhost.deleted":
            for key in [k for k in self.running if k[0] == payload["name"]]:
                self._later(self.running.pop(key).stop())
        elif payload.get("component") == COMPONENT:
            key = (payload["vhost"], payload["name"])
            previous = self.running.pop(key, None)
            if previous is not None:
                self._later(previous.stop())
            if event.name == "parameter.set":
                self._launch(*key, payload["value"])

    def _launch(self, vhost: str, name: str, value: Any) -> None:
        if definition.validate(vhost, name, value):  # stored before validation existed (an import)
            self.node.log.warning(
                "shovel '%s' in vhost '%s' has an invalid definition; not started", name, vhost
            )
            return
        shovel = Shovel(self.node, definition.parse(vhost, name, value), self.node.log)
        self.running[(vhost, name)] = shovel
        shovel.start()

    def _later(self, stopping: Any) -> None:
        task = asyncio.get_running_loop().create_task(stopping)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _find(self, args: dict[str, Any]) -> Shovel:
        vhost, name = args.get("vhost", "/"), args["name"]
        found = self.running.get((vhost, name))
        if found is None:
            raise AdminError(NOT_FOUND.format(self.node.node_name, vhost))
        return found

    async def delete(self, args: dict[str, Any]) -> None:
        shovel = self._find(args)
        await self.node.clear_parameter(shovel.spec.vhost, COMPONENT, shovel.spec.name)

    async def restart(self, args: dict[str, Any]) -> None:
        shovel = self._find(args)
        self.node.log.info(
            "Shovel '%s' in virtual host '%s' will be restarted", shovel.spec.name, shovel.spec.vhost
        )
        await shovel.stop()
        shovel.set_status("starting")
        shovel.start()


# The running plugin's shovels, by node (several brokers may share a process: tests do).
NODES: dict[int, Shovels] = {}


def _start(node: NodeContext) -> None:
    shovels = Shovels(node)
    NODES[id(node)] = shovels
    shovels.start()


async def _stop(node: NodeContext) -> None:
    shovels = NODES.pop(id(node), None)
    if shovels is not None:
        await shovels.stop()


PLUGIN = Plugin(
    "rabbitmq_shovel",
    description="Data Shovel for RabbitMQ",
    start=_start,
    stop=_stop,
)
