"""What one call to a ``RaftNode`` asks of its driver (the contract, in order):

1. Persist, in one atomic write: ``snapshot`` (it replaces every entry up to its index), then
   drop the entries from ``truncate_from`` on, append ``entries``, store ``hard_state`` (term,
   vote). Writes are done in ``seq`` order; consecutive Outputs' writes may share one fsync
   (group commit). Once durable, call ``RaftNode.persisted(seq)``.
2. Send ``send_now`` at once: they depend on nothing unwritten.
3. Send ``messages`` only once this Output's write and every earlier one are durable: they
   carry votes, terms and log positions that must survive a crash (an Output with nothing to
   write and no earlier write outstanding has them moved to ``send_now`` already).
4. Load ``restore`` into the state machine (a snapshot from the leader), then apply
   ``committed`` in order; answer ``reads`` (read-index: context, index) once the state
   machine has applied that index (it has, after ``committed``); ``failed_reads`` lost the
   leadership before they were confirmed. When ``want_snapshot`` is set, take a snapshot
   and hand it to ``RaftNode.snapshot_taken``.

Applying committed entries need not wait for the write: a committed entry is durable on a
quorum already.
"""

from __future__ import annotations

from typing import Any

from cluster.raft.log import Entry
from cluster.raft.messages import Message
from cluster.raft.snapshot import Snapshot


class StateChange:
    """A notice that the node's role, term or known leader changed."""

    __slots__ = ("role", "term", "leader")

    def __init__(self, role: str, term: int, leader: str | None) -> None:
        self.role = role
        self.term = term
        self.leader = leader

    def __repr__(self) -> str:
        return f"StateChange({self.role}, term={self.term}, leader={self.leader})"


class Output:
    __slots__ = (
        "seq",
        "hard_state",
        "snapshot",
        "truncate_from",
        "entries",
        "send_now",
        "messages",
        "restore",
        "committed",
        "reads",
        "failed_reads",
        "want_snapshot",
        "proposed",
        "changes",
    )

    def __init__(self) -> None:
        self.seq: int | None = None  # set when there is something to write
        self.hard_state: tuple[int, str | None] | None = None
        self.snapshot: Snapshot | None = None
        self.truncate_from: int | None = None
        self.entries: list[Entry] = []
        self.send_now: list[Message] = []
        self.messages: list[Message] = []
        self.restore: Snapshot | None = None
        self.committed: list[Entry] = []
        self.reads: list[tuple[Any, int]] = []
        self.failed_reads: list[Any] = []
        self.want_snapshot = False
        self.proposed: list[tuple[int, int]] = []  # (index, term) of each command proposed
        self.changes: list[StateChange] = []

    @property
    def has_write(self) -> bool:
        return (
            self.hard_state is not None
            or self.snapshot is not None
            or self.truncate_from is not None
            or bool(self.entries)
        )
