"""What a ``RaftNode`` needs from durable storage, whatever stores it: the broker's SQLite
(through aiosqlite, which runs these calls on its thread) or the simulation's memory.

``write`` takes an ``Output``'s write part whole and must make it durable atomically before
returning (or, for an asynchronous driver, before the driver calls ``RaftNode.persisted``).
``load`` returns what the last acknowledged writes left, to build the node again after a
restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from cluster.raft.log import Entry
from cluster.raft.membership import Membership
from cluster.raft.output import Output
from cluster.raft.snapshot import Snapshot


@dataclass(slots=True)
class DurableState:
    term: int
    voted_for: str | None
    snapshot: Snapshot
    entries: list[Entry] = field(default_factory=list)  # those after the snapshot, in order


def bootstrap(voters: frozenset[str] = frozenset()) -> DurableState:
    """The state of a node that has never run: the founding nodes get the founding voters as
    the configuration of an empty snapshot at index 0; a node that will join gets none."""
    return DurableState(0, None, Snapshot(0, 0, Membership(voters), b""))


class Storage(Protocol):
    def load(self) -> DurableState: ...

    def write(self, output: Output) -> None:
        """``snapshot`` (and drop entries up to its index), ``truncate_from``, ``entries``,
        ``hard_state``: in that order, in one transaction."""
        ...
