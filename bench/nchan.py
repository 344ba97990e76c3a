"""nginx + Nchan, the native peer of ``bench/compare.py --peer nchan``: started, and measured.

Why a native peer: issue 19 asks how far our hot paths are from a C push
server doing the same job (Nchan 1.3.6 on nginx 1.22, Debian's packages, one
worker), measured the same way in the same run.  ``start_nchan`` starts nginx
from bench/nchan.conf under a prefix of its own on a free port, and measures
its master and its one worker together; the bench drives it with
``thunderpush-bench --client nchan``.  The scenarios are compare.py's, plus the
reconnect storm, and the goals are issue 19's.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from bench.compare_scenarios import BY_KEY, Figure, Scenario
from bench.compare_scenarios import FIGURES as COMPARED
from bench.servers import Server, free_port, server_preexec, wait_listening

CONF = Path(__file__).resolve().parent / "nchan.conf"
MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

SCENARIOS = (
    BY_KEY["fanout-2000"],
    BY_KEY["idle-10000"],
    BY_KEY["publish"],
    # 10,000 [2,000] subscribers drop and reopen at once (thunderpush-bench --scenario storm).
    Scenario("storm-10000", "storm", 10000, 2000),
)


def _goal(scenario: str, label: str, goal: tuple[str, float] | None = None) -> Figure:
    """compare.py's figure ``label`` of ``scenario``, with issue 19's goal against Nchan
    in place of issue 3's against the original."""
    found = next(f for f in COMPARED if (f.scenario, f.label) == (scenario, label))
    return replace(found, goal=goal)


# Issue 19's goals: ("ratio", x) is ours/Nchan <= x, ("value", x) our median <= x.
FIGURES = (
    Figure("publish", "Server CPU per publish request (no subscribers)",
           ("full", "server_cpu_us_per_request"), "us", False, ("ratio", 3.0)),
    _goal("publish", "Publish API requests/s, no subscribers"),
    Figure("idle-10000", "Server CPU per connection set up, {n} connections",
           ("setup", "server_cpu_us_per_connection"), "us", False, ("ratio", 3.0)),
    _goal("idle-10000", "Connection setup rate, {n} connections"),
    _goal("idle-10000", "Idle memory per connection, {n} connections", ("value", 4.0)),
    _goal("fanout-2000", "Server CPU per delivery, {n} subscribers", ("ratio", 1.15)),
    _goal("fanout-2000", "Fan-out deliveries/s, {n} subscribers"),
    _goal("fanout-2000", "p99 latency, {n} subscribers, 5 msg/s", ("ratio", 1.0)),
    _goal("fanout-2000", "p50 latency, {n} subscribers, 5 msg/s"),
    Figure("storm-10000", "Reconnect storm, {n} connections: until all subscribed again",
           ("storm", "seconds"), "s", False),
    Figure("storm-10000", "Reconnect storm, {n} connections: server CPU",
           ("storm", "server_cpu_s"), "s", False),
    Figure("storm-10000", "Reconnect storm: server CPU per connection",
           ("storm", "server_cpu_us_per_connection"), "us", False),
)  # fmt: skip


def missing() -> str | None:
    """Why nginx + Nchan cannot run here, or None."""
    if shutil.which("nginx") is None:
        return "nginx is not installed (Debian: apt-get install nginx libnginx-mod-nchan)"
    if not MODULE.exists():
        return f"{MODULE} is missing (Debian: apt-get install libnginx-mod-nchan)"
    return None


def peer_scenario(scenario: Scenario) -> Scenario:
    """``scenario`` as the bench runs it against Nchan."""
    return replace(scenario, client="nchan", server_args=())


def start_nchan(workdir: Path, cpu: int | None) -> Server:
    """nginx + Nchan on a free port, under a prefix of its own; returns once it accepts
    connections and its one worker is known (measured with the master)."""
    port = free_port()
    prefix = workdir / f"nchan-{port}"
    prefix.mkdir()
    conf = prefix / "nchan.conf"
    conf.write_text(CONF.read_text().replace("@PREFIX@", str(prefix)).replace("@PORT@", str(port)))
    log_path = prefix / "stderr.log"
    command = ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, cwd=prefix, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=server_preexec(cpu),
        )  # fmt: skip
    server = wait_listening(Server("nchan", proc, port, log_path))
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 10
    while not server.children and time.monotonic() < deadline:
        server.children = [int(pid) for pid in children.read_text().split()]
        time.sleep(0.02)
    if not server.children:
        server.stop()
        raise RuntimeError(f"nginx started no worker: {(prefix / 'error.log').read_text()}")
    return server
