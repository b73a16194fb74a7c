"""A deterministic discrete-event simulation of a Raft group (cluster/raft) under faults.

One seeded RNG drives everything: a virtual clock in milliseconds, a network that delays (so
reorders), drops and duplicates messages and partitions node sets, nodes that crash (losing
every write not yet acknowledged by their simulated disk and every message not yet sent) and
restart from that disk, disks that turn slow, a client that proposes commands and read-index
reads to whichever node it thinks leads, and, in some runs, membership changes (a node added
as a non-voter, promoted, demoted, removed) and leadership transfers among the faults.

Invariants are checked as each event's output comes out (so on every step), on what changed:
election safety, log matching (one entry per index and term, with one predecessor term),
leader completeness (a new leader holds every committed entry, so every entry a client was
told is committed), state machine safety (every node applies the same entry at each index,
snapshots included), and read-index linearizability (a read's index covers every write
acknowledged before it was asked). A violation raises ``Violation`` with the seed and time.
At the end, liveness: partitions healed, nodes restarted, disks fast, no losses; a leader must
be elected and a new command committed within ``LIVENESS_LIMIT`` virtual milliseconds.
"""

from __future__ import annotations

import heapq
import pickle
import random
from collections import Counter, deque
from typing import Any

from cluster.raft import (
    DurableState,
    EntryKind,
    MembershipError,
    MembershipOp,
    NotLeader,
    Output,
    RaftNode,
    RaftOptions,
    Role,
    bootstrap,
)
from cluster.raft.messages import Message

OPTIONS = RaftOptions(
    election_timeout=150,
    heartbeat_interval=30,
    max_inflight=4,
    max_batch=16,
    snapshot_threshold=40,  # small, so that compaction and InstallSnapshot happen often
    snapshot_chunk=200,
)
TICK = 10
LIVENESS_LIMIT = 20_000
# Events, ordered by time then by creation.
TICK_EVENT, DELIVER, DISK_DONE, CLIENT, CHAOS = range(5)


class Violation(AssertionError):
    pass


class SimDisk:
    """The in-memory "disk": exactly what the node asked to write and the disk acknowledged."""

    __slots__ = ("term", "voted_for", "snapshot", "entries")

    def __init__(self, state: DurableState) -> None:
        self.term = state.term
        self.voted_for = state.voted_for
        self.snapshot = state.snapshot
        self.entries = list(state.entries)

    def load(self) -> DurableState:
        return DurableState(self.term, self.voted_for, self.snapshot, list(self.entries))

    def write(self, out: Output) -> None:
        if out.snapshot is not None:
            drop = out.snapshot.index - self.snapshot.index
            self.entries = self.entries[drop:] if drop > 0 else self.entries
            self.snapshot = out.snapshot
        base = self.snapshot.index + 1
        if out.truncate_from is not None:
            del self.entries[max(0, out.truncate_from - base) :]
        if out.entries:
            first = out.entries[0].index
            if first < base + len(self.entries):
                del self.entries[max(0, first - base) :]
            if first != base + len(self.entries):
                raise Violation(
                    f"a write leaves a hole in the log: {first} after {base + len(self.entries) - 1}"
                )
            self.entries += out.entries
        if out.hard_state is not None:
            self.term, self.voted_for = out.hard_state


def _applied_form(entry: Any) -> tuple:
    """What the state machine records for an entry: comparable across nodes and picklable."""
    command = entry.command
    if entry.kind is EntryKind.CONFIG:
        command = (tuple(sorted(command.voters)), tuple(sorted(command.non_voters)))
    return (entry.term, entry.kind.value, command)


class SimNode:
    __slots__ = (
        "id",
        "raft",
        "disk",
        "up",
        "incarnation",
        "disk_free_at",
        "disk_queue",
        "slow",
        "machine",
        "paused_until",
    )

    def __init__(self, node_id: str, state: DurableState) -> None:
        self.id = node_id
        self.disk = SimDisk(state)
        self.raft: RaftNode | None = None
        self.up = False
        self.incarnation = 0
        self.disk_free_at = 0
        self.disk_queue: deque[Output] = deque()  # writes (and the messages behind them) in order
        self.slow = False
        self.paused_until = 0  # a stalled process (a long GC pause, a frozen VM) does nothing
        self.machine: list[tuple] = []  # the state machine: what was applied at index i + 1


class Simulation:
    def __init__(
        self,
        seed: int,
        nodes: int = 5,
        *,
        membership: bool = False,
        drop: float = 0.05,
        duplicate: float = 0.03,
        max_delay: int = 20,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.events: list[tuple[int, int, int, Any]] = []
        self.counter = 0
        self.steps = 0
        self.drop = drop
        self.duplicate = duplicate
        self.max_delay = max_delay
        self.membership = membership
        self.faults: Counter[str] = Counter()
        self.partition: dict[str, int] | None = None
        # Checkers' state.
        self.leaders: dict[int, str] = {}  # term -> the leader elected in it
        self.committed: list[tuple] = [()]  # index -> the entry applied there (index 0 unused)
        # index -> the term it was committed in: that of the first node to apply it, the leader
        # that committed it (its followers learn of the commit from it).
        self.commit_terms: list[int] = [0]
        self.entries_seen: dict[tuple[int, int], tuple] = {}  # (index, term) -> (kind, command, prev term)
        self.acked: list[tuple[int, tuple]] = []  # entries the client was told are committed
        self.acked_index = 0
        founders = [f"n{i}" for i in range(nodes)]
        self.next_node = nodes
        self.nodes: dict[str, SimNode] = {}
        for name in founders:
            self.nodes[name] = SimNode(name, bootstrap(frozenset(founders)))
            self._start(self.nodes[name])
        # The clients: each has its own idea of who leads.
        self.guesses = [founders[0]] * 3
        self.commands = 0
        self.pending: dict[tuple[str, int, int], str] = {}  # (node, index, term) -> command
        self.reads: dict[int, tuple[str, int]] = {}  # read id -> (node, acked index when asked)
        self.read_count = 0
        self.reads_done = 0
        self._schedule(TICK, TICK_EVENT, None)
        self._schedule(5, CLIENT, None)
        self._schedule(200, CHAOS, None)

    # --- the event loop ----------------------------------------------------------------------

    def _schedule(self, delay: int, kind: int, payload: Any) -> None:
        self.counter += 1
        heapq.heappush(self.events, (self.now + delay, self.counter, kind, payload))

    def run(self, steps: int) -> None:
        """``steps`` events with faults, then the liveness check."""
        try:
            while self.steps < steps:
                self._step()
            self._liveness()
        except Violation as error:
            raise Violation(f"seed {self.seed}, t={self.now} ms, step {self.steps}: {error}") from error

    def _step(self) -> None:
        self.now, _, kind, payload = heapq.heappop(self.events)
        self.steps += 1
        if kind == TICK_EVENT:
            for node in list(self.nodes.values()):
                if node.up and node.paused_until <= self.now:
                    self._process(node, node.raft.tick(self.now))
            self._schedule(TICK, TICK_EVENT, None)
        elif kind == DELIVER:
            self._deliver(payload)
        elif kind == DISK_DONE:
            self._disk_done(*payload)
        elif kind == CLIENT:
            self._client()
            self._schedule(self.rng.randint(5, 40), CLIENT, None)
        elif kind == CHAOS:
            self._chaos()
            self._schedule(self.rng.randint(20, 200), CHAOS, None)

    # --- nodes, disks, network ---------------------------------------------------------------

    def _start(self, node: SimNode) -> None:
        state = node.disk.load()
        node.raft = RaftNode(node.id, state, OPTIONS, random.Random(self.rng.random()), self.now)
        node.up = True
        node.disk_free_at = self.now
        node.machine = pickle.loads(state.snapshot.data) if state.snapshot.data else []
        self._check_machine(node, 0)

    def _crash(self, node: SimNode) -> None:
        node.up = False
        node.incarnation += 1
        node.disk_queue.clear()  # its pending writes and the messages behind them are lost
        node.raft = None

    def _process(self, node: SimNode, out: Output) -> None:
        raft = node.raft
        for change in out.changes:
            if change.role == Role.LEADER:
                self._check_new_leader(node)
        if out.entries:
            self._check_appended(raft, out)
        if out.restore is not None:
            self.faults["snapshots installed"] += 1
            node.machine = pickle.loads(out.restore.data)
            self._check_machine(node, 0)
        if out.committed:
            self._apply(node, out)
        for context, index in out.reads:
            self._read_done(node, context, index)
        for context in out.failed_reads:
            del self.reads[context]
        for message in out.send_now:
            self._send(message)
        if out.seq is not None or out.messages:
            latency = 0
            if out.seq is not None:
                latency = self.rng.randint(20, 80) if node.slow else self.rng.randint(1, 3)
            node.disk_free_at = done = max(self.now, node.disk_free_at) + latency
            node.disk_queue.append(out)
            self._schedule(done - self.now, DISK_DONE, (node.id, node.incarnation))
        if out.want_snapshot:
            applied = raft.applied
            data = pickle.dumps(node.machine[:applied])
            self.faults["snapshots taken"] += 1
            self._process(node, raft.snapshot_taken(applied, data))

    def _disk_done(self, node_id: str, incarnation: int) -> None:
        node = self.nodes[node_id]
        if not node.up or node.incarnation != incarnation:
            return
        if node.paused_until > self.now:
            self._schedule(node.paused_until - self.now, DISK_DONE, (node_id, incarnation))
            return
        out = node.disk_queue.popleft()
        if out.seq is not None:
            node.disk.write(out)
        for message in out.messages:
            self._send(message)
        if out.seq is not None:
            self._process(node, node.raft.persisted(out.seq))

    def _reachable(self, a: str, b: str) -> bool:
        partition = self.partition
        return partition is None or partition.get(a, 0) == partition.get(b, 0)

    def _send(self, message: Message) -> None:
        rng = self.rng
        self.faults["messages"] += 1
        if not self._reachable(message.src, message.dst) or rng.random() < self.drop:
            self.faults["messages lost"] += 1
            return
        self._schedule(rng.randint(1, self.max_delay), DELIVER, message)
        if rng.random() < self.duplicate:
            self.faults["messages duplicated"] += 1
            self._schedule(rng.randint(1, self.max_delay * 3), DELIVER, message)

    def _deliver(self, message: Message) -> None:
        node = self.nodes.get(message.dst)
        if node is None or not node.up or not self._reachable(message.src, message.dst):
            return
        if node.paused_until > self.now:
            self._schedule(node.paused_until - self.now + self.rng.randint(0, 10), DELIVER, message)
            return
        self._process(node, node.raft.receive(message))

    # --- the client --------------------------------------------------------------------------

    def _client(self) -> None:
        client = self.rng.randrange(len(self.guesses))
        node = self.nodes.get(self.guesses[client])
        if node is None or not node.up:
            node = self.rng.choice(list(self.nodes.values()))
            self.guesses[client] = node.id
        if not node.up or node.paused_until > self.now:
            return
        try:
            if self.rng.random() < 0.2:
                self.read_count += 1
                self.reads[self.read_count] = (node.id, self.acked_index)
                out = node.raft.read(self.read_count)
            else:
                commands = [f"c{self.commands + i}" for i in range(self.rng.choice((1, 1, 1, 3)))]
                self.commands += len(commands)
                out = node.raft.propose(*commands)
                for (index, term), command in zip(out.proposed, commands, strict=True):
                    self.pending[(node.id, index, term)] = command
        except NotLeader as refusal:
            # Client 0 ignores hints and tries nodes at random: it may find a new leader while
            # the others still follow (and read from) the old one.
            hint = refusal.leader if client else None
            self.guesses[client] = hint or self.rng.choice(list(self.nodes))
            return
        self._process(node, out)

    def _read_done(self, node: SimNode, context: int, index: int) -> None:
        asked_at, acked_then = self.reads.pop(context)
        if asked_at != node.id:
            raise Violation(f"read {context} answered by {node.id}, asked of {asked_at}")
        if index < acked_then:
            raise Violation(f"read {context} at index {index} misses a write acknowledged at {acked_then}")
        if index > node.raft.applied:
            raise Violation(f"read {context} at index {index} released before it was applied")
        self.reads_done += 1

    # --- faults ------------------------------------------------------------------------------

    def _chaos(self) -> None:
        rng = self.rng
        nodes = list(self.nodes.values())
        up = [n for n in nodes if n.up]
        down = [n for n in nodes if not n.up]
        if self.membership and rng.random() < 0.5:
            self._change_membership()
        choice = rng.random()
        if choice < 0.15 and up:
            self._crash(rng.choice(up))
            self.faults["crash"] += 1
        elif choice < 0.35 and down:
            self._start(rng.choice(down))
            self.faults["restart"] += 1
        elif choice < 0.4:
            self.partition = {n.id: rng.randint(0, 1) for n in nodes}
            self.faults["partition"] += 1
        elif choice < 0.45 and (leader := self._current_leader()) is not None:
            # The classic: the leader alone on its side, still serving whoever sticks to it.
            self.partition = {leader.id: 1}
            self.faults["leader isolated"] += 1
        elif choice < 0.6 and self.partition is not None:
            self.partition = None
            self.faults["heal"] += 1
        elif choice < 0.65 and up:
            rng.choice(up).paused_until = self.now + rng.randint(200, 1000)
            self.faults["pause"] += 1
        elif choice < 0.7 and up:
            node = rng.choice(nodes)
            node.slow = not node.slow
            self.faults["slow disk" if node.slow else "fast disk"] += 1
        elif choice < 0.75:
            leader = self._current_leader()
            if leader is not None and len(leader.raft.config.voters) > 1:
                target = rng.choice(sorted(leader.raft.config.voters - {leader.id}))
                try:
                    self._process(leader, leader.raft.transfer_leadership(target))
                    self.faults["leadership transfer"] += 1
                except (NotLeader, MembershipError):
                    pass

    def _current_leader(self) -> SimNode | None:
        leaders = [
            n
            for n in self.nodes.values()
            if n.up and n.paused_until <= self.now and n.raft.role == Role.LEADER
        ]
        return max(leaders, key=lambda n: n.raft.term) if leaders else None

    def _change_membership(self) -> None:
        leader = self._current_leader()
        if leader is None:
            return
        config = leader.raft.config
        rng = self.rng
        choice = rng.random()
        if choice < 0.3 and len(config.ordered_members) < 7:
            op, target = MembershipOp.ADD_NON_VOTER, f"n{self.next_node}"
        elif choice < 0.6 and config.non_voters:
            op, target = MembershipOp.PROMOTE, rng.choice(sorted(config.non_voters))
        elif choice < 0.8 and len(config.voters) > 3:
            op, target = MembershipOp.DEMOTE, rng.choice(sorted(config.voters))
        elif len(config.voters) > 3 or config.non_voters:
            removable = config.non_voters if len(config.voters) <= 3 else config.ordered_members
            op, target = MembershipOp.REMOVE, rng.choice(sorted(removable))
        else:
            return
        try:
            out = leader.raft.change_membership(op, target)
        except (NotLeader, MembershipError):
            self.faults["membership change refused"] += 1
            return
        self.faults[f"membership {op.value}"] += 1
        if op is MembershipOp.ADD_NON_VOTER:
            self.next_node += 1
            self.nodes[target] = SimNode(target, bootstrap())
            self._start(self.nodes[target])
        self._process(leader, out)

    # --- invariants --------------------------------------------------------------------------

    def _check_new_leader(self, node: SimNode) -> None:
        raft = node.raft
        elected = self.leaders.setdefault(raft.term, node.id)
        if elected != node.id:
            raise Violation(f"two leaders in term {raft.term}: {elected} and {node.id}")
        log = raft.log
        committed = self.committed
        commit_terms = self.commit_terms
        term = raft.term
        for index in range(log.snapshot_index + 1, len(committed)):
            # (A leader of an older term may still be elected late: its votes were granted
            # before the entry was committed.)
            if commit_terms[index] < term and log.term_at(index) != committed[index][0]:
                raise Violation(
                    f"leader {node.id} (term {term}) lacks entry {index} committed in {commit_terms[index]}"
                )
        if 0 < log.snapshot_index < len(committed) and log.snapshot_term != committed[log.snapshot_index][0]:
            raise Violation(f"leader {node.id} has a snapshot at {log.snapshot_index} of another term")
        for index, applied in self.acked:
            if (
                index > log.snapshot_index
                and commit_terms[index] < term
                and _applied_form(log.entry(index)) != applied
            ):
                raise Violation(f"leader {node.id} lacks acknowledged entry {index}")

    def _check_appended(self, raft: RaftNode, out: Output) -> None:
        seen = self.entries_seen
        log = raft.log
        for entry in out.entries:
            prev = log.term_at(entry.index - 1)
            key = (entry.index, entry.term)
            record = (entry.kind, _applied_form(entry)[2], prev)
            known = seen.setdefault(key, record)
            if known != record:
                raise Violation(f"log matching: {raft.id} has {record} at {key}, another node {known}")

    def _apply(self, node: SimNode, out: Output) -> None:
        machine = node.machine
        committed = self.committed
        for entry in out.committed:
            if entry.index != len(machine) + 1:
                raise Violation(f"{node.id} applies {entry.index} after {len(machine)}")
            applied = _applied_form(entry)
            machine.append(applied)
            if entry.index < len(committed):
                if committed[entry.index] != applied:
                    raise Violation(
                        f"{node.id} applies {applied} at {entry.index}, others {committed[entry.index]}"
                    )
            else:
                committed.append(applied)
                self.commit_terms.append(node.raft.term)
            command = self.pending.pop((node.id, entry.index, entry.term), None)
            if command is not None:
                if applied[2] != command:
                    raise Violation(
                        f"{node.id} told the client {command} committed at {entry.index}: {applied}"
                    )
                self.acked.append((entry.index, applied))
                self.acked_index = max(self.acked_index, entry.index)

    def _check_machine(self, node: SimNode, start: int) -> None:
        """A restored state machine against what every node applied."""
        committed = self.committed
        for index in range(start, len(node.machine)):
            if index + 1 < len(committed) and committed[index + 1] != node.machine[index]:
                raise Violation(f"{node.id} restored {node.machine[index]} at {index + 1}, applied elsewhere")
            if index + 1 >= len(committed):
                raise Violation(f"{node.id} restored entry {index + 1}, never applied anywhere")

    # --- liveness ----------------------------------------------------------------------------

    def _liveness(self) -> None:
        """Every fault lifted: a leader and one more committed command within the limit."""
        self.partition = None
        self.drop = self.duplicate = 0.0
        self.membership = False
        for node in self.nodes.values():
            node.slow = False
            if not node.up:
                self._start(node)
        deadline = self.now + LIVENESS_LIMIT
        self.events = [e for e in self.events if e[2] != CHAOS]
        heapq.heapify(self.events)
        started = self.now
        acked = len(self.acked)
        while len(self.acked) == acked:
            if self.now > deadline:
                raise Violation(f"no command committed within {LIVENESS_LIMIT} ms of healing")
            self._step()
        self.recovery_ms = self.now - started

    @classmethod
    def for_seed(cls, seed: int) -> Simulation:
        """The mix the tests and scripts/raft_sim.py run: 3 or 5 founders, membership changes
        in odd seeds, loss rates from none to one message in five."""
        return cls(
            seed,
            nodes=(3, 5)[seed % 4 // 2],
            membership=seed % 2 == 1,
            drop=(0.0, 0.05, 0.2)[seed % 3],
            duplicate=(0.0, 0.03)[seed % 5 // 4],
        )

    def stats(self) -> dict[str, int]:
        return {
            "steps": self.steps,
            "virtual ms": self.now,
            "elections": len(self.leaders),
            "committed entries": len(self.committed) - 1,
            "acknowledged commands": len(self.acked),
            "reads": self.reads_done,
            **self.faults,
        }
