"""The Raft core under faults: 200 seeded simulations (tests/cluster/sim.py), every invariant
checked at every step, then liveness once the faults are lifted. scripts/raft_sim.py runs
10,000 seeds (docs/clustering.md)."""

from __future__ import annotations

from collections import Counter

import pytest
from sim import Simulation

SEEDS = 200
STEPS = 10_000
CHUNK = 25


@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_seeded_runs_keep_every_invariant_and_recover(first: int) -> None:
    totals: Counter[str] = Counter()
    for seed in range(first, first + CHUNK):
        simulation = Simulation.for_seed(seed)
        simulation.run(STEPS)  # raises Violation, naming the seed
        totals.update(simulation.stats())
    # The runs did go through the faults they are meant to survive.
    for fault in ("crash", "restart", "partition", "leader isolated", "pause", "messages lost"):
        assert totals[fault] > 0, fault
    for event in (
        "snapshots installed",
        "leadership transfer",
        "membership add_non_voter",
        "membership promote",
    ):
        assert totals[event] > 0, event
    assert totals["acknowledged commands"] > CHUNK * 50 and totals["reads"] > 0
    assert totals["elections"] >= CHUNK


def test_a_seed_replays_exactly() -> None:
    first, second = Simulation.for_seed(7), Simulation.for_seed(7)
    first.run(STEPS)
    second.run(STEPS)
    assert first.stats() == second.stats() and first.committed == second.committed
