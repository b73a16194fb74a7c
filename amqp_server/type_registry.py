"""Where the broker finds the types plugins provide (exchange types, queue types): entry points,
plus in-process registration.

Bundled and third-party types are found the same way, through an entry-point group, so the
bundled ones prove the plugin path works. ``register`` is for code that runs in the broker's
process without being an installed distribution (tests, embedding); it takes precedence over an
entry point of the same name, so a test or an embedding application can replace a bundled type.
"""

from __future__ import annotations

import inspect
import logging
from importlib.metadata import entry_points
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T", bound=type)


class TypeRegistry(Generic[T]):
    """The types of one kind: subclasses of ``base`` named by their ``name_attribute``."""

    def __init__(self, group: str, base: T, name_attribute: str, what: str) -> None:
        self.group = group
        self.base = base
        self.name_attribute = name_attribute
        self.what = what  # "exchange type", for log lines and errors
        self._registered: dict[str, T] = {}

    def check(self, cls: object) -> T:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{cls!r} is not a {self.base.__name__} subclass")
        name = getattr(cls, self.name_attribute, None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__qualname__} has no type name (class attribute '{self.name_attribute}')")
        if inspect.isabstract(cls):
            raise TypeError(f"{cls.__qualname__} does not implement all abstract methods")
        return cls  # type: ignore[return-value]

    def name_of(self, cls: T) -> str:
        return getattr(cls, self.name_attribute)

    def register(self, cls: T) -> T:
        """Make ``cls`` available under its name; usable as a class decorator."""
        self.check(cls)
        self._registered[self.name_of(cls)] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Undo ``register`` (tests clean up after themselves with it)."""
        self._registered.pop(name, None)

    def load(self) -> dict[str, T]:
        """All usable types by name; a plugin that fails to load is logged and skipped."""
        types: dict[str, T] = {}
        sources: dict[str, str] = {}
        for entry_point in sorted(entry_points(group=self.group), key=lambda ep: (ep.name, ep.value)):
            try:
                cls = self.check(entry_point.load())
            except Exception:
                # One broken plugin must not keep the broker (and every other type) from starting.
                log.exception("%s plugin %r (%s) could not be loaded; skipped", self.what, entry_point.name,
                              entry_point.value)  # fmt: skip
                continue
            name = self.name_of(cls)
            if name != entry_point.name:
                log.warning("%s plugin %r (%s) declares type name %r; registered under %r", self.what,
                            entry_point.name, entry_point.value, name, name)  # fmt: skip
            existing = types.get(name)
            if existing is not None and existing is not cls:
                log.error("%s %r is provided by both %s and %s; keeping the first", self.what, name, sources[name],
                          entry_point.value)  # fmt: skip
                continue
            types[name] = cls
            sources[name] = entry_point.value
        types.update(self._registered)
        return types
