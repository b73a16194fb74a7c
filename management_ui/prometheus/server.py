"""The HTTP side of rabbitmq_prometheus: ``/metrics``, ``/metrics/per-object`` and
``/metrics/detailed`` (``/metrics/{registry}``, registry default, per-object or detailed), on
the broker's event loop, without authentication (as RabbitMQ's port 15692).

A scrape reads the broker in one go (``collect.Snapshot``) and renders the text
(``render.py``); a gzip answer, when the scraper accepts one, is compressed off the event
loop.
"""

from __future__ import annotations

import asyncio
import gzip
import time

from aiohttp import web

from amqp_server.core.broker import Broker
from management_ui.prometheus import render
from management_ui.prometheus.collect import Counters, Snapshot
from management_ui.sites import Https, start_sites

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REGISTRIES = ("default", "per-object", "detailed")
GZIP_LEVEL = 6
INLINE_GZIP = 64 * 1024  # larger bodies are compressed on a worker thread, off the event loop


class PrometheusServer:
    """The listener, the counters it keeps from the broker's events, and the scrape summaries."""

    def __init__(self, broker: Broker, *, return_per_object_metrics: bool = False) -> None:
        self.broker = broker
        # rabbitmq.conf prometheus.return_per_object_metrics: /metrics per object too.
        self.return_per_object_metrics = return_per_object_metrics
        self.counters = Counters(broker)
        self.telemetry = render.Telemetry(CONTENT_TYPE)
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        app = web.Application()
        for path in ("/metrics", "/metrics/", "/metrics/{registry}"):
            app.router.add_get(path, self._scrape)
        app.router.add_get("/{path:.*}", _not_found)
        return app

    async def start(self, host: str, port: int | None, https: Https | None = None) -> None:
        """Count the broker's events from now on and listen on ``host``:``port`` (0: a free
        port, see ``port``; None: no plain HTTP) and HTTPS as ``https`` says; OSError if it cannot."""
        self.counters.subscribe()
        # No access log (a record per scrape); a short shutdown, as the management listener.
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await start_sites(runner, host, port, https)
        except BaseException:
            await runner.cleanup()
            self.counters.unsubscribe()
            raise
        self._runner = runner

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
        self.counters.unsubscribe()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def text(self, registry: str, families: list[str] | None = None, vhosts: list[str] | None = None) -> str:
        """One scrape of ``registry``; for ``detailed``, of the tables named in ``families``,
        the queue tables limited to ``vhosts`` (those that exist) when given."""
        snapshot = Snapshot(self.broker, self.counters)
        if registry == "detailed":
            chosen = None if vhosts is None else {v for v in vhosts if v in self.broker.vhosts}
            out = render.detailed(snapshot, set(families or ()), chosen)
        elif registry == "per-object":
            out = render.per_object(snapshot)
        else:
            out = render.default(snapshot, self.return_per_object_metrics)
        self.telemetry.render(out, registry)
        return "".join(out)

    async def _scrape(self, request: web.Request) -> web.Response:
        registry = request.match_info.get("registry") or "default"
        if registry not in REGISTRIES:
            return web.Response(status=404, text="Unknown Registry")
        started = time.perf_counter()
        query = request.query
        vhosts = query.getall("vhost") if "vhost" in query else None
        body = self.text(registry, query.getall("family", []), vhosts).encode()
        duration = time.perf_counter() - started
        encoding = "gzip" if _accepts_gzip(request.headers.get("Accept-Encoding", "")) else "identity"
        size = len(body)
        if encoding == "gzip" and size <= INLINE_GZIP:
            body = gzip.compress(body, GZIP_LEVEL)
        elif encoding == "gzip":
            body = await asyncio.get_running_loop().run_in_executor(None, gzip.compress, body, GZIP_LEVEL)
        self.telemetry.observe(registry, size, duration, encoding, len(body))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Content-Encoding": encoding})


def _accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (named, or ``*``, with a q above 0)."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip()
            if not q.startswith("q="):
                return True
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
    return False


async def _not_found(_request: web.Request) -> web.Response:
    """Any other path: rabbit_web_dispatch's 404."""
    return web.json_response({"error": "Object Not Found", "reason": "Not Found"}, status=404)


async def start_prometheus(
    broker: Broker, host: str, port: int | None, *, return_per_object_metrics: bool = False, https: Https | None = None
) -> PrometheusServer:
    """Serve the metrics of ``broker`` on ``host``:``port`` (0: a free one, see ``.port``) from
    the running event loop, the broker's; ``await server.stop()`` ends it. Start it after the
    broker has booted: the churn counters count the events from then on."""
    server = PrometheusServer(broker, return_per_object_metrics=return_per_object_metrics)
    await server.start(host, port, https)
    return server
