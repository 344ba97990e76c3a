"""The rolling restart of bench/cluster.py: one node of two stops and starts again under load.

Kept apart from the throughput scenarios because it judges a different thing
(what clients that move miss, and that nobody gets a message twice) from the
bench's sequence numbers, and because a harness must act in the middle of
the bench's run: ``run_rolling`` restarts the node when the bench says so.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.servers import ROOT
from thunderpush_bench.rolling import ROLLING_MARK


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


def rolling_table(rounds: list[tuple[int, dict[str, Any]]]) -> str:
    """One line per (round, report) of a rolling restart."""
    lines = [
        "| round | published (rate reached) | moved | not reopened | published while moving"
        " | missed (total / most per connection) | lost | duplicates | reconnect p50 / p99 | ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for number, report in rounds:
        r = report.get("rolling")
        if r is None:
            lines.append(f"| {number} | FAILED: {report.get('error')} | | | | | | | | no |")
            continue
        reconnect = r["reconnect_ms"]
        lines.append(
            f"| {number} | {r['published']} ({r['publish_per_s']:g}/s)"
            f" | {r['moved']} of {r['connections']} | {r['move_failed']}"
            f" | {r['published_while_moving']} in {r['moving_ms'] or 0:.0f} ms"
            f" | {r['missed']} / {r['missed_max']} | {r['lost']}"
            f" | {r['duplicates']} | {reconnect['p50'] or 0:.0f} / {reconnect['p99'] or 0:.0f} ms"
            f" | {'yes' if rolling_ok(report) else 'no'} |"
        )
    return "\n".join(lines)
