"""Command line (PerfTest's flags and meanings) and PerfTest-style output.

amqp-perf -x 2 -y 2 -s 1024 -q 100 -z 10 -h amqp://guest:guest@localhost:5672/%2F
amqp-perf -x 1 -y 1 -c 1000 -f persistent -z 10 --json | jq .receive_rate
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO, TypeVar

from amqp_perf import runner
from amqp_perf.frames import STAMP_SIZE
from amqp_perf.settings import DEFAULT_URI, FLAGS, Settings
from amqp_perf.stats import Histogram

LATENCY_HEADER = "min/median/75th/95th/99th"
T = TypeVar("T", int, float)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _non_negative(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        value = kind(text)
        if value < 0:  # type: ignore[operator]
            raise argparse.ArgumentTypeError(f"must not be negative: {text}")
        return value

    parse.__name__ = getattr(kind, "__name__", "number")  # argparse names the type in errors
    return parse


def build_parser() -> argparse.ArgumentParser:
    count, seconds = _non_negative(int), _non_negative(float)
    p = _Parser(
        prog="amqp-perf",
        add_help=False,
        description="Load test for AMQP 0-9-1 brokers, with RabbitMQ PerfTest's flags.",
        epilog="Exit status: 0 ok, 1 usage, 2 connection/protocol error, 3 a worker did not stop, "
        "4 no message flowed, 5 bad or out-of-order messages.",
    )
    p.add_argument("-?", "--help", action="help", help="show this help and exit")
    p.add_argument(
        "-h", "--uri", default=DEFAULT_URI, help=f"broker URI (default {DEFAULT_URI.replace('%', '%%')})"
    )
    p.add_argument("-x", "--producers", type=count, default=1, metavar="N", help="producer count (1)")
    p.add_argument("-y", "--consumers", type=count, default=1, metavar="N", help="consumer count (1)")
    p.add_argument(
        "-s",
        "--size",
        type=count,
        metavar="BYTES",
        help=f"message body size in bytes (at least {STAMP_SIZE}, the default)",
    )
    p.add_argument(
        "-f",
        "--flag",
        action="append",
        choices=FLAGS,
        default=[],
        metavar="FLAG",
        help="persistent or mandatory; repeatable",
    )
    p.add_argument(
        "-c",
        "--confirm",
        type=count,
        metavar="N",
        help="publisher confirms, at most N unconfirmed per producer (0: no limit)",
    )
    p.add_argument(
        "-q", "--qos", type=count, default=0, metavar="N", help="consumer prefetch count (0: none)"
    )
    p.add_argument(
        "-A",
        "--multi-ack-every",
        type=count,
        default=0,
        metavar="N",
        help="ack with multiple every N messages (0: each)",
    )
    p.add_argument("-a", "--autoack", action="store_true", help="consume with no-ack")
    p.add_argument(
        "-r",
        "--rate",
        type=seconds,
        default=0.0,
        metavar="MSG_S",
        help="publish rate limit per producer, msg/s (0: none)",
    )
    p.add_argument(
        "-z",
        "--time",
        type=seconds,
        default=0.0,
        metavar="SECONDS",
        help="run duration in seconds (0: until Ctrl-C)",
    )
    p.add_argument(
        "-u",
        "--queue",
        metavar="NAMES",
        help="queue name(s), comma-separated (default: a server-named queue per consumer)",
    )
    p.add_argument(
        "-e",
        "--exchange",
        nargs="?",
        const="",
        metavar="NAME",
        help="exchange name (default: the type's name; empty: default exchange)",
    )
    p.add_argument("-t", "--type", default="direct", metavar="TYPE", help="exchange type (direct)")
    p.add_argument("-k", "--routing-key", metavar="KEY", help="routing key (default: a random UUID)")
    p.add_argument("--queue-pattern", metavar="PATTERN", help="queue name pattern, e.g. perf-test-%%d")
    p.add_argument(
        "--queue-pattern-from", type=count, metavar="N", help="first number of the queue pattern (inclusive)"
    )
    p.add_argument(
        "--queue-pattern-to", type=count, metavar="N", help="last number of the queue pattern (inclusive)"
    )
    p.add_argument(
        "-p", "--predeclared", action="store_true", help="use existing exchange and queues as they are"
    )
    p.add_argument(
        "--auto-delete", type=_bool, default=True, metavar="BOOL", help="named queues are auto-delete (true)"
    )
    p.add_argument(
        "--quorum-queue", action="store_true",
        help="named queues are quorum queues (durable, not auto-delete), as PerfTest's flag",
    )  # fmt: skip
    p.add_argument("-d", "--id", help="test id (default test-HHMMSS-mmm)")
    p.add_argument(
        "-M", "--framemax", type=count, default=131072, metavar="BYTES", help="frame_max to ask for (131072)"
    )
    p.add_argument(
        "--processes",
        type=count,
        default=0,
        metavar="N",
        help="worker processes (default min(cpus, producers+consumers))",
    )
    p.add_argument(
        "--max-inflight",
        type=count,
        default=0,
        metavar="N",
        help="closed loop: a producer waits while N deliveries of its messages are unconsumed (0: open loop)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON summary on stdout (reports go to stderr)"
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, bool]:
    """Settings and whether --json was given; exits with status 1 on bad usage."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.producers + a.consumers == 0:
        parser.error("nothing to do: no producers and no consumers")
    if a.qos > 65535:
        parser.error("--qos must be at most 65535")
    if a.framemax and a.framemax < 4096:
        parser.error("--framemax must be at least 4096")
    pattern = (a.queue_pattern, a.queue_pattern_from, a.queue_pattern_to)
    if any(v is not None for v in pattern):
        if any(v is None for v in pattern):
            parser.error("--queue-pattern, --queue-pattern-from and --queue-pattern-to go together")
        if a.queue_pattern_from > a.queue_pattern_to:
            parser.error("--queue-pattern-from is above --queue-pattern-to")
        if a.queue:
            parser.error("use either -u/--queue or --queue-pattern")
        try:
            a.queue_pattern % a.queue_pattern_from
        except (TypeError, ValueError):
            parser.error(f"--queue-pattern {a.queue_pattern!r} does not take a number (e.g. perf-test-%d)")
    size = a.size if a.size is not None else STAMP_SIZE
    if size < STAMP_SIZE:
        print(
            f"amqp-perf: size {size} raised to {STAMP_SIZE} (send time, sequence, producer, run)",
            file=sys.stderr,
        )
        size = STAMP_SIZE
    now = datetime.datetime.now()
    settings = Settings(
        uri=a.uri,
        producers=a.producers,
        consumers=a.consumers,
        size=size,
        flags=tuple(dict.fromkeys(a.flag)),
        confirm=a.confirm,
        qos=a.qos,
        multi_ack_every=a.multi_ack_every,
        autoack=a.autoack,
        rate=a.rate,
        time=a.time,
        queues=tuple(q for q in (a.queue or "").split(",") if q),
        exchange=a.exchange,
        exchange_type=a.type,
        routing_key=a.routing_key,
        queue_pattern=a.queue_pattern,
        queue_pattern_from=a.queue_pattern_from,
        queue_pattern_to=a.queue_pattern_to,
        predeclared=a.predeclared,
        auto_delete=a.auto_delete and not a.quorum_queue,
        quorum=a.quorum_queue,
        test_id=a.id or f"test-{now:%H%M%S}-{now.microsecond // 1000:03d}",
        processes=a.processes,
        max_inflight=a.max_inflight,
        frame_max=a.framemax or 131072,
    )
    try:
        runner.client.parse_uri(settings.uri)
    except ValueError as exc:
        parser.error(str(exc))
    return settings, a.json


# -- output ------------------------------------------------------------------------------


def format_rate(rate: float) -> str:
    """PerfTest's rate format: 0, 0.xx, x.x, then whole numbers."""
    if rate == 0:
        return "0"
    if rate < 1:
        return f"{rate:.2f}"
    if rate < 10:
        return f"{rate:.1f}"
    return str(int(rate))


def format_latency(h: Histogram) -> str:
    s = h.summary()
    return f"{s['min']}/{s['median']}/{s['p75']}/{s['p95']}/{s['p99']} µs"


def tick_line(settings: Settings, tick: runner.Tick) -> str:
    parts = [f"id: {settings.test_id}", f"time: {tick.time:.3f}s"]
    r = tick.rates
    if settings.producers:
        parts.append(f"sent: {format_rate(r['published'])} msg/s")
        if settings.mandatory:
            parts.append(f"returned: {format_rate(r['returned'])} msg/s")
        if settings.confirms:
            parts.append(f"confirmed: {format_rate(r['confirmed'])} msg/s")
            parts.append(f"nacked: {format_rate(r['nacked'])} msg/s")
    if settings.consumers:
        parts.append(f"received: {format_rate(r['received'])} msg/s")
    latencies = []
    if settings.consumers:
        latencies.append(f"consumer latency: {format_latency(tick.latency)}")
    if settings.producers and settings.confirms:
        latencies.append(f"confirm latency: {format_latency(tick.confirm_latency)}")
    if latencies:
        parts.append(f"{LATENCY_HEADER} {latencies[0]}")
        parts += latencies[1:]
    return ", ".join(parts)


def summary_lines(result: runner.Result) -> list[str]:
    s = result.settings
    head = f"id: {s.test_id}, "
    lines = [
        head + f"sending rate avg: {format_rate(result.rate('published'))} msg/s",
        head + f"receiving rate avg: {format_rate(result.rate('received'))} msg/s",
    ]
    if s.consumers:
        lines.append(head + f"consumer latency {LATENCY_HEADER} {format_latency(result.latency)}")
    if s.producers and s.confirms:
        lines.append(head + f"confirm latency {LATENCY_HEADER} {format_latency(result.confirm_latency)}")
    c = result.counters
    lines.append(
        head + f"checks: bad {c['bad']}, out-of-order {c['out_of_order']}, lost {c['gaps']}, "
        f"redelivered {c['redelivered']}, foreign {c['foreign']}, returned {c['returned']}, nacked {c['nacked']}, "
        f"blocked {c['blocked']}, errors {len(result.errors)}"
    )
    if result.cpu:
        lines.append(
            head
            + f"tool cpu: {sum(result.cpu):.0f}% in {len(result.cpu)} process(es), busiest {max(result.cpu):.0f}%"
        )
    return lines


def describe(settings: Settings, processes: int) -> str:
    s = settings
    what = [
        f"{s.producers} producer(s)",
        f"{s.consumers} consumer(s)",
        f"{processes} process(es)",
        f"{s.size} B",
    ]
    if s.flags:
        what.append("+".join(s.flags))
    if s.confirms:
        what.append(f"confirms {s.confirm or 'unlimited'}")
    what.append("autoack" if s.autoack else f"manual ack (qos {s.qos}, every {s.ack_every})")
    if s.rate:
        what.append(f"rate {s.rate:g}/s per producer")
    if s.max_inflight:
        what.append(f"max in flight {s.max_inflight}")
    what.append(f"{s.time:g} s" if s.time else "until Ctrl-C")
    return f"id: {s.test_id}, starting: " + ", ".join(what)


def main(argv: Sequence[str] | None = None) -> int:
    settings, as_json = parse_args(argv)
    out: TextIO = sys.stderr if as_json else sys.stdout

    def on_tick(tick: runner.Tick) -> None:
        try:
            print(tick_line(settings, tick), file=out, flush=True)
        except BrokenPipeError:  # the reader went away: finish the run quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())

    def on_error(text: str) -> None:
        print(f"amqp-perf: error: {text}", file=sys.stderr, flush=True)

    processes = len(
        runner.assign(settings.producers, settings.consumers, settings.processes or runner.cpu_count())
    )
    print(describe(settings, processes), file=out, flush=True)
    result = runner.run(settings, on_tick, on_error)
    try:
        for line in summary_lines(result):
            print(line, file=out)
        for warning in result.warnings:
            print(f"amqp-perf: warning: {warning}", file=sys.stderr)
        if as_json:
            print(json.dumps(result.summary()), flush=True)
        out.flush()
    except BrokenPipeError:  # e.g. piped into head: the run is over and cleaned up anyway
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return result.exit_code
