"""The listening sockets of an HTTP listener (the API, the metrics): plain HTTP, HTTPS, or both
(rabbitmq.conf ``management.tcp.port`` / ``management.ssl.port``, the same for prometheus)."""

from __future__ import annotations

import ssl

from aiohttp import web

#: An HTTPS listener: its port and the TLS context made from its ``*.ssl.*`` options.
Https = tuple[int, ssl.SSLContext]


async def start_sites(runner: web.AppRunner, host: str, port: int | None, https: Https | None) -> None:
    """Listen with ``runner``'s application on ``host``: plain HTTP on ``port`` (None: not)
    and HTTPS as ``https`` says; the runner's addresses are in that order. OSError if it cannot."""
    if port is not None:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    if https is not None:
        await web.TCPSite(runner, host, https[0], reuse_address=True, ssl_context=https[1]).start()
