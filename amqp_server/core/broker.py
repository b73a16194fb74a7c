"""The broker: vhosts, users and permissions of one node, the metadata store they change
through, and the live connections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqp_server.auth.chain import Chain
from amqp_server.auth.config import AuthConfig
from amqp_server.core.access import hash_password
from amqp_server.core.alarms import AlarmMonitor
from amqp_server.core.events import Event, EventBus
from amqp_server.core.vhost import VirtualHost
from amqp_server.metadata.state import MetadataState, is_tags, require
from amqp_server.metadata.store import Change, MemoryStore, MetadataStore
from amqp_server.plugin_host import PluginHost
from amqp_server.tls import TlsOptions
from exchanges.registry import load_exchange_types
from queues.registry import load_queue_types

if TYPE_CHECKING:
    from amqp_server.storage.message_store import MessageStore
    from amqp_server.transport.connection import Connection
    from queues.remote import HomeLink

log = logging.getLogger(__name__)

#: Kinds of change that live in a vhost (VirtualHost.prepare / apply).
VHOST_KINDS = frozenset(("exchange", "queue", "binding", "policy", "operator_policy"))


@dataclass
class BrokerConfig:
    """Settings, named after their rabbitmq.conf keys where RabbitMQ has one."""

    host: str = "0.0.0.0"  # the address of AMQP listeners given without one
    port: int = 5672  # the AMQP port (with ``listeners``, the first listener's)
    # AMQP listeners as (address, port), rabbitmq.conf ``listeners.tcp.*``; an empty address is
    # ``host``. None: one listener, on host:port.
    listeners: list[tuple[str, int]] | None = None
    # AMQPS listeners as (address, port), rabbitmq.conf ``listeners.ssl.*``, with ``ssl_options``.
    ssl_listeners: list[tuple[str, int]] = field(default_factory=list)
    ssl_options: TlsOptions = field(default_factory=TlsOptions)
    ssl_handshake_timeout: float = 5.0  # seconds (rabbitmq.conf: milliseconds)
    # SASL mechanisms offered, in order (``auth_mechanisms.N``); EXTERNAL only on TLS
    # connections whose client certificate was verified (rabbitmq_auth_mechanism_ssl).
    auth_mechanisms: list[str] = field(default_factory=lambda: ["PLAIN", "AMQPLAIN"])
    ssl_cert_login_from: str = "common_name"  # or distinguished_name
    # The authentication and authorisation backends (``auth_backends.*``, ``auth_http.*``, ...).
    auth: AuthConfig = field(default_factory=AuthConfig)
    # The management plugin (RabbitMQ's HTTP API, package management_ui): the command line turns
    # it on; embedding code (tests) opts in. Port 0 takes a free port (Server.management_port);
    # an empty host listens where AMQP does.
    management: bool = False
    management_host: str = ""
    management_port: int | None = 15672
    # rabbitmq_prometheus (package management_ui.prometheus): on from the command line, as the
    # management listener; port 0 takes a free port (Server.prometheus_port).
    prometheus: bool = False
    prometheus_host: str = ""
    prometheus_port: int | None = 15692
    prometheus_return_per_object_metrics: bool = False
    # HTTPS listeners of the HTTP API and of the metrics (rabbitmq.conf ``management.ssl.*``,
    # ``prometheus.ssl.*``): a port (None: none) and its TLS options. With an HTTPS port and
    # no ``*.tcp.port`` in the config file, the plain listener is off (``*_port`` None).
    management_ssl_port: int | None = None
    management_ssl_options: TlsOptions = field(default_factory=TlsOptions)
    prometheus_ssl_port: int | None = None
    prometheus_ssl_options: TlsOptions = field(default_factory=TlsOptions)
    # How often queue, channel and connection counters are sampled for rates, in ms.
    collect_statistics_interval: int = 5000
    data_dir: str | None = "data"  # None: metadata in memory only (nothing survives a restart)
    node_name: str = "rabbit@localhost"
    cluster_name: str = ""
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    event_exchange_vhost: str = ""  # rabbitmq_event_exchange's vhost; "": default_vhost
    # The default user's tags and permissions on the default vhost, made on a first start.
    default_user_tags: list[str] = field(default_factory=lambda: ["administrator"])
    default_permissions: dict[str, str] = field(
        default_factory=lambda: {"configure": ".*", "write": ".*", "read": ".*"}
    )
    loopback_users: list[str] = field(default_factory=lambda: ["guest"])
    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60
    max_message_size: int = 134_217_728  # bytes (RabbitMQ's default, 128 MiB)
    handshake_timeout: float = 10.0
    # RabbitMQ's SILENT_CLOSE_DELAY: a client failing the handshake waits this long for EOF.
    silent_close_delay: float = 3.0
    consumer_timeout_ms: int = 1_800_000
    # A RabbitMQ definitions file imported at every boot (rabbitmq.conf ``load_definitions``);
    # when set, a first start creates no default user and vhost (as RabbitMQ).
    load_definitions: str = ""
    # Resource alarms (rabbitmq.conf vm_memory_high_watermark.* and disk_free_limit.*).
    vm_memory_high_watermark: float = 0.4  # fraction of installed RAM
    vm_memory_high_watermark_absolute: int | None = None  # bytes; replaces the fraction when set
    disk_free_limit: int = 50_000_000  # bytes free on the data dir's file system
    disk_free_limit_relative: float | None = None  # RabbitMQ's mem_relative: times RAM, when set
    resource_check_interval: float = 1.0  # seconds between memory and disk checks
    # Bounded memory: ready messages a queue holds in memory; beyond it they are paged out to
    # the message store (with a data directory; 0: never page). Not a RabbitMQ key.
    queue_memory_window: int = 10_000
    # Logging of an ``amqp-server`` process (rabbitmq.conf ``log.*``; embedding code logs as it
    # likes): levels are RabbitMQ's (debug, info, notice, warning, error, critical, none).
    log_console: bool = True
    log_console_level: str = "info"
    log_console_stdio: str = "stderr"  # RabbitMQ's default is stdout
    log_dir: str = ""  # log.dir / RABBITMQ_LOG_BASE
    # A file name (under log_dir unless absolute); "": none; None: <log_dir>/<node>.log when
    # log_dir is set, else none.
    log_file: str | None = None
    log_file_level: str = "info"
    # Plugins (docs/plugins.md): those enabled at boot when there is no enabled_plugins file
    # (embedding code and tests name them here), the file ("": <data_dir>/enabled_plugins, or
    # RABBITMQ_ENABLED_PLUGINS_FILE) and a directory of plugin modules ("": RABBITMQ_PLUGINS_DIR).
    plugins: list[str] = field(default_factory=list)
    enabled_plugins_file: str = ""
    plugins_dir: str = ""
    # Clustering (docs/clustering.md), off unless a port or peers are given: the inter-node
    # port (RABBITMQ_DIST_PORT; 25672 when clustering is on and none is given), the cookie file
    # ("": the control secret in the data directory), the peers to form a cluster with
    # (``cluster_formation.classic_config.nodes.*``, ``name@host`` or ``name@host:port``) and
    # this node's type when it joins them (``cluster_formation.node_type``: disc or ram).
    cluster_port: int | None = None
    cookie_file: str = ""
    cluster_nodes: list[str] = field(default_factory=list)
    cluster_node_type: str = "disc"
    # TLS on the links between nodes (``cluster.ssl``, ``cluster.ssl_options.*``; docs/security.md):
    # off unless ``cluster_ssl``; peers' certificates are checked unless ``verify = verify_none``.
    cluster_ssl: bool = False
    cluster_ssl_options: TlsOptions = field(
        default_factory=lambda: TlsOptions(verify="verify_peer", fail_if_no_peer_cert=True)
    )


class Broker:
    def __init__(
        self,
        config: BrokerConfig | None = None,
        store: MetadataStore | None = None,
        message_store: MessageStore | None = None,
    ) -> None:
        self.config = config or BrokerConfig()
        # Persistent messages of durable queues (None without a data directory: not stored).
        self.message_store = message_store
        self.node_name = self.config.node_name
        self.cluster_name = self.config.cluster_name or self.node_name
        self.store = store or MemoryStore()
        self.exchange_types = load_exchange_types()
        self.queue_types = load_queue_types()
        self.plugins = PluginHost(self)  # the server loads them before the boot, starts them after
        self.events = EventBus()
        self.vhosts: dict[str, VirtualHost] = {}
        # Users, permissions, limits and parameters; the tables are shared, not copied, so
        # readers (access checks, limits, admin) see every applied change.
        self.state = MetadataState(self.events)
        self.users = self.state.users
        self.permissions = self.state.permissions
        self.topic_permissions = self.state.topic_permissions
        self.auth = Chain(self, self.config.auth)  # auth_backends: who may log in, and do what
        self.vhost_limits = self.state.vhost_limits
        self.user_limits = self.state.user_limits
        self.parameters = self.state.parameters
        self.global_parameters = self.state.global_parameters
        # Runtime-parameter components plugins act on (``shovel``, ...): component -> the
        # validator of a value (``NodeContext.add_parameter_component``).
        self.parameter_components: dict[str, Callable[[str, str, Any], list[str]]] = {}
        # Control-channel commands plugins add (``NodeContext.add_command``): name -> handler.
        self.plugin_commands: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.connections: set[Connection] = set()
        # The first AMQP listener's (address, port) once the server listens (port 0 resolved).
        self.amqp_address: tuple[str, int] | None = None
        # How queues homed on other nodes are reached (cluster.queue_link); None unclustered.
        self.queue_link: HomeLink | None = None
        # The replicated queues' groups this node takes part in (cluster.replicated_queues).
        self.replicas: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Creations (Change.create) being committed, by (kind, vhost, name): a second creation
        # of the same name waits for the first and then finds it existing.
        self._creating: dict[tuple[str, str | None, str], asyncio.Future[None]] = {}
        self._connection_ids = 0
        self.alarms = AlarmMonitor(self)
        self._flow_paused: set[Connection] = set()  # paused by message store congestion
        if message_store is not None:
            message_store.on_congestion = self.store_congested
        # What follows from a metadata change, beyond the change itself.
        self.events.subscribe(self._close_connections_of, "vhost.deleted", "user.deleted")
        self.events.subscribe(self._queue_created, "queue.created")
        self.events.subscribe(self._queue_deleted, "queue.deleted")

    async def boot(self) -> None:
        """Replay the store and create the default vhost and user on a first start (unless a
        definitions file is configured: the server imports it after the boot).

        A stored change that can no longer be applied (its exchange type's plugin is gone,
        say) is logged and set aside in the store: the node starts with everything else."""
        changes = await self.store.load()
        if self.message_store is not None:
            await self.message_store.open()  # after the metadata store has locked the directory
        await self.store.start()
        for change in changes:
            try:
                prepared = self.prepare(change)
            except Exception as exc:  # noqa: BLE001 - whatever it is, it must not stop the boot
                reason = getattr(exc, "reply_text", None) or f"{type(exc).__name__}: {exc}"
                log.error("setting aside stored %s %r in vhost %r: %s", change.kind, change.name, change.vhost, reason)
                await self.store.set_aside(change, reason)
                continue
            self.apply(change, prepared)
        if self.message_store is not None:
            await self.message_store.recover()
        if self.store.first_start and not self.config.load_definitions:
            config = self.config
            await self.change(Change("vhost", "put", None, config.default_vhost, {}))
            await self.change(
                Change(
                    "user",
                    "put",
                    None,
                    config.default_user,
                    {
                        "password_hash": hash_password(config.default_pass),
                        "tags": list(config.default_user_tags),
                    },
                )
            )
            await self.change(
                Change(
                    "permission",
                    "put",
                    config.default_vhost,
                    config.default_user,
                    dict(config.default_permissions),
                )
            )

    async def change(self, change: Change) -> bool:
        """Commit a metadata change to the store, then apply it here. Whatever can fail in
        applying it fails in ``prepare``, before the commit: a committed change always applies.

        True: the change took effect. False: a ``create`` change found the thing existing (made
        by a concurrent change that committed first); nothing was committed or changed.

        A replicating store (``MetadataStore.applies``: the cluster's) applies committed changes
        itself, on every node in log order, and answers whether a creation took effect there."""
        if self.store.applies and change.replicated:
            self.prepare(change)  # what cannot apply is refused before it is proposed
            return await self.store.commit(change) is not False
        if not change.create:
            prepared = self.prepare(change)
            await self.store.commit(change)
            self.apply(change, prepared)
            return True
        key = (change.kind, change.vhost, change.name)
        while (pending := self._creating.get(key)) is not None:
            await asyncio.shield(pending)  # the first creation of this name decides
        if self.exists(change):
            return False
        self._creating[key] = done = asyncio.get_running_loop().create_future()
        try:
            prepared = self.prepare(change)
            await self.store.commit(change)
            self.apply(change, prepared)
        finally:
            del self._creating[key]
            done.set_result(None)
        return True

    def exists(self, change: Change) -> bool:
        """Whether the queue or exchange a ``create`` change names exists already."""
        vhost = self.vhosts.get(change.vhost or "")
        table = getattr(vhost, "queues" if change.kind == "queue" else "exchanges", {})
        return change.name in table

    def prepare(self, change: Change) -> Any:
        """Check ``change`` can be applied and build what applying it needs; raises if not."""
        if change.kind in VHOST_KINDS:
            vhost = self.vhosts.get(change.vhost or "")
            if vhost is None:
                raise ValueError(f"no vhost '{change.vhost}'")
            return vhost.prepare(change)
        if change.kind == "vhost":
            if change.op == "put":
                require(isinstance(change.record.get("description", ""), str), "description is not a string")
                require(is_tags(change.record.get("tags", [])), "tags are not strings")
            return None
        self.state.check(change)
        return None

    def apply(self, change: Change, prepared: Any) -> None:
        """Install a committed change that ``prepare`` passed (``prepared`` is what it built)."""
        if change.kind in VHOST_KINDS:
            vhost = self.vhosts.get(change.vhost or "")
            if vhost is not None:  # (gone meanwhile: the change went with it)
                vhost.apply(change, prepared)
        elif change.kind == "vhost":
            getattr(self, f"_apply_vhost_{change.op}")(change)
        else:
            self.state.apply(change)

    def snapshot(self) -> list[Change]:
        """The whole metadata state as puts, in an order that applies cleanly: what a joining
        node starts from (``restore``)."""
        changes = [
            Change("vhost", "put", None, name, {"description": v.description, "tags": list(v.tags)})
            for name, v in self.vhosts.items()
        ]
        changes += self.state.snapshot()
        for vhost in self.vhosts.values():
            changes += vhost.snapshot()
        return changes

    def restore(self, changes: list[Change]) -> None:
        """Apply a snapshot to this (empty) broker."""
        for change in changes:
            self.apply(change, self.prepare(change))

    def clear(self) -> None:
        """Drop every vhost (with what it holds), user and global setting without committing
        anything: a node about to take its cluster's snapshot (``restore``)."""
        for change in reversed(self.snapshot()):
            if change.kind == "vhost" or change.vhost is None:
                self.apply(Change(change.kind, "delete", change.vhost, change.name), None)

    # -- what follows from a change (event subscribers) -----------------------------------

    def _close_connections_of(self, event: Event) -> None:
        what = "vhost" if event.name == "vhost.deleted" else "user"
        name = event.payload["name"]
        for connection in list(self.connections):
            if connection.vhost is None:
                continue  # still in the handshake: it finds out when it opens the vhost
            if (connection.vhost.name if what == "vhost" else connection.username) == name:
                connection.force_close(f"{what} '{name}' is deleted")

    def _queue_created(self, event: Event) -> None:
        queue = event.subject
        store = self.message_store
        if store is None:
            return
        if queue.home_node != self.node_name:
            store.keep(queue)  # its messages are its home node's
        elif hasattr(queue, "enable_paging"):
            if queue.durable and queue.exclusive_owner is None:
                store.attach(queue)
            queue.enable_paging(store, self.config.queue_memory_window)

    @staticmethod
    def _queue_deleted(event: Event) -> None:
        event.subject.delete()

    def _apply_vhost_put(self, change: Change) -> None:
        vhost = self.vhosts.get(change.name)
        created = vhost is None
        if vhost is None:
            vhost = VirtualHost(self, change.name)
            vhost.install_defaults()
            self.vhosts[change.name] = vhost
        tags = change.record.get("tags") or []
        vhost.description = change.record.get("description", "")
        vhost.tags = [t for t in tags.split(",") if t] if isinstance(tags, str) else list(tags)
        if created:
            self.events.emit("vhost.created", vhost, name=change.name)

    def _apply_vhost_delete(self, change: Change) -> None:
        vhost = self.vhosts.pop(change.name, None)
        if vhost is None:
            return
        vhost.forget_all()
        self.state.forget_vhost(change.name)
        self.events.emit("vhost.deleted", name=change.name)

    # -- housekeeping --------------------------------------------------------------------

    def store_congested(self, on: bool) -> None:
        """Paged messages arrive faster than the message store writes them: stop reading the
        sockets of connections that publish until it caught up (as RabbitMQ's credit flow,
        silently: no connection.blocked)."""
        if on:
            for connection in self.connections:
                if any(c.stat_publish for c in connection.channels.values()):
                    connection.pause_reading("store")
                    self._flow_paused.add(connection)
        else:
            paused, self._flow_paused = self._flow_paused, set()
            for connection in paused:
                connection.resume_reading("store")

    def next_connection_id(self) -> str:
        self._connection_ids += 1
        return f"{self.node_name}/{self._connection_ids}"

    def throttle_publishers(self, reason: str, on: bool) -> None:
        """Stop (True) or resume (False) reading from connections that publish, for ``reason``
        (a store or link falling behind what publishers send it: RabbitMQ's credit flow, silent)."""
        for connection in self.connections:
            if not on:
                connection.resume_reading(reason)
            elif any(channel.stat_publish for channel in connection.channels.values()):
                connection.pause_reading(reason)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background coroutine, keeping a reference and logging its failure."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())
