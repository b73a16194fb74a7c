"""/api/connections, /api/connections/{name} (GET, DELETE) and /api/vhosts/{vhost}/connections
(rabbit_mgmt_wm_connection*); a connection's channels are in ``channels``.

A connection is named as RabbitMQ names it, ``"127.0.0.1:60918 -> 127.0.0.1:5672"``;
connections still in their handshake are not listed (RabbitMQ lists a connection once it is
open). DELETE closes it with 320 CONNECTION_FORCED and the ``X-Reason`` header's text
(default "Closed via management plugin").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from management_ui import auth, paging, rates
from management_ui.errors import not_found
from management_ui.format import json_value
from management_ui.resource import Body, Context, Resource

if TYPE_CHECKING:
    from amqp_server.transport.connection import Connection

DEFAULT_REASON = "Closed via management plugin"


def endpoints(connection: Connection) -> tuple[str, int, str, int]:
    """(peer host, peer port, our host, our port)."""
    peer, ours = connection.peer, connection.sockname
    return peer[0], peer[1] if len(peer) > 1 else 0, ours[0], ours[1] if len(ours) > 1 else 0


def open_connections(ctx: Context) -> list[Connection]:
    """Connections past connection.open, in the order they were made."""
    return sorted((c for c in ctx.broker.connections if c.vhost is not None), key=_number)


def _number(connection: Connection) -> int:
    return int(connection.id.rpartition("/")[2] or 0)


def find(ctx: Context, name: str) -> Connection | None:
    for connection in ctx.broker.connections:
        if connection.vhost is not None and connection.name == name:
            return connection
    return None


def connection_item(ctx: Context, connection: Connection, ranges: dict[str, rates.Range]) -> dict[str, Any]:
    stats = connection.stats()
    peer_host, peer_port, host, port = endpoints(connection)
    item = {
        "auth_mechanism": stats["auth_mechanism"],
        "channel_max": stats["channel_max"],
        "channels": stats["channels"],
        "client_properties": json_value(connection.client_properties),
        "connected_at": connection.connected_at,
        "frame_max": stats["frame_max"],
        "host": host,
        "name": connection.name,
        "node": ctx.broker.node_name,
        "peer_cert_issuer": "",
        "peer_cert_subject": "",
        "peer_cert_validity": "",
        "peer_host": peer_host,
        "peer_port": peer_port,
        "port": port,
        "protocol": "AMQP 0-9-1",
        "recv_cnt": stats["recv_cnt"],
        "send_cnt": stats["send_cnt"],
        "send_pend": connection.unsent_bytes,
        "ssl": connection.tls is not None,
        # OpenSSL's cipher-suite name (RabbitMQ splits Erlang's suite tuple into three fields).
        "ssl_cipher": connection.tls.cipher()[0] if connection.tls is not None else "",
        "ssl_hash": "",
        "ssl_key_exchange": "",
        "ssl_protocol": connection.tls.version().lower() if connection.tls is not None else "",
        "state": stats["state"],
        "timeout": stats["timeout"],
        "type": "network",
        "user": stats["user"],
        "user_who_performed_action": stats["user"],
        "vhost": stats["vhost"],
    }
    provided = connection.client_properties.get("connection_name")
    if isinstance(provided, str | bytes):
        item["user_provided_name"] = json_value(provided)
    item.update(
        ctx.sampler.details(
            connection, rates.OCTETS, rates.CONNECTION_LAYOUT["octets"], stats, ranges.get("data_rates")
        )
    )
    return item


def visible_connections(ctx: Context, vhost: str | None = None) -> list[Connection]:
    """rabbit_mgmt_util:filter_conn_ch_list: a user's own connections, all for monitoring users."""
    monitor = auth.is_monitor(ctx.user)
    return [
        c
        for c in open_connections(ctx)
        if (monitor or c.username == ctx.user.name) and (vhost is None or c.vhost.name == vhost)  # type: ignore[union-attr]
    ]


class Connections(Resource):
    async def to_json(self, ctx: Context) -> Any:
        ranges = rates.ranges(ctx.query)
        items = [connection_item(ctx, c, ranges) for c in visible_connections(ctx)]
        return Body(paging.reply_list(ctx.query, items, ("vhost", "name"), paginated=True))


class VhostConnections(Resource):
    rule = auth.VHOST

    def exists(self, ctx: Context) -> bool:
        return ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        ranges = rates.ranges(ctx.query)
        items = [connection_item(ctx, c, ranges) for c in visible_connections(ctx, ctx.vhost)]
        return Body(paging.reply_list(ctx.query, items, ("vhost", "name")))


class OneConnection(Resource):
    methods = ("HEAD", "GET", "DELETE", "OPTIONS")

    def authorize(self, ctx: Context) -> None:
        connection = find(ctx, ctx.param("name"))
        auth.enforce_owner(ctx, connection.username if connection is not None else None)

    def exists(self, ctx: Context) -> bool:
        return find(ctx, ctx.param("name")) is not None

    async def to_json(self, ctx: Context) -> Any:
        connection = find(ctx, ctx.param("name"))
        if connection is None:
            raise not_found()
        return connection_item(ctx, connection, rates.ranges(ctx.query))

    async def delete(self, ctx: Context) -> None:
        connection = find(ctx, ctx.param("name"))
        if connection is not None:
            connection.force_close(ctx.request.headers.get("X-Reason", DEFAULT_REASON))


ROUTES = [
    ("/connections", Connections()),
    ("/connections/{name}", OneConnection()),
    ("/vhosts/{vhost}/connections", VhostConnections()),
]
