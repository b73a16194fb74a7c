"""Start a broker: boot the metadata, listen for AMQP, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import socket
from typing import TYPE_CHECKING

from amqp_server.admin.definitions import load_file
from amqp_server.admin.operations import Admin
from amqp_server.core.broker import Broker, BrokerConfig
from amqp_server.metadata.sqlite import SqliteStore
from amqp_server.storage.message_store import MessageStore
from amqp_server.transport.connection import Connection

if TYPE_CHECKING:
    from management_ui.app import ManagementServer
    from management_ui.prometheus.server import PrometheusServer

log = logging.getLogger(__name__)

GC_THRESHOLD = 10_000  # allocations between young-generation collections (CPython: 700)


class StartError(Exception):
    """A start the operator must fix (e.g. the port is taken); the message is one line."""


def _listen_error(host: str, port: int, exc: OSError) -> StartError:
    """Say what is wrong with the listen address in words an operator can act on."""
    if isinstance(exc, socket.gaierror):
        return StartError(f"cannot resolve host {host!r}: {exc.strerror}")
    if exc.errno == errno.EADDRINUSE:
        return StartError(f"port {port} on {host} is in use (another broker running?)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return StartError(f"address {host} is not an address of this machine")
    if exc.errno == errno.EACCES:
        return StartError(f"no permission to listen on port {port} on {host}")
    return StartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


class Server:
    """A running broker node; ``start``/``stop`` for embedding (tests use this in-process)."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        config = config or BrokerConfig()
        # With a data directory, durable metadata lives in SQLite there; without, in memory only.
        # Persistent messages of durable queues go to the message store in the same directory.
        self.broker = Broker(
            config,
            SqliteStore(config.data_dir) if config.data_dir else None,
            MessageStore(config.data_dir) if config.data_dir else None,
        )
        self._server: asyncio.Server | None = None
        self.management: ManagementServer | None = None
        self.prometheus: PrometheusServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def management_port(self) -> int:
        """The HTTP API's port (the one chosen when configured as 0)."""
        assert self.management is not None
        return self.management.port

    @property
    def prometheus_port(self) -> int:
        """The metrics port (the one chosen when configured as 0)."""
        assert self.prometheus is not None
        return self.prometheus.port

    async def start(self) -> None:
        """Boot and listen; raises ``StartError`` when the address cannot be listened on."""
        config = self.broker.config
        try:
            await self.broker.boot()
            if config.load_definitions:  # imported at every boot, as RabbitMQ does
                await load_file(Admin(self.broker), config.load_definitions)
            self.broker.alarms.start()  # the first memory/disk check runs before any client connects
            try:
                self._server = await asyncio.get_running_loop().create_server(
                    self._new_connection, config.host, config.port, reuse_address=True, backlog=1024
                )
            except OSError as exc:
                raise _listen_error(config.host, config.port, exc) from exc
            if config.management:
                await self._start_management()
            if config.prometheus:
                await self._start_prometheus()
        except BaseException:
            # The alarm timer, the stores' threads and writer tasks and the directory lock would
            # otherwise outlive the failed start and keep the process from exiting.
            self.broker.alarms.stop()
            if self._server is not None:
                self._server.close()
            await self._stop_http()
            await self._close_stores()
            raise
        log.info("AMQP listener on %s:%s, node %s", config.host, self.port, self.broker.node_name)

    async def _start_management(self) -> None:
        # Imported here: a broker without the HTTP API does not load aiohttp.
        from management_ui.app import ManagementServer

        config = self.broker.config
        host = config.management_host or config.host
        management = ManagementServer(self.broker)
        try:
            await management.start(host, config.management_port, (config.host, self.port))
        except OSError as exc:
            raise _listen_error(host, config.management_port, exc) from exc
        self.management = management
        log.info("HTTP API listener on %s:%s", host, management.port)

    async def _start_prometheus(self) -> None:
        from management_ui.prometheus.server import start_prometheus  # (as the HTTP API)

        config = self.broker.config
        host = config.prometheus_host or config.host
        try:
            self.prometheus = await start_prometheus(
                self.broker, host, config.prometheus_port,
                return_per_object_metrics=config.prometheus_return_per_object_metrics,
            )  # fmt: skip
        except OSError as exc:
            raise _listen_error(host, config.prometheus_port, exc) from exc
        log.info("Prometheus listener on %s:%s", host, self.prometheus.port)

    def _new_connection(self) -> Connection:
        connection = Connection(self.broker)
        self.broker.alarms.attach(connection)  # blocked at its first publish while an alarm is on
        return connection

    async def stop(self) -> None:
        """Stop listening, then send every connection 320 CONNECTION_FORCED and close its
        socket without waiting for close-ok, as a stopping RabbitMQ node does."""
        self.broker.alarms.stop()
        await self._stop_http()
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
        await self._close_stores()

    async def _stop_http(self) -> None:
        for listener in (self.management, self.prometheus):
            if listener is not None:
                await listener.stop()
        self.management = self.prometheus = None

    async def _close_stores(self) -> None:
        """The metadata store goes last: it holds the data directory's lock."""
        if self.broker.message_store is not None:
            await self.broker.message_store.close()
        await self.broker.store.close()


async def serve(config: BrokerConfig) -> None:
    server = Server(config)
    await server.start()
    # What booting made (modules, recovered metadata and messages) lives as long as the node:
    # frozen, the cyclic collector never scans it again, which keeps its pauses short. A
    # larger first generation means fewer collections on the publish path (each message
    # allocates a few tracked objects): about 5% less CPU per message.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
