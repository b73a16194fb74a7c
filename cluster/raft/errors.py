"""What a ``RaftNode`` refuses: requests only a leader serves, and membership changes."""

from __future__ import annotations


class NotLeader(Exception):
    """Only the leader proposes, reads and changes membership; ``leader`` is the one this node
    knows of (None while there is none, or while a leadership transfer is under way)."""

    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader})")
        self.leader = leader


class MembershipError(Exception):
    """A membership change refused: invalid for the configuration, or not allowed yet."""
