"""The broker: vhosts, users and permissions of one node, the metadata store they change
through, and the live connections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqp_server.access import Permission, User, hash_password, validate_pattern
from amqp_server.alarms import AlarmMonitor
from amqp_server.metadata import Change, MemoryStore, MetadataStore
from amqp_server.vhost import VirtualHost
from exchanges.registry import load_exchange_types
from queues.arguments import is_integer
from queues.registry import load_queue_types

if TYPE_CHECKING:
    from amqp_server.connection import Connection
    from amqp_server.message_store import MessageStore

log = logging.getLogger(__name__)

#: Kinds of change that live in a vhost (VirtualHost.prepare / apply).
VHOST_KINDS = frozenset(("exchange", "queue", "binding", "policy", "operator_policy"))


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise ValueError(reason)


def _is_tags(tags: Any) -> bool:
    """Tags as stored: a list of strings, or one comma-separated string (vhosts)."""
    return isinstance(tags, str) or (isinstance(tags, list) and all(isinstance(tag, str) for tag in tags))


@dataclass
class BrokerConfig:
    """Settings, named after their rabbitmq.conf keys where RabbitMQ has one."""

    host: str = "0.0.0.0"
    port: int = 5672
    management_port: int = 15672
    data_dir: str | None = "data"  # None: metadata in memory only (nothing survives a restart)
    node_name: str = "rabbit@localhost"
    cluster_name: str = ""
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    loopback_users: list[str] = field(default_factory=lambda: ["guest"])
    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60
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
        self.vhosts: dict[str, VirtualHost] = {}
        self.users: dict[str, User] = {}
        self.permissions: dict[tuple[str, str], Permission] = {}
        # (user, vhost, exchange) -> {"write": regex, "read": regex}; stored, not yet enforced.
        self.topic_permissions: dict[tuple[str, str, str], dict[str, str]] = {}
        # Limits: {"max-connections", "max-queues"} per vhost, {"max-connections", "max-channels"}
        # per user; a negative value means no limit.
        self.vhost_limits: dict[str, dict[str, int]] = {}
        self.user_limits: dict[str, dict[str, int]] = {}
        # Runtime parameters of other components (federation, shovel, ...): stored and exported.
        self.parameters: dict[tuple[str, str, str], Any] = {}
        self.global_parameters: dict[str, Any] = {}
        self.connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Creations (Change.create) being committed, by (kind, vhost, name): a second creation
        # of the same name waits for the first and then finds it existing.
        self._creating: dict[tuple[str, str | None, str], asyncio.Future[None]] = {}
        self._connection_ids = 0
        self.alarms = AlarmMonitor(self)
        self._flow_paused: set[Connection] = set()  # paused by message store congestion
        if message_store is not None:
            message_store.on_congestion = self._store_congested

    async def boot(self) -> None:
        """Replay the store, create the default vhost and user on a first start (unless a
        definitions file is configured), then import that file.

        A stored change that can no longer be applied (its exchange type's plugin is gone,
        say) is logged and set aside in the store: the node starts with everything else."""
        changes = await self.store.load()
        if self.message_store is not None:
            await self.message_store.open()  # after the metadata store has locked the directory
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
                    {"password_hash": hash_password(config.default_pass), "tags": ["administrator"]},
                )
            )
            await self.change(Change("permission", "put", config.default_vhost, config.default_user, {}))
        if self.config.load_definitions:
            await self.load_definitions_file()

    async def change(self, change: Change) -> bool:
        """Commit a metadata change to the store, then apply it here. Whatever can fail in
        applying it fails in ``prepare``, before the commit: a committed change always applies.

        True: the change took effect. False: a ``create`` change found the thing existing (made
        by a concurrent change that committed first); nothing was committed or changed."""
        if not change.create:
            prepared = self.prepare(change)
            await self.store.commit(change)
            self.apply(change, prepared)
            return True
        key = (change.kind, change.vhost, change.name)
        while (pending := self._creating.get(key)) is not None:
            await asyncio.shield(pending)  # the first creation of this name decides
        if self._exists(change):
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

    def _exists(self, change: Change) -> bool:
        vhost = self.vhosts.get(change.vhost or "")
        table = getattr(vhost, "queues" if change.kind == "queue" else "exchanges", {})
        return change.name in table

    async def load_definitions_file(self) -> None:
        """Import the definitions file named by ``load_definitions`` (at every boot, as RabbitMQ)."""
        from amqp_server.definitions import load_file  # definitions uses Admin, which imports us

        await load_file(self, self.config.load_definitions)

    def prepare(self, change: Change) -> Any:
        """Check ``change`` can be applied and build what applying it needs; raises if not."""
        if change.kind in VHOST_KINDS:
            vhost = self.vhosts.get(change.vhost or "")
            if vhost is None:
                raise ValueError(f"no vhost '{change.vhost}'")
            return vhost.prepare(change)
        check = getattr(self, f"_check_{change.kind}_{change.op}", None)
        if check is None and not hasattr(self, f"_apply_{change.kind}_{change.op}"):
            raise ValueError(f"unknown change {change.kind} {change.op}")
        if check is not None:
            check(change.record)
        return None

    def apply(self, change: Change, prepared: Any) -> None:
        """Install a committed change that ``prepare`` passed (``prepared`` is what it built)."""
        if change.kind in VHOST_KINDS:
            vhost = self.vhosts.get(change.vhost or "")
            if vhost is not None:  # (gone meanwhile: the change went with it)
                vhost.apply(change, prepared)
                if change.kind == "queue" and change.op == "put" and self.message_store is not None:
                    if change.record.get("durable") and change.record.get("exclusive_owner") is None:
                        self.message_store.attach(prepared)
                    prepared.enable_paging(self.message_store, self.config.queue_memory_window)
            return
        getattr(self, f"_apply_{change.kind}_{change.op}")(change)

    # What a stored record of each broker-level kind must hold for its _apply_ to succeed.
    @staticmethod
    def _check_vhost_put(record: dict[str, Any]) -> None:
        _require(isinstance(record.get("description", ""), str), "description is not a string")
        _require(_is_tags(record.get("tags", [])), "tags are not strings")

    @staticmethod
    def _check_user_put(record: dict[str, Any]) -> None:
        _require(isinstance(record.get("password_hash", ""), str), "password_hash is not a string")
        _require(_is_tags(record.get("tags", [])) and not isinstance(record.get("tags"), str), "tags are not a list")
        _require(isinstance(record.get("hashing_algorithm", ""), str), "hashing_algorithm is not a string")

    @staticmethod
    def _check_permission_put(record: dict[str, Any]) -> None:
        for kind in ("configure", "write", "read"):
            validate_pattern(record.get(kind, ".*"))

    @staticmethod
    def _check_topic_permission_put(record: dict[str, Any]) -> None:
        exchanges = record.get("exchanges", {})
        _require(isinstance(exchanges, dict), "exchanges is not a table")
        for patterns in exchanges.values():
            _require(isinstance(patterns, dict), "patterns are not a table")
            for kind in ("write", "read"):
                validate_pattern(patterns.get(kind, ""))

    @staticmethod
    def _check_vhost_limits_put(record: dict[str, Any]) -> None:
        limits = record.get("limits")
        _require(isinstance(limits, dict) and all(is_integer(v) for v in limits.values()), "limits are not integers")

    _check_user_limits_put = _check_vhost_limits_put

    @staticmethod
    def _check_parameter_put(record: dict[str, Any]) -> None:
        _require(all(isinstance(record.get(k), str) for k in ("component", "name")), "component or name missing")
        _require("value" in record, "value missing")

    @staticmethod
    def _check_global_parameter_put(record: dict[str, Any]) -> None:
        _require("value" in record, "value missing")

    def _apply_vhost_put(self, change: Change) -> None:
        vhost = self.vhosts.get(change.name)
        if vhost is None:
            vhost = VirtualHost(self, change.name)
            vhost.install_defaults()
            self.vhosts[change.name] = vhost
        tags = change.record.get("tags") or []
        vhost.description = change.record.get("description", "")
        vhost.tags = [t for t in tags.split(",") if t] if isinstance(tags, str) else list(tags)

    def _apply_vhost_delete(self, change: Change) -> None:
        vhost = self.vhosts.pop(change.name, None)
        if vhost is None:
            return
        for queue in list(vhost.queues.values()):
            queue.delete()
        for key in [k for k in self.permissions if k[1] == change.name]:
            del self.permissions[key]
        for key in [k for k in self.topic_permissions if k[1] == change.name]:
            del self.topic_permissions[key]
        for key in [k for k in self.parameters if k[0] == change.name]:
            del self.parameters[key]
        self.vhost_limits.pop(change.name, None)
        for connection in list(self.connections):
            if connection.vhost is vhost:
                connection.force_close(f"vhost '{change.name}' is deleted")

    def _apply_user_put(self, change: Change) -> None:
        record = change.record
        self.users[change.name] = User(
            change.name,
            record.get("password_hash", ""),
            list(record.get("tags", [])),
            record.get("hashing_algorithm", "rabbit_password_hashing_sha256"),
        )

    def _apply_user_delete(self, change: Change) -> None:
        self.users.pop(change.name, None)
        for key in [k for k in self.permissions if k[0] == change.name]:
            del self.permissions[key]
        for key in [k for k in self.topic_permissions if k[0] == change.name]:
            del self.topic_permissions[key]
        self.user_limits.pop(change.name, None)
        for connection in list(self.connections):
            if connection.username == change.name and connection.vhost is not None:
                connection.force_close(f"user '{change.name}' is deleted")

    def _apply_permission_put(self, change: Change) -> None:
        record = change.record
        vhost = change.vhost or ""
        self.permissions[(change.name, vhost)] = Permission(
            change.name,
            vhost,
            record.get("configure", ".*"),
            record.get("write", ".*"),
            record.get("read", ".*"),
        )

    def _apply_permission_delete(self, change: Change) -> None:
        self.permissions.pop((change.name, change.vhost or ""), None)

    # Topic permissions: one change per (user, vhost), name the user (so a user's deletion
    # cascades in the store), record {"exchanges": {exchange: {"write": re, "read": re}}}.
    def _apply_topic_permission_put(self, change: Change) -> None:
        self._apply_topic_permission_delete(change)
        for exchange, patterns in change.record.get("exchanges", {}).items():
            self.topic_permissions[(change.name, change.vhost or "", exchange)] = {
                "write": patterns.get("write", ""),
                "read": patterns.get("read", ""),
            }

    def _apply_topic_permission_delete(self, change: Change) -> None:
        user, vhost = change.name, change.vhost or ""
        for key in [k for k in self.topic_permissions if k[:2] == (user, vhost)]:
            del self.topic_permissions[key]

    # Limits: record {"limits": {...}} replaces the whole set (callers merge when RabbitMQ merges).
    def _apply_vhost_limits_put(self, change: Change) -> None:
        self.vhost_limits[change.name] = dict(change.record["limits"])

    def _apply_vhost_limits_delete(self, change: Change) -> None:
        self.vhost_limits.pop(change.name, None)

    def _apply_user_limits_put(self, change: Change) -> None:
        self.user_limits[change.name] = dict(change.record["limits"])

    def _apply_user_limits_delete(self, change: Change) -> None:
        self.user_limits.pop(change.name, None)

    # Runtime parameters: Change name "component/name" (unique per vhost in the store), record
    # {"component", "name", "value"}; global ones: name, record {"value"}.
    def _apply_parameter_put(self, change: Change) -> None:
        record = change.record
        self.parameters[(change.vhost or "", record["component"], record["name"])] = record["value"]

    def _apply_parameter_delete(self, change: Change) -> None:
        record = change.record
        self.parameters.pop((change.vhost or "", record["component"], record["name"]), None)

    def _apply_global_parameter_put(self, change: Change) -> None:
        self.global_parameters[change.name] = change.record["value"]

    def _apply_global_parameter_delete(self, change: Change) -> None:
        self.global_parameters.pop(change.name, None)

    # -- housekeeping --------------------------------------------------------------------

    def _store_congested(self, on: bool) -> None:
        """Paged messages arrive faster than the message store writes them: stop reading the
        sockets of connections that publish until it caught up (as RabbitMQ's credit flow,
        silently: no connection.blocked)."""
        if on:
            for connection in self.connections:
                if not connection._reading_paused and any(c.stat_publish for c in connection.channels.values()):
                    connection._pause_reading()
                    self._flow_paused.add(connection)
        else:
            paused, self._flow_paused = self._flow_paused, set()
            for connection in paused:
                if connection in self.connections:
                    connection.resume_if_drained()

    def next_connection_id(self) -> str:
        self._connection_ids += 1
        return f"{self.node_name}/{self._connection_ids}"

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
