"""``amqp-ctl``: rabbitmqctl's commands, texts and exit codes, over the node's control socket.

The node is found through its data directory (``--data-dir``, default ``./data`` as the
server's): the socket and the secret are there (see ``amqp_server.control``). ``-n`` naming
another node reaches it over its cluster port with the cookie (``cluster.control_client``), over
TLS when the config file the nodes read (``--config``, ``$RABBITMQ_CONFIG_FILE``) turns
``cluster.ssl`` on.
Options may come anywhere on the line, as rabbitmqctl takes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from amqp_server.control import (
    APP_STOPPED,
    BOOTING,
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    DEFAULT_NODE_NAME,
    REFUSED,
    SECRET_NAME,
    SOCKET_NAME,
    WHILE_STOPPED,
    reachable,
)
from amqp_server.core.access import hash_password

if TYPE_CHECKING:
    from amqp_server.tls import TlsOptions

# sysexits.h, as rabbitmqctl exits.
OK, USAGE, DATA_ERROR, NO_USER, UNAVAILABLE, SOFTWARE, CONFIG = 0, 64, 65, 67, 69, 70, 78

QUEUE_COLUMNS = ("name", "messages", "messages_ready", "messages_unacknowledged", "consumers", "durable",
                 "auto_delete", "exclusive", "arguments", "policy", "type", "memory", "state", "message_bytes",
                 "message_bytes_ready", "message_bytes_unacknowledged", "messages_ram", "messages_ready_ram",
                 "messages_unacknowledged_ram", "slave_pids", "synchronised_slave_pids")  # fmt: skip
EXCHANGE_COLUMNS = ("name", "type", "durable", "auto_delete", "internal", "arguments", "policy")
BINDING_COLUMNS = (
    "source_name",
    "source_kind",
    "destination_name",
    "destination_kind",
    "routing_key",
    "arguments",
)
CONNECTION_COLUMNS = ("name", "host", "port", "peer_host", "peer_port", "user", "vhost", "state", "channels", "channel_max", "frame_max", "timeout",
                      "auth_mechanism", "recv_oct", "recv_cnt", "send_oct", "send_cnt")  # fmt: skip
CHANNEL_COLUMNS = ("name", "connection", "number", "user", "vhost", "consumer_count", "messages_unacknowledged",
                   "messages_unconfirmed", "prefetch_count", "global_prefetch_count", "confirm", "transactional")  # fmt: skip
CONSUMER_COLUMNS = ("queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active",
                    "activity_status", "arguments")  # fmt: skip
POLICY_COLUMNS = ("vhost", "name", "pattern", "apply-to", "definition", "priority")
# The order rabbitmqctl list_parameters shows an operator policy's value in.
POLICY_VALUE_ORDER = ("pattern", "definition", "priority", "apply-to")
# Options that take a value; the others are flags.
VALUE_OPTIONS = {"-n": "node", "--node": "node", "-p": "vhost", "--vhost": "vhost", "--formatter": "formatter",
                 "--data-dir": "data_dir", "--priority": "priority", "--apply-to": "apply_to", "--user": "user",
                 "-t": "timeout", "--timeout": "timeout", "--unit": "unit", "--erlang-cookie": "erlang_cookie",
                 "--cookie-file": "cookie_file", "--config": "config"}  # fmt: skip
FLAG_OPTIONS = {"-q": "quiet", "--quiet": "quiet", "-s": "silent", "--silent": "silent", "--global": "global",
                "--if-unused": "if_unused", "--if-empty": "if_empty", "--no-table-headers": "no_headers",
                "--ram": "ram", "--disc": "disc", "--offline": "offline"}  # fmt: skip


class CommandError(Exception):
    """What rabbitmqctl prints as ``Error:`` and the status it exits with."""

    def __init__(self, message: str, code: int = SOFTWARE, prefix: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.prefix = prefix


class NodeDown(Exception):
    """The node could not be reached or refused us; the reason goes under DIAGNOSTICS.
    ``client``: (this client's name, its cookie's hash) when it was asked over the cluster port."""

    def __init__(self, reason: str, client: tuple[str, str] | None = None) -> None:
        super().__init__(reason)
        self.client = client


@dataclass
class Context:
    """The parsed command line and the node it talks to."""

    args: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    tool: str = "amqp-ctl"
    command: str = ""
    reported_node: str | None = None  # the name the node gives itself (its answer to ping)
    argv: list[str] = field(default_factory=list)  # as given, for "Arguments given:"
    remote: tuple[str, tuple[str, int]] | None = None  # -n's node and address, not the data directory's

    @property
    def node(self) -> str:
        if self.remote is not None:
            return self.remote[0]
        return self.options.get("node") or self.reported_node or DEFAULT_NODE_NAME

    @property
    def vhost(self) -> str:
        return self.options.get("vhost") or "/"

    @property
    def quiet(self) -> bool:
        return bool(self.options.get("quiet") or self.options.get("silent"))

    @property
    def as_json(self) -> bool:
        return self.options.get("formatter") == "json"

    @property
    def data_dir(self) -> Path:
        env = os.environ
        return Path(
            self.options.get("data_dir") or env.get(DATA_DIR_ENV) or env.get("RABBITMQ_MNESIA_DIR") or DEFAULT_DATA_DIR
        )

    def banner(self, text: str) -> None:
        if not self.quiet and not self.as_json:
            print(text)

    def call(self, command: str, error_code: int = SOFTWARE, **args: Any) -> Any:
        """Run ``command`` on the node; its refusal becomes a CommandError with ``error_code``
        (rabbitmqctl's status for that command), or 67 for a missing user as rabbitmqctl does."""
        if self.remote is None:
            reply = request(self.data_dir, command, args)
        else:
            reply = remote_request(self, command, args)
        if reply.get("ok"):
            return reply.get("result")
        self.call_error(str(reply.get("error")), error_code)

    def call_error(self, message: str, error_code: int = SOFTWARE) -> NoReturn:
        """The node's refusal ``message`` as rabbitmqctl shows it."""
        if message in (APP_STOPPED, "app_running"):  # rabbitmqctl's validation of the app's state
            state, advice = (("running", "Start it with '{} start_app'") if message == APP_STOPPED
                             else ("stopped", "Stop it with '{} stop_app'"))  # fmt: skip
            raise CommandError(
                f"Error: this command requires the 'rabbit' app to be {state} on the target node. "
                f"{advice.format(self.tool)}.\nArguments given:\n\t{' '.join(self.argv)}",
                USAGE,
                prefix=False,
            )
        if message.startswith("User ") and message.endswith("does not exist"):
            error_code = NO_USER
        elif message.startswith("Virtual host '"):  # rabbitmqctl prints this one without "Error:"
            raise CommandError(message, DATA_ERROR, prefix=False)
        raise CommandError(message, error_code)


def request(data_dir: Path, command: str, args: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """One request on the control socket; NodeDown when there is no node or it refuses us."""
    try:
        secret = (data_dir / SECRET_NAME).read_text().strip()
    except OSError as exc:
        raise NodeDown(f"cannot read the control secret {data_dir / SECRET_NAME}: {exc.strerror}") from None
    path = data_dir / SOCKET_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            with reachable(path) as name:
                sock.connect(name)
            sock.sendall(json.dumps({"secret": secret, "command": command, "args": args}).encode() + b"\n")
            with sock.makefile("rb") as stream:
                line = stream.readline()
    except OSError as exc:
        raise NodeDown(f"unable to connect to the control socket {path}: {exc.strerror or exc}") from None
    if not line:
        raise NodeDown(f"the node closed the control socket {path} without answering")
    reply = json.loads(line)
    if reply.get("error") == REFUSED:
        raise NodeDown("the node refused the control secret (it does not match the node's)")
    return reply


def cookie(ctx: Context) -> str:
    """The cookie for a node reached over its cluster port: ``--erlang-cookie``, the file
    ``--cookie-file`` names, ``RABBITMQ_ERLANG_COOKIE``, else the data directory's secret (the
    cookie of the nodes started without ``--cookie-file``)."""
    if ctx.options.get("erlang_cookie"):
        return str(ctx.options["erlang_cookie"])
    path = ctx.options.get("cookie_file")
    if not path and os.environ.get("RABBITMQ_ERLANG_COOKIE"):
        return os.environ["RABBITMQ_ERLANG_COOKIE"]
    path = Path(path or ctx.data_dir / SECRET_NAME)
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise NodeDown(f"cannot read the cookie {path}: {exc.strerror}") from None


def cluster_tls(ctx: Context) -> TlsOptions | None:
    """The nodes' inter-node TLS options when their config file turns ``cluster.ssl`` on, as
    rabbitmqctl takes the nodes' ``ssl_dist_optfile``: the file the server reads, ``--config``
    else ``$RABBITMQ_CONFIG_FILE`` (when it exists, as the server); CommandError (78,
    EX_CONFIG) for one the server would not start with."""
    from amqp_server.cli import read_config_file
    from amqp_server.config import config_file
    from amqp_server.core.broker import BrokerConfig

    path = ctx.options.get("config") or config_file(os.environ)
    if not path or not (ctx.options.get("config") or os.path.exists(path)):
        return None
    config = BrokerConfig()
    try:
        read_config_file(path, config)
    except SystemExit as exc:  # (the server's one line for it)
        raise CommandError(str(exc.code), CONFIG) from None
    return config.cluster_ssl_options if config.cluster_ssl else None


def remote_request(ctx: Context, command: str, args: dict[str, Any]) -> dict[str, Any]:
    """One request to ``-n``'s node over its cluster port; NodeDown when it cannot be asked."""
    from cluster.control_client import Unreachable, call, client_name, cookie_hash

    assert ctx.remote is not None
    node, address = ctx.remote
    tls = cluster_tls(ctx)
    secret = cookie(ctx)
    client = (client_name(node), cookie_hash(secret))
    try:
        reply = call(node, address, secret, {"command": command, "args": args}, tls=tls)
    except Unreachable as exc:
        raise NodeDown("\n  * ".join(exc.lines), client) from None
    if reply.get("error") == BOOTING:
        raise NodeDown("the node is starting or stopping: its control channel is not up", client)
    return reply


# -- output ----------------------------------------------------------------------------------


def erlang_term(value: Any) -> str:
    """A value as rabbitmqctl's table shows a term: strings quoted inside lists and tuples."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "[" + ",".join(f"{{{erlang_term(k)},{erlang_term(v)}}}" for k, v in value.items()) + "]"
    if isinstance(value, list):
        return "[" + ",".join(erlang_term(v) for v in value) + "]"
    return "undefined" if value is None else str(value)


def field_type(value: Any) -> str:
    """The AMQP field type rabbitmqctl's JSON shows for a table value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return "longstr"


def cell(column: str, value: Any) -> str:
    if column == "arguments" and isinstance(value, dict):
        return erlang_term(value)
    if column == "tags" and isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return compact(value)
    return "" if value is None else str(value)


def json_cell(column: str, value: Any) -> Any:
    if column == "arguments" and isinstance(value, dict):
        return [[key, field_type(v), v] for key, v in value.items()]
    if column == "definition" and isinstance(value, dict):
        return compact(value)  # rabbitmqctl gives a policy's definition as a JSON string
    return value


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def print_rows(
    ctx: Context, columns: tuple[str, ...] | list[str], rows: list[dict[str, Any]], blank: bool = False
) -> None:
    """rabbitmqctl's list output: a JSON array one object a line, or tab-separated values under a
    header line; ``blank``: the commands that print an empty line when there is nothing."""
    if ctx.as_json:
        lines = [compact({c: json_cell(c, row.get(c)) for c in columns}) for row in rows]
        print("[\n" + "".join(("," if i else "") + line + "\n" for i, line in enumerate(lines)) + "]")
        return
    if not rows:
        if blank:
            print()
        return
    if not ctx.options.get("no_headers"):
        print("\t".join(columns))
    for row in rows:
        print("\t".join(cell(c, row.get(c)) for c in columns))


def chosen_columns(
    ctx: Context, allowed: tuple[str, ...], default: tuple[str, ...], command: str
) -> list[str]:
    asked = ctx.args or list(default)
    unknown = [c for c in asked if c not in allowed]
    if unknown:
        raise CommandError(
            f"Error (argument validation): Info key(s) {','.join(unknown)} are not supported\nArguments given:\n\t{' '.join(ctx.argv)}",
            USAGE,
            prefix=False,
        )
    return asked


# -- commands --------------------------------------------------------------------------------

Handler = Callable[[Context], None]
CTL, DIAGNOSTICS, QUEUES = "amqp-ctl", "amqp-diagnostics", "amqp-queues"  # rabbitmqctl, -diagnostics, -queues
# name -> (positional arguments needed, handler, the tools that have it)
COMMANDS: dict[str, tuple[int, Handler, tuple[str, ...]]] = {}
# Commands that run without a reachable node (forget_cluster_node reaches it unless --offline).
OFFLINE = ("hash_password", "await_startup", "forget_cluster_node")


def command(name: str, needs: int = 0, tools: tuple[str, ...] = (CTL,)) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (needs, handler, tools)
        return handler

    return register


BOTH = (CTL, DIAGNOSTICS)


@command("status", tools=BOTH)
def status(ctx: Context) -> None:
    ctx.banner(f"Status of node {ctx.node} ...")
    info = ctx.call("status")
    if ctx.as_json:
        print(compact(info))
        return
    gb = 1e9
    alarms = "\n".join(f" * {alarm}" for alarm in info["alarms"]) or "(none)"
    listeners = "\n".join(listener_line(item) for item in info["listeners"])
    print(
        f"Runtime\n\nOS PID: {info['pid']}\nUptime (seconds): {info['uptime']}\nNode name: {info['node_name']}\n\n"
        f"Data directory\n\nNode data directory: {info['data_directory']}\n\nAlarms\n\n{alarms}\n\n"
        f"Memory\n\nTotal memory used: {info['memory_used'] / gb:.4f} gb\n"
        f"Memory high watermark: {info['memory_limit'] / gb:.4f} gb\n\n"
        f"Free Disk Space\n\nLow free disk space watermark: {info['disk_free_limit'] / gb:.2f} gb\n"
        f"Free disk space: {info['disk_free'] / gb:.4f} gb\n\n"
        f"Totals\n\nConnection count: {info['connection_count']}\nQueue count: {info['queue_count']}\n"
        f"Virtual host count: {info['virtual_host_count']}\n\nListeners\n\n{listeners}"
    )


@command("ping", tools=BOTH)
def ping(ctx: Context) -> None:
    ctx.banner(f"Will ping {ctx.node}. This only checks if the OS process is running and registered with epmd. "
               "Timeout: 60000 ms.")  # fmt: skip
    ctx.call("ping")
    if not ctx.as_json:
        print("Ping succeeded")


@command("await_startup")
def await_startup(ctx: Context) -> None:
    """Retries until the node answers or the timeout (seconds, as rabbitmqctl's) passes."""
    deadline = time.monotonic() + float(ctx.options.get("timeout") or 300)
    while True:
        try:
            if ctx.call("ping")["running"]:
                return
        except NodeDown:
            if time.monotonic() >= deadline:
                raise
        if time.monotonic() >= deadline:
            raise CommandError("rabbit_is_not_running", UNAVAILABLE)
        time.sleep(0.1)


@command("stop")
def stop(ctx: Context) -> None:
    ctx.banner(f"Stopping and halting node {ctx.node} ...")
    ctx.call("stop")
    # As rabbitmqctl stop, return once the node is gone: its socket stops answering.
    deadline = time.monotonic() + float(ctx.options.get("timeout") or 60)
    while time.monotonic() < deadline:
        try:
            ctx.call("ping")
        except NodeDown:
            return
        time.sleep(0.05)
    raise CommandError(f"node {ctx.node} did not stop in time")


@command("list_queues", tools=BOTH)
def list_queues(ctx: Context) -> None:
    columns = chosen_columns(ctx, QUEUE_COLUMNS, ("name", "messages"), "list_queues")
    ctx.banner("Timeout: 60.0 seconds ...")
    ctx.banner(f"Listing queues for vhost {ctx.vhost} ...")
    print_rows(ctx, columns, ctx.call("list_queues", vhost=ctx.vhost))


@command("list_exchanges", tools=BOTH)
def list_exchanges(ctx: Context) -> None:
    columns = chosen_columns(ctx, EXCHANGE_COLUMNS, ("name", "type"), "list_exchanges")
    ctx.banner(f"Listing exchanges for vhost {ctx.vhost} ...")
    print_rows(ctx, columns, ctx.call("list_exchanges", vhost=ctx.vhost))


@command("list_bindings", tools=BOTH)
def list_bindings(ctx: Context) -> None:
    columns = chosen_columns(ctx, BINDING_COLUMNS, BINDING_COLUMNS, "list_bindings")
    ctx.banner(f"Listing bindings for vhost {ctx.vhost}...")
    print_rows(ctx, columns, ctx.call("list_bindings", vhost=ctx.vhost))


@command("list_connections", tools=BOTH)
def list_connections(ctx: Context) -> None:
    columns = chosen_columns(
        ctx, CONNECTION_COLUMNS, ("user", "peer_host", "peer_port", "state"), "list_connections"
    )
    ctx.banner("Listing connections ...")
    print_rows(ctx, columns, ctx.call("list_connections"))


@command("list_channels", tools=BOTH)
def list_channels(ctx: Context) -> None:
    default = ("name", "user", "consumer_count", "messages_unacknowledged")  # rabbitmqctl's pid -> name
    columns = chosen_columns(ctx, CHANNEL_COLUMNS, default, "list_channels")
    ctx.banner("Listing channels ...")
    print_rows(ctx, columns, ctx.call("list_channels"))


@command("list_consumers", tools=BOTH)
def list_consumers(ctx: Context) -> None:
    default = tuple(c for c in CONSUMER_COLUMNS if c != "activity_status")  # as rabbitmqctl's
    columns = chosen_columns(ctx, CONSUMER_COLUMNS, default, "list_consumers")
    ctx.banner(f"Listing consumers in vhost {ctx.vhost} ...")
    print_rows(ctx, columns, ctx.call("list_consumers", vhost=ctx.vhost))


@command("list_vhosts", tools=BOTH)
def list_vhosts(ctx: Context) -> None:
    columns = chosen_columns(ctx, ("name", "description", "tags", "tracing"), ("name",), "list_vhosts")
    ctx.banner("Listing vhosts ...")
    print_rows(ctx, columns, ctx.call("vhost_info"))


@command("list_users", tools=BOTH)
def list_users(ctx: Context) -> None:
    ctx.banner("Listing users ...")
    rows = [{"user": user["name"], "tags": user["tags"]} for user in ctx.call("list_users")]
    print_rows(ctx, ("user", "tags"), rows)


@command("list_permissions", tools=BOTH)
def list_permissions(ctx: Context) -> None:
    ctx.banner(f'Listing permissions for vhost "{ctx.vhost}" ...')
    print_rows(ctx, ("user", "configure", "write", "read"), ctx.call("list_permissions", vhost=ctx.vhost))


@command("list_user_permissions", needs=1, tools=BOTH)
def list_user_permissions(ctx: Context) -> None:
    user = ctx.args[0]
    ctx.banner(f'Listing permissions for user "{user}" ...')
    if user not in {u["name"] for u in ctx.call("list_users")}:
        raise CommandError(f'{{:no_such_user, "{user}"}}', UNAVAILABLE)
    rows = [p for p in ctx.call("list_permissions") if p["user"] == user]
    print_rows(ctx, ("vhost", "configure", "write", "read"), rows)


@command("list_topic_permissions", tools=BOTH)
def list_topic_permissions(ctx: Context) -> None:
    ctx.banner(f'Listing topic permissions for vhost "{ctx.vhost}" ...')
    rows = ctx.call("list_topic_permissions", vhost=ctx.vhost)
    print_rows(ctx, ("user", "exchange", "write", "read"), rows, blank=True)


@command("list_policies")
def list_policies(ctx: Context) -> None:
    ctx.banner(f'Listing policies for vhost "{ctx.vhost}" ...')
    print_rows(ctx, POLICY_COLUMNS, ctx.call("list_policies", vhost=ctx.vhost), blank=True)


@command("list_operator_policies")
def list_operator_policies(ctx: Context) -> None:
    ctx.banner(f'Listing operator policy overrides for vhost "{ctx.vhost}" ...')
    print_rows(ctx, POLICY_COLUMNS, ctx.call("list_operator_policies", vhost=ctx.vhost), blank=True)


@command("list_parameters")
def list_parameters(ctx: Context) -> None:
    ctx.banner(f'Listing runtime parameters for vhost "{ctx.vhost}" ...')
    rows = [
        {**p, "value": {k: p["value"][k] for k in POLICY_VALUE_ORDER}}
        if p["component"] == "operator_policy"
        else p
        for p in ctx.call("list_parameters", vhost=ctx.vhost)
        if p["component"] != "vhost-limits"  # shown by list_vhost_limits
    ]
    print_rows(ctx, ("component", "name", "value"), rows, blank=True)


@command("list_vhost_limits")
def list_vhost_limits(ctx: Context) -> None:
    if ctx.options.get("global"):
        ctx.banner("Listing limits for all vhosts ...")
        rows = [{"vhost": item["vhost"], "limits": item["value"]} for item in ctx.call("list_vhost_limits")]
        print_rows(ctx, ("vhost", "limits"), rows)
        return
    ctx.banner(f'Listing limits for vhost "{ctx.vhost}" ...')
    found = ctx.call("list_vhost_limits", vhost=ctx.vhost)
    print(compact(found[0]["value"]) if found else ("[]" if ctx.as_json else ""))


@command("list_user_limits", tools=BOTH)
def list_user_limits(ctx: Context) -> None:
    if ctx.options.get("global"):
        ctx.banner("Listing limits for all users ...")
        rows = [{"user": item["user"], "limits": item["value"]} for item in ctx.call("list_user_limits")]
        print_rows(ctx, ("user", "limits"), rows)
        return
    user = ctx.options.get("user") or "guest"  # rabbitmqctl's default user
    ctx.banner(f'Listing limits for user "{user}" ...')
    found = ctx.call("list_user_limits", user=user)
    limits = compact(found[0]["value"] if found else {})
    print(compact({"message": limits}) if ctx.as_json else limits)


@command("add_user", needs=2)
def add_user(ctx: Context) -> None:
    user, password = ctx.args[:2]
    ctx.banner(f'Adding user "{user}" ...')
    ctx.call("add_user", user=user, password=password)
    done = (
        "Done. Don't forget to grant the user permissions to some virtual hosts! "
        "See 'rabbitmqctl help set_permissions' to learn more."
    )
    if ctx.as_json:
        print(compact({"message": done, "node": ctx.node, "status": "ok"}))
    else:
        ctx.banner(done)


@command("authenticate_user", needs=2)
def authenticate_user(ctx: Context) -> None:
    user = ctx.args[0]
    ctx.banner(f'Authenticating user "{user}" ...')
    if not ctx.call("authenticate_user", user=user, password=ctx.args[1]):
        raise CommandError(f'Error: failed to authenticate user "{user}"\nuser \'{user}\' - invalid credentials',
                           DATA_ERROR)  # fmt: skip
    print(compact({"message": "Success"}) if ctx.as_json else "Success")


@command("set_user_tags", needs=1)
def set_user_tags(ctx: Context) -> None:
    user, tags = ctx.args[0], ctx.args[1:]
    ctx.banner(f'Setting tags for user "{user}" to [{", ".join(tags)}] ...')
    ctx.call("set_user_tags", user=user, tags=tags)


@command("set_permissions", needs=4)
def set_permissions(ctx: Context) -> None:
    user = ctx.args[0]
    ctx.banner(f'Setting permissions for user "{user}" in vhost "{ctx.vhost}" ...')
    ctx.call("set_permissions", UNAVAILABLE, user=user, vhost=ctx.vhost, patterns=ctx.args[1:4])


@command("set_topic_permissions", needs=4)
def set_topic_permissions(ctx: Context) -> None:
    user, exchange, write, read = ctx.args[:4]
    ctx.banner(f'Setting topic permissions on "{exchange}" for user "{user}" in vhost "{ctx.vhost}" ...')
    ctx.call("set_topic_permissions", UNAVAILABLE, user=user, vhost=ctx.vhost, exchange=exchange,
             write=write, read=read)  # fmt: skip


@command("clear_topic_permissions", needs=1)
def clear_topic_permissions(ctx: Context) -> None:
    user = ctx.args[0]
    exchange = ctx.args[1] if len(ctx.args) > 1 else None
    on = f'on "{exchange}" ' if exchange is not None else ""
    ctx.banner(f'Clearing topic permissions {on}for user "{user}" in vhost "{ctx.vhost}" ...')
    ctx.call("clear_topic_permissions", UNAVAILABLE, user=user, vhost=ctx.vhost, exchange=exchange)


def set_any_policy(ctx: Context, kind: str, what: str) -> None:
    name, pattern, definition = ctx.args[:3]
    priority = ctx.options.get("priority") or "0"
    ctx.banner(f'Setting {what} "{name}" for pattern "{pattern}" to "{definition}" with priority "{priority}" '
               f'for vhost "{ctx.vhost}" ...')  # fmt: skip
    try:
        parsed = json.loads(definition)
    except ValueError:
        raise CommandError("JSON decoding error. Reason: badarg", UNAVAILABLE) from None
    try:
        number = int(priority)
    except ValueError:
        raise CommandError(f"Could not parse priority {priority}", USAGE) from None
    ctx.call(kind, UNAVAILABLE, vhost=ctx.vhost, name=name, pattern=pattern, definition=parsed, priority=number,
             apply_to=ctx.options.get("apply_to") or "all")  # fmt: skip


@command("set_policy", needs=3)
def set_policy(ctx: Context) -> None:
    set_any_policy(ctx, "set_policy", "policy")


@command("set_operator_policy", needs=3)
def set_operator_policy(ctx: Context) -> None:
    set_any_policy(ctx, "set_operator_policy", "operator policy override")


def json_argument(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise CommandError("JSON decoding error. Reason: badarg", UNAVAILABLE) from None


@command("set_vhost_limits", needs=1)
def set_vhost_limits(ctx: Context) -> None:
    ctx.banner(f'Setting vhost limits to "{ctx.args[0]}" for vhost "{ctx.vhost}" ...')
    ctx.call("set_vhost_limits", UNAVAILABLE, vhost=ctx.vhost, limits=json_argument(ctx.args[0]))


@command("set_user_limits", needs=2)
def set_user_limits(ctx: Context) -> None:
    user, limits = ctx.args[:2]
    ctx.banner(f'Setting user limits to "{limits}" for user "{user}" ...')
    ctx.call("set_user_limits", UNAVAILABLE, user=user, limits=json_argument(limits))


@command("clear_user_limits", needs=2)
def clear_user_limits(ctx: Context) -> None:
    user, limit = ctx.args[:2]
    ctx.banner(f'Clearing all limits for user "{user}" ...' if limit == "all"
               else f'Clearing "{limit}" limit for user "{user}" ...')  # fmt: skip
    ctx.call("clear_user_limits", UNAVAILABLE, user=user, limit=limit)


@command("delete_queue", needs=1)
def delete_queue(ctx: Context) -> None:
    ctx.banner(f"Deleting queue '{ctx.args[0]}' on vhost '{ctx.vhost}' ...")
    count = ctx.call("delete_queue", USAGE, vhost=ctx.vhost, queue=ctx.args[0],
                     if_unused=bool(ctx.options.get("if_unused")), if_empty=bool(ctx.options.get("if_empty")))  # fmt: skip
    if not ctx.quiet:
        print(f"Queue was successfully deleted with {count} ready messages")


@command("trace_on")
@command("trace_off")
def trace(ctx: Context) -> None:
    on = ctx.command == "trace_on"
    ctx.banner(f'{"Starting" if on else "Stopping"} tracing for vhost "{ctx.vhost}" ...')
    ctx.call(ctx.command, vhost=ctx.vhost)
    print(f"Trace {'enabled' if on else 'disabled'} for vhost {ctx.vhost}")  # even with --quiet, as rabbitmqctl


# -- plugins' commands (rabbitmq_shovel, rabbitmq_federation): answered while the plugin is enabled --


def print_maps(ctx: Context, rows: list[dict[str, Any]]) -> None:
    """The Table formatter of a stream of maps: the first row's keys as the header, each row's
    values in its own key order (the node sends keys sorted, as Erlang maps are)."""
    if ctx.as_json:
        print("[\n" + "".join(("," if i else "") + compact(row) + "\n" for i, row in enumerate(rows)) + "]")
        return
    if rows and not ctx.options.get("no_headers"):
        print("\t".join(rows[0]))
    for row in rows:
        print("\t".join(cell(key, value) for key, value in row.items()))


@command("shovel_status", tools=BOTH)
def shovel_status(ctx: Context) -> None:
    ctx.banner(f"Shovel status on node {ctx.node}")
    print_maps(ctx, ctx.call("shovel_status"))


@command("delete_shovel", needs=1)
def delete_shovel(ctx: Context) -> None:
    ctx.banner(f"Deleting shovel {ctx.args[0]} in vhost {ctx.vhost}")
    ctx.call("delete_shovel", vhost=ctx.vhost, name=ctx.args[0])


@command("restart_shovel", needs=1)
def restart_shovel(ctx: Context) -> None:
    ctx.banner(f"Restarting dynamic Shovel {ctx.args[0]} in virtual host {ctx.vhost} on node {ctx.node}")
    ctx.call("restart_shovel", vhost=ctx.vhost, name=ctx.args[0])


@command("federation_status", tools=BOTH)
def federation_status(ctx: Context) -> None:
    ctx.banner(f"Listing federation links on node {ctx.node}...")
    rows = ctx.call("federation_status")
    if ctx.as_json:
        print_maps(ctx, rows)
    else:  # the Erlang formatter: the maps as io_lib_pretty wraps them
        print(erlang_maps(rows))


def erlang_maps(rows: list[dict[str, Any]], width: int = 80) -> str:
    """``~p`` of a list of maps with binary and atom values, filled to ``width`` columns."""
    items = []
    for row in rows:
        pairs = [f"{key} => " + _erlang_value(key, value)
                 for key, value in row.items()]  # fmt: skip
        lines, line = [], "#{"
        for i, pair in enumerate(pairs):
            piece = pair + ("}" if i == len(pairs) - 1 else ",")
            if 1 + len(line) + len(piece) > width and line.strip() not in ("#{", ""):
                lines.append(line)
                line = "   "
            line += piece
        lines.append(line)
        items.append("\n".join(lines))
    return "[" + ",\n ".join(items) + "]"


def _erlang_value(key: str, value: Any) -> str:
    if key in ATOMS and value:
        return str(value)
    return f'<<"{value}">>' if value else "<<>>"


# Federation status values that are atoms, printed bare (an empty error is the binary <<>>).
ATOMS = frozenset(("status", "type", "error"))


@command("close_connection", needs=2)
def close_connection(ctx: Context) -> None:
    name, reason = ctx.args[:2]
    ctx.banner(f"Closing connection {name}, reason: {reason}...")
    ctx.call("close_connection", name=name, reason=reason)


@command("close_all_connections", needs=1)
def close_all_connections(ctx: Context) -> None:
    reason = ctx.args[0]
    if ctx.options.get("global"):
        ctx.banner(f"Closing all connections to node {ctx.node} (across all vhosts), reason: {reason}...")
        count = ctx.call("close_all_connections", reason=reason)
    else:
        ctx.banner(f"Closing all connections in vhost {ctx.vhost}, reason: {reason}...")
        count = ctx.call("close_all_connections", reason=reason, vhost=ctx.vhost)
    if not ctx.quiet:
        print(f"Closed {count} connections")


@command("export_definitions", needs=1)
def export_definitions(ctx: Context) -> None:
    path = ctx.args[0]
    document = compact(ctx.call("export_definitions"))
    if path == "-":
        print(document, end="")
        return
    ctx.banner(f'Exporting definitions in JSON to a file at "{path}" ...')
    Path(path).write_text(document)


@command("import_definitions")
def import_definitions(ctx: Context) -> None:
    path = ctx.args[0] if ctx.args else None
    ctx.banner(f'Importing definitions in JSON from a file at "{path}" ...' if path
               else "Importing definitions in JSON from standard input ...")  # fmt: skip
    try:
        text = Path(path).read_text() if path else sys.stdin.read()
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}", DATA_ERROR) from None
    try:
        document = json.loads(text)
    except ValueError:
        raise CommandError(
            f'Failed to deserialise input (format: JSON) (error: {{:unexpected_token, "{text.strip()}"}})',
            DATA_ERROR,
        ) from None
    ctx.call("import_definitions", DATA_ERROR, document=document)
    if ctx.as_json:
        print(compact({"result": "ok", "node": ctx.node}))
    elif not ctx.quiet:
        print("Successfully started definition import. This process is asynchronous and can take some time. "
              "Watch target node logs for completion.\n")  # fmt: skip


@command("hash_password", needs=1)
def hash_password_command(ctx: Context) -> None:
    """Client-side, as rabbitmqctl's (3.11+): the node is not contacted."""
    ctx.banner(f"Will hash password {ctx.args[0]}")
    print(hash_password(ctx.args[0]))


@command("set_parameter", needs=3)
def set_parameter(ctx: Context) -> None:
    component, name, value = ctx.args[:3]
    ctx.banner(
        f'Setting runtime parameter "{name}" for component "{component}" to "{value}" in vhost "{ctx.vhost}" ...'
    )
    if component == "policy":  # as rabbit_runtime_parameters refuses it
        raise CommandError("policies may not be set using this method", UNAVAILABLE)
    ctx.call("set_parameter", UNAVAILABLE, vhost=ctx.vhost, component=component, name=name,
             value=json_argument(value))  # fmt: skip


def erlang_environment(applications: dict[str, dict[str, Any]]) -> str:
    """An application environment as rabbitmqctl environment prints it: ``[{app,`` then the
    application's ``{key,value}`` pairs one a line, indented as Erlang's pretty printer does."""
    blocks = []
    for app, values in applications.items():
        pairs = ",\n      ".join(f"{{{key},{erlang_term(value)}}}" for key, value in values.items())
        blocks.append(f"{{{app},\n     [{pairs}]}}")
    return "[" + ",\n ".join(blocks) + "]"


@command("environment", tools=BOTH)
def environment(ctx: Context) -> None:
    ctx.banner(f"Application environment of node {ctx.node} ...")
    found = ctx.call("environment")
    print(compact(found) if ctx.as_json else erlang_environment(found))


@command("report")
def report(ctx: Context) -> None:
    """rabbitmqctl report: status, environment, connections, channels, then each vhost's
    queues, exchanges, bindings, permissions, policies and parameters, each under its banner."""
    if ctx.as_json:
        raise CommandError(
            'Error (argument validation): "Only report formatter is supported"\nArguments given:\n\t'
            + " ".join(ctx.argv), USAGE, prefix=False,
        )  # fmt: skip
    ctx.banner(f"Reporting server status of node {ctx.node} ...\n")
    sections: list[tuple[Handler, list[str], str | None]] = [
        (status, [], None), (environment, [], None), (list_connections, [], None), (list_channels, [], None),
    ]  # fmt: skip
    for vhost in ctx.call("list_vhosts"):
        sections += [(list_queues, list(QUEUE_COLUMNS), vhost), (list_exchanges, list(EXCHANGE_COLUMNS), vhost),
                     (list_bindings, [], vhost), (list_permissions, [], vhost), (list_policies, [], vhost),
                     (list_parameters, [], vhost)]  # fmt: skip
    for handler, args, vhost in sections:
        options = {**ctx.options, "vhost": vhost} if vhost is not None else ctx.options
        handler(Context(args, options, ctx.tool, ctx.command, ctx.reported_node, ctx.argv, ctx.remote))
        print()


# -- rabbitmq-diagnostics --------------------------------------------------------------------


@command("listeners", tools=(DIAGNOSTICS,))
def listeners(ctx: Context) -> None:
    ctx.banner(f"Asking node {ctx.node} to report its protocol listeners ...")
    found = [{**item, "node": ctx.node} for item in ctx.call("listeners")]
    if ctx.as_json:
        print(compact({"listeners": found, "node": ctx.node, "result": "ok"}))
        return
    for item in found:
        print(listener_line(item))


def listener_line(item: dict[str, Any]) -> str:
    port = f", port: {item['port']}" if item["port"] else ""
    return f"Interface: {item['interface']}{port}, protocol: {item['protocol']}, purpose: {item['purpose']}"


ALARM_LINES = {"memory": "Memory alarm on node {}", "disk": "Free disk space alarm on node {}"}


@command("alarms", tools=(DIAGNOSTICS,))
def alarms(ctx: Context) -> None:
    ctx.banner(f"Asking node {ctx.node} to report any known resource alarms ...")
    lines = [
        ALARM_LINES.get(alarm, alarm + " alarm on node {}").format(ctx.node) for alarm in ctx.call("alarms")
    ]
    if ctx.as_json:
        print(compact({"alarms": [], "node": ctx.node, "result": "ok"} if not lines else
                      {"global": [], "local": lines, "message": f"Node {ctx.node} reported alarms", "result": "ok"}))  # fmt: skip
    else:
        print("\n".join(lines) if lines else f"Node {ctx.node} reported no alarms, local or clusterwide")


@command("check_local_alarms", tools=(DIAGNOSTICS,))
def check_local_alarms(ctx: Context) -> None:
    ctx.banner(f"Asking node {ctx.node} to report any local resource alarms ...")
    lines = [
        ALARM_LINES.get(alarm, alarm + " alarm on node {}").format(ctx.node) for alarm in ctx.call("alarms")
    ]
    if not lines:
        if ctx.as_json:
            print(compact({"result": "ok"}))
        elif not ctx.options.get("silent"):
            print(f"Node {ctx.node} reported no local alarms")
        return
    if ctx.as_json:
        print(
            compact({"local": lines, "message": f"Node {ctx.node} reported local alarms", "result": "error"})
        )
        raise CommandError("", UNAVAILABLE, prefix=False)  # the JSON above says it
    raise CommandError("\n".join(lines), UNAVAILABLE)


@command("check_running", tools=(DIAGNOSTICS,))
def check_running(ctx: Context) -> None:
    ctx.banner(f"Checking if RabbitMQ is running on node {ctx.node} ...")
    if not ctx.call("check_running"):
        raise CommandError(
            f"RabbitMQ on node {ctx.node} is not running or has not fully booted yet (check with is_booting)",
            UNAVAILABLE,
        )
    message = f"RabbitMQ on node {ctx.node} is fully booted and running"
    print(compact({"message": message}) if ctx.as_json else message)


@command("check_port_connectivity", tools=(DIAGNOSTICS,))
def check_port_connectivity(ctx: Context) -> None:
    """Opens a TCP connection to each TCP listener (to localhost where it listens on every
    interface), as rabbitmq-diagnostics does from the CLI's host."""
    ctx.banner(f"Testing TCP connections to all active listeners on node {ctx.node} ...")
    found = [{**item, "node": ctx.node} for item in ctx.call("listeners") if item["port"]]
    failed = []
    for item in found:
        host = "localhost" if item["interface"] in ("0.0.0.0", "::", "") else item["interface"]
        try:
            socket.create_connection(
                (host, item["port"]), timeout=float(ctx.options.get("timeout") or 10)
            ).close()
        except OSError:
            failed.append(item)
    if failed:
        lines = "\n".join(listener_line(item) for item in failed)
        raise CommandError(f"Connection to ports of the following listeners on node {ctx.node} failed:\n{lines}",
                           UNAVAILABLE)  # fmt: skip
    if ctx.as_json:
        print(compact({"listeners": found, "node": ctx.node, "result": "ok"}))
    else:
        ports = ", ".join(str(item["port"]) for item in sorted(found, key=lambda item: item["port"]))
        print(f"Successfully connected to ports {ports} on node {ctx.node}.")


@command("check_virtual_hosts", tools=(DIAGNOSTICS,))
def check_virtual_hosts(ctx: Context) -> None:
    """Every vhost of this node runs as long as the node does (there is no per-vhost
    supervisor to fail); the check asks the node for them all the same."""
    ctx.banner(f"Checking if all vhosts are running on node {ctx.node} ...")
    ctx.call("list_vhosts")
    print(compact({"result": "ok"}) if ctx.as_json else f"Node {ctx.node} reported all vhosts as running")


MEMORY_UNITS = {
    "bytes": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


@command("memory_breakdown", tools=(DIAGNOSTICS,))
def memory_breakdown(ctx: Context) -> None:
    unit = str(ctx.options.get("unit") or "gb").lower()
    if unit not in MEMORY_UNITS:
        raise CommandError(f'Error (argument validation): unknown unit "{unit}"\nArguments given:\n\t'
                           + " ".join(ctx.argv), USAGE, prefix=False)  # fmt: skip
    ctx.banner(f"Reporting memory breakdown on node {ctx.node}...")
    found = ctx.call("memory_breakdown")
    total = found.pop("total") or 1
    parts = sorted(found.items(), key=lambda item: -item[1])
    if ctx.as_json:
        print(
            compact(
                {key: {"bytes": value, "percentage": round(100 * value / total, 2)} for key, value in parts}
            )
        )
        return
    for key, value in parts:
        print(f"{key}: {round(value / MEMORY_UNITS[unit], 4)} {unit} ({round(100 * value / total, 2)}%)")


# Commands that print a banner and make one call: (name, banner, positional arguments as the
# node's request names them, exit status of a refusal, whether the request carries -p's vhost).
# The banner is formatted with the positional arguments, ``vhost`` and ``node``.
SIMPLE_COMMANDS: tuple[tuple[str, str, tuple[str, ...], int, bool], ...] = (
    ("delete_user", 'Deleting user "{0}" ...', ("user",), SOFTWARE, False),
    ("change_password", 'Changing password for user "{0}" ...', ("user", "password"), SOFTWARE, False),
    ("clear_password", 'Clearing password for user "{0}" ...', ("user",), SOFTWARE, False),
    ("add_vhost", 'Adding vhost "{0}" ...', ("vhost",), SOFTWARE, False),
    ("delete_vhost", 'Deleting vhost "{0}" ...', ("vhost",), SOFTWARE, False),
    (
        "clear_permissions",
        'Clearing permissions for user "{0}" in vhost "{vhost}" ...',
        ("user",),
        UNAVAILABLE,
        True,
    ),
    ("clear_policy", 'Clearing policy "{0}" on vhost "{vhost}" ...', ("name",), UNAVAILABLE, True),
    (
        "clear_operator_policy",
        'Clearing operator policy "{0}" on vhost "{vhost}" ...',
        ("name",),
        UNAVAILABLE,
        True,
    ),
    ("clear_vhost_limits", 'Clearing vhost "{vhost}" limits ...', (), UNAVAILABLE, True),
    (
        "clear_parameter",
        'Clearing runtime parameter "{1}" for component "{0}" on vhost "{vhost}" ...',
        ("component", "name"),
        UNAVAILABLE,
        True,
    ),
    ("purge_queue", "Purging queue '{0}' in vhost '{vhost}' ...", ("queue",), UNAVAILABLE, True),
    # the node's application; --formatter json prints {"node", "result"} as rabbitmqctl's
    ("stop_app", "Stopping rabbit application on node {node} ...", (), SOFTWARE, False),
    ("start_app", "Starting node {node} ...", (), SOFTWARE, False),
    ("reset", "Resetting node {node} ...", (), SOFTWARE, False),
    ("force_reset", "Forcefully resetting node {node} ...", (), SOFTWARE, False),
)
APPLICATION_COMMANDS = ("stop_app", "start_app", "reset", "force_reset")


def simple_command(name: str, banner: str, params: tuple[str, ...], code: int, scoped: bool) -> Handler:
    def handler(ctx: Context) -> None:
        ctx.banner(banner.format(*ctx.args, vhost=ctx.vhost, node=ctx.node))
        args = dict(zip(params, ctx.args, strict=False))
        ctx.call(name, code, **({**args, "vhost": ctx.vhost} if scoped else args))
        if name in APPLICATION_COMMANDS and ctx.as_json:
            print(compact({"node": ctx.node, "result": "ok"}))

    return handler


for _name, _banner, _params, _code, _scoped in SIMPLE_COMMANDS:
    command(_name, needs=len(_params))(simple_command(_name, _banner, _params, _code, _scoped))


# -- clustering --------------------------------------------------------------------------------


def cluster_call(ctx: Context, command: str, **args: Any) -> Any:
    """A cluster command: the node's refusals that are rabbitmqctl's own "Error: ..." lines
    print as they are."""
    try:
        return ctx.call(command, **args)
    except CommandError as exc:
        if str(exc).startswith("Error: "):
            raise CommandError(str(exc), exc.code, prefix=False) from None
        raise


@command("cluster_status", tools=BOTH)
def cluster_status(ctx: Context) -> None:
    ctx.banner(f"Cluster status of node {ctx.node} ...")
    info = cluster_call(ctx, "cluster_status")
    if ctx.as_json:
        print(compact(info))
        return
    sections = [("Basics", [f"Cluster name: {info['cluster_name']}"]), ("Disk Nodes", info["disk_nodes"])]
    if info["ram_nodes"]:
        sections.append(("RAM Nodes", info["ram_nodes"]))
    sections += [
        ("Running Nodes", info["running_nodes"]),
        ("Versions", [f"{node}: {v['rabbitmq_name']} {v['rabbitmq_version']} on Erlang {v['erlang_version']}"
                      for node, v in info["versions"].items()]),
        ("Maintenance status", [f"Node: {node}, status: {status}" for node, status in info["maintenance_status"].items()]),
        ("Alarms", [f"Node {a['node']} reported an alarm: {a['resource']}" for a in info["alarms"]] or ["(none)"]),
        ("Network Partitions", [f"Node {node} cannot communicate with {', '.join(peers)}"
                                for node, peers in info["partitions"].items()] or ["(none)"]),
        ("Listeners", [f"Node: {item['node']}, interface: {item['interface']}, port: {item['port']}, "
                       f"protocol: {item['protocol']}, purpose: {item['purpose']}"
                       for items in info["listeners"].values() for item in items] or ["(none)"]),
        ("Feature flags", ["(none)"]),
    ]  # fmt: skip
    print("\n\n".join(f"{title}\n\n" + "\n".join(lines) for title, lines in sections))


@command("join_cluster", needs=1)
def join_cluster(ctx: Context) -> None:
    ctx.banner(f"Clustering node {ctx.node} with {ctx.args[0]}")
    message = cluster_call(ctx, "join_cluster", node=ctx.args[0], ram=bool(ctx.options.get("ram")))
    if message and not ctx.quiet:
        print(message)


@command("change_cluster_node_type", needs=1)
def change_cluster_node_type(ctx: Context) -> None:
    kind = ctx.args[0]
    if kind not in ("disc", "disk", "ram"):
        raise CommandError("The node type must be either disc or ram.", USAGE)
    ctx.banner(f"Turning {ctx.node} into a {kind} node")
    message = cluster_call(ctx, "change_cluster_node_type", type=kind)
    if message and not ctx.quiet:
        print(message)


@command("forget_cluster_node", needs=1)
def forget_cluster_node(ctx: Context) -> None:
    """Online, through the cluster's leader (a quorum); --offline, on the stopped node's own
    data directory: its stored membership loses the node (cluster.operations.forget_offline)."""
    node = ctx.args[0]
    if not ctx.options.get("offline"):
        reach(ctx)
        ctx.banner(f"Removing node {node} from the cluster")
        cluster_call(ctx, "forget_cluster_node", node=node)
        return
    try:
        ctx.call("ping")
    except NodeDown:
        pass  # stopped, as it must be
    else:
        raise CommandError("Error: this command requires the target node to be stopped.\nArguments given:\n\t"
                           + " ".join(ctx.argv), USAGE, prefix=False)  # fmt: skip
    ctx.banner(f"Removing node {node} from the cluster. "
               "Warning: metadata changes committed only on the forgotten nodes are lost")  # fmt: skip
    from amqp_server.admin.errors import AdminError  # the node's modules: only for this command
    from cluster.operations import forget_offline

    try:
        asyncio.run(forget_offline(str(ctx.data_dir), node))
    except AdminError as exc:
        raise CommandError(str(exc)) from None


@command("update_cluster_nodes", needs=1)
def update_cluster_nodes(ctx: Context) -> None:
    ctx.banner(f"Will seed {ctx.node} from {ctx.args[0]} on next start")
    cluster_call(ctx, "update_cluster_nodes", node=ctx.args[0])


# -- amqp-queues (rabbitmq-queues): replicated queues' members ---------------------------------


def pretty_table(columns: list[str], rows: list[list[Any]]) -> str:
    """RabbitMQ's PrettyTable formatter: a box around every cell."""
    cells = [[str(c) for c in columns], *[["undefined" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]

    def rule(left: str, middle: str, right: str) -> str:
        return left + middle.join("─" * (w + 2) for w in widths) + right

    lines = [rule("┌", "┬", "┐")]
    for number, row in enumerate(cells):
        if number:
            lines.append(rule("├", "┼", "┤"))
        lines.append("│" + "│".join(f" {cell.ljust(width)} " for cell, width in zip(row, widths, strict=True)) + "│")
    lines.append(rule("└", "┴", "┘"))
    return "\n".join(lines)


QUORUM_STATUS_COLUMNS = ["Node Name", "Raft State", "Log Index", "Commit Index", "Snapshot Index", "Term",
                         "Machine Version"]  # fmt: skip


@command("quorum_status", needs=1, tools=(QUEUES, DIAGNOSTICS))
def quorum_status(ctx: Context) -> None:
    ctx.banner(f"Status of quorum queue {ctx.args[0]} on node {ctx.node} ...")
    rows = cluster_call(ctx, "quorum", action="status", vhost=ctx.vhost, queue=ctx.args[0])
    if ctx.as_json:
        print(compact([dict(zip(QUORUM_STATUS_COLUMNS, row, strict=True)) for row in rows]))
        return
    print(pretty_table(QUORUM_STATUS_COLUMNS, rows))


@command("add_member", needs=2, tools=(QUEUES,))
def add_member(ctx: Context) -> None:
    queue, node = ctx.args[0], ctx.args[1]
    ctx.banner(f"Adding a replica for queue {queue} on node {node}...")
    cluster_call(ctx, "quorum", action="add", vhost=ctx.vhost, queue=queue, node=node)


@command("delete_member", needs=2, tools=(QUEUES,))
def delete_member(ctx: Context) -> None:
    queue, node = ctx.args[0], ctx.args[1]
    ctx.banner(f"Removing a replica for queue {queue} on node {node}...")
    cluster_call(ctx, "quorum", action="delete", vhost=ctx.vhost, queue=queue, node=node)


@command("sync_queue", needs=1, tools=(CTL,))
def sync_queue(ctx: Context) -> None:
    ctx.banner(f"Synchronising queue '{ctx.args[0]}' in vhost '{ctx.vhost}' ...")
    cluster_call(ctx, "quorum", action="sync", vhost=ctx.vhost, queue=ctx.args[0])


@command("cancel_sync_queue", needs=1, tools=(CTL,))
def cancel_sync_queue(ctx: Context) -> None:
    ctx.banner(f"Stopping synchronising queue '{ctx.args[0]}' in vhost '{ctx.vhost}' ...")
    cluster_call(ctx, "quorum", action="cancel_sync", vhost=ctx.vhost, queue=ctx.args[0])


GROW_COLUMNS = ["vhost", "name", "size", "result"]


@command("grow", needs=2, tools=(QUEUES,))
def grow(ctx: Context) -> None:
    node, strategy = ctx.args[0], ctx.args[1]
    if strategy not in ("all", "even"):
        raise CommandError(f"strategy '{strategy}' is not recognised.", USAGE)
    ctx.banner(f"Growing {strategy} quorum queues on {node}...")
    rows = cluster_call(ctx, "quorum", action="grow", node=node, strategy=strategy)
    print_membership_rows(ctx, rows)


@command("shrink", needs=1, tools=(QUEUES,))
def shrink(ctx: Context) -> None:
    node = ctx.args[0]
    ctx.banner(f"Shrinking quorum queues on {node}...")
    print_membership_rows(ctx, cluster_call(ctx, "quorum", action="shrink", node=node))


def print_membership_rows(ctx: Context, rows: list[list[Any]]) -> None:
    if ctx.as_json:
        print(compact([dict(zip(GROW_COLUMNS, row, strict=True)) for row in rows]))
    elif rows:
        print(pretty_table(GROW_COLUMNS, rows))


# -- entry point -----------------------------------------------------------------------------


def parse(argv: list[str]) -> tuple[str | None, Context]:
    ctx = Context([])
    name = None
    items = iter(argv)
    for item in items:
        if item in VALUE_OPTIONS:
            value = next(items, None)
            if value is None:
                raise CommandError(f"option {item} needs a value", USAGE)
            ctx.options[VALUE_OPTIONS[item]] = value
        elif item.startswith("--") and "=" in item and item.split("=", 1)[0] in VALUE_OPTIONS:
            key, value = item.split("=", 1)
            ctx.options[VALUE_OPTIONS[key]] = value
        elif item in FLAG_OPTIONS:
            ctx.options[FLAG_OPTIONS[item]] = True
        elif name is None:
            name = item
        else:
            ctx.args.append(item)
    return name, ctx


def node_down_text(node: str, down: NodeDown) -> str:
    """rabbitmqctl's text when the node cannot be reached: RabbitMQ's own over the cluster port,
    its reasons put in this CLI's terms through the data directory."""
    reasons = (" * Target node is unreachable (e.g. due to hostname resolution, TCP connection or firewall "
               "issues)\n * CLI tool fails to authenticate with the server (e.g. due to CLI tool's Erlang cookie "
               "not matching that of the server)\n" if down.client else
               " * Target node is unreachable (e.g. the data directory given with --data-dir is not the node's)\n"
               " * CLI tool fails to authenticate with the server (e.g. due to CLI tool's control secret not "
               "matching that of the server)\n")  # fmt: skip
    details = ""
    if down.client:
        details = (f"\nCurrent node details:\n * node name: '{down.client[0]}'\n * effective user's home directory: "
                   f"{os.path.expanduser('~')}\n * Erlang cookie hash: {down.client[1]}\n")  # fmt: skip
    return (
        f"Error: unable to perform an operation on node '{node}'. Please see diagnostics information and "
        "suggestions below.\n\nMost common reasons for this are:\n\n" + reasons +
        " * Target node is not running\n\nIn addition to the diagnostics info below:\n\n"
        " * Consult server logs on node " + node + "\n\nDIAGNOSTICS\n===========\n\n"
        f"attempted to contact: [{node}]\n\n{node}:\n  * {down}\n" + details
    )  # fmt: skip


def run(argv: list[str], tool: str = CTL) -> int:
    try:
        name, ctx = parse(argv)
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return exc.code
    ctx.tool, ctx.command, ctx.argv = tool, name or "", argv
    if name is None or name not in COMMANDS or tool not in COMMANDS[name][2]:
        print(f"\nCommand '{name}' not found. \n" if name else f"Usage: {tool} [--node <node>] [--data-dir <dir>] "
              "[--quiet] <command> [<command options>]", file=sys.stderr)  # fmt: skip
        return USAGE
    needs, handler, _ = COMMANDS[name]
    if len(ctx.args) < needs:
        given = " ".join(argv)
        print(f"Error (argument validation): not enough arguments.\nArguments given:\n\t{given}",
              file=sys.stderr)  # fmt: skip
        return USAGE
    try:
        if name not in OFFLINE:  # as rabbitmqctl, nothing is printed before the node is reached
            reach(ctx)
        handler(ctx)
    except NodeDown as exc:
        print(node_down_text(ctx.node, exc), file=sys.stderr)
        return UNAVAILABLE
    except CommandError as exc:
        if str(exc):
            print(f"Error:\n{exc}" if exc.prefix else str(exc), file=sys.stderr)
        return exc.code
    return OK


def reach(ctx: Context) -> None:
    """Ping the node of the data directory, or, when ``-n`` names another node, that node over
    its cluster port (NodeDown when it cannot be asked)."""
    wanted = ctx.options.get("node")
    answer, local = None, None
    try:
        answer = ctx.call("ping")
    except NodeDown as exc:
        if not wanted:
            raise
        local = exc
    if wanted and (answer is None or not names_local_node(wanted, answer["node"])):
        ctx.remote = remote_node(wanted)
        try:
            answer = ctx.call("ping")
        except NodeDown as exc:
            if local is None or not names_local_host(wanted):
                raise
            raise NodeDown(f"{local}\n  * {exc}", exc.client) from None  # both ways failed
    assert answer is not None
    ctx.reported_node = answer["node"]
    # Refused before any banner, as rabbitmqctl validates the application's state first.
    if not answer["running"] and ctx.command not in WHILE_STOPPED:
        ctx.call_error(APP_STOPPED)
    if answer["running"] and ctx.command in ("reset", "force_reset"):
        ctx.call_error("app_running")


def names_local_host(wanted: str) -> bool:
    """Whether the node name ``wanted`` (``name@host[:port]``) is of this host."""
    host = re.sub(r":[0-9]{1,5}$", "", wanted.partition("@")[2])
    return not host or host in local_hosts()


def names_local_node(wanted: str, node: str) -> bool:
    """Whether ``wanted`` names the data directory's node ``node``: its name on this host (as
    rabbitmqctl, rabbit@localhost is rabbit@thishost) or its very name."""
    if wanted.partition("@")[0] != node.partition("@")[0]:
        return False
    return names_local_host(wanted) or re.sub(r":[0-9]{1,5}$", "", wanted) == node


def remote_node(wanted: str) -> tuple[str, tuple[str, int]]:
    """``-n``'s node and address (``name@host[:port]``, the cluster port 25672 by default)."""
    from cluster.names import NodeNameError
    from cluster.service import peer_address  # (the broker's modules: only for another node)

    try:
        return peer_address(wanted)
    except NodeNameError as exc:
        raise CommandError(str(exc), USAGE) from None


def local_hosts() -> set[str]:
    hostname = socket.gethostname()
    return {"localhost", "127.0.0.1", "::1", hostname, hostname.partition(".")[0], socket.getfqdn()}


def main() -> NoReturn:
    sys.exit(run(sys.argv[1:]))


def queues_main() -> NoReturn:
    """``amqp-queues``, rabbitmq-queues: replicated queues' members."""
    sys.exit(run(sys.argv[1:], QUEUES))


def diagnostics_main() -> NoReturn:
    """``amqp-diagnostics``, rabbitmq-diagnostics: the health checks and the read-only commands."""
    sys.exit(run(sys.argv[1:], DIAGNOSTICS))


if __name__ == "__main__":
    main()
