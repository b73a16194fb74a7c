"""Many Raft groups on one node: the driver of ``cluster.raft``'s sans-IO ``RaftNode`` for the
replicated queues, one group per queue, all sharing one write-ahead log (``cluster.raft_wal``:
one transaction and one fsync per batch, whatever the number of groups), one tick timer and
the cluster's links (messages tagged with their group).

Each group has a state machine (``GroupMachine``): committed commands are applied to it in
log order on every member, snapshots restore it, and it hears of leadership changes. The
driver follows ``cluster.raft.output``'s contract per group: messages that need a write wait
for it; writes of every group go out together in seq order per group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cluster.codec import envelope, open_envelope
from cluster.link import LinkDown
from cluster.raft import (
    MembershipError,
    MembershipOp,
    NotLeader,
    Output,
    RaftNode,
    RaftOptions,
    Role,
    bootstrap,
)
from cluster.raft.log import Entry, EntryKind
from cluster.raft.messages import TimeoutNow
from cluster.raft.storage import DurableState
from cluster.wire import message

if TYPE_CHECKING:
    from cluster.raft_wal import RaftWal
    from cluster.service import ClusterService

log = logging.getLogger(__name__)

TICK = 0.05  # seconds between ticks of every group
OPTIONS = RaftOptions(election_timeout=1.0, heartbeat_interval=0.1)
# A new group's preferred leader campaigns this long after it opened, well before any other
# founding member's election timeout (time enough for them to open the group too).
CAMPAIGN_DELAY = 0.25
_RETRY = ("in progress", "has not committed", "has not caught up")


@message(203)
@dataclass(slots=True)
class GroupEnvelope:
    """A Raft message of one group (``cluster.codec.RaftEnvelope``'s fields)."""

    group: str
    name: str
    values: list[Any]


class GroupMachine(Protocol):
    def apply(self, index: int, command: Any) -> Any:
        """A committed command (every member, in log order); returns its result."""

    def restore(self, data: bytes, index: int) -> None:
        """Replace the state with a snapshot's."""

    def snapshot(self) -> bytes:
        """The state as of the last applied entry."""

    def leader_changed(self, leader: str | None, term: int) -> None:
        """The group's known leader (this node's name when it leads) changed."""


class Group:
    __slots__ = ("name", "node", "machine", "applied", "waiters", "held", "leader", "leading_from")

    def __init__(self, name: str, node: RaftNode, machine: GroupMachine) -> None:
        self.name = name
        self.node = node
        self.machine = machine
        self.applied = node.applied
        self.waiters: dict[int, tuple[int, asyncio.Future[Any]]] = {}  # index -> (term, result)
        self.held: list[tuple[int, list[Any]]] = []  # (seq, messages) waiting for their write
        self.leader: str | None = None
        # Elected here: the index of the term's first entry, whose commit (with every entry
        # before it) makes this node's state machine complete enough to lead.
        self.leading_from: int | None = None


class RaftHost:
    """The replicated queues' Raft groups of this node."""

    def __init__(self, service: ClusterService, wal: RaftWal | None) -> None:
        self.service = service
        self.member = service.node
        self.wal = wal
        self.groups: dict[str, Group] = {}
        self._stored: dict[str, tuple[DurableState, int]] = {}
        self._rng = random.Random()
        self._pending: list[tuple[Group, Output]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        service.handlers[GroupEnvelope] = self._message

    async def start(self) -> None:
        if self.wal is not None:
            self._stored = await self.wal.open()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._tick_loop(), name="queue raft tick"),
                       loop.create_task(self._write_loop(), name="queue raft writer")]  # fmt: skip

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._pending:
            await self._flush()
        for group in self.groups.values():
            self._fail_waiters(group)
        if self.wal is not None:
            await self.wal.close()

    def stored_groups(self) -> set[str]:
        return set(self._stored)

    async def open_group(self, name: str, machine: GroupMachine, voters: list[str], campaign: bool = False) -> Group:
        """Run group ``name`` on this node: from its stored state, or new with ``voters`` as
        its founding members (every founding member starts it so, at index 0); a new group
        with ``campaign`` is led by this node unless something goes wrong (RabbitMQ's
        declaring node leads its new quorum queue: clients of that node stay local)."""
        stored = self._stored.pop(name, None)
        if stored is None:
            if campaign:
                asyncio.get_running_loop().call_later(CAMPAIGN_DELAY, self._campaign, name)
            state, commit = bootstrap(frozenset(voters)), 0
            if self.wal is not None:
                out = Output()
                out.snapshot = state.snapshot
                out.hard_state = (state.term, state.voted_for)
                await self.wal.write([(name, out)], {})
        else:
            state, commit = stored
        node = RaftNode(self.member, state, OPTIONS, self._rng, asyncio.get_running_loop().time())
        group = Group(name, node, machine)
        if state.snapshot.data:
            machine.restore(state.snapshot.data, state.snapshot.index)
        self.groups[name] = group
        for entry in state.entries:  # committed when last stored: applied now
            if entry.index <= commit:
                self._apply(group, entry)
        return group

    def _campaign(self, name: str) -> None:
        group = self.groups.get(name)
        if group is not None and group.node.term == 0:  # no election yet
            self._handle(group, group.node.receive(TimeoutNow(0, self.member, self.member)))

    async def close_group(self, name: str) -> None:
        group = self.groups.pop(name, None)
        if group is not None:
            self._fail_waiters(group)
        self._stored.pop(name, None)
        if self.wal is not None:
            await self.wal.drop(name)

    def propose(self, name: str, *commands: Any) -> list[asyncio.Future[Any]]:
        """Append ``commands`` (one write) at the group's leader, this node: a future each,
        set to its apply result once committed (``NotLeader`` if the leadership is lost
        first). ``NotLeader`` at once when this node does not lead."""
        group = self.groups[name]
        out = group.node.propose(*commands)
        loop = asyncio.get_running_loop()
        futures = []
        for index, term in out.proposed:
            future: asyncio.Future[Any] = loop.create_future()
            group.waiters[index] = (term, future)
            futures.append(future)
        self._handle(group, out)
        return futures

    async def change_membership(self, name: str, op: MembershipOp, member: str, timeout: float = 30.0) -> None:
        """One membership change of group ``name`` at its leader, this node, once committed
        (retried while another change is in progress or a new member catches up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            group = self.groups.get(name)
            if group is None:
                raise NotLeader(None)
            try:
                out = group.node.change_membership(op, member)
            except MembershipError as exc:
                if any(text in str(exc) for text in _RETRY) and loop.time() < deadline:
                    await asyncio.sleep(TICK)
                    continue
                raise
            future: asyncio.Future[Any] = loop.create_future()
            group.waiters[group.node.log.last_index] = (group.node.term, future)
            self._handle(group, out)
            await asyncio.wait_for(future, max(deadline - loop.time(), 0.1))
            return

    def status(self, name: str) -> list[list[Any]]:
        """rabbitmq-queues quorum_status's rows, as the leader (this node) knows them: member,
        role, log index, commit index, snapshot index, term."""
        group = self.groups[name]
        node = group.node
        rows = []
        for member in node.config.ordered_members:
            if member == self.member:
                role, index = node.role, node.log.last_index
            else:
                progress = node._progress.get(member)  # noqa: SLF001 - the leader's view of a follower
                role = "non_voter" if member in node.config.non_voters else "follower"
                index = progress.match if progress is not None else 0
            rows.append([member, role, index, node.commit, node.log.snapshot_index, node.term])
        return rows

    def leader(self, name: str) -> str | None:
        group = self.groups.get(name)
        return group.node.leader if group is not None else None

    # -- the driver ----------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK)
            now = loop.time()
            for group in list(self.groups.values()):
                self._handle(group, group.node.tick(now))

    def _handle(self, group: Group, out: Output) -> None:
        if out.has_write:
            self._pending.append((group, out))
            group.held.append((out.seq, out.messages))  # type: ignore[arg-type]
            self._wake.set()
        elif out.messages:
            if group.held:
                group.held.append((group.held[-1][0], out.messages))
            else:
                self._send(group, out.messages)
        self._send(group, out.send_now)
        self._apply_output(group, out)

    def _apply_output(self, group: Group, out: Output) -> None:
        if out.restore is not None:
            group.machine.restore(out.restore.data, out.restore.index)
            group.applied = out.restore.index
        for entry in out.committed:
            self._apply(group, entry)
        if out.changes:
            leader = group.node.leader
            if leader != group.leader:
                group.leader = leader
                if leader == self.member:  # told once everything before its term is applied
                    group.leading_from = group.node.log.last_index
                else:
                    group.leading_from = None
                    group.machine.leader_changed(leader, group.node.term)
        if group.leading_from is not None and group.applied >= group.leading_from:
            group.leading_from = None
            if group.node.role == Role.LEADER:
                group.machine.leader_changed(self.member, group.node.term)
        if out.want_snapshot and self.groups.get(group.name) is group:
            self._handle(group, group.node.snapshot_taken(group.applied, group.machine.snapshot()))

    def _apply(self, group: Group, entry: Entry) -> None:
        if entry.index <= group.applied:
            return
        group.applied = entry.index
        result = group.machine.apply(entry.index, entry.command) if entry.kind is EntryKind.COMMAND else None
        waiter = group.waiters.pop(entry.index, None)
        if waiter is not None and not waiter[1].done():
            if waiter[0] == entry.term:
                waiter[1].set_result(result)
            else:  # another leader's entry took its place
                waiter[1].set_exception(NotLeader(group.node.leader))
        if group.waiters and group.node.role != Role.LEADER:
            self._fail_waiters(group)  # what this node proposed as leader is not coming

    def _fail_waiters(self, group: Group) -> None:
        waiters, group.waiters = group.waiters, {}
        for _term, future in waiters.values():
            if not future.done():
                future.set_exception(NotLeader(group.node.leader))

    def _send(self, group: Group, messages: list[Any]) -> None:
        for msg in messages:
            plain = envelope(msg)
            # A full buffer loses the message as the network would: Raft sends again.
            with contextlib.suppress(LinkDown):
                self.service.try_send(msg.dst, GroupEnvelope(group.name, plain.name, plain.values))

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        if self.wal is not None:
            commits = {group.name: group.applied for group, _ in pending}
            await self.wal.write([(group.name, out) for group, out in pending], commits)
        last: dict[Group, int] = {}
        for group, out in pending:
            last[group] = out.seq  # type: ignore[assignment]
        for group, seq in last.items():
            if self.groups.get(group.name) is not group:
                continue  # closed meanwhile
            released = [m for s, messages in group.held if s <= seq for m in messages]
            group.held = [(s, m) for s, m in group.held if s > seq]
            self._send(group, released)
            self._handle(group, group.node.persisted(seq))

    def _message(self, node: str, env: GroupEnvelope) -> None:
        group = self.groups.get(env.group)
        if group is None:
            return  # not (yet, or any more) a member here
        try:
            msg = open_envelope(env)  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            log.warning("node %s sent a malformed Raft message: %s", node, exc)
            return
        if msg.dst == self.member:
            self._handle(group, group.node.receive(msg))
