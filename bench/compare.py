"""Side-by-side benchmark: this Thunderpush against the original 1.0.1.

    python bench/compare.py [--rounds 3] [--quick] [--only fanout-2000 ...]

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

Why it is built this way: a figure is only worth comparing when both servers
were measured the same way on the same machine at about the same time, so
they alternate within each round and the median of the rounds is reported;
each scenario gets a fresh server so that no run inherits another's heap.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-original"
KEY, SECRET = "key", "secret"
SERVERS = ("ours", "original")


@dataclass(frozen=True)
class Scenario:
    """One bench run: its scenario, N for full and quick runs, and other arguments."""

    key: str
    kind: str
    n: int
    quick_n: int
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    # What the bench's connections speak (``thunderpush-bench --client``).
    client: str = "sockjs"
    # More options for our server.
    server_args: tuple[str, ...] = ()

    @property
    def servers(self) -> tuple[str, ...]:
        """The original has no Pusher protocol: Pusher clients and triggers run
        against ours only."""
        return ("ours",) if self.client == "pusher" or self.kind == "trigger" else SERVERS

    def command(self, quick: bool) -> list[str]:
        n = self.quick_n if quick else self.n
        extra = self.quick_args if quick else self.args
        size = [] if self.kind in ("publish", "trigger") else ["-n", str(n)]
        client = [] if self.client == "sockjs" else ["--client", self.client]
        return ["--scenario", self.kind, *size, *client, *extra]


# Fan-out publishes with 4 API connections at once: "full speed" is what a
# server does when publishes overlap, which is what lets it coalesce sends.
FANOUT_2000 = Scenario(
    "fanout-2000", "fanout", 2000, 500,
    ("-m", "200", "-c", "4", "--rate", "5", "--rate-messages", "50"),
    ("-m", "100", "-c", "4", "--rate", "5", "--rate-messages", "10"),
)  # fmt: skip
SCENARIOS = (
    FANOUT_2000,
    # The same publishes to Pusher subscribers (issue 11): what a Pusher delivery costs.
    replace(FANOUT_2000, key="fanout-2000-pusher", client="pusher"),
    Scenario("fanout-5000", "fanout", 5000, 1000,
             ("-m", "80", "-c", "4", "--rate", "0"), ("-m", "50", "-c", "4", "--rate", "0")),
    Scenario("idle-10000", "idle", 10000, 2000,
             ("--idle-seconds", "2"), ("--idle-seconds", "1")),
    Scenario("users-1000", "users", 1000, 200,
             ("-m", "10000", "-c", "8", "--rate", "0"), ("-m", "3000", "-c", "8", "--rate", "0")),
    Scenario("publish", "publish", 0, 0, ("-m", "10000", "-c", "8"), ("-m", "3000", "-c", "8")),
    # The same publishes as a Pusher server library's trigger (issue 17): one
    # signed POST /apps/1/events, replayed (the pusher library wants a numeric id).
    Scenario("trigger", "trigger", 0, 0, ("-m", "10000", "-c", "8"), ("-m", "3000", "-c", "8"),
             server_args=("--app-id", "1")),
)  # fmt: skip
BY_KEY = {scenario.key: scenario for scenario in SCENARIOS}


@dataclass(frozen=True)
class Figure:
    """One number read from a scenario's report, and issue 3's goal for it."""

    scenario: str
    label: str
    path: tuple[str, ...]
    unit: str
    higher_is_better: bool
    # The goal: ("ratio", 4.0) means ours/original >= 4 (or <= for lower-is-better
    # figures), ("value", 8.0) means our median within 8.
    goal: tuple[str, float] | None = None

    def read(self, report: dict[str, Any]) -> float | None:
        value: Any = report
        for key in self.path:
            if not isinstance(value, dict) or value.get(key) is None:
                return None
            value = value[key]
        return float(value)


FIGURES = (
    Figure("fanout-2000", "Fan-out deliveries/s, {n} subscribers", ("full", "deliveries_per_s"),
           "/s", True, ("ratio", 4.0)),
    Figure("fanout-2000", "Server CPU per delivery, {n} subscribers",
           ("full", "server_cpu_us_per_delivery"), "us", False, ("value", 8.0)),
    Figure("fanout-2000-pusher", "Fan-out deliveries/s, {n} Pusher subscribers",
           ("full", "deliveries_per_s"), "/s", True),
    Figure("fanout-2000-pusher", "Server CPU per delivery, {n} Pusher subscribers",
           ("full", "server_cpu_us_per_delivery"), "us", False),
    Figure("fanout-5000", "Fan-out deliveries/s, {n} subscribers", ("full", "deliveries_per_s"),
           "/s", True, ("ratio", 5.0)),
    Figure("fanout-5000", "Server CPU per delivery, {n} subscribers",
           ("full", "server_cpu_us_per_delivery"), "us", False, ("value", 8.0)),
    Figure("fanout-2000", "p99 latency, {n} subscribers, 5 msg/s", ("rate", "latency_ms", "p99"),
           "ms", False, ("value", 40.0)),
    Figure("fanout-2000", "p50 latency, {n} subscribers, 5 msg/s", ("rate", "latency_ms", "p50"),
           "ms", False),
    Figure("fanout-2000", "Server CPU per delivery, {n} subscribers, 5 msg/s",
           ("rate", "server_cpu_us_per_delivery"), "us", False),
    Figure("fanout-2000-pusher", "p99 latency, {n} Pusher subscribers, 5 msg/s",
           ("rate", "latency_ms", "p99"), "ms", False),
    Figure("fanout-2000-pusher", "Server CPU per delivery, {n} Pusher subscribers, 5 msg/s",
           ("rate", "server_cpu_us_per_delivery"), "us", False),
    Figure("idle-10000", "Idle memory per connection, {n} connections",
           ("memory", "rss_per_connection_kib"), "KiB", False, ("value", 10.0)),
    Figure("idle-10000", "Connection setup rate, {n} connections",
           ("setup", "connections_per_s"), "/s", True, ("ratio", 3.0)),
    Figure("users-1000", "User-targeted deliveries/s, {n} users", ("full", "deliveries_per_s"),
           "/s", True, ("ratio", 3.0)),
    Figure("users-1000", "Server CPU per user-targeted delivery",
           ("full", "server_cpu_us_per_delivery"), "us", False),
    Figure("publish", "Publish API requests/s, no subscribers", ("full", "publish_per_s"), "/s",
           True, ("ratio", 2.0)),
    Figure("publish", "Server CPU per publish request", ("full", "server_cpu_us_per_request"),
           "us", False),
    Figure("trigger", "Pusher trigger API requests/s, no subscribers", ("full", "publish_per_s"),
           "/s", True),
    Figure("trigger", "Server CPU per Pusher trigger request",
           ("full", "server_cpu_us_per_request"), "us", False),
)  # fmt: skip


# -- servers ----------------------------------------------------------------------


def ensure_original() -> Path:
    """The original's ``thunderpush`` script, installed from PyPI if missing."""
    script = VENV / "bin" / "thunderpush"
    if script.exists():
        return script
    say(f"installing the original Thunderpush 1.0.1 into {VENV}")
    pip = str(VENV / "bin" / "pip")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([pip, "install", "--no-deps", "thunderpush==1.0.1"], check=True)
    subprocess.run([pip, "install", "tornado==6.6.1", "sockjs-tornado==1.0.7", "simplejson"],
                   check=True)  # fmt: skip
    return script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_preexec(cpu: int | None) -> Callable[[], None]:
    """Runs in the server's child process: one fd per connection, optional pinning."""

    def setup() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return setup


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not gone within 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(
    kind: str,
    workdir: Path,
    original: Path | None,
    python: str,
    cpu: int | None,
    extra: Sequence[str] = (),
    port: int | None = None,
) -> Server:
    """Starts one server (on ``port``, else a free one); returns once it accepts connections.

    ``extra``: more options for ours (``--redis-url`` for a cluster node).

    The readiness check opens and closes a TCP connection.  Every server gets
    it; for ours (asyncio transports on glibc) that first EOF also puts malloc
    in the steady state a server reaches in production (see RESULTS.md).
    """
    port = port or free_port()
    pid_path = workdir / f"{kind}-{port}.pid"
    log_path = workdir / f"{kind}-{port}.log"
    args = ["-p", str(port), "-H", "127.0.0.1", "--pid-path", str(pid_path), KEY, SECRET]
    env = dict(os.environ)
    if kind == "ours":
        command = [python, "-m", "thunderpush", *args, *extra]
    else:
        # Run the script from its own venv, with nothing of this repo on the path.
        command = [str(original), *args]
        env.pop("PYTHONPATH", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT if kind == "ours" else workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=server_preexec(cpu),
        )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return Server(kind, proc, port, log_path)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{kind} server did not start: {log_path.read_text()}") from None
            time.sleep(0.05)


# -- runs ---------------------------------------------------------------------------


@dataclass
class Run:
    scenario: str
    server: str
    round: int
    report: dict[str, Any]
    seconds: float


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)

    def values(self, figure: Figure, server: str) -> list[float]:
        found = (
            figure.read(run.report)
            for run in self.runs
            if run.scenario == figure.scenario and run.server == server
        )
        return [value for value in found if value is not None]

    def size(self, scenario: str) -> int:
        """N (connections) that a scenario was run with."""
        return next(
            (r.report.get("connections", 0) for r in self.runs if r.scenario == scenario), 0
        )

    def failures(self) -> list[Run]:
        return [run for run in self.runs if not run.report.get("ok")]


def say(text: str) -> None:
    print(f"[compare] {text}", file=sys.stderr, flush=True)


def bench_command(
    servers: Sequence[Server], python: str, *options: str, measured: Sequence[Server] | None = None
) -> list[str]:
    """``thunderpush-bench`` against ``servers`` (a cluster's nodes, or one server),
    with the CPU of ``measured`` (by default all of them)."""
    command = [python, "-m", "thunderpush_bench"]
    for server in servers:
        command += ["--url", server.url]
    for server in servers if measured is None else measured:
        command += ["--server-pid", str(server.proc.pid)]
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


def summary(run: Run) -> str:
    """One progress line: the scenario's headline figure and both CPUs."""
    report = run.report
    if "error" in report:
        return f"FAILED: {report['error']}"
    parts = []
    for figure in FIGURES:
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


def run_all(args: argparse.Namespace, original: Path, workdir: Path) -> Results:
    """Rounds x scenarios x (ours, original), each against a fresh server."""
    results = Results()
    scenarios = [s for s in SCENARIOS if not args.only or s.key in args.only]
    server_cpu, bench_cpu = (0, 1) if args.pin else (None, None)
    for round_number in range(1, args.rounds + 1):
        for scenario in scenarios:
            for kind in scenario.servers:
                extra = scenario.server_args if kind == "ours" else ()
                server = start_server(kind, workdir, original, args.python, server_cpu, extra)
                started = time.monotonic()
                try:
                    report = run_bench(
                        [server], scenario.command(args.quick), args.python, bench_cpu
                    )
                finally:
                    server.stop()
                run = Run(scenario.key, kind, round_number, report, time.monotonic() - started)
                results.runs.append(run)
                say(
                    f"round {round_number}/{args.rounds} {scenario.key:<11} {kind:<8}"
                    f" ({run.seconds:.0f} s): {summary(run)}"
                )
    return results


# -- the table ------------------------------------------------------------------------


def pusher_cost(results: Results) -> str | None:
    """What a delivery to a Pusher subscriber costs beside one to a SockJS subscriber.

    Both scenarios publish the same messages to as many subscribers of one
    channel; only what the subscribers speak differs.
    """

    def ours(scenario: str, phase: str) -> list[float]:
        path = (phase, "server_cpu_us_per_delivery")
        return results.values(Figure(scenario, "", path, "us", False), "ours")

    lines = []
    for phase, label in (("full", "full speed"), ("rate", "5 msg/s")):
        sockjs, pusher = ours("fanout-2000", phase), ours("fanout-2000-pusher", phase)
        if sockjs and pusher:
            thunder, other = statistics.median(sockjs), statistics.median(pusher)
            lines.append(
                f"- {label}: {other:.1f} us per Pusher delivery against {thunder:.1f} us per"
                f" Thunderpush (SockJS) delivery: {other - thunder:+.1f} us"
                f" ({(other / thunder - 1) * 100:+.0f}%)"
            )
    return "\n".join(lines) or None


def trigger_cost(results: Results) -> str | None:
    """What a Pusher trigger costs our server beside a Thunderpush publish (issue 17's
    goal: within 20%), from the medians of the same run's rounds."""
    path = ("full", "server_cpu_us_per_request")
    publish = results.values(Figure("publish", "", path, "us", False), "ours")
    trigger = results.values(Figure("trigger", "", path, "us", False), "ours")
    if not (publish and trigger):
        return None
    ours, theirs = statistics.median(publish), statistics.median(trigger)
    ratio = theirs / ours
    return (
        f"- {theirs:.1f} us per Pusher trigger against {ours:.1f} us per Thunderpush publish:"
        f" ratio {ratio:.2f} (goal <= 1.20: {'met' if ratio <= 1.2 else 'not met'})"
    )


def goal_text(figure: Figure) -> str:
    if figure.goal is None:
        return ""
    kind, target = figure.goal
    sign = ">=" if figure.higher_is_better else "<="
    if kind == "ratio":
        return f"ratio {sign} {target:g}x" if figure.higher_is_better else f"ratio <= {target:g}"
    return f"ours {sign} {target:g} {figure.unit}"


def goal_met(figure: Figure, ours: float, ratio: float | None) -> str:
    if figure.goal is None:
        return ""
    kind, target = figure.goal
    value = ratio if kind == "ratio" else ours
    if value is None:
        return "?"
    met = value >= target if figure.higher_is_better else value <= target
    return "yes" if met else "no"


def table(results: Results, figures: tuple[Figure, ...]) -> str:
    """Markdown: figure, median ours, median original, ratio, goal, met?"""
    lines = [
        "| figure | ours (median) | original (median) | ours/original | issue 3 goal | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for figure in figures:
        ours = results.values(figure, "ours")
        theirs = results.values(figure, "original")
        if not ours and not theirs:
            continue
        ours_median = statistics.median(ours) if ours else None
        theirs_median = statistics.median(theirs) if theirs else None
        ratio = ours_median / theirs_median if ours_median and theirs_median else None
        met = goal_met(figure, ours_median, ratio) if ours_median is not None else ""
        ran_theirs = "original" in BY_KEY[figure.scenario].servers
        cells = [
            figure.label.format(n=f"{results.size(figure.scenario):,}"),
            fmt(ours_median, figure.unit),
            fmt(theirs_median, figure.unit) if ran_theirs else "none: no Pusher protocol",
            "" if ratio is None else f"{ratio:.2f}x",
            goal_text(figure),
            met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.1f} {unit}"


def main_phase(report: dict[str, Any]) -> dict[str, Any] | None:
    """The phase a scenario is about: publishing flat out, or opening connections."""
    return report.get("full") or report.get("setup")


def cpu_table(results: Results) -> str:
    """Server and bench CPU in each scenario's main phase (medians of the rounds).

    A server under about 90% there was not the limit: it waited for the bench,
    the network, or other processes on the machine.
    """
    lines = [
        "| scenario (main phase) | ours: server / bench CPU | original: server / bench CPU |",
        "|---|---:|---:|",
    ]
    for scenario in dict.fromkeys(run.scenario for run in results.runs):
        cells = []
        for kind in SERVERS:
            phases = [
                main_phase(run.report)
                for run in results.runs
                if run.scenario == scenario and run.server == kind and "error" not in run.report
            ]
            server = [p["server_cpu_percent"] for p in phases if p and "server_cpu_percent" in p]
            bench = [p["bench_cpu_percent"] for p in phases if p]
            cells.append(
                f"{statistics.median(server):.0f}% / {statistics.median(bench):.0f}%"
                if server and bench
                else "n/a"
            )
        phase = "setup" if scenario.startswith("idle") else "full speed"
        lines.append(f"| {scenario} ({phase}) | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


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
    parser.add_argument("--only", nargs="+", choices=[s.key for s in SCENARIOS])
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, bench on CPU 1")
    return parse_common_args(parser, "rounds (each: ours, original)")


def main() -> int:
    args = parse_args()
    original = ensure_original()
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
    print(cpu_table(results))
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


def fmt_load(info: dict[str, Any]) -> str:
    return " ".join(f"{value:.2f}" for value in info["load_average"])


if __name__ == "__main__":
    sys.exit(main())
