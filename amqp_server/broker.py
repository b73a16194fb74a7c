"""The broker: vhosts, users and permissions of one node, the metadata store they change
through, and the live connections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqp_server.access import Permission, User, hash_password
from amqp_server.metadata import Change, MemoryStore, MetadataStore
from amqp_server.vhost import VirtualHost
from exchanges.registry import load_exchange_types

if TYPE_CHECKING:
    from amqp_server.connection import Connection

log = logging.getLogger(__name__)


@dataclass
class BrokerConfig:
    """Settings, named after their rabbitmq.conf keys where RabbitMQ has one."""

    host: str = "0.0.0.0"
    port: int = 5672
    management_port: int = 15672
    data_dir: str = "data"
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


class Broker:
    def __init__(self, config: BrokerConfig | None = None, store: MetadataStore | None = None) -> None:
        self.config = config or BrokerConfig()
        self.node_name = self.config.node_name
        self.cluster_name = self.config.cluster_name or self.node_name
        self.store = store or MemoryStore()
        self.exchange_types = load_exchange_types()
        self.vhosts: dict[str, VirtualHost] = {}
        self.users: dict[str, User] = {}
        self.permissions: dict[tuple[str, str], Permission] = {}
        self.connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connection_ids = 0

    async def boot(self) -> None:
        """Replay the store, then create the default vhost and user on a first start."""
        changes = await self.store.load()
        for change in changes:
            self.apply(change)
        if not changes:
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

    async def change(self, change: Change) -> None:
        """Commit a metadata change to the store, then apply it here."""
        await self.store.commit(change)
        self.apply(change)

    def apply(self, change: Change) -> None:
        if change.kind in ("exchange", "queue", "binding"):
            vhost = self.vhosts.get(change.vhost or "")
            if vhost is not None:
                vhost.apply(change)
            return
        getattr(self, f"_apply_{change.kind}_{change.op}")(change)

    def _apply_vhost_put(self, change: Change) -> None:
        if change.name not in self.vhosts:
            vhost = VirtualHost(self, change.name)
            vhost.install_defaults()
            self.vhosts[change.name] = vhost

    def _apply_vhost_delete(self, change: Change) -> None:
        vhost = self.vhosts.pop(change.name, None)
        if vhost is None:
            return
        for queue in list(vhost.queues.values()):
            queue.delete()
        for key in [k for k in self.permissions if k[1] == change.name]:
            del self.permissions[key]
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

    # -- housekeeping --------------------------------------------------------------------

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
