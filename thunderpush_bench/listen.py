"""The listen scenario: connections that wait for what somebody else publishes.

Why: one process of the bench holds at most its open-file limit of
connections (20,000 on the machine of bench/RESULTS.md), so 100,000 come
from several processes (``bench/hundred_k.py``), and one publish must reach
all of them.  Each process opens its share, subscribed to one channel named
exactly ``--channel`` (no run token: every process the same), says so on
stderr with ``LISTEN_MARK``, then counts deliveries until every connection
has ``--messages`` of them.  The harness publishes once everyone listens, and
reads the wall-clock times each process reports (one machine, one clock).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thunderpush_bench.scenarios import Bench

# The line on stderr (printed even with -q) that says: all open, publish now.
LISTEN_MARK = "listen: all open"
POLL_SECONDS = 0.002


async def listen_phase(bench: Bench) -> dict[str, Any]:
    """Waits for ``--messages`` deliveries on every connection; when they came.

    Bounded: ``--idle-seconds`` for the first delivery, then ``--drain``
    seconds without one.
    """
    args = bench.args
    tally = bench.tally
    expected = len(bench.clients) * args.messages
    opened_at = time.time()
    print(f"[bench] {LISTEN_MARK}: {len(bench.clients)} connections", file=sys.stderr, flush=True)
    bench.status = lambda: f"listen: {tally.received}/{expected} delivered"
    first_at = last_at = None
    last, changed = 0, time.perf_counter()
    deadline = changed + args.idle_seconds
    while tally.received < expected:
        await asyncio.sleep(POLL_SECONDS)
        now = time.perf_counter()
        if tally.received != last:
            last, changed, last_at = tally.received, now, time.time()
            first_at = first_at or last_at
        elif now > (deadline if first_at is None else changed + args.drain):
            break
    return {
        "connections": len(bench.clients),
        "opened_at": opened_at,
        # When the last session that opened did (opened_at also waits for failures).
        "last_open_at": bench.last_open_at,
        "expected": expected,
        "delivered": tally.received,
        "lost": expected - tally.received,
        # Wall-clock (time.time()) of the first and the last delivery seen.
        "first_at": first_at,
        "last_at": last_at,
    }
