"""Cluster benchmark: two nodes on Redis beside one process, and a rolling restart.

    python -m bench.cluster [--rounds 3] [--quick] [--output FILE]

Run from the repository root (``-m``, so that it can use ``bench.compare``).
It starts its own ``redis-server`` on a free port, then in every round:

1. for ``fanout-2000`` and ``publish`` (the scenarios of ``bench/compare.py``),
   one fresh server alone, then two fresh nodes joined through that Redis,
   with ``thunderpush-bench`` spreading its connections and its publishes over
   both and adding both nodes' CPU (Redis's CPU is reported apart);
2. a rolling restart: two fresh nodes, connections on both, publishes at a
   steady rate through the first; once publishing has started, the second
   node gets SIGTERM, its clients move to the first (the bench reconnects
   them, as a load balancer would), and the node is started again.

It prints Markdown tables for bench/RESULTS.md: medians of the rounds, one
process against two nodes, what the Redis hop adds to one publish, and every
rolling restart.  The exit status is 1 if any run failed or lost messages, or
if a rolling restart moved nobody or delivered something twice.

Why alone and in a cluster in the same round: the Redis hop's cost is the
difference of two figures, which only means something when both were
measured in the same conditions minutes apart.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.compare import (
    ROOT,
    SCENARIOS,
    Figure,
    Server,
    bench_command,
    fmt,
    fmt_load,
    free_port,
    machine,
    parse_common_args,
    run_bench,
    say,
    start_server,
)
from thunderpush_bench.scenarios import ROLLING_MARK

SETUPS = ("one process", "two nodes")
COMPARED = ("fanout-2000", "publish")


@dataclass(frozen=True)
class Rolling:
    """The rolling restart: N connections, messages at a rate, the restart after a delay."""

    connections: int
    rate: float
    messages: int
    restart_after: float

    def options(self) -> list[str]:
        return [
            *("--scenario", "rolling", "-n", str(self.connections)),
            *("--rate", f"{self.rate:g}", "--rate-messages", str(self.messages)),
            # Publishes in flight at once: with one, each waits for the one before and
            # a loaded node publishes at a fraction of the rate (RESULTS.md, 12:47 run).
            *("--concurrency", "4", "--drain", "3"),
        ]


ROLLING = Rolling(2000, 50, 750, 5.0)
ROLLING_QUICK = Rolling(500, 50, 250, 1.5)

FIGURES = (
    Figure("fanout-2000", "Fan-out deliveries/s, {n} subscribers", ("full", "deliveries_per_s"),
           "/s", True),
    Figure("fanout-2000", "Server CPU per delivery, {n} subscribers (all nodes)",
           ("full", "server_cpu_us_per_delivery"), "us", False),
    Figure("fanout-2000", "p50 latency, {n} subscribers, 5 msg/s", ("rate", "latency_ms", "p50"),
           "ms", False),
    Figure("fanout-2000", "p99 latency, {n} subscribers, 5 msg/s", ("rate", "latency_ms", "p99"),
           "ms", False),
    Figure("fanout-2000", "Server CPU per delivery, {n} subscribers, 5 msg/s (all nodes)",
           ("rate", "server_cpu_us_per_delivery"), "us", False),
    Figure("publish", "Publish API requests/s, no subscribers", ("full", "publish_per_s"), "/s",
           True),
    Figure("publish", "Server CPU per publish request (all nodes)",
           ("full", "server_cpu_us_per_request"), "us", False),
    Figure("publish", "Redis CPU per publish request", ("full", "redis_cpu_us_per_request"),
           "us", False),
    Figure("fanout-2000", "Redis CPU per delivery, {n} subscribers",
           ("full", "redis_cpu_us_per_delivery"), "us", False),
)  # fmt: skip


class Redis:
    """A ``redis-server`` of our own on a free port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit(
                "bench/cluster.py needs redis-server (Debian: apt install redis-server)"
            )
        self.port = free_port()
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        with open(workdir / "redis.log", "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: see {workdir / 'redis.log'}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


def run_rolling(
    command: Sequence[str], restart: Callable[[], None], delay: float, timeout: float = 600
) -> dict[str, Any]:
    """Runs ``thunderpush-bench --scenario rolling ... --json``; ``restart()`` once it publishes.

    ``restart`` is called ``delay`` seconds after the bench's line
    ``ROLLING_MARK`` on stderr (printed even with ``-q``); it should stop a
    node other than the first ``--url`` and start it again.  Returns the JSON
    report, with ``restarted`` false if the bench never got that far.
    """
    proc = subprocess.Popen(
        list(command), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None and proc.stdout is not None
    restarted = False
    lines = []
    for line in proc.stderr:  # ends at EOF: the bench bounds itself with --timeout
        lines.append(line)
        if ROLLING_MARK in line:
            time.sleep(delay)
            restart()
            restarted = True
            break
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    try:
        report = json.loads(out)
    except ValueError:
        report = {"ok": False, "error": f"exit {proc.returncode}: {''.join(lines) + err}"[-2000:]}
    report["restarted"] = restarted
    return report


def rolling_ok(report: dict[str, Any]) -> bool:
    """The bench's verdict, and somebody moved."""
    return bool(report.get("ok") and report.get("rolling", {}).get("moved"))


@dataclass
class Run:
    scenario: str
    setup: str
    round: int
    report: dict[str, Any]


class Bench:
    """Every round's runs, against servers started fresh for each."""

    def __init__(self, args: argparse.Namespace, workdir: Path, redis: Redis) -> None:
        self.args = args
        self.workdir = workdir
        self.redis = redis
        self.runs: list[Run] = []

    def node(self, port: int | None = None) -> Server:
        extra = ("--redis-url", self.redis.url)
        return start_server("ours", self.workdir, None, self.args.python, None, extra, port)

    def servers(self, setup: str) -> list[Server]:
        if setup == SETUPS[0]:
            return [start_server("ours", self.workdir, None, self.args.python, None)]
        return [self.node(), self.node()]

    def compared(self, round_number: int) -> None:
        for scenario in (s for s in SCENARIOS if s.key in COMPARED):
            for setup in SETUPS:
                servers = self.servers(setup)
                options = scenario.command(self.args.quick)
                if len(servers) > 1:
                    options += ["--redis-pid", str(self.redis.proc.pid)]
                try:
                    report = run_bench(servers, options, self.args.python, None)
                finally:
                    for server in servers:
                        server.stop()
                self.runs.append(Run(scenario.key, setup, round_number, report))
                say(f"round {round_number} {scenario.key:<11} {setup:<11}: {summary(report)}")

    def rolling(self, round_number: int) -> None:
        plan = ROLLING_QUICK if self.args.quick else ROLLING
        nodes = [self.node(), self.node()]

        def restart() -> None:
            port = nodes[1].port
            nodes[1].stop()
            nodes[1] = self.node(port)

        # The restarted node gets another PID: CPU is counted on the first only.
        options = ("--quiet", *plan.options())
        command = bench_command(nodes, self.args.python, *options, measured=nodes[:1])
        try:
            report = run_rolling(command, restart, plan.restart_after)
        finally:
            for node in nodes:
                node.stop()
        self.runs.append(Run("rolling", "two nodes", round_number, report))
        say(f"round {round_number} rolling restart: {rolling_summary(report)}")


def summary(report: dict[str, Any]) -> str:
    if "error" in report:
        return f"FAILED: {report['error']}"
    phase = report.get("full", {})
    figures = [f"{phase.get(key):,.1f} {unit}" for key, unit in (
        ("deliveries_per_s", "deliveries/s"), ("publish_per_s", "requests/s"),
        ("server_cpu_us_per_delivery", "us/delivery"), ("server_cpu_us_per_request", "us/request"),
    ) if phase.get(key) is not None]  # fmt: skip
    figures.append(f"CPU server {phase.get('server_cpu_percent', 0):.0f}%")
    figures.append(f"bench {phase.get('bench_cpu_percent', 0):.0f}%")
    if not report.get("ok"):
        figures.append(f"NOT ok: {report.get('warnings')}")
    return ", ".join(figures)


def rolling_summary(report: dict[str, Any]) -> str:
    rolling = report.get("rolling")
    if rolling is None:
        return f"FAILED: {report.get('error')}"
    reconnect = rolling["reconnect_ms"]
    text = (
        f"{rolling['published']} published, {rolling['moved']} moved"
        f" ({rolling['move_failed']} not reopened), {rolling['published_while_moving']}"
        f" published while they moved, missed {rolling['missed']}"
        f" (at most {rolling['missed_max']} each), lost {rolling['lost']},"
        f" duplicates {rolling['duplicates']},"
        f" reconnect p50 {reconnect['p50'] or 0:.0f} ms p99 {reconnect['p99'] or 0:.0f} ms"
    )
    return text if rolling_ok(report) else f"{text}; NOT ok: {report.get('warnings')}"


# -- the tables -----------------------------------------------------------------------


def values(runs: list[Run], figure: Figure, setup: str) -> list[float]:
    found = (
        figure.read(r.report) for r in runs if r.scenario == figure.scenario and r.setup == setup
    )
    return [value for value in found if value is not None]


def table(runs: list[Run]) -> str:
    lines = [
        "| figure | one process (median) | two nodes (median) | two nodes / one |",
        "|---|---:|---:|---:|",
    ]
    for figure in FIGURES:
        medians = [values(runs, figure, setup) for setup in SETUPS]
        one, two = (statistics.median(v) if v else None for v in medians)
        if one is None and two is None:
            continue
        n = next((r.report.get("connections") for r in runs if r.scenario == figure.scenario), 0)
        ratio = f"{two / one:.2f}x" if one and two else ""
        label = figure.label.format(n=f"{n:,}")
        lines.append(f"| {label} | {fmt(one, figure.unit)} | {fmt(two, figure.unit)} | {ratio} |")
    return "\n".join(lines)


def hop_cost(runs: list[Run]) -> str:
    """What the Redis hop adds to one publish: CPU of all nodes, and of Redis."""
    per_request = next(f for f in FIGURES if f.path[-1] == "server_cpu_us_per_request")
    redis = next(f for f in FIGURES if f.path[-1] == "redis_cpu_us_per_request")
    one, two = (values(runs, per_request, setup) for setup in SETUPS)
    redis_values = values(runs, redis, SETUPS[1])
    if not (one and two and redis_values):
        return "The Redis hop: n/a (a publish run failed)."
    nodes = statistics.median(two) - statistics.median(one)
    total = nodes + statistics.median(redis_values)
    return (
        f"The Redis hop adds {nodes:.1f} us of server CPU to one publish request (both nodes:"
        f" the publishing node's PUBLISH and count script, and each node receiving and dropping"
        f" the message), plus {statistics.median(redis_values):.1f} us of Redis's own CPU:"
        f" {total:.1f} us in all."
    )


def rolling_table(runs: list[Run]) -> str:
    lines = [
        "| round | published (rate reached) | moved | not reopened | published while moving"
        " | missed (total / most per connection) | lost | duplicates | reconnect p50 / p99 | ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        if run.scenario != "rolling":
            continue
        r = run.report.get("rolling")
        if r is None:
            lines.append(f"| {run.round} | FAILED: {run.report.get('error')} | | | | | | | | no |")
            continue
        reconnect = r["reconnect_ms"]
        lines.append(
            f"| {run.round} | {r['published']} ({r['publish_per_s']:g}/s)"
            f" | {r['moved']} of {r['connections']} | {r['move_failed']}"
            f" | {r['published_while_moving']} in {r['moving_ms'] or 0:.0f} ms"
            f" | {r['missed']} / {r['missed_max']} | {r['lost']}"
            f" | {r['duplicates']} | {reconnect['p50'] or 0:.0f} / {reconnect['p99'] or 0:.0f} ms"
            f" | {'yes' if rolling_ok(run.report) else 'no'} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Two Thunderpush nodes on Redis against one.")
    return parse_common_args(parser, "rounds (default 3)")


def main() -> int:
    args = parse_args()
    started = datetime.now(timezone.utc)
    before = machine()
    say(f"{args.rounds} rounds{' (quick)' if args.quick else ''}; load average {fmt_load(before)}")
    with tempfile.TemporaryDirectory(prefix="thunderpush-cluster-") as workdir:
        redis = Redis(Path(workdir))
        bench = Bench(args, Path(workdir), redis)
        try:
            for round_number in range(1, args.rounds + 1):
                bench.compared(round_number)
                bench.rolling(round_number)
        finally:
            redis.stop()
    after = machine()
    minutes = (datetime.now(timezone.utc) - started).total_seconds() / 60
    command = " ".join(["python -m bench.cluster", *sys.argv[1:]])
    print(f"Run of {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min: `{command}`")
    print(f"Machine: {before['cpus']} x {before['cpu_model']}, Linux {before['kernel']},"
          f" Python {before['python']}; load average before {fmt_load(before)},"
          f" after {fmt_load(after)}.\n")  # fmt: skip
    print(table(bench.runs))
    print(f"\n{hop_cost(bench.runs)}\n")
    print("Rolling restart of one node of two:\n")
    print(rolling_table(bench.runs))
    failed = [
        run
        for run in bench.runs
        if not (rolling_ok(run.report) if run.scenario == "rolling" else run.report.get("ok"))
    ]
    for run in failed:
        print(f"\nFAILED: round {run.round} {run.scenario} {run.setup}:"
              f" {run.report.get('error') or run.report.get('warnings')}")  # fmt: skip
    if args.output:
        raw = {"started": started.isoformat(), "command": command, "machine_before": before,
               "machine_after": after, "runs": [run.__dict__ for run in bench.runs]}  # fmt: skip
        args.output.write_text(json.dumps(raw, indent=1))
        say(f"raw reports in {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
