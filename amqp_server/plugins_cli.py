"""``amqp-plugins``: rabbitmq-plugins' commands (list, enable, disable, set, is_enabled,
directories), texts and exit codes.

A running node (found through its data directory, as amqp-ctl finds it) is told at once: it
writes its enabled_plugins file and enables or disables the plugins. With ``--offline``, or when
no node runs, only the file is written (``<data-dir>/enabled_plugins``, or
``RABBITMQ_ENABLED_PLUGINS_FILE`` / ``--enabled-plugins-file``); the node reads it at boot.
The plugins built into the broker (management, Prometheus: ``plugin_host.BUILT_IN``) are
listed, and stay as the node's configuration has them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from amqp_server.ctl import (
    DATA_ERROR,
    OK,
    SOFTWARE,
    UNAVAILABLE,
    USAGE,
    CommandError,
    Context,
    NodeDown,
    compact,
    reach,
)
from amqp_server.plugin_host import (
    BuiltIn,
    PluginsNotFound,
    catalogue_of,
    describe,
    directories,
    discover,
    enabled_plugins_path,
    read_enabled,
    write_enabled,
)

TOOL = "amqp-plugins"
VALUE_OPTIONS = {"-n": "node", "--node": "node", "--data-dir": "data_dir", "--formatter": "formatter",
                 "--enabled-plugins-file": "enabled_plugins_file", "--plugins-dir": "plugins_dir",
                 "-t": "timeout", "--timeout": "timeout", "--erlang-cookie": "erlang_cookie",
                 "--cookie-file": "cookie_file"}  # fmt: skip
FLAG_OPTIONS = {"-q": "quiet", "--quiet": "quiet", "-s": "silent", "--silent": "silent", "-v": "verbose",
                "--verbose": "verbose", "-m": "minimal", "--minimal": "minimal", "-E": "enabled", "--enabled": "enabled",
                "-e": "implicitly_enabled", "--implicitly-enabled": "implicitly_enabled", "--offline": "offline",
                "--online": "online", "--all": "all"}  # fmt: skip
# command -> (the flags it takes beyond the general ones, its usage line)
USAGES = {
    "list": (("verbose", "minimal", "enabled", "implicitly_enabled"),
             "list [pattern] [--verbose] [--minimal] [--enabled] [--implicitly-enabled]"),
    "enable": (("offline", "online", "all"), "enable <plugin1> [ <plugin2>] | --all [--offline] [--online]"),
    "disable": (("offline", "online", "all"), "disable <plugin1> [ <plugin2>] | --all [--offline] [--online]"),
    "set": (("offline", "online"), "set <plugin1> [ <plugin2>] [--offline] [--online]"),
    "is_enabled": (("offline", "online"), "is_enabled <plugin1> [ <plugin2>] [--offline] [--online]"),
    "directories": (("offline", "online"), "directories [--offline] [--online]"),
}  # fmt: skip
GENERAL_FLAGS = ("quiet", "silent")
GENERAL_USAGE = f"{TOOL} [--node <node>] [--data-dir <dir>] [--quiet]"


class NodeRequired(Exception):
    """An online command (is_enabled, directories without --offline) and no node runs."""


class Plugins:
    """The plugins as the node (or, when none runs, the files) tells of them."""

    def __init__(self, ctx: Context, *, require_node: bool = False) -> None:
        self.ctx = ctx
        self.online = False
        self.file = enabled_plugins_path(ctx.data_dir, ctx.options.get("enabled_plugins_file", ""))
        if not ctx.options.get("offline"):
            try:
                reach(ctx)
                self.description = ctx.call("list_plugins")
                self.online = True
                return
            except NodeDown:
                if require_node:  # (the health checks never answer for a node they cannot ask)
                    raise NodeRequired from None
                # rabbitmq-plugins goes on offline: the file is changed
        try:
            explicit = read_enabled(self.file) or []
        except ValueError as exc:
            raise CommandError(
                f"cannot read the enabled_plugins file {self.file}: {exc}", DATA_ERROR
            ) from None
        plugins_dir = ctx.options.get("plugins_dir")
        self.description = describe(discover(plugins_dir), explicit) | directories(plugins_dir, self.file)

    @property
    def explicit(self) -> list[str]:
        return list(self.description["explicit"])

    def set_explicit(self, names: list[str]) -> tuple[list[str], list[str]]:
        """Make ``names`` the explicitly enabled plugins; returns the plugins started and
        stopped (nothing when offline: the file is written, the node reads it at boot)."""
        if self.online:
            started, stopped = self.ctx.call("set_plugins", plugins=names)
            return started, stopped
        if self.file is None:
            raise CommandError("no enabled_plugins file: give --data-dir or --enabled-plugins-file", SOFTWARE)
        write_enabled(self.file, names)
        return [], []


def list_plugins(ctx: Context) -> None:
    options = ctx.options
    pattern = ctx.args[0] if ctx.args else ".*"
    fmt = "minimal" if options.get("minimal") else "verbose" if options.get("verbose") else "normal"
    if not ctx.quiet and not ctx.as_json:
        print(f'Listing plugins with pattern "{pattern}" ...')
    plugins = Plugins(ctx)
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise CommandError(f"{{:error, {{'{exc.msg}', {exc.pos}}}}}", DATA_ERROR) from None
    rows = [p for p in plugins.description["plugins"] if regex.search(p["name"])]
    if options.get("enabled"):
        rows = [p for p in rows if p["enabled"] == "enabled"]
    elif options.get("implicitly_enabled"):
        rows = [p for p in rows if p["enabled"] != "not_enabled"]
    if ctx.as_json:
        print(compact({"format": fmt, "plugins": [_json_row(p, fmt) for p in rows],
                       "status": "running" if plugins.online else "node_down"}))  # fmt: skip
        return
    if fmt != "minimal" and not ctx.quiet:
        status = (
            f"* = running on {ctx.node}"
            if plugins.online
            else f"[failed to contact {ctx.node} - status not shown]"
        )
        print(f" Configured: E = explicitly enabled; e = implicitly enabled\n | Status: {status}\n |/")
    width = max((len(p["name"]) for p in rows), default=0)
    for p in rows:
        if fmt == "minimal":
            print(p["name"])
            continue
        mark = {"enabled": "E", "implicit": "e"}.get(p["enabled"], " ") + ("*" if p["running"] else " ")
        if fmt == "normal":
            print(f"[{mark}] {p['name'].ljust(width)} {p['version']}")
            continue
        print(f"[{mark}] {p['name']}\n     Version:     \t{p['version']}\n"
              f"     Dependencies:\t[{','.join(p['dependencies'])}]\n     Description: \t{p['description']}")  # fmt: skip
        if p["error"]:  # not RabbitMQ's: why an enabled plugin does not run
            print(f"     Error:       \t{p['error']}")


def _json_row(plugin: dict[str, Any], fmt: str) -> dict[str, Any]:
    # rabbitmq-plugins gives versions as Erlang strings: lists of character codes.
    version = [ord(c) for c in plugin["version"]]
    row: dict[str, Any] = {"enabled": plugin["enabled"], "name": plugin["name"], "running": plugin["running"],
                           "running_version": version if plugin["running"] else None, "version": version}  # fmt: skip
    if fmt == "verbose":
        row |= {"dependencies": plugin["dependencies"], "description": plugin["description"]}
    return dict(sorted(row.items()))


def enable(ctx: Context) -> None:
    all_flag = bool(ctx.options.get("all"))
    _banner(ctx, "Enabling ALL plugins on node {}" if all_flag else "Enabling plugins on node {}:")
    plugins = Plugins(ctx)
    catalogue = catalogue_of(plugins.description)
    names = sorted(catalogue.plugins) if all_flag else ctx.args
    names = _built_in_stay(plugins, names, True, refuse=not all_flag)
    missing = catalogue.missing(names)
    if missing:
        raise CommandError(str(PluginsNotFound(missing)), SOFTWARE)
    before = catalogue.closure(plugins.explicit)
    # A plugin enabled implicitly already stays so (rabbitmq-plugins adds only the others).
    implicit = set(before) - set(plugins.explicit)
    wanted = plugins.explicit + [n for n in names if n not in implicit and n not in plugins.explicit]
    _change(ctx, plugins, wanted, "enabled", lambda after: sorted(set(after) - set(before)))


def disable(ctx: Context) -> None:
    all_flag = bool(ctx.options.get("all"))
    _banner(ctx, "Disabling ALL plugins on node {}" if all_flag else "Disabling plugins on node {}:")
    plugins = Plugins(ctx)
    catalogue = catalogue_of(plugins.description)
    before = catalogue.closure(plugins.explicit)
    names = _built_in_stay(plugins, ctx.args, False)
    gone = set(before) if all_flag else catalogue.dependents(names, plugins.explicit)
    wanted = [name for name in plugins.explicit if name not in gone]
    _change(ctx, plugins, wanted, "disabled", lambda after: sorted(set(before) - set(after)))


def set_plugins(ctx: Context) -> None:
    _banner(ctx, "Enabling plugins on node {}:")
    plugins = Plugins(ctx)
    names = _built_in_stay(plugins, ctx.args, True)
    missing = catalogue_of(plugins.description).missing(names)
    if missing:
        raise CommandError(f"The following plugins were not found: {', '.join(missing)}", DATA_ERROR)
    _change(ctx, plugins, list(dict.fromkeys(names)), None, lambda _after: [])


def _built_in_stay(plugins: Plugins, names: list[str], on: bool, refuse: bool = True) -> list[str]:
    """``names`` without the plugins built into the broker: those already ``on`` (enabled, or
    with ``on`` False disabled) stay so; turning any other on or off is refused (``refuse``:
    else it is left out), the node's configuration switches them."""
    built_in = {
        p["name"]: p["enabled"] != "not_enabled" for p in plugins.description["plugins"] if p.get("built_in")
    }
    changed = [name for name in names if name in built_in and built_in[name] != on]
    if changed and refuse:
        raise CommandError(str(BuiltIn(changed)), SOFTWARE)
    return [name for name in names if name not in built_in]


def is_enabled(ctx: Context) -> None:
    """rabbitmq-plugins' health check: exit 69 unless every named plugin runs (offline: is
    enabled, explicitly or as a dependency, by the enabled_plugins file)."""
    plugins = Plugins(ctx, require_node=True)
    which = _plugins_are(ctx.args)
    where = f" on node {ctx.node}" if plugins.online else ""
    if not ctx.quiet and not ctx.as_json:
        print(f"Asking node {ctx.node} if {which} enabled..." if plugins.online
              else f"Inferring if {which} from local environment...")  # fmt: skip
    if plugins.online:
        active = sorted(p["name"] for p in plugins.description["plugins"] if p["running"])
    else:
        active = sorted(catalogue_of(plugins.description).closure(plugins.explicit))
    missing = [name for name in ctx.args if name not in active]
    if not missing:
        # Elixir's String.capitalize: the first letter up, every other one down.
        message = f"{which} enabled{where}".capitalize()
        print(compact({"message": message, "result": "ok"}) if ctx.as_json else message)
        return
    message = f"{_plugins_are(missing)} not enabled{where}. ".capitalize()
    message += f"Enabled plugins and dependencies: {', '.join(active)}"
    if ctx.as_json:
        raise CommandError(compact({"message": message, "result": "error"}), UNAVAILABLE, prefix=False)
    raise CommandError(message, UNAVAILABLE)


def _plugins_are(names: list[str]) -> str:
    return f"plugin {names[0]} is" if len(names) == 1 else f"plugins {', '.join(names)} are"


def list_directories(ctx: Context) -> None:
    plugins = Plugins(ctx, require_node=True)
    if not ctx.quiet and not ctx.as_json:
        print(f"Listing plugin directories used by node {ctx.node}" if plugins.online
              else "Listing plugin directories inferred from local environment...")  # fmt: skip
    found = {key: plugins.description.get(key, "") for key in ("enabled_plugins_file", "plugins_dir",
                                                               "plugins_expand_dir")}  # fmt: skip
    if ctx.as_json:
        print(compact(found))
        return
    print(f"Plugin archives directory: {found['plugins_dir']}\nPlugin expansion directory: "
          f"{found['plugins_expand_dir']}\nEnabled plugins file: {found['enabled_plugins_file']}")  # fmt: skip


def _banner(ctx: Context, text: str) -> None:
    if not ctx.quiet and not ctx.as_json:
        print("\n".join([text.format(ctx.node), *ctx.args]))


def _change(
    ctx: Context,
    plugins: Plugins,
    wanted: list[str],
    what: str | None,
    changed: Callable[[list[str]], list[str]],
) -> None:
    """Set the explicit plugins to ``wanted`` and print as rabbitmq-plugins: the plugins now
    configured, then (enable, disable) those ``what`` and what the node did."""
    after = catalogue_of(plugins.description).closure(wanted)
    built_in = [p["name"] for p in plugins.description["plugins"] if p.get("built_in") and p["running"]]
    configured = sorted({*after, *built_in})
    if not ctx.as_json:
        listed = "".join(f"\n  {name}" for name in configured)
        head = (
            f"The following plugins have been configured:{listed}"
            if configured
            else "All plugins have been disabled."
        )
        print(f"{head}\nApplying plugin configuration to {ctx.node}...")
    started, stopped = plugins.set_explicit(wanted)
    result: dict[str, Any] = {"mode": "online" if plugins.online else "offline", "set": configured}
    if plugins.online:
        result |= {"started": sorted(started), "stopped": sorted(stopped)}
    if what is not None:
        result[what] = changed(after)
    if ctx.as_json:
        print("[\n" + compact(configured) + "\n," + compact(dict(sorted(result.items()))) + "\n]")
        return
    lines = []
    if what is not None:
        if not result[what]:
            print("Plugin configuration unchanged.")
            return
        lines = [f"The following plugins have been {what}:", *(f"  {name}" for name in result[what]), ""]
    lines.append(_applying(result))
    if what is not None and not plugins.online:
        lines.append("Offline change; changes will take effect at broker restart.")
    print("\n".join(lines))


def _applying(result: dict[str, Any]) -> str:
    if result["mode"] == "offline":
        return f"set {len(result['set'])} plugins." if result["set"] else "nothing to do."
    done = [f"{verb} {len(result[verb])} plugins" for verb in ("started", "stopped") if result[verb]]
    return (" and ".join(done) or "nothing to do") + "."


# command -> (fewest arguments, most arguments (None: any), handler)
COMMANDS: dict[str, tuple[int, int | None, Callable[[Context], None]]] = {
    "list": (0, 1, list_plugins),
    "enable": (1, None, enable),
    "disable": (1, None, disable),
    "set": (0, None, set_plugins),
    "is_enabled": (1, None, is_enabled),
    "directories": (0, 0, list_directories),
}


def parse(argv: list[str]) -> tuple[str | None, Context]:
    ctx = Context([], tool=TOOL, argv=argv)
    name = None
    items = iter(argv)
    for item in items:
        key, _, value = item.partition("=") if item.startswith("--") else (item, "", "")
        if key in VALUE_OPTIONS:
            value = value or next(items, "")
            if not value:
                raise CommandError(f"option {key} needs a value", USAGE)
            ctx.options[VALUE_OPTIONS[key]] = value
        elif item in FLAG_OPTIONS:
            ctx.options[FLAG_OPTIONS[item]] = True
        elif name is None:
            name = item
        else:
            ctx.args.append(item)
    return name, ctx


def _usage_error(ctx: Context, text: str, heading: str = "Error (argument validation)") -> int:
    usage = USAGES[ctx.command][1]
    print(f"{heading}: {text}\nArguments given:\n\t{' '.join(ctx.argv)}\n\nUsage\n\n"
          f"{GENERAL_USAGE} {usage}", file=sys.stderr)  # fmt: skip
    return USAGE


def run(argv: list[str]) -> int:
    try:
        name, ctx = parse(argv)
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return exc.code
    if name not in COMMANDS:
        print((f"\nCommand '{name}' not found. \n\n" if name else "") + f"Usage\n\n{GENERAL_USAGE} <command> "
              "[<command options>]\n\nAvailable commands:\n\nMonitoring, observability and health checks:\n\n"
              "   directories   Displays plugin directory and enabled plugin file paths\n"
              "   is_enabled    Health check that exits with a non-zero code if provided plugins are not enabled "
              "on target node\n\nPlugin Management:\n\n   disable       Disables one or more plugins\n"
              "   enable        Enables one or more plugins\n   list          Lists plugins and their state\n"
              "   set           Enables one or more plugins, disables the rest", file=sys.stderr)  # fmt: skip
        return USAGE
    ctx.command = name
    needs, most, handler = COMMANDS[name]
    allowed = set(USAGES[name][0]) | set(GENERAL_FLAGS)
    invalid = [flag for flag, option in FLAG_OPTIONS.items() if option in ctx.options and option not in allowed
               and flag in argv]  # fmt: skip
    if invalid:
        return _usage_error(
            ctx, "Invalid options for this command:\n" + "\n".join(f"{flag} : " for flag in invalid)
        )
    if ctx.options.get("all") and ctx.args:
        return _usage_error(ctx, "Cannot set both --all and a list of plugins")
    if ctx.options.get("online") and ctx.options.get("offline"):
        return _usage_error(ctx, "Cannot set both online and offline")
    if len(ctx.args) < needs and not ctx.options.get("all"):
        return _usage_error(ctx, "not enough arguments.")
    if most is not None and len(ctx.args) > most:
        return _usage_error(ctx, "too many arguments.")
    try:
        handler(ctx)
    except NodeRequired:
        return _usage_error(ctx, "this command requires the target node to be running.", "Error")
    except NodeDown as exc:  # (the node went away between two requests)
        print(f"Error: {exc}", file=sys.stderr)
        return SOFTWARE
    except CommandError as exc:
        print(f"Error:\n{exc}" if exc.prefix else str(exc), file=sys.stderr)
        return exc.code
    return OK


def main() -> NoReturn:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
