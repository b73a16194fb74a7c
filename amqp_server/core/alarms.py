"""Resource alarms: the memory high watermark and the free disk limit.

RabbitMQ's vm_memory_monitor, rabbit_disk_monitor and rabbit_alarm in one object. Every
``resource_check_interval`` seconds the monitor reads this process's resident memory and the
free space of the data directory's file system. An alarm is raised when memory use goes above
the watermark or free disk space drops below the limit, and cleared when it goes back (as
RabbitMQ does: the same threshold both ways, evaluated at each check).

While any alarm is on, every connection is told ``block(reason)``; the connection blocks itself
(sends connection.blocked, stops reading its socket) only when it next publishes, so consumers
keep draining. When the last alarm clears, every connection gets ``unblock()``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker
    from amqp_server.transport.connection import Connection

log = logging.getLogger(__name__)

MEMORY, DISK = "memory", "disk"
# rabbit_reader joins the reasons of an Erlang set; for these two its order is disk, memory.
_REASON_ORDER = (DISK, MEMORY)
ONE_MIB = 1024 * 1024

# rabbit_resource_monitor_misc:parse_information_unit (3.10): a count with an optional unit.
_UNIT = re.compile(
    r"([0-9]+)(kB|KB|MB|GB|kb|mb|gb|Kb|Mb|Gb|kiB|KiB|MiB|GiB|kib|mib|gib|KIB|MIB|GIB|k|K|m|M|g|G)?"
)
_MULTIPLIERS = {
    **dict.fromkeys(("k", "K", "kiB", "KiB", "KIB", "kib"), 1024),
    **dict.fromkeys(("m", "M", "MiB", "MIB", "mib"), 1024**2),
    **dict.fromkeys(("g", "G", "GiB", "GIB", "gib"), 1024**3),
    **dict.fromkeys(("kB", "KB", "kb", "Kb"), 1000),
    **dict.fromkeys(("MB", "mb", "Mb"), 1000**2),
    **dict.fromkeys(("GB", "gb", "Gb"), 1000**3),
}
# cuttlefish's float datatype: Erlang float syntax, so "1" and ".4" are refused.
_FLOAT = re.compile(r"[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?")
_BANNER = "*" * 58


def parse_information_unit(value: str | int) -> int:
    """Bytes from a rabbitmq.conf size such as ``1073741824``, ``512MiB``, ``1GB`` or ``50mb``.

    As RabbitMQ: k/K/KiB mean 1024, kB/KB mean 1000, likewise for M and G; anything else
    (spaces, decimals, other units) raises ValueError.
    """
    if isinstance(value, int):
        return value
    match = _UNIT.fullmatch(value.strip())
    if match is None:
        raise ValueError(value)
    number, unit = match.groups()
    return int(number) * (_MULTIPLIERS[unit] if unit else 1)


def parse_float(value: str) -> float:
    """A rabbitmq.conf float (``0.4``, ``1.0``); cuttlefish refuses ``1`` and ``.4``."""
    if _FLOAT.fullmatch(value.strip()) is None:
        raise ValueError(value)
    return float(value)


def total_memory() -> int:
    """Installed RAM in bytes (what vm_memory_monitor calls total memory)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        try:
            with open("/proc/meminfo", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("MemTotal:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    return 0


def process_memory() -> int:
    """This process's resident set size in bytes (RabbitMQ's default ``rss`` strategy)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource  # not Linux: the peak RSS is the best cheap figure

        scale = 1 if os.uname().sysname == "Darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def disk_free(path: str | None) -> int:
    """Bytes available to this user on the file system holding ``path`` (the data dir,
    or its nearest existing parent when it is not created yet; the current dir if None)."""
    directory = os.path.abspath(path or os.getcwd())
    while not os.path.exists(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return shutil.disk_usage(directory).free


def erlang_atom(name: str) -> str:
    """A node name as Erlang's ~p prints the atom: quoted unless a plain atom."""
    if re.fullmatch(r"[a-z][A-Za-z0-9_@]*", name):
        return name
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def blocked_reason(alarms: set[str] | frozenset[str]) -> str:
    """connection.blocked's reason as rabbit_reader words it: "low on memory", "low on
    disk", "low on disk & memory"."""
    return "low on " + " & ".join(r for r in _REASON_ORDER if r in alarms)


class AlarmMonitor:
    """The node's memory and disk alarms and the connections they block."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.alarms: set[str] = set()
        self.memory_used = 0
        self.disk_free = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Every connection told about alarms: one accepted but not yet in broker.connections
        # (connection_made comes a callback later) must still hear that an alarm cleared.
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()

    # -- limits --------------------------------------------------------------------------

    @property
    def memory_limit(self) -> int:
        """The watermark in bytes: the absolute one when set, else the fraction of RAM."""
        config = self.broker.config
        if config.vm_memory_high_watermark_absolute is not None:
            return int(config.vm_memory_high_watermark_absolute)
        return int(total_memory() * config.vm_memory_high_watermark)

    @property
    def disk_limit(self) -> int:
        """The free disk limit in bytes (``mem_relative``: a multiple of RAM when set)."""
        config = self.broker.config
        if config.disk_free_limit_relative is not None:
            return int(total_memory() * config.disk_free_limit_relative)
        return int(config.disk_free_limit)

    @property
    def reason(self) -> str | None:
        """The connection.blocked reason while an alarm is on, else None."""
        return blocked_reason(self.alarms) if self.alarms else None

    def set_memory_high_watermark(
        self, relative: float | None = None, absolute: int | str | None = None
    ) -> None:
        """Change the watermark at run time (rabbitmqctl set_vm_memory_high_watermark) and
        re-check at once."""
        config = self.broker.config
        if absolute is not None:
            config.vm_memory_high_watermark_absolute = parse_information_unit(absolute)
        else:
            if relative is None:
                raise ValueError("give relative or absolute")
            config.vm_memory_high_watermark = float(relative)
            config.vm_memory_high_watermark_absolute = None
        self._log_memory_limit()
        self.check()

    def set_disk_free_limit(
        self, absolute: int | str | None = None, mem_relative: float | None = None
    ) -> None:
        """Change the disk free limit at run time (rabbitmqctl set_disk_free_limit) and
        re-check at once."""
        config = self.broker.config
        if mem_relative is not None:
            config.disk_free_limit_relative = float(mem_relative)
        else:
            if absolute is None:
                raise ValueError("give absolute or mem_relative")
            config.disk_free_limit = parse_information_unit(absolute)
            config.disk_free_limit_relative = None
        self._log_disk_limit()
        self.check()

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Log the limits as RabbitMQ does at boot, check once, then every interval."""
        self._loop = asyncio.get_running_loop()
        self._log_memory_limit()
        log.info("Enabling free disk space monitoring")
        self._log_disk_limit()
        self._tick()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None

    def _tick(self) -> None:
        self._timer = None
        try:
            self.check()
        except Exception:  # noqa: BLE001 - a failed check must not stop later ones
            log.exception("resource check failed")
        if self._loop is not None:
            interval = max(0.01, float(self.broker.config.resource_check_interval))
            self._timer = self._loop.call_later(interval, self._tick)

    def check(self) -> None:
        """One look at memory and disk; raise or clear the alarms that changed."""
        self.memory_used = used = process_memory()
        limit = self.memory_limit
        alarmed = used > limit
        if alarmed != (MEMORY in self.alarms):
            log.info(
                "vm_memory_high_watermark %s. Memory used:%d allowed:%d",
                "set" if alarmed else "clear",
                used,
                limit,
            )
            self._set(MEMORY, alarmed)
        config = self.broker.config
        self.disk_free = free = disk_free(getattr(config, "data_dir", None))
        limit = self.disk_limit
        alarmed = free < limit
        if alarmed != (DISK in self.alarms):
            log.info(
                "Free disk space is %s. Free bytes: %d. Limit: %d",
                "insufficient" if alarmed else "sufficient",
                free,
                limit,
            )
            self._set(DISK, alarmed)

    def attach(self, connection: Connection) -> None:
        """A new connection: blocked at its first publish if an alarm is already on
        (rabbit_alarm:register hands a new reader the current alarms)."""
        self._connections.add(connection)
        reason = self.reason
        if reason is not None:
            connection.block(reason)

    # -- alarms --------------------------------------------------------------------------

    def _set(self, resource: str, on: bool) -> None:
        node = erlang_atom(self.broker.node_name)
        if on:
            self.alarms.add(resource)
            log.warning(
                "%s resource limit alarm set on node %s.\n\n%s\n"
                "*** Publishers will be blocked until this alarm clears ***\n%s",
                resource,
                node,
                _BANNER,
                _BANNER,
            )
        else:
            self.alarms.discard(resource)
            log.warning("%s resource limit alarm cleared on node %s", resource, node)
            log.warning("%s resource limit alarm cleared across the cluster", resource)
        self.broker.events.emit("alarm.set" if on else "alarm.cleared", source=resource, node=self.broker.node_name)
        self._broadcast()

    def _broadcast(self) -> None:
        reason = self.reason
        connections = set(self.broker.connections)
        connections.update(self._connections)
        for connection in connections:
            if reason is None:
                connection.unblock()
            else:
                connection.block(reason)

    def _log_memory_limit(self) -> None:
        limit, total = self.memory_limit, total_memory()
        log.info(
            "Memory high watermark set to %d MiB (%d bytes) of %d MiB (%d bytes) total",
            limit // ONE_MIB,
            limit,
            total // ONE_MIB,
            total,
        )

    def _log_disk_limit(self) -> None:
        log.info("Disk free limit set to %dMB", self.disk_limit // 1_000_000)
