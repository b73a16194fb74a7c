"""A shovel's status as ``rabbitmqctl shovel_status`` (ShovelStatusCommand) and the HTTP API's
/api/shovels (rabbit_shovel_mgmt) show it."""

from __future__ import annotations

from typing import Any

from plugins.shovel.link import reason_text
from plugins.shovel.worker import Shovel

PROTOCOL = "amqp091"


def _details(shovel: Shovel, source_prefix: str, dest_prefix: str) -> dict[str, str]:
    spec = shovel.spec
    found = {
        source_prefix + key.removeprefix("src-").replace("-", "_"): value
        for key, value in spec.source_details
    }
    found.update(
        {dest_prefix + key.removeprefix("dest-").replace("-", "_"): value for key, value in spec.dest_details}
    )
    return found


def cli_row(shovel: Shovel) -> dict[str, Any]:
    """One row of shovel_status: the keys its formatter gets (it prints them sorted)."""
    spec = shovel.spec
    row: dict[str, Any] = {"name": spec.name, "vhost": spec.vhost, "type": "dynamic", "state": shovel.status,
                           "last_changed": shovel.last_changed, "source": "", "destination": "",
                           "termination_reason": ""}  # fmt: skip
    if shovel.status == "running" and shovel.src_uri is not None and shovel.dest_uri is not None:
        row.update(source=shovel.src_uri.shown, destination=shovel.dest_uri.shown, source_protocol=PROTOCOL,
                   destination_protocol=PROTOCOL)  # fmt: skip
        row.update(_details(shovel, "source_", "destination_"))
    elif shovel.status == "terminated":
        row["termination_reason"] = reason_text(shovel.reason)
    return dict(sorted(row.items()))


def http_row(shovel: Shovel, node: str) -> dict[str, Any]:
    """One shovel of GET /api/shovels, keys in RabbitMQ's order."""
    spec = shovel.spec
    row: dict[str, Any] = {"node": node, "timestamp": shovel.last_changed, "name": spec.name, "vhost": spec.vhost,
                           "type": "dynamic", "state": shovel.status}  # fmt: skip
    if shovel.status == "running" and shovel.src_uri is not None and shovel.dest_uri is not None:
        row.update(src_uri=shovel.src_uri.shown, src_protocol=PROTOCOL, dest_protocol=PROTOCOL,
                   dest_uri=shovel.dest_uri.shown)  # fmt: skip
        row.update(_details(shovel, "src_", "dest_"))
    elif shovel.status == "terminated":
        row["reason"] = reason_text(shovel.reason)
    return row
