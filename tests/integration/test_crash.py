"""Crash safety: the broker process is killed with SIGKILL at random moments under confirmed
publishing (fanout to three durable queues and a direct durable queue) and acking consumers, and
restarted on the same data directory; afterwards every confirmed, not-acked persistent message is
there exactly once and nothing is duplicated. A short run here; ``scripts/crash_test.py`` is the long
one (docs/crash-test.md). The checker itself is tested first on hand-made ledgers, so a pass means
something."""

from __future__ import annotations

import os
from pathlib import Path

from crash_harness import (
    DIRECT_QUEUE,
    FANOUT_QUEUES,
    CrashRun,
    Delivery,
    Ledger,
    Sent,
    Settings,
    evaluate,
    make_body,
    parse_body,
)

F1, F2, F3 = FANOUT_QUEUES
FINAL = 3  # the hand-made ledgers below: epochs 1 and 2 end in a kill, epoch 3 is the final drain


def _ledger(*messages: tuple[str, str, bool, bool]) -> Ledger:
    """Messages as (id, route, persistent, confirmed), all from publisher p in epoch 1, seq in order."""
    ledger = Ledger(final_epoch=FINAL)
    for seq, (mid, route, persistent, confirmed) in enumerate(messages, 1):
        ledger.sent[mid] = Sent(mid, "p", seq, route, persistent, 1)
        if confirmed:
            ledger.confirmed.add(mid)
    return ledger


def _deliver(ledger: Ledger, epoch: int, queue: str, mid: str, ack: str = "definite", redelivered: bool = False):
    ledger.deliveries[(epoch, queue)].append(Delivery(queue, mid, epoch, redelivered, True, ack))


def _drain_fanout(ledger: Ledger, mid: str, queues: tuple[str, ...] = FANOUT_QUEUES) -> None:
    for queue in queues:
        _deliver(ledger, FINAL, queue, mid, redelivered=True)


def test_checker_accepts_a_clean_run():
    ledger = _ledger(("a", "fanout", True, True), ("b", "direct", True, True), ("c", "direct", True, False))
    for queue in FANOUT_QUEUES:
        _deliver(ledger, 1, queue, "a")
    _deliver(ledger, 1, DIRECT_QUEUE, "b", ack="none")  # unacked at the kill: must come back
    _deliver(ledger, 2, DIRECT_QUEUE, "b", ack="maybe", redelivered=True)  # ack maybe on disk: either way
    report = evaluate(ledger)  # c was never confirmed and never seen: allowed
    assert report.ok, report.describe()
    assert (report.published, report.confirmed, report.delivered, report.acked) == (3, 2, 5, 4)


def test_checker_finds_lost_messages():
    ledger = _ledger(("a", "fanout", True, True), ("b", "direct", True, True), ("c", "direct", True, True))
    _drain_fanout(ledger, "a", (F1, F3))  # missing from F2
    _deliver(ledger, 1, DIRECT_QUEUE, "b", ack="none")  # delivered, never acked, then gone
    report = evaluate(ledger)  # c: confirmed, never delivered anywhere
    assert report.failures["lost"] == 3, report.describe()
    assert sorted(report.examples["lost"]) == [
        "crash.direct:b (last delivered @1, unacked)",
        "crash.direct:c (never delivered)",
        "crash.f2:a (never delivered)",
    ]


def test_checker_finds_duplicates_within_one_broker_lifetime():
    ledger = _ledger(("a", "direct", True, True), ("b", "direct", True, False), ("c", "direct", True, True))
    _deliver(ledger, 1, DIRECT_QUEUE, "a")
    _deliver(ledger, 1, DIRECT_QUEUE, "a")  # twice without a restart between
    _deliver(ledger, FINAL, DIRECT_QUEUE, "b")
    _deliver(ledger, FINAL, DIRECT_QUEUE, "b")  # unconfirmed, yet two copies
    _deliver(ledger, 1, DIRECT_QUEUE, "c", ack="maybe")
    _deliver(ledger, FINAL, DIRECT_QUEUE, "c", redelivered=True)  # ack lost in the crash: fine
    report = evaluate(ledger)
    assert report.failures["duplicated"] == 2, report.describe()
    assert report.failures["lost"] == 0


def test_checker_finds_unknown_corrupt_and_surviving_transient_messages():
    ledger = _ledger(("a", "direct", True, True), ("t", "direct", False, True))
    _deliver(ledger, FINAL, DIRECT_QUEUE, "a")
    _deliver(ledger, FINAL, F1, "a")  # a was never routed to crash.f1
    _deliver(ledger, 2, DIRECT_QUEUE, "zz")  # never published
    _deliver(ledger, 2, DIRECT_QUEUE, "t")  # transient, published in epoch 1, seen in epoch 2
    ledger.deliveries[(2, F2)].append(Delivery(F2, None, 2, False, False))
    report = evaluate(ledger)
    assert {k: v for k, v in report.failures.items() if v} == {
        "unknown": 2,
        "corrupt": 1,
        "transient_survived": 1,
    }, report.describe()


def test_checker_warns_on_order_flags_and_resurrections():
    ledger = _ledger(("a", "direct", True, True), ("b", "direct", True, True), ("c", "direct", True, True))
    _deliver(ledger, 1, DIRECT_QUEUE, "a", ack="none")
    _deliver(ledger, 2, DIRECT_QUEUE, "b")
    _deliver(ledger, 2, DIRECT_QUEUE, "a")  # out of order and not flagged redelivered
    _deliver(ledger, FINAL, DIRECT_QUEUE, "b", redelivered=True)  # its ack had been processed
    _deliver(ledger, FINAL, DIRECT_QUEUE, "c")
    report = evaluate(ledger)
    assert report.ok, report.describe()
    assert report.warnings == {"order": 1, "redelivered_flag_missing": 1, "resurrected": 1}


def test_bodies_identify_themselves_and_show_damage():
    body = make_body("e1p0.7", "e1p0", 7, 300)
    assert parse_body(body) == ("e1p0.7", True)
    assert parse_body(body[:-1] + b"!") == ("e1p0.7", False)
    assert parse_body(b"garbage") == (None, False)


def test_confirmed_messages_survive_sigkill(tmp_path: Path):
    seed = int(os.environ.get("CRASH_TEST_SEED", "7"))
    settings = Settings(cycles=4, seed=seed, min_delay=0.2, max_delay=1.0, early_kill_ratio=0.25)
    lines: list[str] = []
    run = CrashRun(tmp_path, settings, log=lines.append)
    report = run.run()
    assert report.confirmed > 0 and report.delivered > 0, "\n".join(lines)
    assert report.ok, f"seed {seed}\n" + "\n".join(lines) + "\n" + report.describe()
