"""The results of the side-by-side runs, and the Markdown tables made of them.

Why apart from the runner: the tables are only a view of the raw reports
(``--output`` keeps those), so how they read can change without touching how
the runs are made.  The medians of the rounds are compared, never one run.
"""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.compare_scenarios import BY_KEY, SERVERS, Figure


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


def table(
    results: Results, figures: tuple[Figure, ...], peer: str = "original", issue: int = 3
) -> str:
    """Markdown: figure, median ours, median of the peer, ratio, goal, met?"""
    lines = [
        f"| figure | ours (median) | {peer} (median) | ours/{peer} | issue {issue} goal | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for figure in figures:
        ours = results.values(figure, "ours")
        theirs = results.values(figure, peer)
        if not ours and not theirs:
            continue
        ours_median = statistics.median(ours) if ours else None
        theirs_median = statistics.median(theirs) if theirs else None
        ratio = ours_median / theirs_median if ours_median and theirs_median else None
        met = goal_met(figure, ours_median, ratio) if ours_median is not None else ""
        ran_theirs = peer != "original" or "original" in BY_KEY[figure.scenario].servers
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
    return report.get("full") or report.get("storm") or report.get("setup")


def cpu_table(results: Results, servers: tuple[str, ...] = SERVERS) -> str:
    """Server and bench CPU in each scenario's main phase (medians of the rounds).

    A server under about 90% there was not the limit: it waited for the bench,
    the network, or other processes on the machine.
    """
    lines = [
        f"| scenario (main phase) | ours: server / bench CPU | {servers[1]}: server / bench CPU |",
        "|---|---:|---:|",
    ]
    for scenario in dict.fromkeys(run.scenario for run in results.runs):
        cells = []
        for kind in servers:
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
        phase = {"idle": "setup", "storm": "reconnect"}.get(scenario.split("-")[0], "full speed")
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


def fmt_load(info: dict[str, Any]) -> str:
    return " ".join(f"{value:.2f}" for value in info["load_average"])
