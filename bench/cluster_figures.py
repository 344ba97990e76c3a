"""What bench/cluster.py runs besides compare.py's scenarios, and the figures it reads.

Kept apart so that the harness reads as steps and these as data: each
figure names its scenario, where its value sits in the bench's JSON report,
and its unit.  ``Total`` adds figures up, for what a message costs the whole
cluster (every node and Redis).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from bench.compare_scenarios import Figure, Scenario

# One subscriber per channel, as many channels as connections; every publish one delivery.
CHANNELS = Scenario(
    "channels-10000",
    "channels",
    10000,
    2000,
    ("-m", "10000", "-c", "8", "--rate", "0"),
    ("-m", "3000", "-c", "8", "--rate", "0"),
)
# The same with 32 publishes in flight instead of 8: with 8 spread over 4
# nodes each node has 2 at a time and wakes for almost every message, while
# one process batches 8; 32 offers both the same load per process that 8
# offers one (RESULTS.md, 2026-12-07 05:34: 4 independent processes without
# Redis already cost 1.3x one process per publish at -c 8, 1.0-1.15x at -c 32).
CHANNELS_BUSY = replace(
    CHANNELS,
    key="channels-10000-c32",
    args=("-m", "20000", "-c", "32", "--rate", "0"),
    quick_args=("-m", "3000", "-c", "32", "--rate", "0"),
)
BYSTANDER = Scenario("bystander", "channels", 1000, 500,
                     ("-m", "20000", "-c", "8", "--rate", "0"),
                     ("-m", "5000", "-c", "8", "--rate", "0"))  # fmt: skip


@dataclass(frozen=True)
class Total(Figure):
    """The sum of several figures of a report: all nodes' CPU and Redis's.

    The first part must be there; the others count as 0 where the report
    has none (one process has no Redis).
    """

    parts: tuple[tuple[str, ...], ...] = ()

    def read(self, report: dict[str, Any]) -> float | None:
        found = [Figure.read(replace(self, path=part), report) for part in self.parts]
        return None if found[0] is None else sum(value or 0.0 for value in found)


def _total(scenario: str, label: str, unit: str) -> Total:
    parts = (("full", f"server_cpu_us_per_{unit}"), ("full", f"redis_cpu_us_per_{unit}"))
    return Total(scenario, label, parts[0], "us", False, parts=parts)


FIGURES = (
    Figure(
        "fanout-2000",
        "Fan-out deliveries/s, {n} subscribers",
        ("full", "deliveries_per_s"),
        "/s",
        True,
    ),
    Figure(
        "fanout-2000",
        "Server CPU per delivery, {n} subscribers (all nodes)",
        ("full", "server_cpu_us_per_delivery"),
        "us",
        False,
    ),
    Figure(
        "fanout-2000",
        "p50 latency, {n} subscribers, 5 msg/s",
        ("rate", "latency_ms", "p50"),
        "ms",
        False,
    ),
    Figure(
        "fanout-2000",
        "p99 latency, {n} subscribers, 5 msg/s",
        ("rate", "latency_ms", "p99"),
        "ms",
        False,
    ),
    Figure(
        "fanout-2000",
        "Server CPU per delivery, {n} subscribers, 5 msg/s (all nodes)",
        ("rate", "server_cpu_us_per_delivery"),
        "us",
        False,
    ),
    Figure(
        "publish", "Publish API requests/s, no subscribers", ("full", "publish_per_s"), "/s", True
    ),
    Figure(
        "publish",
        "Server CPU per publish request (all nodes)",
        ("full", "server_cpu_us_per_request"),
        "us",
        False,
    ),
    Figure(
        "publish",
        "Redis CPU per publish request",
        ("full", "redis_cpu_us_per_request"),
        "us",
        False,
    ),
    _total("publish", "Cluster CPU per publish request (all nodes + Redis)", "request"),
    Figure(
        "fanout-2000",
        "Redis CPU per delivery, {n} subscribers",
        ("full", "redis_cpu_us_per_delivery"),
        "us",
        False,
    ),
)


def _channel_figures(scenario: Scenario, busy: str) -> tuple[Figure, ...]:
    """The one-subscriber figures of ``scenario``; ``busy`` says how many publishes
    were in flight, in each label."""
    key = scenario.key
    return (
        Figure(key, "Deliveries/s, {n} one-subscriber channels" + busy,
               ("full", "deliveries_per_s"), "/s", True),
        Figure(key, "Server CPU per delivered message (all nodes)" + busy,
               ("full", "server_cpu_us_per_delivery"), "us", False),
        Figure(key, "Redis CPU per delivered message" + busy,
               ("full", "redis_cpu_us_per_delivery"), "us", False),
        _total(key, "Cluster CPU per delivered message (all nodes + Redis)" + busy, "delivery"),
        Figure(key, "p50 API round trip of a publish" + busy,
               ("full", "request_ms", "p50"), "ms", False),
    )  # fmt: skip


CHANNEL_FIGURES = _channel_figures(CHANNELS, ", 8 in flight") + _channel_figures(
    CHANNELS_BUSY, ", 32 in flight"
)
BYSTANDER_FIGURES = (
    Figure(BYSTANDER.key, "Node B's CPU per message it has no subscriber for",
           ("full", "bystander_cpu_us_per_delivery"), "us", False),
    Figure(BYSTANDER.key, "Node A's CPU per publish (its one local delivery included)",
           ("full", "server_cpu_us_per_delivery"), "us", False),
    Figure(BYSTANDER.key, "Redis CPU per publish", ("full", "redis_cpu_us_per_delivery"), "us",
           False),
    Figure(BYSTANDER.key, "Publishes/s through A", ("full", "publish_per_s"), "/s", True),
    Figure(BYSTANDER.key, "Node B's CPU during the publishing", ("full", "bystander_cpu_s"), "s",
           False),
)  # fmt: skip
