"""The metadata-store seam: every change to vhosts, users, permissions, exchanges, queues,
bindings and policies is a ``Change`` committed here before it takes effect.

Routing never reads the store: the broker applies a committed change to its in-memory tables
(``Broker.apply``). An embedded store persists durable changes (SQLite); a clustered store
replicates the change log to the other nodes, which apply the same changes in the same order.
The in-memory store below is what a RAM node or a single transient broker uses: a commit is
final as soon as it is made.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Change:
    """One metadata change. ``kind`` names the table, ``op`` is "put" or "delete"."""

    kind: str  # vhost, user, permission, exchange, queue, binding, policy
    op: str  # "put" or "delete" ("set_aside" only between SqliteStore and its writer)
    vhost: str | None
    name: str
    record: dict[str, Any] = field(default_factory=dict)
    # Two properties, not one: a persisted change is written to the node's disk store (it
    # survives a restart); a replicated one is shared with the cluster, whose nodes all apply
    # it. A transient queue is replicated but not persisted, as in RabbitMQ.
    persisted: bool = True
    replicated: bool = True
    # A put that creates: it takes effect only if nothing of that kind and name exists when
    # its turn comes (compare-and-set), else the answer is "existing" and nothing changes.
    create: bool = False


class MetadataStore(ABC):
    #: True until the store has been written once: the broker creates its defaults (vhost '/',
    #: user guest) only then, as RabbitMQ does on a node's first start, not whenever it is empty.
    first_start = True
    #: True for a store that applies committed changes to the broker itself (the cluster's:
    #: every node applies them in log order); ``commit`` then answers False for a creation that
    #: found the thing existing.
    applies = False

    @abstractmethod
    async def commit(self, change: Change) -> bool | None:
        """Return once the change is final (on disk, or agreed by the cluster's voters)."""

    @abstractmethod
    async def load(self) -> list[Change]:
        """The durable changes to apply at boot, oldest first."""

    async def start(self) -> None:
        """The broker can apply changes now (its message store is open): a store that applies
        them itself (``applies``) starts doing so."""

    async def set_aside(self, change: Change, reason: str) -> None:
        """Keep a stored change that can no longer be applied out of later boots, with the
        reason, where an operator can still find it."""

    async def close(self) -> None:
        """Release resources."""


class MemoryStore(MetadataStore):
    """Nothing to wait for: the broker's own tables are the only copy."""

    async def commit(self, change: Change) -> None:
        return None

    async def load(self) -> list[Change]:
        return []
