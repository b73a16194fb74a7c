"""Where the broker finds exchange types: entry points, plus in-process registration.

Bundled and third-party types are found the same way, through the ``amqp_server.exchange_types``
entry-point group, so the bundled ones prove the plugin path works. ``register`` is for code
that runs in the broker's process without being an installed distribution (tests, embedding).
"""

from __future__ import annotations

import inspect
import logging
from importlib.metadata import entry_points
from typing import TypeVar

from exchanges.base import ExchangeType

ENTRY_POINT_GROUP = "amqp_server.exchange_types"

log = logging.getLogger(__name__)

_T = TypeVar("_T", bound=type[ExchangeType])

_registered: dict[str, type[ExchangeType]] = {}


def _check(cls: object) -> type[ExchangeType]:
    if not (isinstance(cls, type) and issubclass(cls, ExchangeType)):
        raise TypeError(f"{cls!r} is not an ExchangeType subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} has no type name (class attribute 'name')")
    if inspect.isabstract(cls):
        raise TypeError(f"{cls.__qualname__} does not implement all abstract methods")
    return cls


def register(cls: _T) -> _T:
    """Make ``cls`` available under ``cls.name``; usable as a class decorator.

    Takes precedence over an entry point of the same name, so a test or an embedding
    application can replace a bundled type.
    """
    _check(cls)
    _registered[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Undo ``register`` (tests clean up after themselves with it)."""
    _registered.pop(name, None)


def load_exchange_types(group: str = ENTRY_POINT_GROUP) -> dict[str, type[ExchangeType]]:
    """All usable exchange types by name; a plugin that fails to load is logged and skipped."""
    types: dict[str, type[ExchangeType]] = {}
    sources: dict[str, str] = {}
    for entry_point in sorted(entry_points(group=group), key=lambda ep: (ep.name, ep.value)):
        try:
            cls = _check(entry_point.load())
        except Exception:
            # One broken plugin must not keep the broker (and every other type) from starting.
            log.exception(
                "exchange type plugin %r (%s) could not be loaded; skipped",
                entry_point.name,
                entry_point.value,
            )
            continue
        if cls.name != entry_point.name:
            log.warning(
                "exchange type plugin %r (%s) declares type name %r; registered under %r",
                entry_point.name,
                entry_point.value,
                cls.name,
                cls.name,
            )
        existing = types.get(cls.name)
        if existing is not None and existing is not cls:
            log.error(
                "exchange type %r is provided by both %s and %s; keeping the first",
                cls.name,
                sources[cls.name],
                entry_point.value,
            )
            continue
        types[cls.name] = cls
        sources[cls.name] = entry_point.value
    types.update(_registered)
    return types
