"""Metadata fuzz, long run: random declares, binds, deletes, policies, users, permissions and
definitions imports (every field type, bad UTF-8, huge and nested values) against a broker with
a data directory, restarting it every ``--restart-every`` operations; after each restart the
broker must hold exactly the durable state it had acknowledged, and it must never log an error.

    python scripts/metadata_fuzz.py [--operations 10000] [--seed 1] [--restart-every 500]

The harness is tests/integration/metadata_fuzz.py (the CI test runs a short version). Exits
non-zero at the first failure, printing the seed and operation to reproduce it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration"), str(ROOT)]

import metadata_fuzz  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--restart-every", type=int, default=500)
    args = parser.parse_args()
    restarts = max(0, args.operations // args.restart_every - 1)
    started = time.monotonic()
    outcomes = metadata_fuzz.run(args.seed, args.operations, restarts)
    elapsed = time.monotonic() - started
    accepted = sum(count for key, count in outcomes.items() if key.endswith(" ok"))
    refused = sum(count for key, count in outcomes.items() if " refused" in key)
    print(f"seed {args.seed}: {args.operations} operations in {elapsed:.0f} s, {outcomes['restarts']} restarts, "
          f"{accepted} accepted, {refused} refused with a protocol error or AdminError, 0 failures")  # fmt: skip
    for key, count in sorted(outcomes.items()):
        print(f"  {count:6}  {key}")


if __name__ == "__main__":
    main()
