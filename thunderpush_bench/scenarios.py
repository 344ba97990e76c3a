"""One run of one scenario against one server: set up, publish, drain, judge.

Why one object holds the run: every scenario shares the same steps (open and
verify the sessions, measure the server's memory, publish flat out, then at a
fixed rate), and the report's verdict needs all of them.  The opening and
publishing themselves are callback chains (``drivers``); this module only
orders them and turns the counters into the report's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from thunderpush_bench import BenchError
from thunderpush_bench.clients import HTTPClient, Receiver, WSClient
from thunderpush_bench.drivers import Opener, Phase, Publisher
from thunderpush_bench.measure import SATURATED_PERCENT, Meter, Tally, percentiles, proc_rss_kib

SCENARIOS = ("fanout", "users", "publish", "idle")

PROGRESS_SECONDS = 2.0
POLL_SECONDS = 0.002


class Bench:
    """One run of one scenario against one server."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        url = urlsplit(args.url)
        if url.scheme != "http" or not url.hostname:
            raise BenchError(f"--url must be http://HOST:PORT, not {args.url!r}")
        self.host = url.hostname
        self.port = url.port or 80
        self.host_header = url.netloc
        self.api_prefix = f"/api/1.0.0/{quote(args.key, safe='')}/"
        token = os.urandom(3).hex()
        self.channel = f"{args.channel}-{token}"
        self.user_prefix = f"bench-{token}-"
        self.tally = Tally()
        self.clients: list[WSClient] = []
        self.receiver: Receiver | None = None
        self.opener: Opener | None = None
        self.http: list[HTTPClient] = []
        self.warnings: list[str] = []
        self.status: Callable[[], str] = lambda: "starting"
        self.report: dict[str, Any] = {
            "scenario": args.scenario,
            "url": args.url,
            "connections": 0 if args.scenario == "publish" else args.connections,
        }

    # progress

    def say(self, text: str) -> None:
        if not self.args.quiet:
            print(f"[bench] {text}", file=sys.stderr, flush=True)

    async def progress(self) -> None:
        """Prints the current status every few seconds until cancelled."""
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            self.say(self.status())

    # API

    async def api_connect(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            _, client = await asyncio.wait_for(
                loop.create_connection(
                    lambda: HTTPClient(self.host_header, self.args.secret), self.host, self.port
                ),
                self.args.request_timeout,
            )
            self.http.append(client)

    async def api(self, method: str, path: str) -> tuple[int, Any]:
        """One small API call on the first HTTP connection (setup checks only)."""
        client = self.http[0]
        status, body = await asyncio.wait_for(
            client.request(client.head(method, self.api_prefix + path, None)),
            self.args.request_timeout,
        )
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, None

    async def watchdog(self) -> None:
        """Bounds every API request and handshake without a timer for each."""
        while True:
            await asyncio.sleep(0.5)
            for client in self.http:
                client.expire(self.args.request_timeout)
            if self.opener is not None:
                self.opener.expire(self.args.request_timeout)

    # connections

    def hello(self, index: int) -> bytes:
        user = f"{self.user_prefix}{index}"
        commands = [f"CONNECT {user}:{self.args.key}"]
        if self.args.scenario in ("fanout", "idle"):
            commands.append(f"SUBSCRIBE {self.channel}")
        return json.dumps(commands).encode()

    async def open_connections(self) -> None:
        """Opens N sessions (see ``Opener``); every one of them, or says why not."""
        n = self.args.connections
        self.receiver = Receiver(asyncio.get_running_loop())
        sample = 100 if self.args.sample is None else self.args.sample
        opener = self.opener = Opener(self, self.receiver, n, sample)
        self.status = lambda: f"opening: {len(self.clients)}/{n} open"
        await opener.start(min(self.args.open_concurrency, n))
        self.opener = None
        detail = ", ".join(f"{why} ({count})" for why, count in opener.failures.most_common(3))
        if opener.failed:
            self.warnings.append(f"{opener.failed} connections failed: {detail}")
        if not self.clients:
            raise BenchError(f"no connection could be opened: {detail}")

    async def verify_connections(self) -> bool:
        """Polls the API until the server lists every opened session (bounded)."""
        n = len(self.clients)
        deadline = time.monotonic() + 10 + n / 200
        count = 0
        while time.monotonic() < deadline:
            status, body = await self.api("GET", "users/")
            if status != 200:
                raise BenchError(f"GET users/ answered {status}: {body} (wrong key or secret?)")
            count = body["count"]
            if count >= n:
                break
            self.status = lambda count=count: f"waiting for the server: {count}/{n} users online"
            await asyncio.sleep(0.02)
        else:
            self.warnings.append(f"only {count} of {n} users online on the server")
            return False
        if self.args.scenario in ("fanout", "idle"):
            status, body = await self.api("GET", f"channels/{self.channel}/")
            listed = len(body["users"]) if status == 200 else 0
            if listed < n:
                self.warnings.append(f"only {listed} of {n} connections in {self.channel}")
                return False
        return True

    async def setup(self) -> None:
        """Opens the connections, checks them with the API, measures memory."""
        pid = self.args.server_pid
        rss_before = proc_rss_kib(pid) if pid else None
        meter = Meter(pid)
        await self.open_connections()
        verified = await self.verify_connections()
        figures = meter.stop(len(self.clients), "connection")
        self.report["setup"] = {
            "opened": len(self.clients),
            "verified": verified,
            "connections_per_s": round(len(self.clients) / figures["seconds"], 1),
            **figures,
        }
        self.say(
            f"setup: {len(self.clients)} connections in {figures['seconds']:.2f} s"
            f" ({self.report['setup']['connections_per_s']:.0f}/s)"
        )
        self.status = lambda: "setup done"
        if pid:
            await asyncio.sleep(self.args.settle)
            rss_after = proc_rss_kib(pid)
            self.report["memory"] = {
                "rss_before_kib": rss_before,
                "rss_after_kib": rss_after,
                "rss_per_connection_kib": round((rss_after - rss_before) / len(self.clients), 2),
            }
        # The connections live until the end: keep the cyclic GC off them.
        gc.collect()
        gc.freeze()

    # publishing

    def target(self, seq: int) -> tuple[str, int]:
        """API path of publish ``seq`` and how many deliveries it should make."""
        if self.args.scenario == "users":
            index = seq % len(self.clients)
            return f"users/{self.user_prefix}{index}/", 1
        if self.args.scenario == "fanout":
            return f"channels/{self.channel}/", len(self.clients)
        return f"channels/{self.channel}/", 0

    def body(self, seq: int) -> bytes:
        """The published JSON: sequence number, send time, optional padding."""
        body = b'{"seq": %d, "t": %.6f}' % (seq, time.perf_counter())
        short = self.args.size - len(body)
        if short > 10:
            body = b'{"seq": %d, "pad": "%s", "t": %.6f}' % (
                seq,
                b"x" * (short - 10),
                time.perf_counter(),
            )
        return body

    async def publish_phase(self, name: str, messages: int, rate: float | None) -> dict[str, Any]:
        """Publishes ``messages`` (at ``rate`` per second, or flat out), then drains."""
        phase = Phase(name)
        received_before = self.tally.received
        self.tally.latencies = []
        duration = self.args.duration if rate is None else None
        started = time.perf_counter()

        def pace(seq: int) -> float | None:
            now = time.perf_counter()
            if duration is not None and now - started > duration:
                return None
            return 0.0 if rate is None else started + seq / rate - now

        def status() -> str:
            got = self.tally.received - received_before
            return f"{name}: {phase.published}/{messages} published, {got} delivered"

        self.status = status
        meter = Meter(self.args.server_pid)
        seqs = iter(range(messages))
        publishers = [Publisher(self, client, seqs, phase, pace) for client in self.http]
        for publisher in publishers:
            publisher.next()
        await asyncio.gather(*(publisher.done for publisher in publishers))
        end = await self.drain(phase, received_before)
        delivered = self.tally.received - received_before
        unit = "request" if self.args.scenario == "publish" else "delivery"
        figures = meter.stop(phase.published if unit == "request" else delivered, unit, end)
        result = self.phase_report(phase, delivered, figures)
        if rate is not None:
            result["rate_target"] = rate
        return result

    async def drain(self, phase: Phase, received_before: int) -> float:
        """Waits for outstanding deliveries; returns when the last one arrived.

        Bounded: gives up once nothing has arrived for ``--drain`` seconds.
        """
        target = received_before + phase.expected
        last = self.tally.received
        last_change = time.perf_counter()
        while self.tally.received < target:
            await asyncio.sleep(POLL_SECONDS)
            now = time.perf_counter()
            if self.tally.received != last:
                last, last_change = self.tally.received, now
            elif now - last_change > self.args.drain:
                break
        return last_change if self.tally.received < target else time.perf_counter()

    def phase_report(self, phase: Phase, delivered: int, figures: dict[str, Any]) -> dict[str, Any]:
        seconds = figures["seconds"]
        result: dict[str, Any] = {
            "published": phase.published,
            "failed": phase.failed,
            "publish_per_s": round(phase.published / seconds, 1),
        }
        if self.args.scenario != "publish":
            result.update(
                expected=phase.expected,
                api_count=phase.api_count,
                delivered=delivered,
                lost=phase.expected - delivered,
                deliveries_per_s=round(delivered / seconds, 1),
                latency_ms=percentiles(self.tally.latencies),
            )
            if delivered > phase.expected:
                self.warnings.append(
                    f"{phase.name}: {delivered - phase.expected} more deliveries than expected"
                    " (duplicates?)"
                )
            if phase.api_count != phase.expected:
                self.warnings.append(
                    f"{phase.name}: the API reported {phase.api_count} deliveries,"
                    f" {phase.expected} expected"
                )
        result["request_ms"] = percentiles(phase.request_times)
        result.update(figures)
        if phase.statuses.keys() - {200}:
            result["statuses"] = {str(k): v for k, v in sorted(phase.statuses.items())}
        if figures["bench_cpu_percent"] >= SATURATED_PERCENT:
            self.warnings.append(
                f"{phase.name}: the bench used {figures['bench_cpu_percent']:.0f}% of a core;"
                " it may have been the bottleneck, so its figures are lower bounds"
            )
        return result

    async def idle_phase(self) -> dict[str, Any]:
        """Holds the connections open, idle, and measures what the server spends."""
        seconds = self.args.idle_seconds
        self.status = lambda: f"idle: holding {len(self.clients)} connections for {seconds} s"
        meter = Meter(self.args.server_pid)
        await asyncio.sleep(seconds)
        figures = meter.stop(len(self.clients), "connection")
        figures["unexpected_closes"] = self.tally.unexpected_closes
        return figures

    # the whole run

    async def run(self) -> dict[str, Any]:
        progress = asyncio.ensure_future(self.progress())
        watchdog = asyncio.ensure_future(self.watchdog())
        try:
            await self.api_connect(self.args.concurrency)
            await self.scenario()
        finally:
            progress.cancel()
            watchdog.cancel()
            gc.unfreeze()
            if self.receiver is not None:
                self.receiver.close()
            for http in self.http:
                if http.transport is not None:
                    http.transport.close()
        return self.finish()

    async def scenario(self) -> None:
        args = self.args
        name = args.scenario
        if name != "publish":
            await self.setup()
        if name == "idle":
            self.report["idle"] = await self.idle_phase()
            return
        messages = args.messages
        self.say(f"{name}: publishing {messages} messages flat out")
        self.report["full"] = await self.publish_phase("full speed", messages, None)
        if name != "publish" and args.rate > 0 and args.rate_messages > 0:
            self.say(f"{name}: publishing {args.rate_messages} messages at {args.rate}/s")
            self.report["rate"] = await self.publish_phase(
                f"{args.rate}/s", args.rate_messages, args.rate
            )

    def finish(self) -> dict[str, Any]:
        report = self.report
        lost = sum(abs(report.get(p, {}).get("lost", 0)) for p in ("full", "rate"))
        miscounted = any(
            report[p]["api_count"] != report[p]["expected"]
            for p in ("full", "rate")
            if "api_count" in report.get(p, {})
        )
        failed = sum(report.get(p, {}).get("failed", 0) for p in ("full", "rate"))
        setup = report.get("setup", {"verified": True, "opened": 0})
        report["unexpected_closes"] = self.tally.unexpected_closes
        report["close_codes"] = dict(self.tally.close_codes)
        report["errors"] = dict(self.tally.errors)
        if self.tally.unexpected_closes:
            self.warnings.append(f"{self.tally.unexpected_closes} connections closed by the server")
        report["warnings"] = self.warnings
        opened_all = self.args.scenario == "publish" or setup["opened"] == self.args.connections
        report["ok"] = bool(
            setup["verified"]
            and opened_all
            and not lost
            and not miscounted
            and not failed
            and not self.tally.unexpected_closes
        )
        return report
