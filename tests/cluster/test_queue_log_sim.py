"""A replicated queue's log (cluster.replicated_queues.QueueLog) on the seeded Raft
simulation (queue_sim.py): crashes, partitions, pauses, lost and duplicated messages,
snapshots; no confirmed message goes missing from any node that applied it."""

from __future__ import annotations

from collections import Counter

import pytest
from queue_sim import QueueSimulation
from sim import Violation

from cluster.replicated_queues import QueueLog

SEEDS = 60
STEPS = 5_000


def test_seeded_runs_lose_no_confirmed_message() -> None:
    totals: Counter[str] = Counter()
    for seed in range(SEEDS):
        simulation = QueueSimulation.for_seed(seed)
        simulation.run(STEPS)  # raises Violation, naming the seed
        totals.update(simulation.stats())
    for fault in ("crash", "partition", "uncommitted tails cut", "snapshots installed", "messages lost"):
        assert totals[fault] > 0, fault
    assert totals["messages confirmed"] > SEEDS * 200 and totals["removed"] > SEEDS * 50


class ForgetfulLog(QueueLog):
    """A removal that takes the newest message too: the checker must notice the loss."""

    def apply(self, index: int, command: list) -> None:
        super().apply(index, command)
        if self.entries and any(op[0] == "r" for op in command):
            del self.entries[max(self.entries)]


class ForgetfulSimulation(QueueSimulation):
    log_class = ForgetfulLog


def test_a_log_that_drops_a_message_is_caught() -> None:
    with pytest.raises(Violation, match="lost message"):
        for seed in range(SEEDS):
            ForgetfulSimulation.for_seed(seed).run(STEPS)
