"""The in-memory view of a Raft log: the entries after the last snapshot, with the snapshot's
index and term standing in for everything compacted before them."""

from __future__ import annotations

import enum
from typing import Any


class EntryKind(enum.Enum):
    COMMAND = "command"  # the state machine's
    NOOP = "noop"  # a new leader's first entry: commits the entries of earlier terms
    CONFIG = "config"  # a Membership (membership.py)


class Entry:
    """One log entry; never changed once made (logs and messages share the objects)."""

    __slots__ = ("term", "index", "kind", "command")

    def __init__(self, term: int, index: int, kind: EntryKind, command: Any = None) -> None:
        self.term = term
        self.index = index
        self.kind = kind
        self.command = command

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Entry)
            and self.term == other.term
            and self.index == other.index
            and self.kind is other.kind
            and self.command == other.command
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Entry(term={self.term}, index={self.index}, {self.kind.value}, {self.command!r})"


class RaftLog:
    __slots__ = ("snapshot_index", "snapshot_term", "entries")

    def __init__(
        self, snapshot_index: int = 0, snapshot_term: int = 0, entries: list[Entry] | None = None
    ) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.entries: list[Entry] = entries if entries is not None else []

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; None when it is compacted away or not there."""
        offset = index - self.snapshot_index
        if offset == 0:
            return self.snapshot_term
        if 0 < offset <= len(self.entries):
            return self.entries[offset - 1].term
        return None

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, start: int, stop: int) -> list[Entry]:
        """Entries ``start`` to ``stop - 1`` (all present: the caller checks the bounds)."""
        base = self.snapshot_index + 1
        return self.entries[start - base : stop - base]

    def up_to_date(self, last_index: int, last_term: int) -> bool:
        """Is a log ending at (``last_index``, ``last_term``) at least as up-to-date as this one?"""
        mine = self.last_term
        return last_term > mine or (last_term == mine and last_index >= self.last_index)

    def append(self, entries: list[Entry]) -> None:
        self.entries.extend(entries)

    def merge(self, prev_index: int, entries: list[Entry]) -> tuple[int | None, list[Entry]]:
        """A leader's ``entries`` following ``prev_index`` (which matches): skips those already
        here, cuts the log at the first conflict. Returns (where the log was cut or None, the
        entries newly appended)."""
        base = self.snapshot_index + 1
        for position, entry in enumerate(entries):
            index = prev_index + 1 + position
            if index < base:
                continue  # compacted: committed, so it matches
            offset = index - base
            if offset >= len(self.entries):
                new = entries[position:]
                self.entries.extend(new)
                return None, new
            if self.entries[offset].term != entry.term:
                del self.entries[offset:]
                new = entries[position:]
                self.entries.extend(new)
                return index, new
        return None, []

    def conflict_hint(self, prev_index: int, floor: int) -> int:
        """After refusing an AppendEntries at ``prev_index``: an index the leader may retry from
        (plus one). Skips the whole conflicting term at once, never below ``floor``."""
        if prev_index > self.last_index:
            return self.last_index
        term = self.term_at(prev_index)
        index = prev_index - 1
        while index > floor and self.term_at(index) == term:
            index -= 1
        return max(index, floor)

    def compact(self, index: int, term: int) -> None:
        """Drop the entries up to ``index`` (covered by a snapshot at ``index``/``term``)."""
        if self.term_at(index) == term:
            del self.entries[: index - self.snapshot_index]
        else:
            self.entries = []
        self.snapshot_index = index
        self.snapshot_term = term
