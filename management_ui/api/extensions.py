"""/api/extensions (rabbit_mgmt_wm_extensions): what enabled plugins add to the dashboard, and
the HTTP API routes plugins add while enabled (``NodeContext.add_routes``).

RabbitMQ lists ``{"javascript": "<file>"}`` per dashboard extension; the plugins here bring
none, so the list holds only the plugins that were to be enabled and could not be (failed to
import, to start, or to accept this broker's version), each as ``{"name", "error"}``: what
``amqp-plugins list -v`` shows too.

aiohttp's router is frozen once the server starts, and plugins come and go while it runs, so
their routes are looked up per request by ``plugin_route``, behind the API's catch-all route.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from management_ui.errors import not_found
from management_ui.resource import Context, Resource, handler


class Extensions(Resource):
    async def to_json(self, ctx: Context) -> Any:
        return [{"name": name, "error": error} for name, error in sorted(ctx.broker.plugins.failed.items())]


@functools.cache
def _pattern(path: str) -> re.Pattern[str]:
    """aiohttp's route syntax (``/shovels/{vhost}/{name}``, ``{name:regex}``) as a regular
    expression over the raw (still percent-encoded) path; a trailing slash is taken too."""
    regex = ""
    for literal, variable in re.findall(r"([^{]*)(\{[^{}]*\})?", path):
        regex += re.escape(literal)
        if variable:
            name, _, custom = variable[1:-1].partition(":")
            regex += f"(?P<{name}>{custom or '[^{}/]+'})"
    return re.compile(regex + "/?")


def plugin_route(state: Callable[[web.Request], Context]) -> Callable[[web.Request], Any]:
    """The API's catch-all handler: an enabled plugin's route, else 404 as RabbitMQ's."""

    async def dispatch(request: web.Request) -> web.StreamResponse:
        broker = state(request).broker
        path = "/" + request.raw_path.split("?", 1)[0].partition("/api/")[2]
        for template, resource, _plugin in broker.plugins.routes:
            match = _pattern(template).fullmatch(path)
            if match is not None:
                request.match_info.update({key: unquote(value) for key, value in match.groupdict().items()})
                return await handler(resource, state)(request)
        return not_found().response()

    return dispatch


ROUTES = [("/extensions", Extensions())]
