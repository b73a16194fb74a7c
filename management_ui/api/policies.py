"""/api/policies, /api/policies/{vhost}, /api/policies/{vhost}/{name} (GET, PUT, DELETE) and the
same for /api/operator-policies (rabbit_mgmt_wm_policy*, rabbit_mgmt_wm_operator_polic*).

Policies are for administrators and policymakers with permissions on the vhost; operator
policies for administrators. A refused PUT is 400 with RabbitMQ's validation text (for
policies HTML-escaped, as RabbitMQ escapes it).
"""

from __future__ import annotations

from typing import Any

from amqp_server.admin.errors import AdminError
from management_ui import auth, paging
from management_ui.errors import bad_request, not_found
from management_ui.resource import Body, Context, Resource


def escape_html(text: str) -> str:
    """rabbit_mgmt_format:escape_html_tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Policies(Resource):
    """The (``operator``: operator) policies of every visible vhost, or of one."""

    rule = auth.VHOST

    def __init__(self, operator: bool) -> None:
        self.operator = operator

    def exists(self, ctx: Context) -> bool:
        return "vhost" not in ctx.request.match_info or ctx.vhost is not None

    async def to_json(self, ctx: Context) -> Any:
        listing = ctx.admin.list_operator_policies if self.operator else ctx.admin.list_policies
        items = [policy for name in ctx.listed_vhosts() for policy in listing(name)]
        return Body(paging.reply_list(ctx.query, items, ("priority",)))


class OnePolicy(Resource):
    methods = ("HEAD", "GET", "PUT", "DELETE", "OPTIONS")

    def __init__(self, operator: bool) -> None:
        self.operator = operator

    def authorize(self, ctx: Context) -> None:
        (auth.ADMIN if self.operator else auth.POLICIES).enforce(ctx)

    def _find(self, ctx: Context) -> dict[str, Any] | None:
        vhost = ctx.vhost
        if vhost is None:
            return None
        listing = ctx.admin.list_operator_policies if self.operator else ctx.admin.list_policies
        return next((p for p in listing(vhost) if p["name"] == ctx.param("name")), None)

    def exists(self, ctx: Context) -> bool:
        return self._find(ctx) is not None

    async def to_json(self, ctx: Context) -> Any:
        policy = self._find(ctx)
        if policy is None:
            raise not_found()
        return policy

    async def accept(self, ctx: Context) -> Any:
        vhost = ctx.vhost
        if vhost is None:
            raise not_found("vhost_not_found", "not_found")
        body, (pattern, definition) = await ctx.fields("pattern", "definition")
        priority = body.get("priority")
        apply_to = body.get("apply-to")
        setter = ctx.admin.set_operator_policy if self.operator else ctx.admin.set_policy
        try:
            await setter(
                vhost, ctx.param("name"), pattern, definition, 0 if priority is None else priority,
                "all" if apply_to is None else apply_to,
            )  # fmt: skip
        except AdminError as error:
            reason = str(error) + "\n"
            raise bad_request(reason if self.operator else escape_html(reason)) from None
        return None

    async def delete(self, ctx: Context) -> None:
        vhost, name = ctx.param("vhost"), ctx.param("name")
        if self.operator:
            await ctx.admin.clear_operator_policy(vhost, name)
        else:
            await ctx.admin.clear_policy(vhost, name)


ROUTES = [
    ("/policies", Policies(operator=False)),
    ("/policies/{vhost}", Policies(operator=False)),
    ("/policies/{vhost}/{name}", OnePolicy(operator=False)),
    ("/operator-policies", Policies(operator=True)),
    ("/operator-policies/{vhost}", Policies(operator=True)),
    ("/operator-policies/{vhost}/{name}", OnePolicy(operator=True)),
]
