"""Snapshots: the state machine's state at a log index, which lets the log before it go.

The application takes one when the node asks (``Output.want_snapshot``) and hands it over with
``RaftNode.snapshot_taken``; the leader sends it to a follower whose next entry is compacted
away, in ``chunk_size`` pieces of InstallSnapshot, one at a time, resuming where the follower
says it is (a follower that restarted says 0).
"""

from __future__ import annotations

from cluster.raft.membership import Membership


class Snapshot:
    __slots__ = ("index", "term", "config", "data")

    def __init__(self, index: int, term: int, config: Membership, data: bytes) -> None:
        self.index = index
        self.term = term
        self.config = config  # the configuration in force at ``index``
        self.data = data

    def __repr__(self) -> str:
        return f"Snapshot(index={self.index}, term={self.term}, {self.config!r}, {len(self.data)} bytes)"


class SnapshotReceiver:
    """A follower's snapshot being received: the chunks so far, from one leader and term."""

    __slots__ = ("leader_term", "index", "term", "chunks", "size")

    def __init__(self, leader_term: int, index: int, term: int) -> None:
        self.leader_term = leader_term
        self.index = index
        self.term = term
        self.chunks: list[bytes] = []
        self.size = 0

    def is_for(self, leader_term: int, index: int, term: int) -> bool:
        return self.leader_term == leader_term and self.index == index and self.term == term

    def add(self, offset: int, data: bytes) -> bool:
        """Takes the chunk at ``offset`` if it is the next one; says whether it did."""
        if offset != self.size:
            return False
        self.chunks.append(data)
        self.size += len(data)
        return True

    def data(self) -> bytes:
        return b"".join(self.chunks)
