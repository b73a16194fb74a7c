"""Health checks (rabbit_mgmt_wm_health_check_*, rabbit_mgmt_wm_aliveness_test): 200
``{"status": "ok", ...}`` or 503 ``{"status": "failed", "reason": ...}``.

- /api/aliveness-test/{vhost}: declares the queue ``aliveness-test``, publishes a message to it
  and gets it back;
- /api/health/checks/alarms and /local-alarms: a memory or disk alarm is on;
- /api/health/checks/port-listener/{port}: this node listens on the port (AMQP or HTTP);
- /api/health/checks/virtual-hosts: every vhost is up (always, on one node);
- /api/healthchecks/node[/{node}]: the node is up (the check of older RabbitMQ versions).
"""

from __future__ import annotations

from typing import Any

from amqp_server.plugin_api import new_message
from amqp_server.protocol.errors import AMQPError
from management_ui import auth
from management_ui.errors import HttpError, bad_request, from_channel, not_authorised
from management_ui.resource import API_CONNECTION, Context, Resource, reply

ALIVENESS_QUEUE = "aliveness-test"


class Failed(HttpError):
    """A failed check: 503 with RabbitMQ's body (``status``, ``reason`` and details)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(503, "failed", body.get("reason"))
        self.body = body

    def response(self) -> Any:
        response = reply(self.body)
        response.set_status(503)
        return response


class Aliveness(Resource):
    rule = auth.VHOST

    def exists(self, ctx: Context) -> bool:
        return ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        vhost = ctx.vhost_named()
        if vhost is None or (ctx.user.name, vhost.name) not in ctx.broker.permissions:
            raise not_authorised("Access refused.")
        try:
            check = ctx.check(vhost.name)
            queue = await vhost.declare_queue(ALIVENESS_QUEUE, check=check, connection_id=API_CONNECTION)
            check("write", "exchange", "")
            queue.publish(new_message("", ALIVENESS_QUEUE, b"test_message"))
            check("read", "queue", ALIVENESS_QUEUE)
            entry = queue.get()
        except AMQPError as error:
            raise from_channel(error) from None
        if entry is None:
            raise Failed({"status": "failed", "reason": "aliveness-test queue is empty"})
        queue.settle(entry)
        return {"status": "ok"}


class Alarms(Resource):
    """In effect in the cluster, or (``local``) on this node: the same on one node."""

    def __init__(self, local: bool) -> None:
        self.local = local

    async def to_json(self, ctx: Context) -> Any:
        alarms = sorted(ctx.broker.alarms.alarms)
        if not alarms:
            return {"status": "ok"}
        where = "on the node" if self.local else "in the cluster"
        raise Failed({
            "status": "failed",
            "reason": f"There are alarms in effect {where}",
            "alarms": [{"resource": resource, "node": ctx.broker.node_name} for resource in alarms],
        })  # fmt: skip


class PortListener(Resource):
    async def to_json(self, ctx: Context) -> Any:
        try:
            port = int(ctx.param("port"))
        except ValueError:
            raise bad_request("Invalid port") from None
        ports = [ctx.listeners.amqp[1], ctx.listeners.http[1]]
        if port not in ports:
            raise Failed({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports})
        return {"status": "ok", "port": port}


class NodeHealth(Resource):
    """The health check of RabbitMQ before 3.8 (/api/healthchecks/node[/{node}]), which older
    clients still call: this node is up."""

    def exists(self, ctx: Context) -> bool:
        return ctx.request.match_info.get("node", ctx.broker.node_name) == ctx.broker.node_name

    async def to_json(self, ctx: Context) -> Any:
        return {"status": "ok"}


class VirtualHosts(Resource):
    async def to_json(self, ctx: Context) -> Any:
        return {"status": "ok"}


ROUTES = [
    ("/aliveness-test/{vhost}", Aliveness()),
    ("/health/checks/alarms", Alarms(local=False)),
    ("/health/checks/local-alarms", Alarms(local=True)),
    ("/health/checks/port-listener/{port}", PortListener()),
    ("/health/checks/virtual-hosts", VirtualHosts()),
    ("/healthchecks/node", NodeHealth()),
    ("/healthchecks/node/{node}", NodeHealth()),
]
