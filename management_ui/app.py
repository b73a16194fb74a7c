"""The management HTTP server: RabbitMQ's HTTP API under ``/api``, and the dashboard's files
(``management_ui/static/``, when present) at ``/``.

It runs on the broker's event loop (``ManagementServer.start`` from ``Server.start``) and reads
the broker's state directly: the tables, the objects' ``stats()`` and the ``Sampler``'s
history. Writes go through ``Admin`` and the vhosts' declare/bind/delete rules, the same code
as AMQP methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from amqp_server.admin.operations import Admin
from amqp_server.core.broker import Broker
from management_ui.api import MODULES
from management_ui.api.extensions import extension_file, plugin_route
from management_ui.paging import OrderCache
from management_ui.rates import Sampler
from management_ui.resource import Context, Listeners, State, handler
from management_ui.sites import Https, start_sites

STATE = web.AppKey("state", State)
# Request bodies up to this size: RabbitMQ 3.10 takes any, and a definitions document of a
# broker with 100,000 queues is some 20 MB (aiohttp's default is 1 MB).
MAX_BODY = 64 * 1024 * 1024

STATIC = Path(__file__).with_name("static")


def _context(request: web.Request) -> Context:
    return Context(request, request.app[STATE])


def make_app(state: State) -> web.Application:
    """The root application: the API as a sub-application under ``/api``."""
    api = web.Application(client_max_size=MAX_BODY)
    api[STATE] = state
    for module in MODULES:
        for path, resource in module.ROUTES:
            run = handler(resource, _context)
            api.router.add_route("*", path, run)
            api.router.add_route("*", path + "/", run)  # cowboy takes a trailing slash too
    # Everything else: a route of an enabled plugin (looked up per request), else 404.
    api.router.add_route("*", "/{path:.*}", plugin_route(_context))
    app = web.Application(client_max_size=MAX_BODY)
    app.add_subapp("/api", api)
    if STATIC.is_dir():
        index = STATIC / "index.html"

        async def root(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(index)

        app.router.add_get("/", root)
        # Before the static files: plugins' dashboard modules, looked up per request.
        app.router.add_get("/js/extensions/{path:.+}", extension_file(state.broker))
        app.router.add_static("/", STATIC)
        app.on_response_prepare.append(_revalidate)
    return app


async def _revalidate(request: web.Request, response: web.StreamResponse) -> None:
    """The dashboard's files are asked for again on each load (304 when unchanged, by their
    Last-Modified), so that a browser never mixes cached modules of an older broker with new ones."""
    if not request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-cache"


class ManagementServer:
    """The HTTP listener and the statistics sampler of one broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        interval = max(1, broker.config.collect_statistics_interval) / 1000
        self.sampler = Sampler(broker, interval)
        self._runner: web.AppRunner | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self, host: str, port: int | None, amqp: tuple[str, int], https: Https | None = None) -> None:
        """Listen on ``host``:``port`` (0: a free port, see ``port``; None: no plain HTTP) and
        HTTPS as ``https`` says; OSError if it cannot. ``amqp`` is the AMQP listener's address,
        which the API reports."""
        listeners = Listeners(amqp, (host, port), int(time.time() * 1000))
        queue_orders = OrderCache()
        app = make_app(State(self.broker, Admin(self.broker), self.sampler, listeners, queue_orders))
        # No access log: it would cost a log record per request. A short shutdown: keep-alive
        # connections must not hold a stopping broker.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await start_sites(runner, host, port, https)
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        listeners.http = (host, self.port)  # the chosen one when ``port`` was 0
        # A queue that comes or goes changes the sorted orders of queues (a vhost's deletion
        # deletes its queues one by one, each with its event).
        self._unsubscribe = self.broker.events.subscribe(queue_orders.invalidate, "queue.created", "queue.deleted")
        self.sampler.start()

    @property
    def port(self) -> int:
        """The first listening port: plain HTTP's, else HTTPS'."""
        assert self._runner is not None
        return self._runner.addresses[0][1]

    @property
    def https_port(self) -> int:
        assert self._runner is not None
        return self._runner.addresses[-1][1]

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.sampler.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
