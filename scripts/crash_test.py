"""The long crash test: ``python scripts/crash_test.py --cycles 100 --seed N``.

Runs the broker as a process, kills it with SIGKILL at random moments under confirmed publishing and
acking consumers, restarts it on the same data directory, and after the last cycle drains every queue
and checks the ledger (see tests/integration/crash_harness.py for exactly what is checked). Prints a
line per cycle and a final JSON summary for docs/crash-test.md. Exit status 0 only if nothing failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

# The harness lives with the tests so the CI test and this script share one copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from crash_harness import CrashRun, Settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=defaults.cycles)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--publishers", type=int, default=defaults.publishers)
    parser.add_argument("--min-delay", type=float, default=defaults.min_delay, help="seconds before a kill")
    parser.add_argument("--max-delay", type=float, default=defaults.max_delay)
    parser.add_argument("--early-kill-ratio", type=float, default=defaults.early_kill_ratio)
    parser.add_argument("--transient-ratio", type=float, default=defaults.transient_ratio)
    parser.add_argument("--absent-ratio", type=float, default=defaults.absent_ratio)
    parser.add_argument(
        "--memory-window", type=int, default=defaults.memory_window, help="the broker's queue_memory_window"
    )
    parser.add_argument("--workdir", help="keep data and broker.log here (default: a temporary directory)")
    args = parser.parse_args(argv)
    settings = Settings(
        cycles=args.cycles,
        seed=args.seed,
        publishers=args.publishers,
        min_delay=args.min_delay,
        max_delay=args.max_delay,
        early_kill_ratio=args.early_kill_ratio,
        transient_ratio=args.transient_ratio,
        absent_ratio=args.absent_ratio,
        memory_window=args.memory_window,
    )
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="crash-test-"))
    run = CrashRun(workdir, settings, log=lambda line: print(line, flush=True))
    report = run.run()
    if not report.ok:
        print(report.describe(), flush=True)
        print(f"broker log and data kept in {workdir}", flush=True)
    elif not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(run.summary(report), sort_keys=False))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
