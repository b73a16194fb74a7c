"""Start a broker: boot the metadata, listen for AMQP, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from amqp_server.broker import Broker, BrokerConfig
from amqp_server.connection import Connection

log = logging.getLogger(__name__)


class Server:
    """A running broker node; ``start``/``stop`` for embedding (tests use this in-process)."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.broker = Broker(config)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        await self.broker.boot()
        config = self.broker.config
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self.broker), config.host, config.port, reuse_address=True, backlog=1024
        )
        log.info("AMQP listener on %s:%s, node %s", config.host, self.port, self.broker.node_name)

    async def stop(self) -> None:
        """Stop listening, then send every connection 320 CONNECTION_FORCED and close its
        socket without waiting for close-ok, as a stopping RabbitMQ node does."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.broker.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while self.broker.connections and loop.time() < deadline:  # pending writes drain
            await asyncio.sleep(0.01)
        for connection in list(self.broker.connections):
            if connection.transport is not None:
                connection.transport.abort()
        await self.broker.store.close()


async def serve(config: BrokerConfig) -> None:
    server = Server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
