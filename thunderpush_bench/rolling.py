"""The rolling scenario: publishing at a fixed rate while the nodes of a cluster restart.

Why apart from ``scenarios``: its verdict is its own.  Every delivery's
sequence number is recorded per connection, and the run is judged by what
each connection saw (moved, missed, lost, seen twice), not by a count of
deliveries.  The sessions a restarting node ends are reopened elsewhere by
``drivers.Mover``; ``Bench`` holds the run's state, and these functions take
it, as ``listen.listen_phase`` does.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

from thunderpush_bench.drivers import Phase
from thunderpush_bench.measure import percentiles
from thunderpush_bench.publishing import publish

if TYPE_CHECKING:
    from thunderpush_bench.scenarios import Bench

# The line on stderr (printed even with -q) that says: restart a node now.
ROLLING_MARK = "rolling: publishing"


async def rolling_phase(bench: Bench) -> dict[str, Any]:
    """Publishes at ``--rate`` while nodes restart, then reads what each connection saw.

    Every delivery's sequence number is recorded per connection (its user,
    across moves): a connection whose node ended it and that was reopened
    elsewhere reports the messages it missed meanwhile; any other missing
    message is lost, and any message seen twice is a duplicate.
    """
    args = bench.args
    mover = bench.mover
    assert mover is not None
    messages, rate = args.rate_messages, args.rate
    phase = Phase("rolling")
    received_before = bench.tally.received
    bench.tally.latencies = []
    started = time.perf_counter()

    def pace(seq: int) -> float:
        return started + seq / rate - time.perf_counter()

    bench.status = lambda: (
        f"rolling: {phase.published}/{messages} published,"
        f" {len(mover.moved)} moved, {len(mover.closed_at)} moving"
    )
    # Printed even with -q: a harness waits for this line to restart a node.
    print(
        f"[bench] {ROLLING_MARK} {messages} messages at {rate}/s: restart a node now",
        file=sys.stderr,
        flush=True,
    )
    meter = bench.meter()
    await publish(bench, phase, messages, pace)
    end = await settle(bench, phase)
    delivered = bench.tally.received - received_before
    figures = meter.stop(delivered, "delivery", end)
    accepted = set(phase.seqs)
    missing = [len(accepted - seen) for seen in bench.seen]
    missed = [missing[index] for index in mover.ended]
    lost = sum(missing) - sum(missed)
    unpublished = sum(len(seen - accepted) for seen in bench.seen)
    move_failed = sum(mover.failures.values()) + len(mover.closed_at)
    # From the first answer to the last: the rate the node let the bench reach.
    answers = phase.accepted_at
    span = answers[-1] - answers[0] if answers else 0.0
    publish_per_s = (len(answers) - 1) / span if span > 0 else 0.0
    moving = (mover.first_closed, mover.last_opened)
    result: dict[str, Any] = {
        "published": phase.published,
        "failed": phase.failed,
        "rate_target": rate,
        # Each publish waits for the answer to the one before on its API
        # connection: a busy node slows the rate down, and the movers can
        # only miss what was published while they moved.
        "publish_per_s": round(publish_per_s, 1),
        "moving_ms": None if None in moving else round((moving[1] - moving[0]) * 1000, 1),
        "published_while_moving": 0 if None in moving else _between(answers, *moving),
        "connections": len(bench.seen),
        "delivered": delivered,
        "moved": len(mover.ended),
        "reopened": len(mover.moved),
        "move_failed": move_failed,
        "reconnect_ms": percentiles(mover.times),
        "missed": sum(missed),
        "missed_max": max(missed, default=0),
        "lost": lost,
        "duplicates": bench.tally.duplicates,
        "seen_unpublished": unpublished,
        "latency_ms": percentiles(bench.tally.latencies),
        "request_ms": percentiles(phase.request_times),
        **figures,
    }
    if not mover.ended:
        bench.warnings.append(
            "rolling: no connection moved; restart a node (not the first --url)"
            f" after the line '{ROLLING_MARK}'"
        )
    if bench.tally.duplicates:
        bench.warnings.append(f"rolling: {bench.tally.duplicates} deliveries were duplicates")
    if lost:
        bench.warnings.append(f"rolling: connections that did not move lost {lost} messages")
    # The deliveries counted on the wire against the sequence numbers seen.
    expected = phase.published * len(bench.seen) - sum(missing)
    result["consistent"] = delivered == expected + bench.tally.duplicates + unpublished
    if not result["consistent"]:
        bench.warnings.append(
            f"rolling: {delivered} deliveries counted, {expected} by the sequence numbers"
        )
    if publish_per_s < 0.9 * rate:
        bench.warnings.append(
            f"rolling: published {publish_per_s:.1f}/s, not the {rate:g}/s asked for"
            " (each publish waits for the one before: raise --concurrency);"
            " what the movers missed is at that rate"
        )
    if move_failed:
        detail = ", ".join(f"{why} ({n})" for why, n in mover.failures.most_common(3))
        bench.warnings.append(f"rolling: {move_failed} connections not reopened: {detail}")
    return result


async def settle(bench: Bench, phase: Phase) -> float:
    """Waits until every connection has the last message; returns when it was so.

    Bounded: gives up once nothing has arrived for ``--drain`` seconds.
    """
    last = max(phase.seqs, default=None)
    received, changed = bench.tally.received, time.perf_counter()
    while last is not None:
        assert bench.mover is not None
        if not bench.mover.closed_at and all(last in seen for seen in bench.seen):
            break
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        if bench.tally.received != received:
            received, changed = bench.tally.received, now
        elif now - changed > bench.args.drain:
            return changed
    return time.perf_counter()


def _between(times: list[float], start: float, end: float) -> int:
    return sum(start <= at <= end for at in times)
