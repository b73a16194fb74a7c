"""``RaftNode``: one member of one Raft group, sans-IO.

The driver feeds it the clock (``tick``), messages (``receive``), client requests
(``propose``, ``read``, ``change_membership``, ``transfer_leadership``), write
acknowledgements (``persisted``) and snapshots (``snapshot_taken``); each call returns an
``Output`` (output.py says what the driver must do with it, and in which order).

Beyond the Raft paper: pre-vote (a node asks whether it could win before it raises its term,
so a node back from a partition does not depose a working leader), check-quorum (a leader
that has not heard from a quorum for an election timeout steps down) with leader stickiness
(a voter that heard from a leader within the minimum election timeout ignores vote requests,
unless they come from a leadership transfer), pipelined AppendEntries (``max_inflight`` per
follower once it is known to match, one at a time while probing), read-index reads, one-at-a-
time membership changes (membership.py), snapshots sent in chunks, and leadership transfer.

The node reads no clock: ``receive`` and the client calls go by the time of the last ``tick``,
so the driver ticks often (a fifth of the heartbeat interval or so).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from cluster.raft.errors import MembershipError, NotLeader
from cluster.raft.log import Entry, EntryKind, RaftLog
from cluster.raft.membership import Membership, MembershipOp
from cluster.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    InstallSnapshotReply,
    Message,
    RequestVote,
    RequestVoteReply,
    TimeoutNow,
)
from cluster.raft.output import Output, StateChange
from cluster.raft.snapshot import Snapshot, SnapshotReceiver
from cluster.raft.storage import DurableState


class Role:
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    NON_VOTER = "non-voter"  # a follower that its configuration lists as a non-voter


@dataclass(slots=True)
class RaftOptions:
    """Times are in the driver's clock units (the simulation's are milliseconds)."""

    election_timeout: float = 1000.0  # randomized in [election_timeout, 2 * election_timeout)
    heartbeat_interval: float = 100.0
    max_inflight: int = 8  # AppendEntries in flight per follower once it matches
    max_batch: int = 256  # entries per AppendEntries
    snapshot_threshold: int = 10_000  # entries since the last snapshot before asking for one
    snapshot_chunk: int = 1 << 20  # bytes per InstallSnapshot


# A follower's replication state, as the leader tracks it.
PROBE, REPLICATE, SNAPSHOT = 0, 1, 2


class Progress:
    __slots__ = ("match", "next", "state", "in_flight", "acked", "active", "round", "snapshot", "offset")

    def __init__(self, next_index: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = PROBE
        self.in_flight = 0
        self.acked = False  # replied to an AppendEntries/InstallSnapshot since the last heartbeat
        self.active = False  # replied to anything since the last quorum check
        self.round = 0  # the last heartbeat round it answered (read-index)
        self.snapshot: Snapshot | None = None  # being sent
        self.offset = 0


class PendingRead:
    __slots__ = ("context", "index", "round")

    def __init__(self, context: Any, index: int, round_: int) -> None:
        self.context = context
        self.index = index
        self.round = round_


class RaftNode:
    def __init__(
        self, node_id: str, state: DurableState, options: RaftOptions, rng: random.Random, now: float = 0.0
    ) -> None:
        self.id = node_id
        self.options = options
        self.rng = rng
        self.now = now
        self.term = state.term
        self.voted_for = state.voted_for
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        snapshot = state.snapshot
        self.snapshot = snapshot  # the latest: sent to followers whose next entry is compacted
        self.log = RaftLog(snapshot.index, snapshot.term, list(state.entries))
        # The state machine is restored from ``snapshot`` by the driver; the rest is applied
        # again as it is learnt to be committed.
        self.commit = snapshot.index
        self.applied = snapshot.index
        # (index, configuration) of the snapshot and of each config entry after it.
        self._configs: list[tuple[int, Membership]] = [(snapshot.index, snapshot.config)]
        self._configs += [(e.index, e.command) for e in state.entries if e.kind is EntryKind.CONFIG]
        self.config = self._configs[-1][1]
        # Durability: what has been acknowledged written (``persisted``).
        self.durable_index = self.log.last_index
        self._durable_term = self.term
        self._writes: deque[tuple[int, int | None, int, int]] = deque()  # seq, last index, its term, term
        self._seq = 0
        self._hard_state_dirty = False
        self._out = Output()
        self._noticed: tuple[str, int, str | None] | None = None
        self._election_deadline = 0.0
        self._reset_election_deadline()
        self._leader_contact = -options.election_timeout
        self._votes: set[str] = set()
        self._receiver: SnapshotReceiver | None = None
        self._snapshot_asked = False
        # Leader state.
        self._progress: dict[str, Progress] = {}
        self._term_start = 0  # the index of this leader's first entry
        self._heartbeat_due = 0.0
        self._quorum_check_due = 0.0
        self._round = 0
        self._reads: list[PendingRead] = []
        self._transfer_to: str | None = None
        self._transfer_deadline = 0.0

    # --- what the driver calls ---------------------------------------------------------------

    @property
    def visible_role(self) -> str:
        if self.role == Role.FOLLOWER and self.id not in self.config.voters and self.id in self.config:
            return Role.NON_VOTER
        return self.role

    def tick(self, now: float) -> Output:
        self._out = Output()
        self.now = now
        if self.role == Role.LEADER:
            if now >= self._heartbeat_due:
                self._heartbeat_due = now + self.options.heartbeat_interval
                self._broadcast_heartbeat()
            if self._transfer_to is not None and now >= self._transfer_deadline:
                self._transfer_to = None  # the target did not take over in time: carry on
            if now >= self._quorum_check_due:
                self._quorum_check_due = now + self.options.election_timeout
                self._check_quorum()
        elif now >= self._election_deadline:
            if self.id in self.config.voters:
                self._start_pre_vote()
            else:
                self._reset_election_deadline()
        return self._finish()

    def receive(self, msg: Message) -> Output:
        self._out = Output()
        if isinstance(msg, RequestVote) and msg.pre_vote:
            self._on_pre_vote(msg)
            return self._finish()
        if msg.term > self.term:
            if isinstance(msg, RequestVote):
                if not msg.transfer and self._in_lease():
                    return self._finish()  # a working leader is around: no term bump
                self._become_follower(msg.term, None)
            elif isinstance(msg, RequestVoteReply) and msg.pre_vote and msg.granted:
                pass  # granted pre-votes carry the term the pre-candidate would campaign in
            elif isinstance(msg, AppendEntries | Heartbeat | InstallSnapshot):
                self._become_follower(msg.term, msg.src)
            else:
                self._become_follower(msg.term, None)
        elif msg.term < self.term:
            if isinstance(msg, AppendEntries | Heartbeat | InstallSnapshot):
                # A deposed leader learns of the newer term and steps down.
                self._send(HeartbeatReply(self.term, self.id, msg.src, 0))
            elif isinstance(msg, RequestVote):
                self._send(RequestVoteReply(self.term, self.id, msg.src, False))
            return self._finish()
        handler = _HANDLERS[type(msg)]
        handler(self, msg)
        return self._finish()

    def propose(self, *commands: Any) -> Output:
        """Appends ``commands`` (one write, one AppendEntries per follower with room);
        ``Output.proposed`` has their (index, term): committed when an entry with that index
        and term comes out in ``committed``."""
        self._check_leader()
        self._out = Output()
        index = self.log.last_index
        entries = [Entry(self.term, index + 1 + i, EntryKind.COMMAND, c) for i, c in enumerate(commands)]
        self._append_as_leader(entries)
        self._out.proposed = [(e.index, e.term) for e in entries]
        return self._finish()

    def read(self, context: Any) -> Output:
        """Read-index: ``context`` comes back in ``Output.reads`` with an index once a heartbeat
        round confirms this node still leads; the state machine answers it once it has applied
        that index."""
        self._check_leader()
        self._out = Output()
        self._round += 1
        self._reads.append(PendingRead(context, max(self.commit, self._term_start), self._round))
        self._send_heartbeats()
        self._release_reads()
        return self._finish()

    def change_membership(self, op: MembershipOp, node: str) -> Output:
        """One change at a time (membership.py); a non-voter is promoted only once it has every
        committed entry."""
        self._check_leader()
        if self._configs[-1][0] > self.commit:
            raise MembershipError("a membership change is in progress")
        if self.commit < self._term_start:
            raise MembershipError("the leader has not committed an entry of its term yet")
        config = self.config.changed(op, node)
        if op is MembershipOp.PROMOTE and (
            node not in self._progress or self._progress[node].match < self.commit
        ):
            raise MembershipError(f"{node} has not caught up")
        self._out = Output()
        self._append_as_leader([Entry(self.term, self.log.last_index + 1, EntryKind.CONFIG, config)])
        return self._finish()

    def transfer_leadership(self, target: str) -> Output:
        """Hands leadership to the voter ``target``: proposals are refused meanwhile; it is sent
        TimeoutNow once it has the whole log. Given up after an election timeout."""
        self._check_leader()
        if target == self.id or target not in self.config.voters:
            raise MembershipError(f"{target} is not another voter")
        self._out = Output()
        self._transfer_to = target
        self._transfer_deadline = self.now + self.options.election_timeout
        progress = self._progress[target]
        if progress.match == self.log.last_index:
            self._send_now(TimeoutNow(self.term, self.id, target))
        else:
            self._send_append(target, progress)
        return self._finish()

    def persisted(self, seq: int) -> Output:
        """The writes of every Output up to ``seq`` are durable."""
        self._out = Output()
        writes = self._writes
        log = self.log
        while writes and writes[0][0] <= seq:
            _, last_index, last_term, term = writes.popleft()
            self._durable_term = max(self._durable_term, term)
            # The entry still there (not cut since) means everything up to it is durable.
            if last_index is not None and (
                last_index <= log.snapshot_index or log.term_at(last_index) == last_term
            ):
                self.durable_index = max(self.durable_index, min(last_index, log.last_index))
        if self.role == Role.LEADER:
            self._advance_leader_commit()
        return self._finish()

    def snapshot_taken(self, index: int, data: bytes) -> Output:
        """The state machine's state after applying ``index``: the log up to it is dropped."""
        self._out = Output()
        self._snapshot_asked = False
        if self.log.snapshot_index < index <= self.applied:
            snapshot = Snapshot(index, self.log.term_at(index), self._config_at(index), data)
            self.snapshot = snapshot
            self.log.compact(index, snapshot.term)
            self._drop_configs_before(index, snapshot.config)
            self._out.snapshot = snapshot
        return self._finish()

    # --- internals: output ------------------------------------------------------------------

    def _finish(self) -> Output:
        out = self._out
        if self._hard_state_dirty:
            self._hard_state_dirty = False
            out.hard_state = (self.term, self.voted_for)
        if out.has_write:
            self._seq += 1
            out.seq = self._seq
            if out.entries:
                last = out.entries[-1]
                self._writes.append((self._seq, last.index, last.term, self.term))
            elif out.snapshot is not None:
                self._writes.append((self._seq, out.snapshot.index, out.snapshot.term, self.term))
            else:
                self._writes.append((self._seq, None, 0, self.term))
        elif out.messages and not self._writes:
            out.send_now += out.messages
            out.messages = []
        notice = (self.visible_role, self.term, self.leader)
        if notice != self._noticed:
            self._noticed = notice
            out.changes.append(StateChange(*notice))
        return out

    def _send(self, msg: Message) -> None:
        """A message that must wait for the writes before it (output.py)."""
        self._out.messages.append(msg)

    def _send_now(self, msg: Message) -> None:
        """A leader's message: independent of its own writes, except for its term, which its
        receivers must never see before it is durable (a single voter elects itself at once)."""
        if self._durable_term == self.term:
            self._out.send_now.append(msg)
        else:
            self._out.messages.append(msg)

    def _persist(self, entries: list[Entry], truncate_from: int | None = None) -> None:
        out = self._out
        if truncate_from is not None:
            if out.truncate_from is None or truncate_from < out.truncate_from:
                out.truncate_from = truncate_from
            out.entries = [e for e in out.entries if e.index < truncate_from]
        out.entries += entries

    # --- internals: roles -------------------------------------------------------------------

    def _check_leader(self) -> None:
        if self.role != Role.LEADER:
            raise NotLeader(self.leader)
        if self._transfer_to is not None:
            raise NotLeader(None)

    def _in_lease(self) -> bool:
        if self.role == Role.LEADER:
            return True
        return self.leader is not None and self.now - self._leader_contact < self.options.election_timeout

    def _reset_election_deadline(self) -> None:
        timeout = self.options.election_timeout
        self._election_deadline = self.now + timeout + self.rng.random() * timeout

    def _become_follower(self, term: int, leader: str | None) -> None:
        if term > self.term:
            self.term = term
            self.voted_for = None
            self._hard_state_dirty = True
        if self.role == Role.LEADER:
            self._out.failed_reads += [read.context for read in self._reads]
            self._reads = []
            self._progress = {}
            self._transfer_to = None
        self.role = Role.FOLLOWER
        self.leader = leader
        if leader is not None:
            self._leader_contact = self.now
        self._reset_election_deadline()

    def _start_pre_vote(self) -> None:
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self._votes = {self.id}
        self._reset_election_deadline()
        if len(self._votes) >= self.config.quorum:
            self._start_election(False)
            return
        for voter in self.config.ordered_voters:
            if voter != self.id:
                self._out.send_now.append(
                    RequestVote(self.term + 1, self.id, voter, self.log.last_index, self.log.last_term, True)
                )

    def _start_election(self, transfer: bool) -> None:
        self.term += 1
        self.voted_for = self.id
        self._hard_state_dirty = True
        self.role = Role.CANDIDATE
        self.leader = None
        self._votes = {self.id}
        self._reset_election_deadline()
        if len(self._votes) >= self.config.quorum:
            self._become_leader()
            return
        for voter in self.config.ordered_voters:
            if voter != self.id:
                self._send(
                    RequestVote(
                        self.term, self.id, voter, self.log.last_index, self.log.last_term, False, transfer
                    )
                )

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader = self.id
        self._round = 0
        self._reads = []
        self._transfer_to = None
        self._progress = {}
        self._term_start = self.log.last_index + 1
        self._sync_progress()
        self._quorum_check_due = self.now + self.options.election_timeout
        self._heartbeat_due = self.now + self.options.heartbeat_interval
        # The no-op commits every earlier entry once it commits.
        self._append_as_leader([Entry(self.term, self._term_start, EntryKind.NOOP)])
        self._send_heartbeats()

    def _sync_progress(self) -> None:
        """One Progress per other member of the configuration in force."""
        config = self.config
        for node in list(self._progress):
            if node not in config:
                del self._progress[node]
        for node in config.ordered_members:
            if node != self.id and node not in self._progress:
                self._progress[node] = Progress(self.log.last_index + 1)

    def _check_quorum(self) -> None:
        config = self.config
        active = 1 if self.id in config.voters else 0
        for node, progress in self._progress.items():
            if progress.active and node in config.voters:
                active += 1
            progress.active = False
        if active < config.quorum:
            self._become_follower(self.term, None)

    # --- internals: configuration -----------------------------------------------------------

    def _config_at(self, index: int) -> Membership:
        config = self._configs[0][1]
        for at, candidate in self._configs:
            if at > index:
                break
            config = candidate
        return config

    def _drop_configs_before(self, index: int, config: Membership) -> None:
        self._configs = [(index, config)] + [c for c in self._configs if c[0] > index]

    def _config_appended(self, entries: list[Entry], truncated_from: int | None) -> None:
        if truncated_from is not None:
            self._configs = [c for c in self._configs if c[0] < truncated_from]
        self._configs += [(e.index, e.command) for e in entries if e.kind is EntryKind.CONFIG]
        config = self._configs[-1][1]
        if config is not self.config:
            self.config = config
            if self.role == Role.LEADER:
                self._sync_progress()

    # --- internals: leader ------------------------------------------------------------------

    def _append_as_leader(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        self._persist(entries)
        self._config_appended(entries, None)
        for node, progress in self._progress.items():
            self._send_append(node, progress)

    def _send_append(self, node: str, progress: Progress) -> None:
        """As many AppendEntries as the follower's window allows (one while probing)."""
        log = self.log
        last = log.last_index
        while progress.state != SNAPSHOT:
            if progress.state == PROBE:
                if progress.in_flight or progress.match >= last:
                    return
            elif progress.in_flight >= self.options.max_inflight or progress.next > last:
                return
            prev = progress.next - 1
            prev_term = log.term_at(prev)
            if prev_term is None:
                self._start_snapshot(node, progress)
                return
            stop = min(last + 1, progress.next + self.options.max_batch)
            entries = log.slice(progress.next, stop)
            self._send_now(AppendEntries(self.term, self.id, node, prev, prev_term, entries, self.commit))
            progress.in_flight += 1
            if progress.state == REPLICATE:
                progress.next = stop

    def _start_snapshot(self, node: str, progress: Progress) -> None:
        progress.state = SNAPSHOT
        progress.snapshot = self.snapshot
        progress.offset = 0
        self._send_snapshot_chunk(node, progress)

    def _send_snapshot_chunk(self, node: str, progress: Progress) -> None:
        snapshot = progress.snapshot
        offset = progress.offset
        end = offset + self.options.snapshot_chunk
        self._send_now(
            InstallSnapshot(
                self.term,
                self.id,
                node,
                snapshot.index,
                snapshot.term,
                snapshot.config,
                offset,
                snapshot.data[offset:end],
                end >= len(snapshot.data),
            )
        )

    def _broadcast_heartbeat(self) -> None:
        """Every heartbeat interval: a heartbeat to each member, and a retry for a follower
        whose AppendEntries or snapshot chunk went unanswered since the last one."""
        self._round += 1
        for node, progress in self._progress.items():
            if not progress.acked:
                if progress.state == SNAPSHOT:
                    self._send_snapshot_chunk(node, progress)
                elif progress.in_flight:
                    # Lost on the way (or the follower is down): probe again from what is known.
                    if progress.state == REPLICATE:
                        progress.state = PROBE
                        progress.next = progress.match + 1
                    progress.in_flight = 0
                    self._send_append(node, progress)
            progress.acked = False
        self._send_heartbeats()

    def _send_heartbeats(self) -> None:
        for node, progress in self._progress.items():
            commit = min(self.commit, progress.match)
            self._send_now(Heartbeat(self.term, self.id, node, commit, self._round))

    def _advance_leader_commit(self) -> None:
        config = self.config
        matches = sorted(
            self.durable_index if voter == self.id else self._progress[voter].match for voter in config.voters
        )
        index = matches[len(matches) - config.quorum]
        # Only an entry of its own term is committed by counting (the Raft paper's figure 8).
        if index > self.commit and self.log.term_at(index) == self.term:
            self._commit_to(index)

    def _commit_to(self, index: int) -> None:
        self.commit = index
        if index > self.applied:
            self._out.committed += self.log.slice(self.applied + 1, index + 1)
            self.applied = index
            if (
                not self._snapshot_asked
                and index - self.log.snapshot_index >= self.options.snapshot_threshold
            ):
                self._snapshot_asked = True
                self._out.want_snapshot = True
        if self.role == Role.LEADER:
            self._release_reads()
            if self.id not in self.config.voters and self._configs[-1][0] <= index:
                # Removed or demoted: it led until the change committed; now it steps down.
                self._become_follower(self.term, None)

    def _release_reads(self) -> None:
        if not self._reads or self.commit < self._term_start:
            return
        config = self.config
        confirmed = sorted(
            self._round if voter == self.id else self._progress[voter].round for voter in config.voters
        )[len(config.voters) - config.quorum]
        while self._reads and self._reads[0].round <= confirmed:
            read = self._reads.pop(0)
            self._out.reads.append((read.context, read.index))

    # --- internals: message handlers --------------------------------------------------------

    def _on_pre_vote(self, msg: RequestVote) -> None:
        granted = (
            msg.term > self.term
            and (msg.transfer or not self._in_lease())
            and self.log.up_to_date(msg.last_index, msg.last_term)
        )
        self._out.send_now.append(
            RequestVoteReply(msg.term if granted else self.term, self.id, msg.src, granted, True)
        )

    def _on_request_vote(self, msg: RequestVote) -> None:
        free = self.voted_for == msg.src or (self.voted_for is None and self.leader is None)
        # Whatever this node's own configuration says: the candidate counts votes by its own,
        # which may be ahead of it or behind (the Raft thesis, 4.2.3). Refusing here could
        # leave a candidate short of its quorum for good.
        granted = free and self.log.up_to_date(msg.last_index, msg.last_term)
        if granted and self.voted_for is None:
            self.voted_for = msg.src
            self._hard_state_dirty = True
        if granted:
            self._reset_election_deadline()
        self._send(RequestVoteReply(self.term, self.id, msg.src, granted))

    def _on_vote_reply(self, msg: RequestVoteReply) -> None:
        if not msg.granted or msg.src not in self.config.voters:
            return
        if msg.pre_vote:
            if self.role == Role.PRE_CANDIDATE and msg.term == self.term + 1:
                self._votes.add(msg.src)
                if len(self._votes) >= self.config.quorum:
                    self._start_election(False)
        elif self.role == Role.CANDIDATE and msg.term == self.term:
            self._votes.add(msg.src)
            if len(self._votes) >= self.config.quorum:
                self._become_leader()

    def _heard_from_leader(self, leader: str) -> None:
        if self.role != Role.FOLLOWER or self.leader != leader:
            self._become_follower(self.term, leader)
        else:
            self._leader_contact = self.now
            self._reset_election_deadline()

    def _on_append(self, msg: AppendEntries) -> None:
        self._heard_from_leader(msg.src)
        log = self.log
        prev, entries = msg.prev_index, msg.entries
        if prev < log.snapshot_index:
            # Entries up to the snapshot are committed, hence the leader's: skip them.
            skip = min(log.snapshot_index - prev, len(entries))
            if skip < log.snapshot_index - prev:
                self._send(AppendEntriesReply(self.term, self.id, msg.src, True, prev + len(entries)))
                return
            prev, entries = log.snapshot_index, entries[skip:]
        elif log.term_at(prev) != msg.prev_term:
            hint = log.conflict_hint(prev, self.commit)
            self._send(AppendEntriesReply(self.term, self.id, msg.src, False, 0, msg.prev_index, hint))
            return
        truncated, appended = log.merge(prev, entries)
        if truncated is not None:
            assert truncated > self.commit, "a committed entry would be cut"
            self.durable_index = min(self.durable_index, truncated - 1)
        if appended:
            self._persist(appended, truncated)
            self._config_appended(appended, truncated)
        last_new = prev + len(entries)
        if msg.commit > self.commit and last_new > self.commit:
            self._commit_to(min(msg.commit, last_new))
        self._send(AppendEntriesReply(self.term, self.id, msg.src, True, last_new))

    def _on_append_reply(self, msg: AppendEntriesReply) -> None:
        progress = self._progress.get(msg.src) if self.role == Role.LEADER else None
        if progress is None:
            return
        progress.active = True
        progress.acked = True
        if msg.success:
            if msg.match > progress.match:
                progress.match = msg.match
                if msg.src in self.config.voters:
                    self._advance_leader_commit()
            if progress.state == PROBE:
                progress.state = REPLICATE
                progress.in_flight = 0
            elif progress.in_flight:
                progress.in_flight -= 1
            progress.next = max(progress.next, progress.match + 1)
            if msg.src == self._transfer_to and progress.match == self.log.last_index:
                self._send_now(TimeoutNow(self.term, self.id, msg.src))
        else:
            if msg.prev_index <= progress.match or progress.state == SNAPSHOT:
                return  # stale: a later answer already said more
            progress.state = PROBE
            progress.in_flight = 0
            progress.next = max(progress.match + 1, min(msg.hint + 1, msg.prev_index))
        if self.role == Role.LEADER:  # (the commit may have removed this leader)
            self._send_append(msg.src, progress)

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        self._heard_from_leader(msg.src)
        commit = min(msg.commit, self.log.last_index)
        if commit > self.commit:
            self._commit_to(commit)
        self._send(HeartbeatReply(self.term, self.id, msg.src, msg.round))

    def _on_heartbeat_reply(self, msg: HeartbeatReply) -> None:
        progress = self._progress.get(msg.src) if self.role == Role.LEADER else None
        if progress is None:
            return
        progress.active = True
        if msg.round > progress.round:
            progress.round = msg.round
            self._release_reads()
        self._send_append(msg.src, progress)

    def _on_install_snapshot(self, msg: InstallSnapshot) -> None:
        self._heard_from_leader(msg.src)
        if msg.index <= self.commit:
            self._send(InstallSnapshotReply(self.term, self.id, msg.src, msg.index, 0, True))
            return
        receiver = self._receiver
        if receiver is None or not receiver.is_for(msg.term, msg.index, msg.last_term):
            receiver = self._receiver = SnapshotReceiver(msg.term, msg.index, msg.last_term)
        if not receiver.add(msg.offset, msg.data) or not msg.done:
            self._send(InstallSnapshotReply(self.term, self.id, msg.src, msg.index, receiver.size, False))
            return
        self._receiver = None
        snapshot = Snapshot(msg.index, msg.last_term, msg.config, receiver.data())
        log = self.log
        out = self._out
        if log.term_at(snapshot.index) != snapshot.term:
            # Nothing after the snapshot can be trusted: the whole log goes.
            out.truncate_from = snapshot.index + 1
            out.entries = []
            self.durable_index = min(self.durable_index, snapshot.index)
        log.compact(snapshot.index, snapshot.term)
        self._configs = [(snapshot.index, snapshot.config)]
        self._config_appended(log.entries, None)
        self.snapshot = out.snapshot = out.restore = snapshot
        out.committed = []  # all in the snapshot
        self.commit = self.applied = snapshot.index
        self._send(InstallSnapshotReply(self.term, self.id, msg.src, msg.index, receiver.size, True))

    def _on_install_snapshot_reply(self, msg: InstallSnapshotReply) -> None:
        progress = self._progress.get(msg.src) if self.role == Role.LEADER else None
        if progress is None:
            return
        progress.active = True
        if progress.state != SNAPSHOT or progress.snapshot.index != msg.index:
            return
        progress.acked = True
        if msg.done:
            progress.match = max(progress.match, msg.index)
            progress.next = progress.match + 1
            progress.state = PROBE
            progress.in_flight = 0
            progress.snapshot = None
            if msg.src in self.config.voters:
                self._advance_leader_commit()
            if self.role == Role.LEADER:  # (the commit may have removed this leader)
                self._send_append(msg.src, progress)
        else:
            progress.offset = msg.offset
            self._send_snapshot_chunk(msg.src, progress)

    def _on_timeout_now(self, msg: TimeoutNow) -> None:
        if self.id in self.config.voters and self.role != Role.LEADER:
            self._start_election(True)


_HANDLERS = {
    RequestVote: RaftNode._on_request_vote,
    RequestVoteReply: RaftNode._on_vote_reply,
    AppendEntries: RaftNode._on_append,
    AppendEntriesReply: RaftNode._on_append_reply,
    Heartbeat: RaftNode._on_heartbeat,
    HeartbeatReply: RaftNode._on_heartbeat_reply,
    InstallSnapshot: RaftNode._on_install_snapshot,
    InstallSnapshotReply: RaftNode._on_install_snapshot_reply,
    TimeoutNow: RaftNode._on_timeout_now,
}
