"""The deterministic Raft simulation (sim.py) driving a replicated queue's state machine: every
node applies the committed commands to a real ``cluster.replicated_queues.QueueLog``, and the
client's commands are the queue's (enqueue a message, remove some), as the leader's
``ReplicatedStore`` batches them.

On top of sim.py's invariants it checks the queue's: no message whose enqueue the client was
told is committed is missing from a node's log once that node has applied it, unless a
committed removal took it out (checked on every snapshot install and restart, every 25th
apply, and at the end); a snapshot of a log restores to the same log. The faults the queue
log must survive are counted: leader changes with proposals in flight, uncommitted tails cut
by a new leader, replicas far behind catching up by snapshot.
"""

from __future__ import annotations

from typing import Any

from sim import Simulation, Violation

from cluster.raft import EntryKind, NotLeader, Output
from cluster.replicated_queues import QueueLog


class QueueSimulation(Simulation):
    log_class = QueueLog  # what every node applies to (a test swaps in a broken one)

    def __init__(self, seed: int, **kwargs: Any) -> None:
        self.logs: dict[str, QueueLog] = {}
        self.applies: dict[str, int] = {}
        self.next_seq = 0
        self.acked_enqueues: dict[int, int] = {}  # seq -> the index its enqueue committed at
        self.removed_at: dict[int, int] = {}  # seq -> the first committed index removing it
        super().__init__(seed, **kwargs)

    @classmethod
    def for_seed(cls, seed: int) -> QueueSimulation:
        return cls(seed, nodes=(3, 5)[seed % 2], drop=(0.0, 0.05, 0.2)[seed % 3], duplicate=(0.0, 0.03)[seed % 5 // 4])

    # -- the client proposes queue commands

    def _client(self) -> None:
        client = self.rng.randrange(len(self.guesses))
        node = self.nodes.get(self.guesses[client])
        if node is None or not node.up:
            node = self.rng.choice(list(self.nodes.values()))
            self.guesses[client] = node.id
        if not node.up or node.paused_until > self.now:
            return
        batches = []
        for _ in range(self.rng.choice((1, 1, 3))):  # a loop turn's batches, one entry each
            ops: list[list[Any]] = []
            for _ in range(self.rng.randint(1, 4)):
                self.next_seq += 1
                ops.append(["e", self.next_seq, b"\x00\x01q", b"header", f"body {self.next_seq}".encode()])
            live = [seq for seq in self.acked_enqueues if seq not in self.removed_at]
            if live and self.rng.random() < 0.5:
                ops.append(["r", self.rng.sample(live, min(len(live), self.rng.randint(1, 3)))])
            batches.append(ops)
        try:
            out = node.raft.propose(*batches)
        except NotLeader as refusal:
            self.guesses[client] = refusal.leader or self.rng.choice(list(self.nodes))
            return
        for (index, term), ops in zip(out.proposed, batches, strict=True):
            self.pending[(node.id, index, term)] = ops  # type: ignore[assignment]
        self._process(node, out)

    # -- every node's QueueLog

    def _start(self, node: Any) -> None:
        super()._start(node)
        self._rebuild(node)

    def _process(self, node: Any, out: Output) -> None:
        if out.truncate_from is not None:
            self.faults["uncommitted tails cut"] += 1
        super()._process(node, out)
        if out.restore is not None:  # the snapshot's machine, and what came committed after it
            self._rebuild(node)

    def _apply(self, node: Any, out: Output) -> None:
        if out.restore is not None:  # node.machine is the installed snapshot until super() applies
            self._rebuild(node)
        mine = [(e.index, self.pending[key]) for e in out.committed if (key := (node.id, e.index, e.term)) in self.pending]
        super()._apply(node, out)
        log = self.logs[node.id]
        for entry in out.committed:
            if entry.kind is EntryKind.COMMAND:
                log.apply(entry.index, entry.command)
                self._note_commit(entry.index, entry.command)
        for index, ops in mine:  # super() told the client these committed
            self._client_told(index, ops)  # type: ignore[arg-type]
        self.applies[node.id] = self.applies.get(node.id, 0) + 1
        if self.applies[node.id] % 25 == 0:
            self._check_log(node)

    def _note_commit(self, index: int, ops: list[list[Any]]) -> None:
        for op in ops:
            if op[0] == "r":
                for seq in op[1]:
                    self.removed_at.setdefault(seq, index)

    def _rebuild(self, node: Any) -> None:
        """The node's log from its state machine (a restart, a snapshot installed), through a
        snapshot round trip."""
        log = self._new_log()
        for index, (_term, kind, command) in enumerate(node.machine, start=1):
            if kind == EntryKind.COMMAND.value:
                log.apply(index, command)
        copy = self._new_log()
        copy.restore(log.snapshot(), len(node.machine))
        if copy.entries != log.entries or copy.mark != log.mark:
            raise Violation(f"seed {self.seed}: a snapshot of {node.id}'s queue log restores differently")
        self.logs[node.id] = copy
        if node.machine:
            self._check_log(node)

    def _new_log(self) -> QueueLog:
        return self.log_class(None, "/", "q", "g")  # type: ignore[arg-type]  # no manager: nothing leads

    def _check_log(self, node: Any) -> None:
        applied = len(node.machine)
        entries = self.logs[node.id].entries
        for seq, index in self.acked_enqueues.items():
            if index <= applied and seq not in entries and not self.removed_at.get(seq, applied + 1) <= applied:
                raise Violation(
                    f"seed {self.seed}: {node.id} applied up to {applied} but lost message {seq} "
                    f"(committed at {index}) at t={self.now}"
                )

    # -- what the client was told

    def _client_told(self, index: int, ops: list[list[Any]]) -> None:
        for op in ops:
            if op[0] == "e":
                self.acked_enqueues[op[1]] = index

    def run(self, steps: int) -> None:
        super().run(steps)
        for node in self.nodes.values():
            if node.up:
                self._check_log(node)

    def stats(self) -> dict[str, int]:
        return {**super().stats(), "messages confirmed": len(self.acked_enqueues), "removed": len(self.removed_at)}
