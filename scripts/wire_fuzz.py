"""The long wire fuzz: ``python scripts/wire_fuzz.py --cases 20000 --seed N``.

Starts the broker as a process on free ports with a fresh data directory, its log in
``broker.log`` of the work directory (or tests ``--url amqp://guest:guest@host:port/``, whose log
is checked only if ``--broker-log`` names it), and runs the cases of
tests/integration/wire_harness.py through the oracle the CI test uses (docs/fuzzing.md). Case
``i`` is ``random_case(random.Random(f"{seed}:{i}"))``: ``--only i`` replays it alone.

Failures: a case the oracle rejects (a hang, an invalid close, no fresh connection afterwards), an
ERROR record or a traceback in the broker's log (with the cases that were running when it was
logged), the broker process exiting. Each is written to ``failures.jsonl`` in the work directory
with what to replay (stage, chunk, the bytes in hex); every case's outcome goes to
``outcomes.txt``. Prints progress, the outcome counts per kind and a JSON summary; exit status 0
only if nothing failed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

# The harnesses live with the tests so the CI tests and this script share one copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from crash_harness import BrokerProcess  # noqa: E402
from wire_harness import PASSWORD, USER, VHOST, Case, Target, cleanup, random_case, run_case  # noqa: E402

# A record of the broker's log starts with the logging format's time stamp and level.
RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ([A-Z]+) ", re.MULTILINE)
# A log record counts for the cases running from this long before it to this long after.
SLACK = 1.0


@dataclass
class Result:
    index: int
    kind: str
    stage: str
    outcome: str | None  # None: the oracle failed, see error
    error: str
    started: float  # time.time(), to match the log's time stamps
    ended: float

    @property
    def label(self) -> str:
        """The outcome for the counts (a kept socket after close-ok is not a kind of its own)."""
        return self.outcome.removesuffix(" noeof") if self.outcome else "FAILED"


def case_at(seed: int, index: int) -> Case:
    return random_case(random.Random(f"{seed}:{index}"))


def run_one(target: Target, seed: int, index: int) -> Result:
    case = case_at(seed, index)
    started = time.time()
    try:
        outcome, error = run_case(target, case), ""
    except Exception as exc:  # the oracle's AssertionError, or a client that cannot connect
        outcome, error = None, f"{type(exc).__name__}: {exc}"
    return Result(index, case.kind, case.stage, outcome, error, started, time.time())


def log_problems(text: str) -> list[tuple[float | None, str]]:
    """The records of a broker log that are ERROR or CRITICAL or carry a traceback (any text
    before the first record counts as one, untimed), with their time."""
    problems: list[tuple[float | None, str]] = []
    starts = [match.start() for match in RECORD.finditer(text)]
    if not starts or starts[0] > 0:
        starts.insert(0, 0)
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        record = text[start:end]
        match = RECORD.match(record)
        if "Traceback (most recent call last)" in record or (match and match[2] in ("ERROR", "CRITICAL")):
            when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() if match else None
            problems.append((when, record.rstrip()))
    return problems


def reproducer(seed: int, index: int) -> dict[str, object]:
    case = case_at(seed, index)
    return {"index": index, "kind": case.kind, "stage": case.stage, "chunk": case.chunk, "data": case.data.hex()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", type=int, help="run this one case")
    parser.add_argument(
        "--jobs", type=int, default=8, help="cases at a time (a handshake the broker drops waits out its 3 s delay)"
    )
    parser.add_argument("--url", help=f"a running broker instead (the cases log in as {USER}/{PASSWORD} on {VHOST})")
    parser.add_argument("--broker-log", help="with --url: that broker's log, to check")
    parser.add_argument("--max-failures", type=int, default=20, help="stop after this many")
    parser.add_argument("--workdir", help="for broker.log, data and failures.jsonl (default: a temporary directory)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wire-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    broker = None
    if args.url:
        url = urlsplit(args.url)
        login = (unquote(url.username or USER), unquote(url.password or PASSWORD), unquote(url.path[1:]) or VHOST)
        if login != (USER, PASSWORD, VHOST):
            parser.error(f"the cases log in as {USER}/{PASSWORD} on vhost {VHOST}")
        target = Target(url.port or 5672, url.hostname or "127.0.0.1")
        log_path = Path(args.broker_log) if args.broker_log else None
    else:
        (workdir / "data").mkdir(exist_ok=True)
        broker = BrokerProcess(workdir / "data", workdir / "broker.log")
        broker.start()
        target = Target(broker.port)
        log_path = broker.log_path
    indices = [args.only] if args.only is not None else list(range(args.cases))
    print(f"{len(indices)} cases, seed {args.seed}, {args.jobs} at a time, work directory {workdir}", flush=True)

    results: list[Result] = []
    failures: list[dict[str, object]] = []
    began = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, target, args.seed, index) for index in indices]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results.append(result)
            if result.outcome is None:
                failures.append({"failure": result.error, **reproducer(args.seed, result.index)})
                print(f"FAIL case {result.index} ({result.kind} after {result.stage}): {result.error}", flush=True)
            if done % 500 == 0 or done == len(indices):
                try:
                    cleanup(target)  # what the cases declared under fixed names, messages included
                except Exception as exc:
                    failures.append({"failure": f"cleanup: {type(exc).__name__}: {exc}"})
                print(f"{done} cases, {time.monotonic() - began:.0f} s, {len(failures)} failures", flush=True)
            exited = broker is not None and broker.process is not None and broker.process.poll() is not None
            if exited or len(failures) >= args.max_failures:
                print("stopping early", flush=True)
                pool.shutdown(cancel_futures=True)
                break
    elapsed = time.monotonic() - began
    if broker is not None and (status := broker.stop()) != 0:
        failures.append({"failure": f"the broker exited with status {status} (SIGTERM at the end gives 0)"})

    problems = log_problems(log_path.read_text(errors="replace")) if log_path is not None else []
    for when, record in problems:
        suspects = [r.index for r in results if when is None or r.started - SLACK <= when <= r.ended + SLACK]
        failures.append({"failure": "broker log", "record": record, "suspects": suspects})
        print(f"FAIL broker log (cases {suspects[:10]}):\n{record}", flush=True)
    if failures:
        with open(workdir / "failures.jsonl", "w") as out:
            out.writelines(json.dumps(failure) + "\n" for failure in failures)
        print(f"failures written to {workdir / 'failures.jsonl'}", flush=True)

    # One line per case, in case order: two runs of a seed (against this broker and RabbitMQ,
    # say) compare with diff. Concurrent cases share queues, so compare runs with --jobs 1.
    with open(workdir / "outcomes.txt", "w") as out:
        for r in sorted(results, key=lambda r: r.index):
            out.write(f"{r.index} {r.kind} {r.stage} {r.outcome or 'FAILED ' + r.error}\n")
    outcomes = Counter(r.label for r in results)
    by_kind: dict[str, Counter[str]] = {}
    for r in results:
        by_kind.setdefault(r.kind, Counter())[r.label] += 1
    for kind, counts in sorted(by_kind.items()):
        print(f"{kind:10} {sum(counts.values()):6}  " + ", ".join(f"{o} {n}" for o, n in counts.most_common()))
    summary = {
        "cases": len(results),
        "seed": args.seed,
        "seconds": round(elapsed, 1),
        "failures": len(failures),
        "log_problems": len(problems),
        "outcomes": dict(outcomes.most_common()),
        "noeof": sum(1 for r in results if r.outcome and r.outcome.endswith("noeof")),
        "stages": dict(Counter(r.stage for r in results).most_common()),
    }
    print(json.dumps(summary), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
