"""The HTTP API resources of the shovel and federation plugins (rabbitmq_shovel_management's
/api/shovels, rabbitmq_federation_management's /api/federation-links): a status list, whole or
of one vhost, showing the vhosts the user may see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from management_ui import auth
from management_ui.resource import Context, Resource


class StatusList(Resource):
    rule = auth.VHOST

    def __init__(self, rows: Callable[[], list[dict[str, Any]]]) -> None:
        self._rows = rows

    def exists(self, ctx: Context) -> bool:
        return "vhost" not in ctx.request.match_info or ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        visible = set(ctx.listed_vhosts())
        return [row for row in self._rows() if row["vhost"] in visible]


def routes(path: str, rows: Callable[[], list[dict[str, Any]]]) -> list[tuple[str, Resource]]:
    resource = StatusList(rows)
    return [(path, resource), (path + "/{vhost}", resource)]
