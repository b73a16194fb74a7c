"""Cluster membership: voters (RabbitMQ's disc nodes) and non-voters (RAM nodes).

Changes are one at a time (the Raft thesis, section 4.1): each changes at most one voter, so
any majority of the old voters overlaps any majority of the new ones and no joint consensus is
needed. A change takes effect on every node as soon as its entry is in the node's log
(committed or not); the leader starts the next one only once it is committed, and only after
it has committed an entry of its own term (the fix to the single-server change bug).
"""

from __future__ import annotations

import enum

from cluster.raft.errors import MembershipError


class MembershipOp(enum.Enum):
    ADD_NON_VOTER = "add_non_voter"  # a new member that replicates but never votes
    PROMOTE = "promote"  # non-voter -> voter, once caught up (change_cluster_node_type disc)
    DEMOTE = "demote"  # voter -> non-voter (change_cluster_node_type ram)
    REMOVE = "remove"  # voter or non-voter leaves (forget_cluster_node)


class Membership:
    """An immutable configuration: two disjoint sets of node ids."""

    __slots__ = ("voters", "non_voters", "quorum", "ordered_voters", "ordered_members")

    def __init__(
        self, voters: frozenset[str] = frozenset(), non_voters: frozenset[str] = frozenset()
    ) -> None:
        self.voters = voters
        self.non_voters = non_voters
        self.quorum = len(voters) // 2 + 1
        # Iterated in a fixed order, so that a seeded run sends its messages in the same order.
        self.ordered_voters = tuple(sorted(voters))
        self.ordered_members = tuple(sorted(voters | non_voters))

    def __contains__(self, node: str) -> bool:
        return node in self.voters or node in self.non_voters

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Membership)
            and self.voters == other.voters
            and self.non_voters == other.non_voters
        )

    def __hash__(self) -> int:
        return hash((self.voters, self.non_voters))

    def __repr__(self) -> str:
        return f"Membership(voters={sorted(self.voters)}, non_voters={sorted(self.non_voters)})"

    def changed(self, op: MembershipOp, node: str) -> Membership:
        """The configuration after ``op`` on ``node``; refuses what is invalid here."""
        if op is MembershipOp.ADD_NON_VOTER:
            if node in self:
                raise MembershipError(f"{node} is already a member")
            return Membership(self.voters, self.non_voters | {node})
        if op is MembershipOp.PROMOTE:
            if node not in self.non_voters:
                raise MembershipError(f"{node} is not a non-voting member")
            return Membership(self.voters | {node}, self.non_voters - {node})
        if node not in self:
            raise MembershipError(f"{node} is not a member")
        if node in self.voters and len(self.voters) == 1:
            # Nobody would be left to elect a leader or commit anything.
            raise MembershipError(f"{node} is the last voter")
        if op is MembershipOp.DEMOTE:
            if node not in self.voters:
                raise MembershipError(f"{node} is not a voter")
            return Membership(self.voters - {node}, self.non_voters | {node})
        return Membership(self.voters - {node}, self.non_voters - {node})
