"""A sans-IO Raft: ``RaftNode`` takes clock ticks, messages and proposals and returns an
``Output`` saying what to persist, what to send (and after which write), what to apply.

The transport and storage that drive it are the caller's (docs/clustering.md, "Raft core").
"""

from cluster.raft.errors import MembershipError, NotLeader
from cluster.raft.log import Entry, EntryKind, RaftLog
from cluster.raft.membership import Membership, MembershipOp
from cluster.raft.node import RaftNode, RaftOptions, Role
from cluster.raft.output import Output, StateChange
from cluster.raft.snapshot import Snapshot
from cluster.raft.storage import DurableState, Storage, bootstrap

__all__ = [
    "DurableState",
    "Entry",
    "EntryKind",
    "Membership",
    "MembershipError",
    "MembershipOp",
    "NotLeader",
    "Output",
    "RaftLog",
    "RaftNode",
    "RaftOptions",
    "Role",
    "Snapshot",
    "StateChange",
    "Storage",
    "bootstrap",
]
