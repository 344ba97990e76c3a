"""The reconnect storm: every connection drops at once and opens again at once.

Why: after a restart or a network blip every browser reconnects together, and
until the last one is subscribed again it misses what is published.  The
figure is how long that takes, judged by the server (its API lists, or Nchan's
publisher counts, every new subscription), and the server CPU it took.  The
connections reopen as they opened (``Opener``: ``--open-concurrency``
handshakes in flight, the server's accept backlog being what it is) and
subscribe to a channel of their own, so that an old session the server has
not yet let go cannot be counted as a new one.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from thunderpush_bench.nchan import nchan_subscribers

if TYPE_CHECKING:
    from thunderpush_bench.scenarios import Bench

POLL_SECONDS = 0.02


async def subscribed(bench: Bench) -> int:
    """Sessions the server has subscribed to the run's channel."""
    if bench.args.client == "nchan":
        return await nchan_subscribers(bench, bench.channel)
    status, body = await bench.api("GET", f"channels/{bench.channel}/")
    return len(body["users"]) if status == 200 else 0


async def wait_subscribed(bench: Bench, n: int) -> bool:
    """Polls the server until ``n`` sessions are subscribed to the run's channel (bounded);
    ``bench.subscribed`` is the last count."""
    deadline = time.perf_counter() + 10 + n / 200
    while time.perf_counter() < deadline:
        bench.subscribed = count = await subscribed(bench)
        if count >= n:
            return True
        bench.status = lambda count=count: f"waiting for the server: {count}/{n} subscribed"
        await asyncio.sleep(POLL_SECONDS)
    count = bench.subscribed
    bench.warnings.append(f"only {count} of {n} connections subscribed to {bench.channel}")
    return False


async def storm_phase(bench: Bench) -> dict[str, Any]:
    """Closes every open connection, opens them all again, waits until all are subscribed."""
    old, n = bench.clients, len(bench.clients)
    bench.clients = []
    bench.channel = f"{bench.channel}-again"
    meter = bench.meter()
    for client in old:
        client.close()
    bench.say(f"storm: {n} connections closed, reopening")
    await bench.open_connections()
    opened = time.perf_counter()
    await wait_subscribed(bench, n)
    count = bench.subscribed
    figures = meter.stop(n, "connection")
    bench.say(f"storm: {count} subscribed again in {figures['seconds']:.2f} s")
    return {
        "connections": n,
        "reopened": len(bench.clients),
        "subscribed": count,
        "failed": n - count,
        "reopened_s": round(opened - meter.wall, 4),
        **figures,
    }
