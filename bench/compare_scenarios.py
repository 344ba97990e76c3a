"""What bench/compare.py runs and reads: its scenarios, and the figures of issue 3's goals.

Why apart from the runner: the table is what a reader changes (a new scenario,
a figure, a goal), and bench/cluster.py runs some of the same scenarios and
reads figures the same way (``bench/cluster_figures.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

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
