"""The messages Raft nodes exchange. Every one names its sender (``src``), its receiver
(``dst``) and the sender's term; the transport only routes them by ``dst``.

``Heartbeat`` is separate from ``AppendEntries`` (as in etcd): it carries no log position, so
it is never rejected, and its ``round`` lets the leader confirm leadership for reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.raft.log import Entry
from cluster.raft.membership import Membership


@dataclass(slots=True)
class RequestVote:
    term: int  # for a pre-vote: the term the sender would campaign in (its own is one lower)
    src: str
    dst: str
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False  # sent on TimeoutNow: voters ignore the leader they still hear from


@dataclass(slots=True)
class RequestVoteReply:
    term: int
    src: str
    dst: str
    granted: bool
    pre_vote: bool = False


@dataclass(slots=True)
class AppendEntries:
    term: int
    src: str
    dst: str
    prev_index: int
    prev_term: int
    entries: list[Entry]
    commit: int


@dataclass(slots=True)
class AppendEntriesReply:
    term: int
    src: str
    dst: str
    success: bool
    match: int  # on success: the last index now known to match the leader's log
    prev_index: int = 0  # on refusal: the request's prev_index (to ignore stale refusals)
    hint: int = 0  # on refusal: the leader may retry from hint + 1


@dataclass(slots=True)
class Heartbeat:
    term: int
    src: str
    dst: str
    commit: int  # the leader's commit index, capped at what it knows the follower has
    round: int


@dataclass(slots=True)
class HeartbeatReply:
    term: int
    src: str
    dst: str
    round: int


@dataclass(slots=True)
class InstallSnapshot:
    term: int
    src: str
    dst: str
    index: int
    last_term: int
    config: Membership
    offset: int
    data: bytes
    done: bool


@dataclass(slots=True)
class InstallSnapshotReply:
    term: int
    src: str
    dst: str
    index: int
    offset: int  # the next byte the follower expects
    done: bool  # the snapshot is installed (or the follower had it already)


@dataclass(slots=True)
class TimeoutNow:
    """Leadership transfer: the leader tells a caught-up voter to campaign at once."""

    term: int
    src: str
    dst: str


Message = (
    RequestVote
    | RequestVoteReply
    | AppendEntries
    | AppendEntriesReply
    | Heartbeat
    | HeartbeatReply
    | InstallSnapshot
    | InstallSnapshotReply
    | TimeoutNow
)
