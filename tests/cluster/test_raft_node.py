"""RaftNode's rules one at a time, with messages carried by hand (tests/cluster/sim.py runs the
same nodes under faults)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from cluster.raft import (
    DurableState,
    Entry,
    EntryKind,
    Membership,
    MembershipError,
    MembershipOp,
    NotLeader,
    Output,
    RaftNode,
    RaftOptions,
    Role,
    Snapshot,
)
from cluster.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Heartbeat,
    InstallSnapshot,
    Message,
    RequestVote,
    RequestVoteReply,
    TimeoutNow,
)

OPTIONS = RaftOptions(election_timeout=100, heartbeat_interval=20, max_batch=4, snapshot_chunk=10)


class Group:
    """Nodes whose writes are acknowledged at once and whose messages are delivered until
    none is left (except those ``blocked`` drops)."""

    def __init__(self, voters: list[str], non_voters: tuple[str, ...] = ()) -> None:
        self.now = 0.0
        self.nodes: dict[str, RaftNode] = {}
        self.applied: dict[str, list] = {}
        self.blocked: Callable[[Message], bool] = lambda message: False
        self.outputs: list[tuple[str, Output]] = []
        config = Membership(frozenset(voters), frozenset(non_voters))
        for name in (*voters, *non_voters):
            state = DurableState(0, None, Snapshot(0, 0, config, b""))
            self.nodes[name] = RaftNode(name, state, OPTIONS, random.Random(name), self.now)
            self.applied[name] = []
        self.queue: list[Message] = []

    def handle(self, name: str, out: Output) -> Output:
        node = self.nodes[name]
        self.outputs.append((name, out))
        self.applied[name] += [e.command for e in out.committed if e.kind is EntryKind.COMMAND]
        self.queue += out.send_now + out.messages
        if out.seq is not None:
            self.handle(name, node.persisted(out.seq))
        return out

    def settle(self) -> None:
        while self.queue:
            message = self.queue.pop(0)
            if not self.blocked(message):
                self.handle(message.dst, self.nodes[message.dst].receive(message))

    def tick(self, until: float) -> None:
        while self.now < until:
            self.now += 10
            for name, node in self.nodes.items():
                self.handle(name, node.tick(self.now))
            self.settle()

    def elect(self, name: str) -> RaftNode:
        """``name`` campaigns now (as told to by a leadership transfer) and wins."""
        node = self.nodes[name]
        self.handle(name, node.receive(TimeoutNow(node.term, name, name)))
        self.settle()
        assert node.role == Role.LEADER
        return node


def test_a_single_node_elects_itself_and_commits_its_proposals() -> None:
    group = Group(["a"])
    node = group.elect("a")
    out = node.propose("x", "y")
    assert out.seq is not None and [e.command for e in out.entries] == ["x", "y"]  # one write
    assert out.committed == []  # not before the write is durable
    committed = node.persisted(out.seq).committed
    assert [e.command for e in committed] == ["x", "y"]
    assert [(e.index, e.term) for e in committed] == out.proposed


def test_votes_go_to_up_to_date_logs_once_per_term_and_only_after_the_write() -> None:
    group = Group(["a", "b", "c"])
    a = group.elect("a")
    group.handle("a", a.propose("x"))
    group.settle()
    b = group.nodes["b"]
    group.now += 1000
    b.tick(group.now)  # out of the leader's lease
    stale = b.receive(RequestVote(5, "c", "b", last_index=1, last_term=1))
    assert stale.hard_state == (5, None)  # the term is taken
    assert stale.messages == [RequestVoteReply(5, "b", "c", False)]  # the log is behind: refused
    last = b.log.last_index
    granted = b.receive(RequestVote(6, "c", "b", last_index=last, last_term=1))
    assert granted.hard_state == (6, "c")
    assert granted.send_now == [] and granted.messages == [
        RequestVoteReply(6, "b", "c", True)
    ]  # after the write
    again = b.receive(RequestVote(6, "a", "b", last_index=last + 5, last_term=1))
    assert again.send_now + again.messages == [RequestVoteReply(6, "b", "a", False)]  # one vote per term


def test_a_leader_steps_down_on_a_higher_term() -> None:
    group = Group(["a", "b", "c"])
    a = group.elect("a")
    out = a.receive(AppendEntriesReply(a.term + 1, "b", "a", False, 0))
    assert a.role == Role.FOLLOWER and a.leader is None and out.hard_state == (a.term, None)
    with pytest.raises(NotLeader):
        a.propose("x")


def test_a_deposed_leader_s_unreplicated_entries_are_replaced() -> None:
    group = Group(["a", "b", "c"])
    a = group.elect("a")
    group.blocked = lambda message: message.src == "a"  # a is cut off (it still hears)
    group.handle("a", a.propose("lost 1", "lost 2"))
    group.settle()
    group.tick(group.now + 500)  # b or c takes over
    b = next(node for node in group.nodes.values() if node.role == Role.LEADER and node.id != "a")
    group.handle(b.id, b.propose("kept"))
    group.settle()
    group.blocked = lambda message: False
    group.tick(group.now + 100)
    assert a.role == Role.FOLLOWER and a.leader == b.id
    assert [(e.term, e.command) for e in a.log.entries] == [(e.term, e.command) for e in b.log.entries]
    assert any(name == "a" and out.truncate_from == 2 for name, out in group.outputs)
    assert group.applied["a"] == ["kept"]


def test_a_lagging_follower_gets_the_snapshot_in_chunks() -> None:
    group = Group(["a", "b", "c"])
    a = group.elect("a")
    group.blocked = lambda message: "c" in (message.src, message.dst)
    for i in range(10):
        group.handle("a", a.propose(f"c{i}"))
    group.settle()
    data = b"state machine at %d" % a.applied + b"." * 40
    group.handle("a", a.snapshot_taken(a.applied, data))
    assert a.log.snapshot_index == a.applied and a.log.entries == []
    group.blocked = lambda message: False
    group.tick(group.now + 100)
    c = group.nodes["c"]
    assert [out.restore.data for name, out in group.outputs if name == "c" and out.restore] == [data]
    chunks = [m for _, out in group.outputs for m in out.send_now if isinstance(m, InstallSnapshot)]
    assert len(chunks) >= len(data) // OPTIONS.snapshot_chunk  # sent in pieces
    assert c.log.snapshot_index == a.log.snapshot_index and c.commit >= a.log.snapshot_index
    group.handle("a", a.propose("after"))
    group.tick(group.now + 50)
    assert group.applied["c"] == ["after"]  # what came before is in the snapshot


def test_non_voters_never_campaign_and_never_count() -> None:
    group = Group(["a", "b"], non_voters=("r",))
    r = group.nodes["r"]
    assert r.visible_role == Role.NON_VOTER
    group.tick(1000)
    leader = next(node for node in group.nodes.values() if node.role == Role.LEADER)
    assert leader.id != "r" and r.leader == leader.id
    votes = [m for _, out in group.outputs for m in out.send_now + out.messages if isinstance(m, RequestVote)]
    assert votes and all("r" not in (m.src, m.dst) for m in votes)  # neither asks nor is asked
    # r's vote would not count either: a candidate of {a, b} needs the other voter's.
    other = group.nodes["b" if leader.id == "a" else "a"]
    other.receive(TimeoutNow(other.term, other.id, other.id))  # (its requests are lost)
    other.receive(RequestVoteReply(other.term, "r", other.id, True))
    assert other.role == Role.CANDIDATE
    # Nor does r's acknowledgement commit anything while that voter is silent.
    new = group.elect(other.id)
    group.blocked = lambda message: leader.id in (message.src, message.dst)
    group.handle(new.id, new.propose("x"))
    group.settle()
    assert r.log.last_index == new.log.last_index and group.applied[new.id] == []
    group.blocked = lambda message: False
    group.tick(group.now + 100)  # (followers learn of the commit with the next heartbeat)
    assert group.applied[new.id] == ["x"] and group.applied["r"] == ["x"]


def test_pre_vote_keeps_a_returning_node_from_raising_terms() -> None:
    group = Group(["a", "b", "c"])
    a = group.elect("a")
    term = a.term
    group.blocked = lambda message: "c" in (message.src, message.dst)
    group.tick(group.now + 1000)  # c times out again and again, alone
    c = group.nodes["c"]
    assert c.term == term and c.role == Role.PRE_CANDIDATE  # never became a candidate
    group.blocked = lambda message: False
    group.tick(group.now + 300)
    assert a.role == Role.LEADER and a.term == term  # its return deposed nobody
    assert c.role == Role.FOLLOWER and c.leader == "a"


def test_a_voter_that_hears_from_a_leader_refuses_pre_votes() -> None:
    group = Group(["a", "b", "c"])
    a = group.elect("a")
    b = group.nodes["b"]
    up_to_date = RequestVote(a.term + 1, "c", "b", b.log.last_index, b.log.last_term, pre_vote=True)
    assert b.receive(up_to_date).send_now[0].granted is False  # in the leader's lease
    group.now += 1000
    b.tick(group.now)
    assert b.receive(up_to_date).send_now[0].granted is True  # the leader went quiet


def test_read_index_waits_for_a_heartbeat_round() -> None:
    group = Group(["a", "b", "c"])
    a = group.elect("a")
    group.handle("a", a.propose("x"))
    group.settle()
    group.blocked = lambda message: True  # nothing gets through
    out = a.read("q")
    assert out.reads == [] and any(isinstance(m, Heartbeat) for m in out.send_now)
    group.queue.clear()
    group.blocked = lambda message: False
    group.handle("a", a.read("r"))
    group.settle()
    reads = [read for name, out in group.outputs if name == "a" for read in out.reads]
    assert reads == [("q", a.commit), ("r", a.commit)]  # the later round confirms both


def test_a_deposed_leader_fails_its_pending_reads() -> None:
    group = Group(["a", "b", "c"])
    a = group.elect("a")
    a.read("q")
    out = a.receive(AppendEntriesReply(a.term + 1, "b", "a", False, 0))
    assert out.failed_reads == ["q"] and out.reads == []


def test_membership_changes_one_at_a_time() -> None:
    group = Group(["a", "b", "c"])
    a = group.elect("a")
    group.handle("a", a.change_membership(MembershipOp.REMOVE, "c"))
    with pytest.raises(MembershipError, match="in progress"):
        a.change_membership(MembershipOp.REMOVE, "b")
    group.settle()
    assert a.config.voters == {"a", "b"}
    group.handle("a", a.change_membership(MembershipOp.DEMOTE, "b"))
    group.settle()
    assert a.config.voters == {"a"} and a.config.non_voters == {"b"}
    with pytest.raises(MembershipError, match="last voter"):
        a.change_membership(MembershipOp.REMOVE, "a")
    with pytest.raises(MembershipError, match="caught up"):
        group.blocked = lambda message: message.dst == "b"
        group.handle("a", a.propose("x"))
        group.handle("a", a.change_membership(MembershipOp.PROMOTE, "b"))
    group.blocked = lambda message: False
    group.tick(group.now + 50)
    group.handle("a", a.change_membership(MembershipOp.PROMOTE, "b"))
    group.settle()
    assert a.config.voters == {"a", "b"} and group.nodes["b"].config == a.config


def test_leadership_transfer_hands_over_to_the_target() -> None:
    group = Group(["a", "b", "c"])
    a = group.elect("a")
    group.handle("a", a.transfer_leadership("c"))
    with pytest.raises(NotLeader):
        a.propose("x")
    group.settle()
    c = group.nodes["c"]
    assert c.role == Role.LEADER and c.term == a.term and a.leader == "c"


def test_a_write_acknowledged_after_its_entries_were_cut_proves_nothing() -> None:
    group = Group(["a", "b", "c"])
    b = group.nodes["b"]
    old = [Entry(1, 1, EntryKind.COMMAND, "x"), Entry(1, 2, EntryKind.COMMAND, "old")]
    first = b.receive(AppendEntries(1, "a", "b", 0, 0, old, 0))
    second = b.receive(AppendEntries(2, "c", "b", 1, 1, [Entry(2, 2, EntryKind.COMMAND, "new")], 0))
    assert second.truncate_from == 2 and [e.command for e in second.entries] == ["new"]
    b.persisted(first.seq)
    assert b.durable_index < 2  # entry 2 on disk is the old one
    b.persisted(second.seq)
    assert b.durable_index == 2
