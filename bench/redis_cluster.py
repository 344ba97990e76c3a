"""What routing by slot costs: commands through a Redis Cluster against one Redis.

    PYTHONPATH=$PWD .venv/bin/python bench/redis_cluster.py [--rounds 3] [--scale 1.0]

Starts one ``redis-server`` and a three-master Redis Cluster (the tests'
``tests.support.cluster.RedisCluster``: ``redis-cli --cluster create``), all on free
loopback ports with persistence off.  For INCR and EVALSHA (``INCR KEYS[1]``,
one declared key) on 1,000 keys of distinct hash tags (so spread over the
three masters), with 1, 16 and 256 commands in flight (that many coroutines,
each awaiting its command before sending the next, as API calls do),
measures, one after the other in each round:

a. ``one``: ``thunderpush.cluster.connection.Connection`` to the single Redis;
b. ``cluster``: ``thunderpush.cluster.topology.ClusterConnection`` to the
   cluster: a slot per command, one ``Connection`` per master.

Per case: commands/s (wall clock), this process's CPU per command, Redis's CPU
per command (every master's, from ``/proc``), and the ratio of the cluster's
commands/s to one Redis's.  Medians of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.support.cluster import RedisCluster, RedisServer, redis_executable
from tests.support.processes import free_port
from thunderpush.cluster.connection import Connection, address
from thunderpush.cluster.topology import ClusterConnection

IN_FLIGHT = (1, 16, 256)
# Commands per case at scale 1: about a second each here.
COMMANDS = {1: 8_000, 16: 40_000, 256: 60_000}
KEYS = [f"tp:{{5:myapp:c:room-{n}}}:s" for n in range(1000)]
SCRIPT = "return redis.call('INCR', KEYS[1])"
TICKS = os.sysconf("SC_CLK_TCK")

Call = Callable[[str], Awaitable[object]]


def cpu_of(pids: list[int]) -> float:
    """Seconds of CPU (user + system) processes ``pids`` have used."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


async def run_case(call: Call, in_flight: int, total: int, pids: list[int]) -> tuple[float, ...]:
    """(commands/s, client CPU us per command, Redis CPU us per command)."""
    each = total // in_flight

    async def worker(start: int) -> None:
        for n in range(each):
            await call(KEYS[(start + n) % len(KEYS)])

    for n in range(50):  # warm up
        await call(KEYS[n])
    redis_before, cpu_before, wall_before = cpu_of(pids), time.process_time(), time.time()
    await asyncio.gather(*(worker(37 * w) for w in range(in_flight)))
    wall = time.time() - wall_before
    cpu, redis_cpu = time.process_time() - cpu_before, cpu_of(pids) - redis_before
    done = each * in_flight
    return done / wall, cpu / done * 1e6, redis_cpu / done * 1e6


async def one_round(
    single: RedisServer, cluster: RedisCluster, scale: float
) -> dict[tuple, tuple[float, ...]]:
    one = await Connection.open(address(single.url))
    clustered = await ClusterConnection.open(*(address(url) for url in cluster.urls))
    pids = {
        "one": [single.proc.pid],
        "cluster": [server.proc.pid for server in cluster.servers],
    }
    figures = {}
    try:
        shas = {"one": await one.command("SCRIPT", "LOAD", SCRIPT)}
        shas["cluster"] = await clustered.command("SCRIPT", "LOAD", SCRIPT)
        clients = {"one": one, "cluster": clustered}
        for name in ("INCR", "EVALSHA"):
            for in_flight in IN_FLIGHT:
                for client_name, client in clients.items():
                    if name == "INCR":
                        call = client.command
                        calls: Call = lambda key, call=call: call(b"INCR", key)  # noqa: E731
                    else:
                        sha, evalsha = shas[client_name], client.evalsha
                        calls = lambda key, s=sha, e=evalsha: e(s, 1, key)  # noqa: E731
                    total = int(COMMANDS[in_flight] * scale)
                    figures[name, in_flight, client_name] = await run_case(
                        calls, in_flight, total, pids[client_name]
                    )
    finally:
        one.close()
        clustered.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="commands per case, x")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        single = RedisServer(redis_executable(), free_port(), Path(root) / "single.log")
        cluster_root = Path(root) / "cluster"
        cluster_root.mkdir()
        cluster = RedisCluster(cluster_root)
        try:
            single.start()
            cluster.create()
            rounds = [
                asyncio.run(one_round(single, cluster, args.scale)) for _ in range(args.rounds)
            ]
        finally:
            single.stop(signal.SIGKILL)
            cluster.destroy()
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Run of {when} UTC, {args.rounds} rounds, load average {load}; medians.\n")
    print("| command | in flight | client | commands/s | client CPU / cmd | Redis CPU / cmd |")
    print("|---|---:|---|---:|---:|---:|")
    medians = {
        key: [statistics.median(r[key][i] for r in rounds) for i in range(3)] for key in rounds[0]
    }
    for (name, in_flight, client_name), (rate, cpu, redis_cpu) in medians.items():
        row = f"| {name} | {in_flight} | {client_name} | {rate:,.0f} | {cpu:.1f} us |"
        print(f"{row} {redis_cpu:.1f} us |")
    print("\n| command | in flight | cluster / one, commands/s | client CPU, cluster / one |")
    print("|---|---:|---:|---:|")
    for name in ("INCR", "EVALSHA"):
        for in_flight in IN_FLIGHT:
            one, clustered = medians[name, in_flight, "one"], medians[name, in_flight, "cluster"]
            print(
                f"| {name} | {in_flight} | {clustered[0] / one[0]:.2f}"
                f" | {clustered[1] / one[1]:.2f} |"
            )


if __name__ == "__main__":
    main()
