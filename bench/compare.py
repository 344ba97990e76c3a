"""Side-by-side benchmark: this Thunderpush against the original 1.0.1, or nginx + Nchan.

    python bench/compare.py [--rounds 3] [--quick] [--only fanout-2000 ...] [--peer nchan]

Installs the original from PyPI into ``.venv-original`` if it is missing,
then for every round, every scenario and each server in turn (ours, original,
ours, original, ...) starts that server fresh on a free port, runs
``thunderpush-bench`` against it with ``--server-pid``, and stops it.  It
prints the median of each figure per server and the ratio ours/original, as
a Markdown table ready for bench/RESULTS.md; ``--output`` keeps every raw
report as JSON.  ``fanout-2000-pusher`` runs against ours only (the original
has no Pusher protocol), so that one run shows what a delivery to a Pusher
subscriber costs beside one to a SockJS subscriber; ``trigger`` likewise (ours
only: the original has no Pusher HTTP API) publishes through Pusher's HTTP API
as the ``pusher`` library signs a trigger, beside ``publish`` in the same run.
``--peer nchan`` measures nginx + Nchan instead of the original (``bench/nchan.py``:
its scenarios, figures and issue 19's goals), the reconnect storm included.

Why it is built this way: a figure is only worth comparing when both servers
were measured the same way on the same machine at about the same time, so
they alternate within each round and the median of the rounds is reported;
each scenario gets a fresh server so that no run inherits another's heap.

This module is the runner; what it runs and reads is ``compare_scenarios``,
how it starts servers ``servers``, and the tables it prints ``compare_report``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script, python bench/compare.py: find ``bench``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import nchan  # noqa: E402
from bench.compare_report import (  # noqa: E402
    Results,
    Run,
    cpu_table,
    fmt_load,
    machine,
    main_phase,
    pusher_cost,
    table,
    trigger_cost,
)
from bench.compare_scenarios import FIGURES, SCENARIOS, Figure  # noqa: E402
from bench.servers import KEY, ROOT, SECRET, Server, ensure_original, say, start_server  # noqa: E402


def bench_command(
    servers: Sequence[Server], python: str, *options: str, measured: Sequence[Server] | None = None
) -> list[str]:
    """``thunderpush-bench`` against ``servers`` (a cluster's nodes, or one server),
    with the CPU of ``measured`` (by default all of them)."""
    command = [python, "-m", "thunderpush_bench"]
    for server in servers:
        command += ["--url", server.url]
    for server in servers if measured is None else measured:
        for pid in server.pids:
            command += ["--server-pid", str(pid)]
    command += ["--key", KEY, "--secret", SECRET, "--json", "--timeout", "600", *options]
    return command


def run_bench(
    servers: Sequence[Server], options: Sequence[str], python: str, cpu: int | None
) -> dict[str, Any]:
    """One ``thunderpush-bench`` run; its JSON report (``ok`` false on failure)."""
    command = bench_command(servers, python, "--quiet", *options)
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    try:
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=700, preexec_fn=pin
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "bench timed out"}
    try:
        return json.loads(result.stdout)
    except ValueError:
        return {"ok": False, "error": f"exit {result.returncode}: {result.stderr[-2000:]}"}


def summary(run: Run, figures: tuple[Figure, ...]) -> str:
    """One progress line: the scenario's headline figure and both CPUs."""
    report = run.report
    if "error" in report:
        return f"FAILED: {report['error']}"
    parts = []
    for figure in figures:
        if figure.scenario == run.scenario:
            value = figure.read(report)
            if value is not None:
                parts.append(f"{value:,.1f} {figure.unit}")
    phase = main_phase(report)
    if phase:
        parts.append(
            f"CPU server {phase.get('server_cpu_percent', 0):.0f}%"
            f" bench {phase['bench_cpu_percent']:.0f}%"
        )
    if not report.get("ok"):
        parts.append(f"NOT ok: {report.get('warnings')}")
    return ", ".join(parts)


def run_all(args: argparse.Namespace, original: Path | None, workdir: Path) -> Results:
    """Rounds x scenarios x (ours, the peer), each against a fresh server."""
    results = Results()
    peer = args.peer == "nchan"
    every = nchan.SCENARIOS if peer else SCENARIOS
    scenarios = [s for s in every if not args.only or s.key in args.only]
    server_cpu, bench_cpu = (0, 1) if args.pin else (None, None)
    for round_number in range(1, args.rounds + 1):
        for scenario in scenarios:
            for kind in ("ours", "nchan") if peer else scenario.servers:
                extra = scenario.server_args if kind == "ours" else ()
                if kind == "nchan":
                    server, options = nchan.start_nchan(workdir, server_cpu), nchan.peer_scenario
                else:
                    server = start_server(kind, workdir, original, args.python, server_cpu, extra)
                    options = None
                started = time.monotonic()
                try:
                    command = (options(scenario) if options else scenario).command(args.quick)
                    report = run_bench([server], command, args.python, bench_cpu)
                finally:
                    server.stop()
                run = Run(scenario.key, kind, round_number, report, time.monotonic() - started)
                results.runs.append(run)
                say(
                    f"round {round_number}/{args.rounds} {scenario.key:<11} {kind:<8}"
                    f" ({run.seconds:.0f} s): {summary(run, nchan.FIGURES if peer else FIGURES)}"
                )
    return results


def parse_common_args(parser: argparse.ArgumentParser, rounds: str) -> argparse.Namespace:
    """The options every side-by-side script takes, then the command line parsed."""
    parser.add_argument("--rounds", type=int, default=3, help=rounds)
    parser.add_argument("--quick", action="store_true", help="small N, for trying it out")
    parser.add_argument("--python", default=sys.executable, help="python that runs ours")
    parser.add_argument("--output", type=Path, help="write every raw report here (JSON)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Thunderpush vs the original 1.0.1, side by side.")
    keys = dict.fromkeys(s.key for s in (*SCENARIOS, *nchan.SCENARIOS))
    parser.add_argument("--only", nargs="+", choices=list(keys))
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, bench on CPU 1")
    parser.add_argument(
        "--peer",
        choices=("original", "nchan"),
        default="original",
        help="what ours is compared with: the original 1.0.1 (default), or nginx + Nchan"
        " (bench/nchan.conf; Debian's nginx and libnginx-mod-nchan)",
    )
    args = parse_common_args(parser, "rounds (each: ours, the peer)")
    if args.peer == "nchan" and nchan.missing():
        parser.error(f"--peer nchan: {nchan.missing()}")
    return args


def main() -> int:
    args = parse_args()
    peer = args.peer
    original = ensure_original() if peer == "original" else None
    started = datetime.now(timezone.utc)
    before = machine()
    mode = " (quick)" if args.quick else ""
    say(f"{args.rounds} rounds{mode}; load average {fmt_load(before)}")
    with tempfile.TemporaryDirectory(prefix="thunderpush-compare-") as workdir:
        results = run_all(args, original, Path(workdir))
    after = machine()
    minutes = (datetime.now(timezone.utc) - started).total_seconds() / 60
    command = " ".join(["python", "bench/compare.py", *sys.argv[1:]])
    print(f"Run of {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min: `{command}`")
    print(f"Machine: {before['cpus']} x {before['cpu_model']}, Linux {before['kernel']},"
          f" Python {before['python']}; load average before {fmt_load(before)},"
          f" after {fmt_load(after)}.\n")  # fmt: skip
    if peer == "nchan":
        print(table(results, nchan.FIGURES, peer, 19))
    else:
        print(table(results, FIGURES))
    cost = pusher_cost(results)
    if cost:
        print("\nOur server CPU per delivery, Pusher against SockJS subscribers (medians):\n")
        print(cost)
    cost = trigger_cost(results)
    if cost:
        print("\nOur server CPU per request, Pusher trigger against our publish (medians):\n")
        print(cost)
    print("\nCPU in each scenario's main phase, % of one core (medians of the rounds):\n")
    print(cpu_table(results, ("ours", peer)))
    failures = results.failures()
    for run in failures:
        print(f"\nFAILED: round {run.round} {run.scenario} {run.server}:"
              f" {run.report.get('error') or run.report.get('warnings')}")  # fmt: skip
    if args.output:
        raw = {
            "started": started.isoformat(),
            "command": command,
            "machine_before": before,
            "machine_after": after,
            "runs": [run.__dict__ for run in results.runs],
        }
        args.output.write_text(json.dumps(raw, indent=1))
        say(f"raw reports in {args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
