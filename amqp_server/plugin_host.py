"""The plugin system as RabbitMQ's behaves for operators: which plugins exist, which are
enabled, and enabling or disabling them at boot and while the node runs.

Plugins are found in the ``amqp_server.plugins`` entry-point group of the installed
distributions and in the plugins directory (``BrokerConfig.plugins_dir`` or
``RABBITMQ_PLUGINS_DIR``: a module or package per plugin, each exposing ``PLUGIN``). Which are
enabled is the ``enabled_plugins`` file (RabbitMQ's Erlang term ``[a,b].``, in the data
directory unless ``RABBITMQ_ENABLED_PLUGINS_FILE`` or ``BrokerConfig.enabled_plugins_file``
names another), written by ``amqp-plugins`` and read at boot; a node without the file enables
``BrokerConfig.plugins``.

The names in the file are the explicitly enabled plugins; their dependencies are enabled
implicitly, before them, and disabled after them. A plugin that cannot be imported, does not
accept this broker's version, or fails to start is logged and reported (``amqp-plugins list``,
``/api/extensions``); the node goes on without it.

RabbitMQ's management and Prometheus plugins are built into this broker (``management_ui``) and
switched by its configuration (``BrokerConfig.management`` and ``prometheus``, on in
``amqp-server``): they are listed as RabbitMQ lists them (``BUILT_IN``), never in the file, and
enabling or disabling them here is refused (``BuiltIn``).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from amqp_server import __version__
from amqp_server.plugin_api import NodeContext, Plugin, PolicyKeyValidator
from exchanges.missing import retire, revive

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "amqp_server.plugins"
ENABLED_PLUGINS_FILE = "enabled_plugins"
ENABLED_PLUGINS_ENV = "RABBITMQ_ENABLED_PLUGINS_FILE"
PLUGINS_DIR_ENV = "RABBITMQ_PLUGINS_DIR"


# RabbitMQ's plugins this broker has built in: name -> (description, plugin dependencies (its
# Erlang libraries left out), the BrokerConfig flags that run it). The description is RabbitMQ's.
BUILT_IN: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "rabbitmq_management": ("RabbitMQ Management Console", ("rabbitmq_web_dispatch", "rabbitmq_management_agent"),
                            ("management",)),
    "rabbitmq_management_agent": ("RabbitMQ Management Agent", (), ("management", "prometheus")),
    "rabbitmq_prometheus": ("", ("rabbitmq_management_agent", "rabbitmq_web_dispatch"), ("prometheus",)),
    "rabbitmq_web_dispatch": ("RabbitMQ Web Dispatcher", (), ("management", "prometheus")),
}  # fmt: skip
# The built-in plugins that run as others' dependencies (implicitly enabled, RabbitMQ's [e*]).
_BUILT_IN_DEPENDENCIES = frozenset(d for _d, dependencies, _f in BUILT_IN.values() for d in dependencies)


class BuiltIn(Exception):
    """Enabling or disabling plugins this broker has built in (``BUILT_IN``): its configuration
    switches them, amqp-plugins cannot."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        flags = sorted({f"BrokerConfig.{flag}" for name in self.names for flag in BUILT_IN[name][2]})
        super().__init__(f"{', '.join(self.names)}: built into this broker and switched by the node's "
                         f"configuration ({' and '.join(flags)}, on in amqp-server), not by amqp-plugins")  # fmt: skip


class PluginsNotFound(Exception):
    """Names no installed plugin has (RabbitMQ's ``{plugins_not_found, [...]}``)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        super().__init__(f"{{:plugins_not_found, [{', '.join(':' + name for name in self.names)}]}}")


# -- the enabled_plugins file -----------------------------------------------------------------

_ATOM = re.compile(r"[a-z][A-Za-z0-9_@]*")


def enabled_plugins_path(data_dir: str | os.PathLike[str] | None, configured: str = "") -> Path | None:
    """Where the enabled_plugins file is: the environment's, the configured one, else the data
    directory's (None: a node without a data directory has no file)."""
    named = os.environ.get(ENABLED_PLUGINS_ENV) or configured
    if named:
        return Path(named)
    return Path(data_dir) / ENABLED_PLUGINS_FILE if data_dir else None


def parse_enabled(text: str) -> list[str]:
    """The names of an enabled_plugins file (``[a,'b-c'].``); ValueError if it is no such term."""
    match = re.fullmatch(r"\s*\[(.*)\]\s*\.\s*", text, re.DOTALL)
    if match is None:
        raise ValueError(f"not an Erlang list term: {text.strip()[:80]!r}")
    inner = match.group(1).strip()
    names = []
    for item in (part.strip() for part in inner.split(",")) if inner else ():
        if len(item) >= 2 and item[0] == item[-1] == "'":
            item = item[1:-1]
        elif not _ATOM.fullmatch(item):
            raise ValueError(f"not an atom: {item!r}")
        names.append(item)
    return names


def format_enabled(names: Iterable[str]) -> str:
    """The file's text, as rabbitmq-plugins writes it: ``[a,b].`` and a newline."""
    atoms = (name if _ATOM.fullmatch(name) else "'" + name.replace("'", "\\'") + "'" for name in names)
    return "[" + ",".join(atoms) + "].\n"


def read_enabled(path: Path | None) -> list[str] | None:
    """The file's names; None when there is no file. An unreadable file raises ValueError."""
    if path is None:
        return None
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_enabled(text)


def write_enabled(path: Path, names: Iterable[str]) -> None:
    """Replace the file at once (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(format_enabled(names))
    os.replace(temporary, path)


# -- discovery --------------------------------------------------------------------------------


@dataclass
class Catalogue:
    """The plugins there are, by name, and those that could not be loaded, with why."""

    plugins: dict[str, Plugin] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, where: str, load: Callable[[], Any]) -> None:
        try:
            plugin = load()
            if not isinstance(plugin, Plugin):
                raise TypeError(f"{where} is not an amqp_server.plugin_api.Plugin")
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the others
            log.error("plugin %s (%s) could not be loaded: %s", name, where, _reason(exc))
            self.broken[name] = _reason(exc)
            return
        if plugin.name in self.plugins:
            log.error("plugin %s is provided twice; %s is ignored", plugin.name, where)
            return
        self.plugins[plugin.name] = plugin

    def missing(self, names: Iterable[str]) -> list[str]:
        """Of ``names`` and their dependencies, those no installed plugin has (a plugin that
        fails to load is installed: enabling it reports why it cannot start)."""
        return [name for name in self.closure(names) if name not in self.plugins and name not in self.broken]

    def version(self, name: str) -> str:
        plugin = self.plugins.get(name)
        return (plugin.version if plugin is not None else "") or __version__

    def closure(self, names: Iterable[str]) -> list[str]:
        """``names`` with their dependencies, every plugin after the ones it depends on; a
        dependency no installed plugin has is kept (enabling it reports it)."""
        ordered: dict[str, None] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in ordered or name in path:  # (a cycle is broken where it closes)
                return
            plugin = self.plugins.get(name)
            for dependency in plugin.dependencies if plugin is not None else ():
                visit(dependency, (*path, name))
            ordered[name] = None

        for name in names:
            visit(name, ())
        return list(ordered)

    def dependents(self, names: Iterable[str], among: Iterable[str]) -> set[str]:
        """``names`` and every plugin of ``among`` that depends on one of them, transitively."""
        among = list(among)
        found = set(names)
        for name in among:
            if found & set(self.closure([name])):
                found.add(name)
        return found


def discover(plugins_dir: str | None = None) -> Catalogue:
    """Every plugin of the entry-point group and of the plugins directory."""
    catalogue = Catalogue()
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        catalogue.add(entry_point.name, entry_point.value, entry_point.load)
    directory = plugins_dir or os.environ.get(PLUGINS_DIR_ENV)
    if directory and os.path.isdir(directory):
        # Its modules import as top-level ones (a package's own imports work), as RabbitMQ puts
        # the plugins directory on the code path.
        if directory not in sys.path:
            sys.path.append(directory)
        for entry in sorted(os.listdir(directory)):
            path = os.path.join(directory, entry)
            if entry.endswith(".py"):
                module = entry[:-3]
            elif os.path.isfile(os.path.join(path, "__init__.py")):
                module = entry
            else:
                continue
            catalogue.add(module, path, lambda module=module: importlib.import_module(module).PLUGIN)
    return catalogue


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- the host ---------------------------------------------------------------------------------


class PluginHost:
    """The plugins of one broker (``broker.plugins``): enable, disable, set, and what is
    enabled, running and failed."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        config = broker.config
        self.file = enabled_plugins_path(config.data_dir, config.enabled_plugins_file)
        self._catalogue: Catalogue | None = None
        #: What the operator enabled by name (the file's names), in the order given.
        self.explicit: list[str] = []
        #: The enabled plugins' contexts, in the order they were enabled.
        self._running: dict[str, NodeContext] = {}
        #: Plugins whose types are installed and whose start hook has not run yet (at boot).
        self._loaded: dict[str, NodeContext] = {}
        #: Plugins that were to be enabled and could not be, with why.
        self.failed: dict[str, str] = {}
        #: Policy keys the enabled plugins give meaning to (policy validation reads them).
        self.policy_keys: dict[str, PolicyKeyValidator] = {}
        #: HTTP API routes of the enabled plugins: (path under /api, resource, plugin).
        self.routes: list[tuple[str, Any, str]] = []
        #: The enabled plugins' dashboard modules: path under the dashboard's js/ -> file.
        self.dashboard: dict[str, Path] = {}

    @property
    def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            self._catalogue = discover(self.broker.config.plugins_dir)
        return self._catalogue

    @property
    def enabled(self) -> list[str]:
        """The running plugins, in the order they were enabled."""
        return list(self._running)

    # -- boot and stop ---------------------------------------------------------------------

    def load(self) -> None:
        """Install the types and policy keys of the plugins the enabled_plugins file names (or
        the configuration, when there is no file), before the broker recovers its metadata:
        exchanges, bindings and queues of a plugin's types recover as what they are. Their
        start hooks run in ``boot``."""
        try:
            names = read_enabled(self.file)
        except ValueError as exc:
            log.error("enabled_plugins file %s is not valid (%s): no plugin is enabled", self.file, exc)
            names = []
        self.explicit = list(dict.fromkeys(self.broker.config.plugins if names is None else names))
        if not self.explicit:  # (no plugin: no need to look for any)
            return
        for name in self.catalogue.closure(self.explicit):
            self._prepare(name)  # (a name not installed is reported failed)

    async def boot(self) -> None:
        """Start the plugins ``load`` installed, dependencies first; called once the broker
        has booted, before it listens."""
        for name in list(self._loaded):
            await self._start(name)

    async def stop(self) -> None:
        """Disable every plugin, the last enabled first (the node is stopping; the file stays)."""
        for context in self._running.values():
            context.node_stopping = True
        for name in reversed(list(self._running)):
            await self._stop(name)
        while self._loaded:  # (a start that failed between load and boot)
            self._loaded.popitem()[1].close()

    # -- changes ---------------------------------------------------------------------------

    async def enable(self, *names: str) -> list[str]:
        """Enable ``names`` (explicitly) and their dependencies; returns the plugins started.
        PluginsNotFound when a name (or a dependency) is not installed: nothing changes."""
        self._require(names)
        return (await self._apply([*self.explicit, *names]))[0]

    async def disable(self, *names: str) -> list[str]:
        """Disable ``names`` and every enabled plugin that depends on them; returns the plugins
        stopped. A name that is not enabled is no error (as rabbitmq-plugins)."""
        gone = self.catalogue.dependents(names, self.explicit)
        return (await self._apply([name for name in self.explicit if name not in gone]))[1]

    async def set(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """Make ``names`` the explicitly enabled plugins; returns the plugins started and those
        stopped. PluginsNotFound as ``enable``."""
        names = list(names)
        self._require(names)
        return await self._apply(names)

    async def _apply(self, names: list[str]) -> tuple[list[str], list[str]]:
        """The explicit plugins become ``names``: written to the file, then acted on."""
        self.explicit = list(dict.fromkeys(names))
        if self.file is not None:
            write_enabled(self.file, self.explicit)
        return await self._reconcile()

    def _require(self, names: Iterable[str]) -> None:
        names = list(names)
        built_in = [name for name in names if name in BUILT_IN]
        if built_in:
            raise BuiltIn(built_in)
        missing = self.catalogue.missing(names)
        if missing:
            self._catalogue = None  # installed since the last look?
            missing = self.catalogue.missing(names)
        if missing:
            raise PluginsNotFound(missing)

    async def _reconcile(self) -> tuple[list[str], list[str]]:
        wanted = self.catalogue.closure(self.explicit)
        stopped = [name for name in reversed(list(self._running)) if name not in wanted]
        for name in stopped:
            await self._stop(name)
        for name in list(self.failed):
            if name not in wanted:
                del self.failed[name]
        started = []
        for name in wanted:
            if name not in self._running and self._prepare(name) and await self._start(name):
                started.append(name)
        return started, stopped

    def _prepare(self, name: str) -> bool:
        """Check ``name`` can be enabled and install its types and policy keys."""
        plugin = self.catalogue.plugins.get(name)
        reason = self._why_not(name, plugin)
        if reason is not None or plugin is None:
            self._fail(name, reason or "plugin not found")
            return False
        data_dir = self.broker.config.data_dir
        context = NodeContext(
            self.broker, name, os.path.join(data_dir, "plugins", name) if data_dir else None
        )
        try:
            self._register(plugin, context)
        except Exception as exc:  # noqa: BLE001 - a plugin's failure must not take the node down
            context.close()
            self._fail(name, _reason(exc))
            return False
        self._loaded[name] = context
        return True

    async def _start(self, name: str) -> bool:
        """Run the start hook of a prepared plugin; it is enabled when that succeeds."""
        context = self._loaded.pop(name)
        plugin = self.catalogue.plugins[name]
        not_running = [dependency for dependency in plugin.dependencies if dependency not in self._running]
        if not_running:  # (a dependency failed)
            context.close()
            self._fail(name, f"dependencies not running: {', '.join(not_running)}")
            return False
        try:
            if plugin.start is not None:
                result = plugin.start(context)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:  # noqa: BLE001 - a plugin's failure must not take the node down
            log.exception("plugin %s failed to start", name)
            context.close()  # (its types go: their exchanges become placeholders)
            self._fail(name, _reason(exc))
            return False
        self._running[name] = context
        self.failed.pop(name, None)
        log.info("plugin %s enabled", name)
        return True

    def _why_not(self, name: str, plugin: Plugin | None) -> str | None:
        """Why ``name`` cannot be started, or None."""
        if plugin is None:
            return self.catalogue.broken.get(name, "plugin not found")
        requirement = plugin.broker_version_requirement
        if requirement:
            try:
                accepted = SpecifierSet(requirement).contains(__version__, prereleases=True)
            except InvalidSpecifier:
                return f"invalid broker_version_requirement {requirement!r}"
            if not accepted:
                return f"broker version {__version__} does not satisfy {requirement!r}"
        return None

    def _fail(self, name: str, reason: str) -> None:
        log.error("plugin %s could not be enabled: %s", name, reason)
        self.failed[name] = reason

    async def _stop(self, name: str) -> None:
        context = self._running.pop(name)
        plugin = self.catalogue.plugins[name]
        if plugin.stop is not None:
            try:
                result = plugin.stop(context)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - it is disabled all the same
                log.exception("plugin %s failed to stop cleanly", name)
        context.close()  # its registrations go with it (see _register)
        log.info("plugin %s disabled", name)

    def _register(self, plugin: Plugin, context: NodeContext) -> None:
        """Install the plugin's exchange and queue types and policy keys, each undone when the
        context closes; a name another plugin (or the broker) has already is refused."""
        broker = self.broker
        for registry, classes, attribute in (
            (broker.exchange_types, plugin.exchange_types, "name"),
            (broker.queue_types, plugin.queue_types, "type_name"),
        ):
            for cls in classes:
                type_name = getattr(cls, attribute)
                if type_name in registry:
                    raise ValueError(f"type {type_name} is provided already")
        for key in plugin.policy_keys:
            if key in self.policy_keys:
                raise ValueError(f"policy key {key} is provided already")
        for cls in plugin.exchange_types:
            broker.exchange_types[cls.name] = cls
            context.on_disable(lambda name=cls.name: self._retire_exchanges(name))
            self._revive_exchanges(cls.name)
        for cls in plugin.queue_types:
            broker.queue_types[cls.type_name] = cls
            context.on_disable(lambda name=cls.type_name: broker.queue_types.pop(name, None))
        for key, validator in plugin.policy_keys.items():
            self.policy_keys[key] = validator
            context.on_disable(lambda key=key: self.policy_keys.pop(key, None))

    def _revive_exchanges(self, type_name: str) -> None:
        """Exchanges of ``type_name`` that were placeholders route again."""
        for vhost in self.broker.vhosts.values():
            for exchange in vhost.exchanges.values():
                if exchange.type_name == type_name:
                    revive(vhost, exchange, self.broker.exchange_types[type_name])

    def _retire_exchanges(self, type_name: str) -> None:
        """The type is gone: its exchanges stay, as placeholders that refuse publishes."""
        self.broker.exchange_types.pop(type_name, None)
        for vhost in self.broker.vhosts.values():
            for exchange in vhost.exchanges.values():
                if exchange.type_name == type_name:
                    retire(vhost, exchange)

    def add_routes(self, plugin: str, routes: Iterable[tuple[str, Any]]) -> Callable[[], None]:
        """Add HTTP API routes of ``plugin`` (NodeContext.add_routes); returns their removal."""
        added = [(path, resource, plugin) for path, resource in routes]
        self.routes.extend(added)

        def remove() -> None:
            self.routes = [route for route in self.routes if route not in added]

        return remove

    def add_dashboard_extension(self, plugin: str, javascript_file: str | os.PathLike[str]) -> Callable[[], None]:
        """Serve a dashboard module of ``plugin`` (NodeContext.add_dashboard_extension) as
        ``js/extensions/<plugin>/<file name>``; returns its removal. FileNotFoundError when the
        file is not there (the plugin then fails to start)."""
        file = Path(javascript_file)
        if not file.is_absolute():
            start = self.catalogue.plugins[plugin].start
            module = sys.modules[getattr(start, "__module__", None) or type(start).__module__]
            file = Path(module.__file__ or "").parent / file
        if not file.is_file():
            raise FileNotFoundError(f"dashboard extension {file} not found")
        url = f"extensions/{plugin}/{file.name}"
        self.dashboard[url] = file
        return lambda: self.dashboard.pop(url, None)

    def describe(self) -> dict[str, Any]:
        """Every plugin there is, with its state, and where the node finds plugins and keeps the
        enabled_plugins file (``describe``)."""
        config = self.broker.config
        switched = {flag: bool(getattr(config, flag)) for flag in ("management", "prometheus")}
        return describe(self.catalogue, self.explicit, self._running, self.failed, switched) | directories(
            config.plugins_dir, self.file
        )


def describe(
    catalogue: Catalogue,
    explicit: list[str],
    running: Iterable[str] = (),
    failed: dict[str, str] | None = None,
    switched: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """What ``amqp-plugins list`` and ``/api/extensions`` show: every plugin there is (and every
    enabled name that is none), with its state and, when it could not be enabled, why. The
    built-in ones (``BUILT_IN``, ``"built_in": True``) run as ``switched`` says (the node's
    configuration flags; None, offline: not known, shown as not enabled)."""
    failed = failed or {}
    running = set(running)
    implicit = set(catalogue.closure(explicit)) - set(explicit)
    plugins = []
    for name in sorted(set(catalogue.plugins) | set(catalogue.broken) | set(failed)):
        plugin = catalogue.plugins.get(name)
        plugins.append({
            "name": name,
            "version": catalogue.version(name),
            "description": plugin.description if plugin is not None else "",
            "dependencies": list(plugin.dependencies) if plugin is not None else [],
            "enabled": "enabled" if name in explicit else "implicit" if name in implicit else "not_enabled",
            "running": name in running,
            "installed": plugin is not None or name in catalogue.broken,  # (broken: enabling it reports why)
            "error": failed.get(name) or catalogue.broken.get(name),
        })  # fmt: skip
    for name, (description, dependencies, flags) in BUILT_IN.items():
        on = any((switched or {}).get(flag) for flag in flags)
        state = "implicit" if name in _BUILT_IN_DEPENDENCIES else "enabled"
        plugins.append({
            "name": name, "version": __version__, "description": description, "dependencies": list(dependencies),
            "enabled": state if on else "not_enabled", "running": on, "installed": True, "error": None,
            "built_in": True,
        })  # fmt: skip
    plugins.sort(key=lambda plugin: plugin["name"])
    return {"plugins": plugins, "explicit": list(explicit)}


def directories(plugins_dir: str | None, file: Path | None) -> dict[str, str]:
    """What ``amqp-plugins directories`` shows: the plugins directory (the configured one,
    else ``RABBITMQ_PLUGINS_DIR``; entry points need none) and the enabled_plugins file ("" for
    none). There is no expansion directory: plugins are Python packages, never archives."""
    return {"plugins_dir": plugins_dir or os.environ.get(PLUGINS_DIR_ENV, ""), "plugins_expand_dir": "",
            "enabled_plugins_file": str(file or "")}  # fmt: skip


def catalogue_of(description: dict[str, Any]) -> Catalogue:
    """The catalogue a ``describe`` result tells of (what amqp-plugins works out changes with)."""
    catalogue = Catalogue()
    for item in description["plugins"]:
        if item["installed"]:
            catalogue.plugins[item["name"]] = Plugin(
                item["name"], item["description"], item["version"], tuple(item["dependencies"])
            )
    return catalogue
