"""Which Redis client for the cluster: redis-py, or a lean connection of ours.

    PYTHONPATH=$PWD .venv/bin/python bench/redis_client.py [--rounds 3] [--scale 1.0]

Starts its own ``redis-server`` on a free port (persistence off) and, for
PUBLISH (a 100-byte message to an app's bus, no subscriber) and EVALSHA (the
cluster's publish script, ``scripts.SEND``, with two nodes registered), with
1, 16 and 256 commands in flight (that many coroutines, each awaiting its
command before sending the next, as API calls do), measures:

a. ``redis-py``: redis-py asyncio, each command through the pool (32
   connections), as ``cluster/node.py`` did;
b. ``redis-py pipe``: redis-py, the commands of one loop turn gathered into one
   pipeline (one pool checkout and one write per turn);
c. ``lean``: ``thunderpush.cluster.connection.Connection``, an asyncio
   Protocol on ``hiredis.Reader`` that writes every command of one loop turn
   in one write and resolves the futures in order.

Per case: commands/s (wall clock), this process's CPU per command, and Redis's
CPU per command (from ``/proc``).  Medians of the rounds.  Each case runs
alone, one after the other, in one process on one core; Redis on another.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import BlockingConnectionPool, Redis

from thunderpush.cluster import scripts
from thunderpush.cluster.connection import Connection, address

IN_FLIGHT = (1, 16, 256)
# Commands per case at scale 1: enough for about a second each.
COMMANDS = {1: 8_000, 16: 40_000, 256: 60_000}
MESSAGE = "x" * 100
TICKS = os.sysconf("SC_CLK_TCK")

Call = Callable[[], Awaitable[object]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_of(pid: int) -> float:
    """Seconds of CPU (user + system) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class TurnPipeline:
    """redis-py with the commands of one loop turn in one pipeline."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.queued: list[tuple[tuple, asyncio.Future]] = []

    def call(self, *args: object) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.queued:
            loop.call_soon(self._go)
        self.queued.append((args, future))
        return future

    def _go(self) -> None:
        queued, self.queued = self.queued, []
        asyncio.ensure_future(self._run(queued))

    async def _run(self, queued: list[tuple[tuple, asyncio.Future]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for args, _ in queued:
            pipe.execute_command(*args)
        for (_, future), answer in zip(queued, await pipe.execute(), strict=True):
            future.set_result(answer)


async def run_case(call: Call, in_flight: int, total: int, redis_pid: int) -> tuple[float, ...]:
    """(commands/s, client CPU us per command, Redis CPU us per command)."""
    each = total // in_flight

    async def worker() -> None:
        for _ in range(each):
            await call()

    for _ in range(50):  # warm up: connections opened, scripts loaded
        await call()
    redis_before, cpu_before, wall_before = cpu_of(redis_pid), time.process_time(), time.time()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    wall = time.time() - wall_before
    cpu, redis_cpu = time.process_time() - cpu_before, cpu_of(redis_pid) - redis_before
    done = each * in_flight
    return done / wall, cpu / done * 1e6, redis_cpu / done * 1e6


async def one_round(url: str, redis_pid: int, scale: float) -> dict[tuple, tuple[float, ...]]:
    # No pool timeout: with 256 in flight, some waits for a connection passed 1 s.
    pool = BlockingConnectionPool.from_url(url, max_connections=32, timeout=None)
    client = Redis(connection_pool=pool)
    lean = await Connection.open(address(url))
    piped = TurnPipeline(client)
    sha = await client.script_load(scripts.SEND)
    now = int(time.time() * 1000)
    await client.zadd(scripts.NODES, {"node-a": now, "node-b": now})
    await client.hset(scripts.channel_count_key("key", "node-b"), "news", 3)
    route = scripts.route("key", "c", "news")
    publish = ("PUBLISH", route, MESSAGE)
    evalsha = ("EVALSHA", sha, 0, 30.0, "key", "node-a", "c", "news", MESSAGE, route)
    figures = {}
    for name, args in (("PUBLISH", publish), ("EVALSHA", evalsha)):
        calls: dict[str, Call] = {
            "redis-py": lambda args=args: client.execute_command(*args),
            "redis-py pipe": lambda args=args: piped.call(*args),
            "lean": lambda args=args: lean.command(*args),
        }
        for in_flight in IN_FLIGHT:
            for client_name, call in calls.items():
                total = int(COMMANDS[in_flight] * scale)
                figures[name, in_flight, client_name] = await run_case(
                    call, in_flight, total, redis_pid
                )
    lean.close()
    await client.aclose()
    await pool.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="commands per case, x")
    args = parser.parse_args()
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("needs redis-server")
    port = free_port()
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    redis = subprocess.Popen([*command, "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        url = f"redis://127.0.0.1:{port}/0"
        rounds = [asyncio.run(one_round(url, redis.pid, args.scale)) for _ in range(args.rounds)]
    finally:
        redis.terminate()
        redis.wait(5)
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Run of {when} UTC, {args.rounds} rounds, load average {load}; medians.\n")
    print("| command | in flight | client | commands/s | client CPU / cmd | Redis CPU / cmd |")
    print("|---|---:|---|---:|---:|---:|")
    for key in rounds[0]:
        rate, cpu, redis_cpu = (statistics.median(r[key][i] for r in rounds) for i in range(3))
        name, in_flight, client_name = key
        row = f"| {name} | {in_flight} | {client_name} | {rate:,.0f} | {cpu:.1f} us |"
        print(f"{row} {redis_cpu:.1f} us |")


if __name__ == "__main__":
    main()
