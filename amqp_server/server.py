"""Start a broker: boot the metadata, listen for AMQP, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import ssl
import sys
from typing import TYPE_CHECKING

from amqp_server.admin.definitions import load_file
from amqp_server.admin.operations import Admin
from amqp_server.config import level_filter, log_file_path
from amqp_server.control import ControlServer
from amqp_server.core.broker import Broker, BrokerConfig
from amqp_server.metadata.sqlite import SqliteStore
from amqp_server.metadata.store import MetadataStore
from amqp_server.storage.message_store import MessageStore
from amqp_server.tls import TlsError, TlsOptions, load_files, server_context
from amqp_server.transport.connection import Connection

if TYPE_CHECKING:
    from cluster.metadata_store import RaftMetadataStore
    from cluster.raft_host import RaftHost
    from cluster.service import ClusterService
    from management_ui.app import ManagementServer
    from management_ui.prometheus.server import PrometheusServer
    from management_ui.sites import Https

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


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(config: BrokerConfig) -> None:
    """The log outputs of an ``amqp-server`` process, from the ``log_*`` settings: the console
    (stderr, or stdout) and a file, each at its level. Raises ``StartError`` when the log file
    cannot be opened. Embedded brokers (``Server``) leave logging to the embedding code."""
    outputs: list[tuple[logging.Handler, str]] = []
    if config.log_console:
        stream = sys.stdout if config.log_console_stdio == "stdout" else sys.stderr
        outputs.append((logging.StreamHandler(stream), config.log_console_level))
    path = log_file_path(config)
    if path is not None:
        try:
            if os.path.dirname(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
            outputs.append((logging.FileHandler(path, encoding="utf-8"), config.log_file_level))
        except OSError as exc:  # RabbitMQ's words
            reason = (exc.strerror or str(exc)).lower()
            raise StartError(f"failed to open log file at '{path}', reason: {reason}") from exc
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    lowest = logging.CRITICAL + 10
    for handler, spec in outputs:
        level, takes = level_filter(spec)
        lowest = min(lowest, level)
        handler.addFilter(lambda record, takes=takes: takes(record.levelno))
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    if not outputs:
        root.addHandler(logging.NullHandler())  # not even logging's last-resort stderr output
    root.setLevel(lowest)
    # aiosqlite logs every statement at debug: the broker's debug log is about the broker.
    logging.getLogger("aiosqlite").setLevel(max(lowest, logging.INFO))


def _https(port: int | None, options: TlsOptions) -> Https | None:
    """An HTTP listener's HTTPS port with its TLS context, or None without a port."""
    if port is None:
        return None
    try:
        return port, server_context(options)
    except TlsError as exc:
        raise StartError(str(exc)) from exc


class Server:
    """A running broker node; ``start``/``stop`` for embedding (tests use this in-process)."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        config = config or BrokerConfig()
        # With a data directory, durable metadata lives in SQLite there; without, in memory only.
        # Persistent messages of durable queues go to the message store in the same directory.
        # A clustered node's metadata is the cluster's, on Raft (cluster.metadata_store).
        # Clustering is on with a cluster port or peers.
        self.cluster: ClusterService | None = None
        self.queue_groups: RaftHost | None = None  # the replicated queues' Raft groups (clustered)
        store: MetadataStore | None = SqliteStore(config.data_dir) if config.data_dir else None
        raft: RaftMetadataStore | None = None
        if config.cluster_port is not None or config.cluster_nodes:
            # Imported here: a node without clustering loads none of it.
            from cluster.metadata_store import RaftMetadataStore
            from cluster.service import ClusterService

            self.cluster = ClusterService(config)
            store = raft = RaftMetadataStore(self.cluster, config.data_dir, ram=config.cluster_node_type == "ram")
        self.broker = Broker(config, store, MessageStore(config.data_dir) if config.data_dir else None)
        if raft is not None:
            from cluster.queue_link import QueueLink
            from cluster.raft_host import RaftHost
            from cluster.raft_wal import RaftWal
            from cluster.replicated_queues import ReplicatedQueues

            raft.broker = self.broker
            self.broker.queue_link = link = QueueLink(self.broker, self.cluster)
            self.queue_groups = RaftHost(self.cluster, RaftWal(config.data_dir) if config.data_dir else None)
            self.broker.replicas = ReplicatedQueues(self.broker, self.cluster, self.queue_groups, link)
        self._servers: list[asyncio.Server] = []  # one per AMQP listener
        self._tls_servers: list[asyncio.Server] = []  # one per AMQPS listener
        # Made at start; ``reload_tls`` loads new certificate files into it.
        self.tls_context: ssl.SSLContext | None = None
        # Where start_app listens again: (AMQP, AMQPS) addresses.
        self._stopped_listeners: tuple[list[tuple[str, int]], list[tuple[str, int]]] = ([], [])
        self.management: ManagementServer | None = None
        self.prometheus: PrometheusServer | None = None
        self.control: ControlServer | None = None
        # Set by SIGTERM/SIGINT or amqp-ctl stop; ``serve`` waits for it.
        self.stop_requested = asyncio.Event()

    @property
    def port(self) -> int:
        """The first AMQP listener's port (the one chosen when configured as 0)."""
        return self.listeners[0][1]

    @property
    def listeners(self) -> list[tuple[str, int]]:
        """The AMQP listeners' (address, port), in the order configured."""
        assert self._servers
        return [server.sockets[0].getsockname()[:2] for server in self._servers]

    @property
    def tls_listeners(self) -> list[tuple[str, int]]:
        """The AMQPS listeners' (address, port), in the order configured."""
        return [server.sockets[0].getsockname()[:2] for server in self._tls_servers]

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
            self.broker.plugins.load()  # the plugins' types, before the metadata using them recovers
            if self.cluster is not None:  # links first: the metadata may come from the cluster
                await self._start_cluster()
            await self.broker.boot()
            if self.broker.queue_link is not None:  # its transient queues of a previous run go
                await self.broker.queue_link.drop_transient(self.broker.node_name)  # type: ignore[attr-defined]
            if config.load_definitions:  # imported at every boot, as RabbitMQ does
                await load_file(Admin(self.broker), config.load_definitions)
            self.broker.alarms.start()  # the first memory/disk check runs before any client connects
            await self.broker.plugins.boot()  # their start hooks, before clients come
            await self._listen(
                [(host or config.host, port) for host, port in config.listeners]
                if config.listeners is not None
                else [(config.host, config.port)]
            )
            if config.ssl_listeners:
                try:
                    self.tls_context = server_context(config.ssl_options)
                except TlsError as exc:
                    raise StartError(str(exc)) from exc
                await self._listen([(host or config.host, port) for host, port in config.ssl_listeners], tls=True)
            if config.data_dir:  # the control channel's secret and socket live in the data directory
                await self._start_control(config.data_dir)
            await self._start_http()
        except BaseException:
            # The alarm timer, the stores' threads and writer tasks and the directory lock would
            # otherwise outlive the failed start and keep the process from exiting.
            self.broker.alarms.stop()
            for server in (*self._servers, *self._tls_servers):
                server.close()
            await self.broker.plugins.stop()
            await self._stop_control()
            await self._stop_http()
            await self._close_stores()
            raise
        if self.cluster is not None:
            self.cluster.advertise(amqp=self.port, **({"management": self.management_port} if self.management else {}))
        self.broker.amqp_address = self.listeners[0]
        self._log_listeners()

    def _log_listeners(self) -> None:
        for host, port in self.listeners:
            log.info("AMQP listener on %s:%s, node %s", host, port, self.broker.node_name)
        for host, port in self.tls_listeners:
            log.info("AMQPS (TLS) listener on %s:%s", host, port)

    async def _listen(self, addresses: list[tuple[str, int]], tls: bool = False) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.broker.config.ssl_handshake_timeout
        # asyncio takes a handshake timeout only with a TLS context ("infinity": its default).
        options = {"ssl": self.tls_context, "ssl_handshake_timeout": timeout if timeout != float("inf") else None}
        for host, port in addresses:
            try:
                server = await loop.create_server(
                    self._new_connection, host, port, reuse_address=True, backlog=1024, **(options if tls else {})
                )
            except OSError as exc:
                raise _listen_error(host, port, exc) from exc
            (self._tls_servers if tls else self._servers).append(server)

    def reload_tls(self) -> None:
        """Load the TLS certificate, key and CA files again (SIGHUP), the AMQPS listeners' and
        the links' between nodes: new connections and links get the new certificate,
        established ones keep theirs. Files that do not load are logged and the certificates in
        use stay."""
        if self.tls_context is not None:
            try:
                load_files(self.tls_context, self.broker.config.ssl_options)
            except TlsError as exc:
                log.error("TLS certificates not reloaded: %s", exc)
            else:
                log.info("TLS certificates reloaded")
        links = self.cluster.links if self.cluster is not None else None
        if links is not None and links.tls is not None:
            try:
                links.tls.reload()
            except TlsError as exc:
                log.error("inter-node TLS certificates not reloaded: cluster.%s", exc)
            else:
                log.info("inter-node TLS certificates reloaded")

    async def _start_http(self) -> None:
        if self.broker.config.management:
            await self._start_management()
        if self.broker.config.prometheus:
            await self._start_prometheus()

    @property
    def running(self) -> bool:
        """Whether the AMQP service runs (``amqp-ctl stop_app`` stops it, ``start_app`` starts it)."""
        return bool(self._servers)

    async def stop_app(self) -> None:
        """rabbitmqctl stop_app: stop listening and close every client connection (320) and the
        HTTP listeners; the process, the stores and the control channel stay. The listening
        addresses are kept, so that ``start_app`` listens where the node listened (ports chosen
        when configured as 0 included)."""
        self._stopped_listeners = (self.listeners, self.tls_listeners)
        await self._stop_http()
        await self._stop_amqp()

    async def start_app(self) -> None:
        """rabbitmqctl start_app: listen again where the node listened before ``stop_app``."""
        plain, tls = self._stopped_listeners
        try:
            await self._listen(plain)
            await self._listen(tls, tls=True)
            await self._start_http()
        except BaseException:
            await self._stop_amqp()
            raise
        self.broker.amqp_address = self.listeners[0]
        self._log_listeners()

    async def _start_cluster(self) -> None:
        from cluster.names import NodeNameError

        assert self.cluster is not None
        try:
            await self.cluster.start()
            if self.broker.queue_link is not None:
                self.broker.queue_link.start()  # type: ignore[attr-defined]
            if self.queue_groups is not None:  # before the boot: the queues it replays open their groups
                await self.queue_groups.start()
        except NodeNameError as exc:
            raise StartError(f"invalid cluster peer: {exc}") from exc
        except TlsError as exc:  # (its text names the ssl_options key)
            raise StartError(f"cluster.{exc}") from exc
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.filename is None:
                raise _listen_error(self.broker.config.host, self.cluster.port, exc) from exc
            raise StartError(f"cannot read the cluster's cookie: {exc}") from exc

    async def _start_control(self, data_dir: str) -> None:
        try:  # the secret is read or made first: an unreadable one stops the start too
            control = ControlServer(Admin(self.broker), data_dir, self.port, self.stop_requested.set, self)
            await control.start()
        except OSError as exc:
            where = exc.filename or f"{data_dir}/control.sock"
            raise StartError(f"cannot listen on the control socket ({where}): {exc.strerror or exc}") from exc
        self.control = control
        if self.cluster is not None:  # amqp-ctl -n from other hosts, over the cluster port
            self.cluster.control = control.answer

    async def _stop_control(self) -> None:
        if self.control is not None:
            await self.control.stop()
            self.control = None
            if self.cluster is not None:
                self.cluster.control = None

    async def _start_management(self) -> None:
        # Imported here: a broker without the HTTP API does not load aiohttp.
        from management_ui.app import ManagementServer

        config = self.broker.config
        host = config.management_host or config.host
        management = ManagementServer(self.broker)
        https = _https(config.management_ssl_port, config.management_ssl_options)
        try:
            await management.start(host, config.management_port, self.listeners[0], https)
        except OSError as exc:
            raise _listen_error(host, config.management_port or config.management_ssl_port or 0, exc) from exc
        self.management = management
        if config.management_port is not None:
            log.info("HTTP API listener on %s:%s", host, management.port)
        if https is not None:
            log.info("HTTP API listener (HTTPS) on %s:%s", host, management.https_port)

    async def _start_prometheus(self) -> None:
        from management_ui.prometheus.server import start_prometheus  # (as the HTTP API)

        config = self.broker.config
        host = config.prometheus_host or config.host
        https = _https(config.prometheus_ssl_port, config.prometheus_ssl_options)
        try:
            self.prometheus = await start_prometheus(
                self.broker, host, config.prometheus_port,
                return_per_object_metrics=config.prometheus_return_per_object_metrics, https=https,
            )  # fmt: skip
        except OSError as exc:
            raise _listen_error(host, config.prometheus_port or config.prometheus_ssl_port or 0, exc) from exc
        if config.prometheus_port is not None:
            log.info("Prometheus listener on %s:%s", host, self.prometheus.port)
        if https is not None:
            log.info("Prometheus listener (HTTPS) on %s:%s", host, self.prometheus.https_port)

    def _new_connection(self) -> Connection:
        connection = Connection(self.broker)
        self.broker.alarms.attach(connection)  # blocked at its first publish while an alarm is on
        return connection

    async def stop(self) -> None:
        """Stop listening, then send every connection 320 CONNECTION_FORCED and close its
        socket without waiting for close-ok, as a stopping RabbitMQ node does."""
        self.broker.alarms.stop()
        await self._stop_control()
        await self._stop_http()
        await self.broker.plugins.stop()  # (the enabled_plugins file keeps what the next start enables)
        await self._stop_amqp()
        await self._close_stores()

    async def _stop_amqp(self) -> None:
        for server in (*self._servers, *self._tls_servers):
            server.close()
        self._servers, self._tls_servers = [], []
        for connection in list(self.broker.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while self.broker.connections and loop.time() < deadline:  # pending writes drain
            await asyncio.sleep(0.01)
        for connection in list(self.broker.connections):
            if connection.transport is not None:
                connection.transport.abort()

    async def _stop_http(self) -> None:
        for listener in (self.management, self.prometheus):
            if listener is not None:
                await listener.stop()
        self.management = self.prometheus = None

    async def _close_stores(self) -> None:
        """The metadata store goes last: it holds the data directory's lock (the cluster's
        links after it: they carry its messages)."""
        if self.broker.message_store is not None:
            await self.broker.message_store.close()
        await self.broker.store.close()
        if self.queue_groups is not None:
            await self.queue_groups.stop()
        if self.broker.queue_link is not None:
            await self.broker.queue_link.stop()  # type: ignore[attr-defined]
        if self.cluster is not None:
            await self.cluster.stop()


async def serve(config: BrokerConfig) -> None:
    server = Server(config)
    # Handled from the start: a SIGTERM while the node is still starting (its AMQP port may
    # already accept clients) stops it cleanly once started, instead of killing it.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop_requested.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)  # how operators rotate certificates
    await server.start()
    # What booting made (modules, recovered metadata and messages) lives as long as the node:
    # frozen, the cyclic collector never scans it again, which keeps its pauses short. A
    # larger first generation means fewer collections on the publish path (each message
    # allocates a few tracked objects): about 5% less CPU per message.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)
    await server.stop_requested.wait()
    log.info("shutting down")
    await server.stop()
