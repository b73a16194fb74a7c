"""/api/parameters, /api/parameters/{component}, /api/parameters/{component}/{vhost},
/api/parameters/{component}/{vhost}/{name} (GET, PUT, DELETE), /api/global-parameters and
/api/global-parameters/{name} (GET, PUT, DELETE) (rabbit_mgmt_wm_parameter*,
rabbit_mgmt_wm_global_parameter*).

Vhost parameters are for administrators and policymakers with permissions on the vhost,
global ones for policymakers. Only the components this broker acts on can be set (see
``Admin.set_parameter``).
"""

from __future__ import annotations

from typing import Any

from management_ui import auth, paging
from management_ui.errors import not_found
from management_ui.resource import Body, Context, Resource


class Parameters(Resource):
    rule = auth.POLICIES

    def exists(self, ctx: Context) -> bool:
        return "vhost" not in ctx.request.match_info or ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        component = ctx.request.match_info.get("component")
        visible = set(ctx.listed_vhosts())
        items = [p for p in ctx.admin.list_parameters(component) if p["vhost"] in visible]
        return Body(paging.reply_list(ctx.query, items, ("vhost", "name")))


class OneParameter(Resource):
    methods = ("HEAD", "GET", "PUT", "DELETE", "OPTIONS")
    rule = auth.POLICIES

    def _find(self, ctx: Context) -> dict[str, Any] | None:
        vhost = ctx.vhost
        if vhost is None:
            return None
        found = ctx.admin.list_parameters(ctx.param("component"), vhost)
        return next((p for p in found if p["name"] == ctx.param("name")), None)

    def exists(self, ctx: Context) -> bool:
        return self._find(ctx) is not None

    async def to_json(self, ctx: Context) -> Any:
        parameter = self._find(ctx)
        if parameter is None:
            raise not_found()
        return parameter

    async def accept(self, ctx: Context) -> Any:
        vhost = ctx.vhost
        if vhost is None:
            raise not_found("vhost_not_found", "not_found")
        _body, (value,) = await ctx.fields("value")
        await ctx.admin.set_parameter(vhost, ctx.param("component"), ctx.param("name"), value)
        return None

    async def delete(self, ctx: Context) -> None:
        await ctx.admin.clear_parameter(ctx.param("vhost"), ctx.param("component"), ctx.param("name"))


class GlobalParameters(Resource):
    rule = auth.GLOBAL_PARAMETERS

    async def to_json(self, ctx: Context) -> Any:
        return Body(paging.reply_list(ctx.query, ctx.admin.list_global_parameters(), ("vhost", "name")))


class OneGlobalParameter(Resource):
    methods = ("HEAD", "GET", "PUT", "DELETE", "OPTIONS")
    rule = auth.GLOBAL_PARAMETERS

    def exists(self, ctx: Context) -> bool:
        return ctx.param("name") in ctx.broker.global_parameters

    async def to_json(self, ctx: Context) -> Any:
        name = ctx.param("name")
        if name not in ctx.broker.global_parameters:
            raise not_found()
        return {"value": ctx.broker.global_parameters[name], "name": name}

    async def accept(self, ctx: Context) -> Any:
        _body, (value,) = await ctx.fields("value")
        await ctx.admin.set_global_parameter(ctx.param("name"), value)
        return None

    async def delete(self, ctx: Context) -> None:
        await ctx.admin.clear_global_parameter(ctx.param("name"))


ROUTES = [
    ("/parameters", Parameters()),
    ("/parameters/{component}", Parameters()),
    ("/parameters/{component}/{vhost}", Parameters()),
    ("/parameters/{component}/{vhost}/{name}", OneParameter()),
    ("/global-parameters", GlobalParameters()),
    ("/global-parameters/{name}", OneGlobalParameter()),
]
