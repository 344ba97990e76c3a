"""What the load generator measures with, kept apart from what it measures.

A figure is only worth something when everyone reads it the same way: the
deliveries every client counts go to one shared ``Tally``, each phase is
timed by a ``Meter`` (wall time, the bench's own CPU and, given its PID, the
server's), and latencies are summed up by the same nearest-rank
``percentiles``.  The server is read through ``/proc`` only, so the bench
never needs to be inside it.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections import Counter
from typing import Any

# The bench CPU share above which its figures may describe the bench itself.
SATURATED_PERCENT = 90.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class Tally:
    """What every websocket client reports to: deliveries, latencies, closes.

    One shared object rather than per-connection counters, so that reading
    the total while draining costs the same for 10 or 10,000 connections.
    """

    __slots__ = (
        "received",
        "latencies",
        "unexpected_closes",
        "close_codes",
        "errors",
        "duplicates",
    )

    def __init__(self) -> None:
        self.received = 0
        # Deliveries of a sequence number a session had already seen (rolling only).
        self.duplicates = 0
        self.latencies: list[float] = []
        self.unexpected_closes = 0
        self.close_codes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB, from ``/proc/PID/status``."""
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, Any]:
    """p50/p95/p99/max (nearest rank), scaled (seconds to ms by default)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "samples": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * scale, 3)

    return {
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "max": round(ordered[-1] * scale, 3),
        "samples": len(ordered),
    }


def total_cpu_seconds(pids: list[int]) -> float | None:
    """utime + stime of several processes together; None if one of them is gone."""
    try:
        return sum(proc_cpu_seconds(pid) for pid in pids)
    except OSError:
        return None


class Meter:
    """Wall time and CPU of a phase: ours, the server's when its PIDs are known
    (a cluster's nodes, added up), Redis's when its PIDs are known (apart; a
    Redis Cluster's masters, added up), and
    the bystanders' (nodes that hold none of the run's connections, added up
    apart): what a node pays for messages it has no subscriber for."""

    def __init__(
        self,
        server_pids: list[int],
        redis_pids: list[int] | None = None,
        bystander_pids: list[int] | None = None,
    ) -> None:
        self.wall = time.perf_counter()
        self.own = own_cpu_seconds()
        self.groups: list[tuple[str, list[int], float | None]] = []
        for name, pids in (
            ("server", server_pids),
            ("redis", redis_pids or []),
            ("bystander", bystander_pids or []),
        ):
            if pids:
                self.groups.append((name, pids, total_cpu_seconds(pids)))

    def stop(self, work: int, unit: str, end: float | None = None) -> dict[str, Any]:
        """CPU figures for ``work`` units (deliveries or requests) done in the phase."""
        seconds = max((end or time.perf_counter()) - self.wall, 1e-9)
        own = own_cpu_seconds() - self.own
        result: dict[str, Any] = {
            "seconds": round(seconds, 4),
            "bench_cpu_s": round(own, 3),
            "bench_cpu_percent": round(100 * own / seconds, 1),
        }
        for name, pids, before in self.groups:
            after = total_cpu_seconds(pids)
            if after is None or before is None:
                continue
            used = after - before
            result[f"{name}_cpu_s"] = round(used, 3)
            result[f"{name}_cpu_percent"] = round(100 * used / seconds, 1)
            result[f"{name}_cpu_us_per_{unit}"] = round(1e6 * used / work, 2) if work else None
        return result
