"""Whether the server holds every connection the bench opened, before it measures.

A connection the client counts as open may not be on the server's books yet
(a CONNECT in flight, a subscription a cluster has not confirmed): figures
taken before the server lists them all would credit the server with work it
has not done.  Asked through the API (or, for Nchan, its own channel count).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from thunderpush_bench import BenchError
from thunderpush_bench.storm import wait_subscribed

if TYPE_CHECKING:
    from thunderpush_bench.scenarios import Bench

# Scenarios whose connections all subscribe to the run's channel.
SUBSCRIBING = ("fanout", "idle", "rolling", "listen", "storm")


async def verify_connections(bench: Bench) -> bool:
    """Polls the API until the server lists every opened session (bounded).

    Not for listen: other processes' sessions count too, and the
    harness checks the count its one publish is answered with.
    """
    if bench.args.scenario == "listen":
        return True
    n = len(bench.clients)
    if bench.args.client == "nchan":  # no users: its count of the channel's subscribers
        return await wait_subscribed(bench, n)
    deadline = time.monotonic() + 10 + n / 200
    count = 0
    while time.monotonic() < deadline:
        status, body = await bench.api("GET", "users/")
        if status != 200:
            raise BenchError(f"GET users/ answered {status}: {body} (wrong key or secret?)")
        count = body["count"]
        if count >= n:
            break
        bench.status = lambda count=count: f"waiting for the server: {count}/{n} users online"
        await asyncio.sleep(0.02)
    else:
        bench.warnings.append(f"only {count} of {n} users online on the server")
        return False
    if bench.args.scenario in SUBSCRIBING:
        status, body = await bench.api("GET", f"channels/{bench.channel}/")
        listed = len(body["users"]) if status == 200 else 0
        if listed < n:
            bench.warnings.append(f"only {listed} of {n} connections in {bench.channel}")
            return False
    return True
