"""amqp-perf run for real (``python -m amqp_perf``, worker processes and all) against the
in-process broker: messages flow, none are bad or out of order, errors give a non-zero exit, and
what the run declared is gone afterwards. Never about speed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

from conftest import BrokerHandle, free_port

# the in-process broker is slow next to RabbitMQ: keep what is in flight small
GENTLE = ["--max-inflight", "2000", "--processes", "2"]


def amqp_perf(url: str, *args: str, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "amqp_perf", "-h", url, "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    return proc.returncode, json.loads(lines[-1]), proc.stderr


def assert_clean(summary: dict[str, Any]) -> None:
    assert summary["errors"] == []
    for check in ("bad", "out_of_order", "gaps", "foreign"):
        assert summary[check] == 0, (check, summary)
    assert summary["exit"] == 0 and summary["ok"]


def names(broker: BrokerHandle) -> tuple[set[str], set[str]]:
    vhost = broker.broker.vhosts["/"]
    return broker.call(lambda: (set(vhost.queues), set(vhost.exchanges)))


def test_confirms_persistent_manual_ack(broker: BrokerHandle, unique: str) -> None:
    queues_before, _ = names(broker)
    code, summary, stderr = amqp_perf(
        broker.url, "-x2", "-y2", "-z2", "-c", "100", "-f", "persistent", "-q", "50", "-e", unique, *GENTLE
    )
    assert code == 0, stderr
    assert_clean(summary)
    assert summary["published"] > 0 and summary["confirmed"] > 0 and summary["nacked"] == 0
    assert summary["received"] > 0
    assert summary["latency_us"]["n"] > 0 and summary["confirm_latency_us"]["n"] > 0
    assert summary["samples"] and summary["processes"] == 2
    # per-second lines and the PerfTest summary go to stderr with --json
    assert re.search(rf"id: {summary['id']}, time: \d+\.\d{{3}}s", stderr)  # a tick: when is the load's
    assert f"id: {summary['id']}, sending rate avg: " in stderr
    assert "min/median/75th/95th/99th consumer latency: " in stderr
    # the exchange it created and the consumers' server-named queues are gone
    queues_after, exchanges_after = names(broker)
    assert unique not in exchanges_after
    assert queues_after <= queues_before


def test_autoack_fanout_exchange(broker: BrokerHandle, unique: str) -> None:
    code, summary, stderr = amqp_perf(
        broker.url, "-x1", "-y3", "-a", "-t", "fanout", "-e", unique, "-z2", *GENTLE
    )
    assert code == 0, stderr
    assert_clean(summary)
    assert summary["exchange"] == unique and summary["exchange_type"] == "fanout"
    assert summary["received"] > summary["published"] > 0  # three copies of each message
    assert unique not in names(broker)[1]


def test_queue_pattern_multi_ack_and_rate_limit(broker: BrokerHandle, unique: str) -> None:
    code, summary, stderr = amqp_perf(
        broker.url,
        *("-x2", "-y2", "-q", "20", "-A", "5", "-r", "200", "-s", "300", "-z1.5"),
        *("--queue-pattern", f"{unique}-%d", "--queue-pattern-from", "1", "--queue-pattern-to", "2"),
        *GENTLE,
    )
    assert code == 0, stderr
    assert_clean(summary)
    assert 0 < summary["published"] <= 2 * 200 * 2  # the rate limit holds (with room for a slow start)
    assert summary["received"] > 0
    # named queues are not deleted by amqp-perf: they were auto-delete, so the broker removed them
    assert not {f"{unique}-1", f"{unique}-2"} & names(broker)[0]


def test_named_queue_is_kept_without_auto_delete(broker: BrokerHandle, unique: str) -> None:
    code, summary, stderr = amqp_perf(
        broker.url, "-x1", "-y2", "-u", unique, "--auto-delete", "false", "-z1", *GENTLE
    )
    assert code == 0, stderr
    assert_clean(summary)
    assert summary["queues"] == [unique]
    with broker.connect() as conn:
        channel = conn.channel()
        channel.queue_declare(unique, passive=True)
        channel.queue_delete(unique)


def test_mandatory_unroutable_publishes_are_returned(broker: BrokerHandle) -> None:
    code, summary, stderr = amqp_perf(
        broker.url, "-x1", "-y0", "-e", "", "-k", "nowhere", "-f", "mandatory", "-c", "50", "-z1"
    )
    assert code == 0, stderr
    assert summary["returned"] > 0 and summary["errors"] == []


def test_channel_error_exits_non_zero(broker: BrokerHandle, unique: str) -> None:
    # amq.* exchanges are not declared by amqp-perf: publishing to a missing one closes the channel
    code, summary, stderr = amqp_perf(broker.url, "-x1", "-y1", "-e", f"amq.{unique}", "-z5", *GENTLE)
    assert code == 2
    assert not summary["ok"]
    assert any("404" in e for e in summary["errors"]), summary["errors"]
    assert "NOT_FOUND" in stderr


def test_connection_refused_exits_non_zero() -> None:
    code, summary, _stderr = amqp_perf(f"amqp://guest:guest@127.0.0.1:{free_port()}/", "-z1")
    assert code == 2 and summary["errors"]
