"""A federation link's status as ``rabbitmqctl federation_status`` and the HTTP API's
/api/federation-links (rabbit_federation_mgmt) show it."""

from __future__ import annotations

from typing import Any

from plugins.federation.links import FederationLink, QueueLink
from plugins.shovel.link import reason_text


def cli_row(link: FederationLink) -> dict[str, Any]:
    """One map of federation_status, keys sorted as the Erlang map prints them."""
    queue = isinstance(link, QueueLink)
    row: dict[str, Any] = {
        "error": reason_text(link.reason) if link.status == "error" else "",
        "exchange": "" if queue else link.name,
        "id": link.id,
        "last_changed": link.last_changed,
        "local_connection": "",
        "queue": link.name if queue else "",
        "status": link.status,
        "type": link.kind,
        "upstream": link.upstream.name,
        "upstream_exchange": "" if queue else link.upstream_name,
        "upstream_queue": link.upstream_name if queue else "",
        "uri": link.endpoint.shown,
        "vhost": link.vhost,
    }
    if queue:
        row["consumer_tag"] = link.consumer_tag  # type: ignore[attr-defined]
    return dict(sorted(row.items()))


def http_row(link: FederationLink, node: str) -> dict[str, Any]:
    """One link of GET /api/federation-links, keys in RabbitMQ's order."""
    row: dict[str, Any] = {"node": node}
    if isinstance(link, QueueLink):
        row.update(queue=link.name, upstream_queue=link.upstream_name, consumer_tag=link.consumer_tag)
    else:
        row.update(exchange=link.name, upstream_exchange=link.upstream_name)
    row.update(type=link.kind, vhost=link.vhost, upstream=link.upstream.name, id=link.id, status=link.status)
    if link.status == "error":
        row["error"] = reason_text(link.reason)
    row.update(uri=link.endpoint.shown, timestamp=link.last_changed)
    return row
