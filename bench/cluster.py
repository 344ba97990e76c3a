"""Cluster benchmark: N nodes on Redis beside one process, and a rolling restart.

    python -m bench.cluster [--rounds 3] [--quick] [--nodes 2] [--redis-cluster]
                            [--only TABLE ...] [--output FILE]

Run from the repository root (``-m``, so that it can use ``bench.compare``).
It starts its own ``redis-server`` on a free port, then in every round, for
each table asked for with ``--only`` (all four by default):

- ``compared``: ``fanout-2000`` and ``publish`` (the scenarios of
  ``bench/compare.py``) against one fresh server alone, then against
  ``--nodes`` fresh nodes joined through that Redis, with ``thunderpush-bench``
  spreading its connections and its publishes over all of them and adding
  their CPU (Redis's CPU is reported apart);
- ``channels``: 10,000 one-subscriber channels (``thunderpush-bench
  --scenario channels``: every connection alone in its own channel), first on
  one process, then spread over ``--nodes`` nodes, publishes to random
  channels through every node: what one delivered message costs the whole
  cluster (all nodes and Redis) against one process, in the common case of a
  channel (or user) per person; with 8 publishes in flight, then with 32
  (with 8 over 4 nodes each node has 2 at a time and pays a wakeup per
  message that one process amortises over 8: see ``CHANNELS_BUSY``);
- ``bystander``: two nodes A and B, 1,000 one-subscriber channels all on A,
  publishes through A only; B's CPU per message is what a node pays for
  messages it has no subscriber for;
- ``rolling``: two fresh nodes, connections on both, publishes at a steady
  rate through the first; once publishing has started, the second node gets
  SIGTERM, its clients move to the first (the bench reconnects them, as a
  load balancer would), and the node is started again.

It prints Markdown tables for bench/RESULTS.md: medians of the rounds, the
1-minute load average after each run (the machine may be shared), what the
Redis hop adds to one publish, and every rolling restart.  The exit status is
1 if any run failed or lost messages, or if a rolling restart moved nobody or
delivered something twice.

With ``--redis-cluster`` the nodes join a three-master Redis Cluster instead
(``tests.support.cluster.RedisCluster``: ``redis-cli --cluster create`` on free
loopback ports, persistence off), every master a seed, and Redis's CPU is
its masters' added up.

Why alone and in a cluster in the same round: the Redis hop's cost is the
difference of two figures, which only means something when both were
measured in the same conditions minutes apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.cluster_figures import (
    BYSTANDER,
    BYSTANDER_FIGURES,
    CHANNEL_FIGURES,
    CHANNELS,
    CHANNELS_BUSY,
    FIGURES,
)
from bench.compare import bench_command, parse_common_args, run_bench
from bench.compare_report import fmt, fmt_load, machine
from bench.compare_scenarios import SCENARIOS, Figure, Scenario
from bench.redis_server import Backend, OneRedis, ThreeMasters
from bench.rolling import (
    ROLLING,
    ROLLING_QUICK,
    rolling_ok,
    rolling_summary,
    rolling_table,
    run_rolling,
)
from bench.servers import Server, say, start_server

TABLES = ("compared", "channels", "bystander", "rolling")
ONE, CLUSTER = "one process", "cluster"
COMPARED = ("fanout-2000", "publish")


@dataclass
class Run:
    scenario: str
    setup: str
    round: int
    report: dict[str, Any]
    # The 1-minute load average when the run ended: the machine may be shared.
    load: float = field(default_factory=lambda: os.getloadavg()[0])


class Bench:
    """Every round's runs, against servers started fresh for each."""

    def __init__(self, args: argparse.Namespace, workdir: Path, redis: Backend) -> None:
        self.args = args
        self.workdir = workdir
        self.redis = redis
        self.runs: list[Run] = []

    def node(self, port: int | None = None) -> Server:
        extra = self.redis.options()
        return start_server("ours", self.workdir, None, self.args.python, None, extra, port)

    def servers(self, setup: str) -> list[Server]:
        if setup == ONE:
            return [start_server("ours", self.workdir, None, self.args.python, None)]
        return [self.node() for _ in range(self.args.nodes)]

    def run(
        self,
        round_number: int,
        scenario: Scenario,
        setup: str,
        servers: list[Server],
        extra: tuple[str, ...] = (),
    ) -> None:
        """One bench run of ``scenario`` against ``servers``; stops them afterwards."""
        options = scenario.command(self.args.quick) + list(extra)
        if setup != ONE:
            options += [f"--redis-pid={pid}" for pid in self.redis.pids()]
        try:
            report = run_bench(servers, options, self.args.python, None)
        finally:
            for server in servers:
                server.stop()
        run = Run(scenario.key, setup, round_number, report)
        self.runs.append(run)
        say(f"round {round_number} {scenario.key:<14} {setup:<11}: {summary(report)},"
            f" load {run.load:.2f}")  # fmt: skip

    def compared(self, round_number: int) -> None:
        for scenario in (s for s in SCENARIOS if s.key in COMPARED):
            for setup in (ONE, CLUSTER):
                self.run(round_number, scenario, setup, self.servers(setup))

    def channels(self, round_number: int) -> None:
        for scenario in (CHANNELS, CHANNELS_BUSY):
            for setup in (ONE, CLUSTER):
                self.run(round_number, scenario, setup, self.servers(setup))

    def bystander(self, round_number: int) -> None:
        """Every connection and publish on A; B's CPU reported apart (``--bystander-pid``)."""
        a, b = self.node(), self.node()
        extra = ("--bystander-pid", str(b.proc.pid))
        try:
            self.run(round_number, BYSTANDER, "two nodes", [a], extra=extra)
        finally:
            b.stop()

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
        ("bystander_cpu_us_per_delivery", "us/message on the bystander"),
    ) if phase.get(key) is not None]  # fmt: skip
    figures.append(f"CPU server {phase.get('server_cpu_percent', 0):.0f}%")
    figures.append(f"bench {phase.get('bench_cpu_percent', 0):.0f}%")
    if not report.get("ok"):
        figures.append(f"NOT ok: {report.get('warnings')}")
    return ", ".join(figures)


# -- the tables -----------------------------------------------------------------------


def values(runs: list[Run], figure: Figure, setup: str) -> list[float]:
    found = (
        figure.read(r.report) for r in runs if r.scenario == figure.scenario and r.setup == setup
    )
    return [value for value in found if value is not None]


def median(found: list[float]) -> float | None:
    return statistics.median(found) if found else None


def size(runs: list[Run], scenario: str) -> str:
    return f"{next((r.report.get('connections') for r in runs if r.scenario == scenario), 0):,}"


def table(runs: list[Run], figures: tuple[Figure, ...], nodes: int) -> str:
    """One process against the cluster: medians, their ratio, and each round's cluster figure."""
    lines = [
        f"| figure | one process (median) | {nodes} nodes (median) | {nodes} nodes / one"
        f" | {nodes} nodes, each round |",
        "|---|---:|---:|---:|---|",
    ]
    for figure in figures:
        alone, cluster = (values(runs, figure, setup) for setup in (ONE, CLUSTER))
        one, many = median(alone), median(cluster)
        if one is None and many is None:
            continue
        ratio = f"{many / one:.2f}x" if one and many else ""
        label = figure.label.format(n=size(runs, figure.scenario))
        rounds = ", ".join(fmt(value, figure.unit) for value in cluster)
        lines.append(
            f"| {label} | {fmt(one, figure.unit)} | {fmt(many, figure.unit)} | {ratio} | {rounds} |"
        )
    return "\n".join(lines)


def bystander_table(runs: list[Run]) -> str:
    lines = ["| figure | median | each round |", "|---|---:|---|"]
    for figure in BYSTANDER_FIGURES:
        found = values(runs, figure, "two nodes")
        if found:
            each = ", ".join(fmt(value, figure.unit) for value in found)
            lines.append(f"| {figure.label} | {fmt(median(found), figure.unit)} | {each} |")
    return "\n".join(lines)


def loads(runs: list[Run], scenarios: tuple[str, ...]) -> str:
    found = [f"{run.load:.2f}" for run in runs if run.scenario in scenarios]
    return f"Load average (1 min) after each run: {', '.join(found)}."


def hop_cost(runs: list[Run], nodes: int) -> str:
    """What the Redis hop adds to one publish: CPU of all nodes, and of Redis."""
    per_request = next(f for f in FIGURES if f.path[-1] == "server_cpu_us_per_request")
    redis = next(f for f in FIGURES if f.path[-1] == "redis_cpu_us_per_request")
    one, many = (median(values(runs, per_request, setup)) for setup in (ONE, CLUSTER))
    in_redis = median(values(runs, redis, CLUSTER))
    if one is None or many is None or in_redis is None:
        return "The Redis hop: n/a (a publish run failed)."
    return (
        f"The Redis hop adds {many - one:.1f} us of server CPU to one publish request (all"
        f" {nodes} nodes: the publishing node's PUBLISH and count script, and each node"
        f" receiving and dropping the message), plus {in_redis:.1f} us of Redis's own CPU:"
        f" {many - one + in_redis:.1f} us in all."
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Thunderpush nodes on Redis against one.")
    parser.add_argument("--nodes", type=int, default=2, help="nodes of the cluster (default 2)")
    parser.add_argument("--only", nargs="+", choices=TABLES, help="these tables only")
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="the nodes on a three-master Redis Cluster (Redis >= 7) instead of one Redis",
    )
    args = parse_common_args(parser, "rounds (default 3)")
    if args.nodes < 2:
        parser.error("--nodes must be at least 2")
    args.only = args.only or list(TABLES)
    return args


def report(args: argparse.Namespace, runs: list[Run]) -> None:
    """The tables asked for, in the order of ``TABLES``."""
    if "compared" in args.only:
        print(f"One process against {args.nodes} nodes:\n")
        print(table(runs, FIGURES, args.nodes))
        print(f"\n{loads(runs, COMPARED)}\n\n{hop_cost(runs, args.nodes)}\n")
    if "channels" in args.only:
        print(f"One-subscriber channels, one process against {args.nodes} nodes:\n")
        print(table(runs, CHANNEL_FIGURES, args.nodes))
        print(f"\n{loads(runs, (CHANNELS.key, CHANNELS_BUSY.key))}\n")
    if "bystander" in args.only:
        print("A node's CPU for messages it has no subscriber for (two nodes, all on A):\n")
        print(bystander_table(runs))
        print(f"\n{loads(runs, (BYSTANDER.key,))}\n")
    if "rolling" in args.only:
        print("Rolling restart of one node of two:\n")
        print(rolling_table([(r.round, r.report) for r in runs if r.scenario == "rolling"]))


def main() -> int:
    args = parse_args()
    started = datetime.now(timezone.utc)
    before = machine()
    say(f"{args.rounds} rounds{' (quick)' if args.quick else ''}; load average {fmt_load(before)}")
    with tempfile.TemporaryDirectory(prefix="thunderpush-cluster-") as workdir:
        redis = ThreeMasters(Path(workdir)) if args.redis_cluster else OneRedis(Path(workdir))
        bench = Bench(args, Path(workdir), redis)
        try:
            for round_number in range(1, args.rounds + 1):
                for name in (name for name in TABLES if name in args.only):
                    getattr(bench, name)(round_number)
        finally:
            redis.stop()
    after = machine()
    minutes = (datetime.now(timezone.utc) - started).total_seconds() / 60
    command = " ".join(["python -m bench.cluster", *sys.argv[1:]])
    print(f"Run of {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min: `{command}`")
    print(f"Machine: {before['cpus']} x {before['cpu_model']}, Linux {before['kernel']},"
          f" Python {before['python']}; load average before {fmt_load(before)},"
          f" after {fmt_load(after)}.\n")  # fmt: skip
    report(args, bench.runs)
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
