"""The report for people: one line per figure, from the report ``--json`` prints whole.

Why it is kept apart from the run: the JSON report is what scripts (and
bench/compare.py) read, and this text is only a view of it, so that nothing
can be printed that the JSON does not hold.
"""

from __future__ import annotations

from typing import Any


def format_report(report: dict[str, Any]) -> str:
    """The report for people: one line per figure."""
    lines = [f"thunderpush bench: {report['scenario']} against {report['url']}"]
    setup = report.get("setup")
    if setup:
        lines.append(
            f"  setup       {setup['opened']} connections in {setup['seconds']:.2f} s:"
            f" {setup['connections_per_s']:.0f} connections/s"
            f" ({'verified' if setup['verified'] else 'NOT verified'} with the API)"
        )
    memory = report.get("memory")
    if memory:
        lines.append(
            f"  memory      server RSS {memory['rss_before_kib'] / 1024:.1f} ->"
            f" {memory['rss_after_kib'] / 1024:.1f} MiB:"
            f" {memory['rss_per_connection_kib']:.1f} KiB per connection"
        )
    for key, label in (("full", "full speed"), ("rate", "fixed rate")):
        phase = report.get(key)
        if phase:
            lines.extend(_format_phase(label, phase))
    rolling = report.get("rolling")
    if rolling:
        lines.extend(_format_rolling(rolling))
    listen = report.get("listen")
    if listen:
        lines.append(
            f"  listen      {listen['delivered']} of {listen['expected']} delivered"
            f" to {listen['connections']} connections"
        )
    idle = report.get("idle")
    if idle:
        lines.append(f"  idle        {idle['seconds']:.1f} s: {_cpu(idle)}")
    for warning in report.get("warnings", []):
        lines.append(f"  warning     {warning}")
    for error, count in report.get("errors", {}).items():
        lines.append(f"  error       {error} ({count}x)")
    lines.append(f"  result      {'ok' if report.get('ok') else 'NOT ok'}")
    return "\n".join(lines)


def _cpu(figures: dict[str, Any]) -> str:
    text = f"bench CPU {figures['bench_cpu_percent']:.0f}% of a core"
    if "bystander_cpu_percent" in figures:
        text = f"bystander nodes' CPU {figures['bystander_cpu_percent']:.0f}% of a core, " + text
    if "redis_cpu_percent" in figures:
        text = f"Redis CPU {figures['redis_cpu_percent']:.0f}% of a core, " + text
    if "server_cpu_percent" in figures:
        text = f"server CPU {figures['server_cpu_percent']:.0f}% of a core, " + text
    return text


def _format_rolling(phase: dict[str, Any]) -> list[str]:
    reconnect = phase["reconnect_ms"]
    lines = [
        f"  rolling     {phase['published']} published at {phase['publish_per_s']:g}/s"
        f" ({phase['rate_target']:g}/s asked), {phase['failed']} failed;"
        f" {phase['delivered']} delivered to {phase['connections']} connections",
        f"              {phase['moved']} connections moved, {phase['reopened']} reopened,"
        f" {phase['move_failed']} not; they missed {phase['missed']} messages"
        f" (at most {phase['missed_max']} each) of the {phase['published_while_moving']}"
        f" published in the {phase['moving_ms'] or 0:g} ms of the move",
        f"              {phase['lost']} lost by the others, {phase['duplicates']} duplicates",
    ]
    if reconnect["samples"]:
        lines.append(
            f"              reconnect p50 {reconnect['p50']:.1f} ms,"
            f" p99 {reconnect['p99']:.1f} ms, max {reconnect['max']:.1f} ms"
        )
    latency = phase["latency_ms"]
    if latency["samples"]:
        lines.append(
            f"              latency p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms,"
            f" max {latency['max']:.1f} ms ({latency['samples']} samples)"
        )
    lines.append(f"              {_cpu(phase)}")
    return lines


def _format_phase(label: str, phase: dict[str, Any]) -> list[str]:
    lines = []
    if "delivered" in phase:
        lines.append(
            f"  {label:<11} {phase['published']} published, {phase['delivered']}/"
            f"{phase['expected']} delivered in {phase['seconds']:.2f} s:"
            f" {phase['deliveries_per_s']:.0f} deliveries/s, {phase['lost']} lost"
        )
        latency = phase["latency_ms"]
        if latency["samples"]:
            lines.append(
                f"              latency p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms,"
                f" p99 {latency['p99']:.1f} ms ({latency['samples']} samples)"
            )
        per = phase.get("server_cpu_us_per_delivery")
    else:
        request = phase["request_ms"]
        lines.append(
            f"  {label:<11} {phase['published']} requests in {phase['seconds']:.2f} s:"
            f" {phase['publish_per_s']:.0f} requests/s, p50 {request['p50']:.2f} ms,"
            f" p99 {request['p99']:.2f} ms, {phase['failed']} failed"
        )
        per = phase.get("server_cpu_us_per_request")
    cpu = _cpu(phase)
    unit = "delivery" if "delivered" in phase else "request"
    redis = phase.get(f"redis_cpu_us_per_{unit}")
    if redis is not None:
        cpu = f"Redis CPU {redis:.1f} us per {unit}; " + cpu
    if per is not None:
        cpu = f"server CPU {per:.1f} us per {unit}; " + cpu
    lines.append(f"              {cpu}")
    return lines
