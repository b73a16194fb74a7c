"""/api/definitions (GET, POST), /api/definitions/{vhost} (GET, POST) and the old name
/api/all-configuration (rabbit_mgmt_wm_definitions), for administrators: RabbitMQ's
definitions JSON through ``Admin.export_definitions`` / ``Admin.import_definitions``.
``?download=NAME`` makes the export an attachment."""

from __future__ import annotations

import json
from typing import Any

from management_ui import auth
from management_ui.errors import bad_request, not_found
from management_ui.resource import Body, Context, Resource


class Definitions(Resource):
    methods = ("HEAD", "GET", "POST", "OPTIONS")
    rule = auth.ADMIN

    async def to_json(self, ctx: Context) -> Any:
        vhost = ctx.request.match_info.get("vhost")
        if vhost is not None and vhost not in ctx.broker.vhosts:
            raise bad_request("vhost_not_found")
        download = ctx.query.get("download")
        headers = {"Content-Disposition": f"attachment; filename={download}"} if download else None
        return Body(ctx.admin.export_definitions(vhost), headers)

    async def accept(self, ctx: Context) -> Any:
        text = await ctx.request.text()
        try:
            document = json.loads(text) if text else {}
        except ValueError:
            raise bad_request("failed_to_parse_json") from None
        vhost = ctx.request.match_info.get("vhost")
        if vhost is not None and vhost not in ctx.broker.vhosts:
            raise not_found("vhost_not_found", "not_found")
        await ctx.admin.import_definitions(document, vhost)
        return None


ROUTES = [
    ("/definitions", Definitions()),
    ("/all-configuration", Definitions()),
    ("/definitions/{vhost}", Definitions()),
]
