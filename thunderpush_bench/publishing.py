"""Publishing phases: what the trigger scenario replays, and publishing measured end to end.

Why apart from ``scenarios``: every scenario but ``idle`` and ``listen``
publishes the same way (on every API connection at once, flat out or paced,
then waits for the deliveries to drain), and turning its counters into a
phase's figures and warnings is a job of its own.  ``Bench`` holds the run's
state; these functions take it, as ``listen.listen_phase`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from thunderpush_bench.drivers import Phase, Publisher
from thunderpush_bench.measure import SATURATED_PERCENT, percentiles

if TYPE_CHECKING:
    from thunderpush_bench.scenarios import Bench

# Scenarios that only publish, to nobody: the cost of an API request itself.
NO_LISTENERS = ("publish", "trigger")

POLL_SECONDS = 0.002


def pusher_trigger(args: argparse.Namespace, host: str, channel: str) -> bytes | None:
    """For the trigger scenario, ``POST /apps/<id>/events`` as the ``pusher`` library
    signs it (one event to ``channel``), else None.

    Signed once and replayed, as Pusher accepts within the timestamp's window
    (600 s), so the bench spends nothing on signatures and the server's work
    per request is the same as for distinct triggers.  The library is only
    needed for this scenario.
    """
    if args.scenario != "trigger":
        return None
    import pusher  # noqa: PLC0415 (optional: only the trigger scenario needs it)

    client = pusher.Pusher(app_id=args.app_id, key=args.key, secret=args.secret)
    data = json.dumps({"seq": 0, "pad": "x" * max(args.size - 20, 0)})
    request = client._pusher_client.trigger.make_request(channel, "bench", data)
    body = request.body.encode() if isinstance(request.body, str) else request.body
    head = (
        f"POST {request.signed_path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def publish_phase(
    bench: Bench, name: str, messages: int, rate: float | None
) -> dict[str, Any]:
    """Publishes ``messages`` (at ``rate`` per second, or flat out), then drains."""
    phase = Phase(name)
    received_before = bench.tally.received
    bench.tally.latencies = []
    duration = bench.args.duration if rate is None else None
    started = time.perf_counter()

    def pace(seq: int) -> float | None:
        now = time.perf_counter()
        if duration is not None and now - started > duration:
            return None
        return 0.0 if rate is None else started + seq / rate - now

    def status() -> str:
        got = bench.tally.received - received_before
        return f"{name}: {phase.published}/{messages} published, {got} delivered"

    bench.status = status
    meter = bench.meter()
    await publish(bench, phase, messages, pace)
    end = await drain(bench, phase, received_before)
    delivered = bench.tally.received - received_before
    unit = "request" if bench.args.scenario in NO_LISTENERS else "delivery"
    figures = meter.stop(phase.published if unit == "request" else delivered, unit, end)
    result = phase_report(bench, phase, delivered, figures)
    if rate is not None:
        result["rate_target"] = rate
    return result


async def publish(
    bench: Bench, phase: Phase, messages: int, pace: Callable[[int], float | None]
) -> None:
    """Publishes ``messages`` on every API connection at once, paced by ``pace``."""
    seqs = iter(range(messages))
    publishers = [Publisher(bench, client, seqs, phase, pace) for client in bench.http]
    for publisher in publishers:
        publisher.next()
    await asyncio.gather(*(publisher.done for publisher in publishers))


async def drain(bench: Bench, phase: Phase, received_before: int) -> float:
    """Waits for outstanding deliveries; returns when the last one arrived.

    Bounded: gives up once nothing has arrived for ``--drain`` seconds.
    """
    target = received_before + phase.expected
    last = bench.tally.received
    last_change = time.perf_counter()
    while bench.tally.received < target:
        await asyncio.sleep(POLL_SECONDS)
        now = time.perf_counter()
        if bench.tally.received != last:
            last, last_change = bench.tally.received, now
        elif now - last_change > bench.args.drain:
            break
    return last_change if bench.tally.received < target else time.perf_counter()


def phase_report(
    bench: Bench, phase: Phase, delivered: int, figures: dict[str, Any]
) -> dict[str, Any]:
    seconds = figures["seconds"]
    result: dict[str, Any] = {
        "published": phase.published,
        "failed": phase.failed,
        "publish_per_s": round(phase.published / seconds, 1),
    }
    if bench.args.scenario not in NO_LISTENERS:
        result.update(
            expected=phase.expected,
            api_count=phase.api_count,
            delivered=delivered,
            lost=phase.expected - delivered,
            deliveries_per_s=round(delivered / seconds, 1),
            latency_ms=percentiles(bench.tally.latencies),
        )
        if delivered > phase.expected:
            bench.warnings.append(
                f"{phase.name}: {delivered - phase.expected} more deliveries than expected"
                " (duplicates?)"
            )
        if phase.api_count != phase.expected:
            bench.warnings.append(
                f"{phase.name}: the API reported {phase.api_count} deliveries,"
                f" {phase.expected} expected"
            )
    result["request_ms"] = percentiles(phase.request_times)
    result.update(figures)
    if phase.statuses.keys() - {200}:
        result["statuses"] = {str(k): v for k, v in sorted(phase.statuses.items())}
    if figures["bench_cpu_percent"] >= SATURATED_PERCENT:
        bench.warnings.append(
            f"{phase.name}: the bench used {figures['bench_cpu_percent']:.0f}% of a core;"
            " it may have been the bottleneck, so its figures are lower bounds"
        )
    return result
