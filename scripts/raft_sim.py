"""The Raft simulation, long run: ``--seeds`` seeded runs of tests/cluster/sim.py (crashes,
restarts, partitions, lost, late and duplicated messages, stalled processes, slow disks,
leadership transfers, membership changes in odd seeds), every invariant checked at every step,
then liveness once the faults are lifted.

    python scripts/raft_sim.py [--seeds 10000] [--first 0] [--steps 10000]

Prints the totals (docs/clustering.md has them). Exits non-zero at the first violation,
naming the seed: ``Simulation.for_seed(seed).run(steps)`` replays it exactly.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))

from sim import Simulation, Violation  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10_000)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    totals: Counter[str] = Counter()
    slowest_recovery = 0
    started = time.monotonic()
    for seed in range(args.first, args.first + args.seeds):
        simulation = Simulation.for_seed(seed)
        try:
            simulation.run(args.steps)
        except Violation as violation:
            print(f"VIOLATION: {violation}")
            sys.exit(1)
        totals.update(simulation.stats())
        slowest_recovery = max(slowest_recovery, simulation.recovery_ms)
    elapsed = time.monotonic() - started
    print(
        f"{args.seeds} seeds x {args.steps} steps (+ liveness) in {elapsed:.0f} s: 0 violations; "
        f"slowest recovery after healing {slowest_recovery} ms of virtual time"
    )
    for key, count in sorted(totals.items()):
        print(f"  {count:>12,}  {key}")


if __name__ == "__main__":
    main()
