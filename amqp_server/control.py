"""The node-local control channel ``amqp-ctl`` talks to (RabbitMQ's CLI distribution link).

The node listens on the Unix socket ``<data-dir>/control.sock`` and keeps a random secret in
``<data-dir>/.control_secret``; both are readable by the node's owner only, so being able to
read the secret is the authentication, as with RabbitMQ's Erlang cookie: no user or password
is involved and it works with the HTTP API off and no users at all.

One request per connection: a JSON line ``{"secret", "command", "args"}``, answered by a JSON
line ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": text}``. Every command is a
call on ``Admin`` (which the HTTP API uses too); nothing here decides anything.

The same requests, without the secret, come from other hosts over the cluster port
(``amqp-ctl -n name@host``: a control client's link, authenticated by the cluster's cookie,
``cluster.service``), and are answered here too (``answer``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from amqp_server.admin.errors import AdminError

if TYPE_CHECKING:  # amqp-ctl imports this module's names without loading the broker
    from amqp_server.admin.operations import Admin

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
SECRET_NAME = ".control_secret"
REFUSED = "refused: wrong control secret"
BOOTING = "booting"  # the error a control client gets before the node's control channel is up
# BrokerConfig's defaults, for amqp-ctl to find a node started without --data-dir or --node-name
# (tests/cli checks they stay equal).
DEFAULT_DATA_DIR = "data"
DEFAULT_NODE_NAME = "rabbit@localhost"
# The environment variable naming the data directory when --data-dir is not given.
DATA_DIR_ENV = "AMQP_SERVER_DATA_DIR"
APP_STOPPED = "app_stopped"  # the error of a command that needs the application running
# What a node with its application stopped (rabbitmqctl stop_app) still answers.
WHILE_STOPPED = frozenset(
    ("ping", "stop", "stop_app", "start_app", "reset", "force_reset", "environment", "check_running",
     "cluster_status", "join_cluster", "change_cluster_node_type", "forget_cluster_node", "update_cluster_nodes")
)  # fmt: skip
MAX_REQUEST = 64 * 1024 * 1024  # an import_definitions document travels in one line
# Cluster membership (cluster.operations); those changing this node's own membership need the
# application stopped, as rabbitmqctl's.
CLUSTER_COMMANDS = frozenset(("cluster_status", "join_cluster", "change_cluster_node_type", "forget_cluster_node",
                              "update_cluster_nodes", "quorum"))  # fmt: skip
APP_STOPPED_COMMANDS = frozenset(("join_cluster", "change_cluster_node_type", "update_cluster_nodes"))


@contextmanager
def reachable(path: Path) -> Iterator[str]:
    """A name for the socket ``path`` that fits an AF_UNIX address (108 bytes): a longer one is
    reached through an open descriptor of its directory (Linux's /proc/self/fd), so that a data
    directory deep in the file system still works."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def read_or_create_secret(data_dir: str) -> str:
    """The node's secret, made on first start and kept across restarts (as the Erlang cookie)."""
    path = Path(data_dir) / SECRET_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


Handler = Callable[["Admin", dict[str, Any]], Any]


# Listings of configuration that refuse a vhost that does not exist (those of live objects,
# _if_vhost, list nothing), as rabbitmqctl's.
VHOST_CHECKED = frozenset(("list_permissions", "list_topic_permissions", "list_policies", "list_operator_policies",
                           "list_parameters", "list_vhost_limits"))  # fmt: skip

# command -> what it calls; ``a`` is the request's arguments.
COMMANDS: dict[str, Handler] = {
    "list_queues": lambda admin, a: _if_vhost(admin, a, admin.list_queues),
    "list_exchanges": lambda admin, a: _if_vhost(admin, a, admin.list_exchanges),
    "list_bindings": lambda admin, a: _if_vhost(admin, a, admin.list_bindings),
    "list_connections": lambda admin, a: admin.list_connections(),
    "list_channels": lambda admin, a: admin.list_channels(),
    "list_consumers": lambda admin, a: _if_vhost(admin, a, admin.list_consumers),
    "list_vhosts": lambda admin, a: admin.list_vhosts(),
    "vhost_info": lambda admin, a: admin.vhost_info(),
    "trace_on": lambda admin, a: admin.set_tracing(a["vhost"], True),
    "trace_off": lambda admin, a: admin.set_tracing(a["vhost"], False),
    "list_users": lambda admin, a: admin.list_users(),
    "list_permissions": lambda admin, a: admin.list_permissions(a.get("vhost")),
    "list_topic_permissions": lambda admin, a: admin.list_topic_permissions(a.get("vhost"), a.get("user")),
    "list_policies": lambda admin, a: admin.list_policies(a["vhost"]),
    "list_operator_policies": lambda admin, a: admin.list_operator_policies(a["vhost"]),
    "list_parameters": lambda admin, a: admin.list_parameters(vhost=a["vhost"]),
    "set_parameter": lambda admin, a: admin.set_parameter(a["vhost"], a["component"], a["name"], a["value"]),
    "clear_parameter": lambda admin, a: admin.clear_parameter(a["vhost"], a["component"], a["name"]),
    "list_vhost_limits": lambda admin, a: admin.list_vhost_limits(a.get("vhost")),
    "list_user_limits": lambda admin, a: admin.list_user_limits(a.get("user")),
    "authenticate_user": lambda admin, a: admin.authenticate_user(a["user"], a["password"]),
    "add_user": lambda admin, a: admin.add_user(a["user"], a["password"]),
    "delete_user": lambda admin, a: admin.delete_user(a["user"]),
    "change_password": lambda admin, a: admin.change_password(a["user"], a["password"]),
    "clear_password": lambda admin, a: admin.clear_password(a["user"]),
    "set_user_tags": lambda admin, a: admin.set_user_tags(a["user"], a["tags"]),
    "add_vhost": lambda admin, a: admin.add_vhost(a["vhost"]),
    "delete_vhost": lambda admin, a: admin.delete_vhost(a["vhost"]),
    "set_permissions": lambda admin, a: admin.set_permissions(a["user"], a["vhost"], *a["patterns"]),
    "clear_permissions": lambda admin, a: admin.clear_permissions(a["user"], a["vhost"]),
    "set_topic_permissions": lambda admin, a: admin.set_topic_permissions(
        a["user"], a["vhost"], a["exchange"], a["write"], a["read"]
    ),
    "clear_topic_permissions": lambda admin, a: admin.clear_topic_permissions(
        a["user"], a["vhost"], a.get("exchange")
    ),
    "set_policy": lambda admin, a: admin.set_policy(
        a["vhost"], a["name"], a["pattern"], a["definition"], a["priority"], a["apply_to"]
    ),
    "clear_policy": lambda admin, a: admin.clear_policy(a["vhost"], a["name"]),
    "set_operator_policy": lambda admin, a: admin.set_operator_policy(
        a["vhost"], a["name"], a["pattern"], a["definition"], a["priority"], a["apply_to"]
    ),
    "clear_operator_policy": lambda admin, a: admin.clear_operator_policy(a["vhost"], a["name"]),
    "set_vhost_limits": lambda admin, a: admin.set_vhost_limits(a["vhost"], a["limits"]),
    "clear_vhost_limits": lambda admin, a: admin.clear_vhost_limits(a["vhost"]),
    "set_user_limits": lambda admin, a: admin.set_user_limits(a["user"], a["limits"]),
    "clear_user_limits": lambda admin, a: admin.clear_user_limits(a["user"], a["limit"]),
    "purge_queue": lambda admin, a: admin.purge_queue(a["vhost"], a["queue"]),
    "delete_queue": lambda admin, a: admin.delete_queue(
        a["vhost"], a["queue"], a["if_unused"], a["if_empty"]
    ),
    "close_connection": lambda admin, a: admin.close_connection(a["name"], a["reason"]),
    "close_all_connections": lambda admin, a: admin.close_all_connections(a["reason"], a.get("vhost")),
    "export_definitions": lambda admin, a: admin.export_definitions(),
    "import_definitions": lambda admin, a: admin.import_definitions(a["document"]),
    # amqp-plugins: every plugin with its state; the explicitly enabled ones become a["plugins"].
    "list_plugins": lambda admin, a: admin.broker.plugins.describe(),
    "set_plugins": lambda admin, a: admin.broker.plugins.set(a["plugins"]),
}


class Application(Protocol):
    """What stop_app and start_app act on: the node's AMQP service (its listeners and client
    connections) apart from the process, the stores and this control channel, as RabbitMQ's
    ``rabbit`` application apart from the Erlang VM. The server passes itself. With it
    stopped, reset empties the node (``Admin.reset``)."""

    @property
    def running(self) -> bool: ...

    async def stop_app(self) -> None: ...

    async def start_app(self) -> None: ...


class ControlServer:
    """The control socket of one node. ``on_stop`` is what ``stop`` (the command) calls;
    ``app``, when given, what ``stop_app``, ``start_app`` and ``reset`` do."""

    def __init__(
        self,
        admin: Admin,
        data_dir: str,
        amqp_port: int,
        on_stop: Callable[[], None],
        app: Application | None = None,
    ) -> None:
        self.admin = admin
        self.amqp_port = amqp_port
        self.path = Path(data_dir) / SOCKET_NAME
        self.secret = read_or_create_secret(data_dir)
        self._on_stop = on_stop
        self.app = app
        self._server: asyncio.AbstractServer | None = None
        self._started = time.monotonic()
        # command -> the node-wide answer it gets here rather than from Admin
        self._node_commands: dict[str, Callable[[], Any]] = {
            "ping": lambda: {"node": self.admin.broker.node_name, "running": self.running},
            "status": self.status,
            "environment": self.environment,
            "listeners": self.listeners,
            "alarms": self.alarms,
            "memory_breakdown": self.memory_breakdown,
            "check_running": lambda: self.running,
        }

    @property
    def running(self) -> bool:
        return self.app is None or self.app.running

    def listeners(self) -> list[dict[str, Any]]:
        """rabbitmq-diagnostics listeners: what the node listens on (the configured HTTP ports;
        a port 0 one, chosen by the system, is not known here and not listed)."""
        config = self.admin.broker.config
        found = [{"interface": str(self.path), "port": 0, "protocol": "control",
                  "purpose": "CLI tool communication"}]  # fmt: skip
        if self.running:
            found.append({"interface": config.host, "port": self.amqp_port, "protocol": "amqp",
                          "purpose": "AMQP 0-9-1"})  # fmt: skip
            for on, host, port, protocol, purpose in (
                (config.management, config.management_host, config.management_port, "http", "HTTP API"),
                (config.prometheus, config.prometheus_host, config.prometheus_port, "http/prometheus",
                 "Prometheus exporter API over HTTP"),
            ):  # fmt: skip
                if on and port:
                    found.append({"interface": host or config.host, "port": port, "protocol": protocol,
                                  "purpose": purpose})  # fmt: skip
        return found

    def alarms(self) -> list[str]:
        """The resources in alarm (``memory``, ``disk``)."""
        return sorted(self.admin.broker.alarms.alarms)

    def memory_breakdown(self) -> dict[str, int]:
        """rabbitmq-diagnostics memory_breakdown in this process's terms: message bodies held
        by queues (``queue_procs``), bytes waiting to be sent to clients
        (``connection_writers``), and the rest of the resident memory (``other_proc``)."""
        broker = self.admin.broker
        alarms = broker.alarms
        total = alarms.memory_used or 0
        queued = sum(
            q.stats().get("message_bytes", 0) for host in broker.vhosts.values() for q in host.queues.values()
        )
        unsent = sum(getattr(c, "unsent_bytes", 0) for c in broker.connections)
        return {"total": total, "queue_procs": queued, "connection_writers": unsent,
                "other_proc": max(total - queued - unsent, 0)}  # fmt: skip

    def environment(self) -> dict[str, Any]:
        """rabbitmqctl environment: the node's configuration (BrokerConfig), secrets hidden."""
        config = self.admin.broker.config
        values = {
            item.name: getattr(config, item.name) for item in sorted(fields(config), key=lambda f: f.name)
        }
        values["default_pass"] = "********"
        return {"amqp_server": {k: v for k, v in values.items() if _plain(v)}}

    def status(self) -> dict[str, Any]:
        """rabbitmqctl status, the short form: runtime, data directory, alarms, totals, listeners."""
        broker = self.admin.broker
        return {
            "pid": os.getpid(),
            "node_name": broker.node_name,
            "uptime": int(time.monotonic() - self._started),
            "data_directory": broker.config.data_dir,
            "alarms": sorted(broker.alarms.alarms),
            "memory_used": broker.alarms.memory_used,
            "memory_limit": broker.alarms.memory_limit,
            "disk_free": broker.alarms.disk_free,
            "disk_free_limit": broker.alarms.disk_limit,
            "connection_count": len(self.admin.list_connections()),
            "queue_count": sum(len(host.queues) for host in broker.vhosts.values()),
            "virtual_host_count": len(broker.vhosts),
            "listeners": [item for item in self.listeners() if item["port"]],
        }

    async def start(self) -> None:
        """Listen; a socket left by a node that died is replaced (the data-dir lock, taken
        before this, guarantees no live node owns it)."""
        self.path.unlink(missing_ok=True)
        # The umask keeps the socket private from the moment it exists, not just after chmod.
        previous = os.umask(0o177)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with reachable(self.path) as name:
                listener.bind(name)
        except OSError:
            listener.close()
            raise
        finally:
            os.umask(previous)
        self._server = await asyncio.start_unix_server(self._serve, sock=listener, limit=MAX_REQUEST)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self._answer(await reader.readline())
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, ValueError):  # a client that went away or sent too much
            pass
        finally:
            writer.close()

    async def answer(self, line: bytes) -> dict[str, Any]:
        """A request without a secret, from a control client the cluster link authenticated
        with the cookie (``cluster.service``)."""
        return await self._answer(line, authenticated=True)

    async def _answer(self, line: bytes, authenticated: bool = False) -> dict[str, Any]:
        try:
            request = json.loads(line)
            secret = None if authenticated else request["secret"]
            command, args = request["command"], request.get("args") or {}
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "malformed request"}
        if not authenticated and (
            not isinstance(secret, str) or not hmac.compare_digest(secret.encode(), self.secret.encode())
        ):
            log.warning("control channel: refused a request with a wrong secret")
            return {"ok": False, "error": REFUSED}
        if command == "stop":
            asyncio.get_running_loop().call_soon(self._on_stop)
            return {"ok": True, "result": None}
        if command in ("stop_app", "start_app", "reset", "force_reset"):
            return await self._application(command)
        if command in CLUSTER_COMMANDS:
            return await self._cluster(command, args)
        if not self.running and command not in WHILE_STOPPED:
            return {"ok": False, "error": APP_STOPPED}
        node_command = self._node_commands.get(command)
        handler = COMMANDS.get(command)
        plugin_command = self.admin.broker.plugin_commands.get(command)  # an enabled plugin's
        if plugin_command is not None:
            node_command = lambda: plugin_command(args)  # noqa: E731
        if handler is None and node_command is None:
            return {"ok": False, "error": f"unknown command {command}"}
        vhost = args.get("vhost")
        if command in VHOST_CHECKED and vhost is not None and vhost not in self.admin.broker.vhosts:
            return {"ok": False, "error": f"Virtual host '{vhost}' does not exist"}
        try:
            result = node_command() if node_command is not None else handler(self.admin, args)  # type: ignore[misc]
            if isinstance(result, Awaitable):
                result = await result
        except AdminError as exc:
            return {"ok": False, "error": str(exc)}
        except KeyError as exc:
            return {"ok": False, "error": f"missing argument {exc}"}
        except Exception as exc:  # e.g. a definitions document that cannot be imported: still answered
            log.exception("control command %s failed", command)
            return {"ok": False, "error": str(exc) or type(exc).__name__}
        return {"ok": True, "result": result}

    async def _application(self, command: str) -> dict[str, Any]:
        """stop_app, start_app, reset, force_reset: each only with the server's hooks; reset
        only with the application stopped, as RabbitMQ's."""
        app = self.app
        if app is None:
            return {"ok": False, "error": f"{command} is not supported by this node"}
        if command in ("reset", "force_reset"):
            if app.running:
                return {"ok": False, "error": "app_running"}
            from cluster.operations import leave_cluster  # (as in _cluster)

            try:
                await leave_cluster(self.admin.broker)  # a member leaves its cluster first
            except AdminError as exc:
                return {"ok": False, "error": str(exc)}
            await self.admin.reset()
        elif command == "stop_app" and app.running:
            await app.stop_app()
        elif command == "start_app" and not app.running:
            await app.start_app()
        return {"ok": True, "result": None}


    async def _cluster(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        from cluster import operations  # (amqp-ctl imports this module without the broker)

        if command in APP_STOPPED_COMMANDS and self.running:
            return {"ok": False, "error": "app_running"}
        broker = self.admin.broker
        try:
            if command == "cluster_status":
                result = operations.cluster_status(broker, self.listeners())
            elif command == "join_cluster":
                result = await operations.join_cluster(broker, args["node"], bool(args.get("ram")))
            elif command == "change_cluster_node_type":
                result = await operations.change_node_type(broker, args["type"])
            elif command == "forget_cluster_node":
                result = await operations.forget_cluster_node(broker, args["node"])
            elif command == "quorum":
                result = await operations.quorum(broker, args)
            else:  # update_cluster_nodes: membership is the cluster's log, nothing to seed
                result = None
        except AdminError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "result": result}


def _if_vhost(admin: Admin, args: dict[str, Any], listing: Callable[[str], list[Any]]) -> list[Any]:
    """A listing of live objects of a vhost: empty for a vhost that does not exist, as rabbitmqctl's."""
    return listing(args["vhost"]) if args["vhost"] in admin.broker.vhosts else []


def _plain(value: Any) -> bool:
    """A configuration value that has a JSON form (not a callable or an object)."""
    return value is None or isinstance(value, str | int | float | bool | list | tuple | dict)
