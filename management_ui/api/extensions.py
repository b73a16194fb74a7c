"""/api/extensions (rabbit_mgmt_wm_extensions): what enabled plugins add to the dashboard, and
the HTTP API routes and dashboard files plugins add while enabled (``NodeContext.add_routes``,
``NodeContext.add_dashboard_extension``).

As RabbitMQ's, the list has ``{"javascript": "<file>"}`` per dashboard module, a path under the
dashboard's ``js/`` (``extensions/rabbitmq_shovel/shovel.js``: a plugin's own directory, so that
two plugins' files never clash); the dashboard imports each after login. Then come the plugins
that were to be enabled and could not be (failed to import, to start, or to accept this
broker's version), each as ``{"name", "error"}``: what ``amqp-plugins list -v`` shows too.

aiohttp's router is frozen once the server starts, and plugins come and go while it runs, so
their routes are looked up per request by ``plugin_route``, behind the API's catch-all route,
and their files by ``extension_file``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from management_ui.errors import not_found
from management_ui.resource import Context, Resource, handler

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker


class Extensions(Resource):
    async def to_json(self, ctx: Context) -> Any:
        plugins = ctx.broker.plugins
        return [{"javascript": path} for path in sorted(plugins.dashboard)] + [
            {"name": name, "error": error} for name, error in sorted(plugins.failed.items())
        ]


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


def extension_file(broker: Broker) -> Callable[[web.Request], Any]:
    """The handler of ``/js/extensions/{path}``: an enabled plugin's dashboard module, else 404
    (a disabled plugin's file is gone at once)."""

    async def serve(request: web.Request) -> web.StreamResponse:
        file = broker.plugins.dashboard.get("extensions/" + request.match_info["path"])
        if file is None:
            raise web.HTTPNotFound()
        return web.FileResponse(file)

    return serve


ROUTES = [("/extensions", Extensions())]
