"""One run of one scenario against one server: set up, publish, drain, judge.

Why one object holds the run: every scenario shares the same steps (open and
verify the sessions, measure the server's memory, publish flat out, then at a
fixed rate), and the report's verdict needs all of them.  The opening and
publishing themselves are callback chains (``drivers``); this module only
orders them and turns the counters into the report's figures.  The phases
with figures of their own are apart: publishing (``publishing``), the rolling
restart (``rolling``) and the listening processes (``listen``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from thunderpush_bench import BenchError
from thunderpush_bench.api_client import HTTPClient
from thunderpush_bench.clients import (
    PusherClient,
    Receiver,
    SockJSClient,
    WSClient,
    pusher_subscribe,
)
from thunderpush_bench.drivers import Mover, Opener
from thunderpush_bench.listen import listen_phase
from thunderpush_bench.measure import Meter, Tally, proc_rss_kib
from thunderpush_bench.nchan import PUBLISHER, SUBSCRIBER, NchanClient
from thunderpush_bench.publishing import NO_LISTENERS, publish_phase, pusher_trigger
from thunderpush_bench.rolling import rolling_phase
from thunderpush_bench.storm import storm_phase
from thunderpush_bench.verify import SUBSCRIBING, verify_connections

SCENARIOS = (
    "fanout", "users", "publish", "trigger", "idle", "rolling", "channels", "listen", "storm"
)  # fmt: skip
# What the connections speak: Thunderpush's SockJS protocol, Pusher Channels
# (protocol 7 at /app/<key>, as pusher-js), which only subscribes to a channel,
# or Nchan's websocket subscriber (and then the API is Nchan's publisher: ``nchan``).
CLIENTS = ("sockjs", "pusher", "nchan")
PUSHER_SCENARIOS = ("fanout", "idle")
PUSHER_PATH = "/app/{key}?protocol=7&client=thunderpush-bench&version=1"

PROGRESS_SECONDS = 2.0


class Bench:
    """One run of one scenario against one server."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # (host, port, Host header) of each --url.
        self.targets: list[tuple[str, int, str]] = []
        for address in args.url:
            url = urlsplit(address)
            if url.scheme != "http" or not url.hostname:
                raise BenchError(f"--url must be http://HOST:PORT, not {address!r}")
            self.targets.append((url.hostname, url.port or 80, url.netloc))
        nchan = args.client == "nchan"
        self.api_prefix = PUBLISHER if nchan else f"/api/1.0.0/{quote(args.key, safe='')}/"
        token = os.urandom(3).hex()
        # listen: every process of the run on the one channel named by --channel.
        listen = args.scenario == "listen"
        self.channel = args.channel if listen else f"{args.channel}-{token}"
        self.user_prefix = f"bench-{token}-"
        # The channels scenario: which one-subscriber channel each publish goes to.
        self.random = random.Random(token)
        self.tally = Tally()
        self.clients: list[WSClient] = []
        # The server's last count of the sessions subscribed to the channel (``storm``).
        self.subscribed = 0
        self.receiver: Receiver | None = None
        self.opener: Opener | None = None
        self.last_open_at: float | None = None
        # The rolling scenario: what each connection's user has seen, and who moves them.
        self.seen: list[set[int]] = []
        self.mover: Mover | None = None
        self.http: list[HTTPClient] = []
        # trigger: the one signed Pusher request every publish replays.
        self.signed = pusher_trigger(args, self.targets[0][2], self.channel)
        self.warnings: list[str] = []
        self.status: Callable[[], str] = lambda: "starting"
        self.report: dict[str, Any] = {
            "scenario": args.scenario,
            "url": " ".join(args.url),
            "connections": 0 if args.scenario in NO_LISTENERS else args.connections,
            "client": args.client,
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
        """``count`` API connections, spread over the nodes in turn.

        The rolling scenario publishes through the first ``--url`` only: the
        node that stays up while the others restart.
        """
        loop = asyncio.get_running_loop()
        nodes = 1 if self.args.scenario == "rolling" else len(self.targets)
        secret = None if self.args.client == "nchan" else self.args.secret
        for index in range(count):
            host, port, netloc = self.targets[index % nodes]
            _, client = await asyncio.wait_for(
                loop.create_connection(
                    lambda netloc=netloc: HTTPClient(netloc, secret), host, port
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

    def meter(self) -> Meter:
        return Meter(self.args.server_pid, self.args.redis_pid, self.args.bystander_pid)

    # connections

    def hello(self, index: int) -> bytes:
        user = f"{self.user_prefix}{index}"
        commands = [f"CONNECT {user}:{self.args.key}"]
        if self.args.scenario in SUBSCRIBING:
            commands.append(f"SUBSCRIBE {self.channel}")
        elif self.args.scenario == "channels":
            commands.append(f"SUBSCRIBE {self.channel}-{index}")
        return json.dumps(commands).encode()

    def home(self, index: int) -> int:
        """The ``--url`` connection ``index`` opens on: the first N/k on the first, and so on.

        In blocks rather than in turn, so that the sampled connections (every
        N/sample-th) are spread over every node too.
        """
        return index * len(self.targets) // self.args.connections

    def address(self, target: int) -> tuple[str, int]:
        host, port, _ = self.targets[target]
        return host, port

    def session(
        self,
        index: int,
        target: int,
        sampled: bool,
        on_open: Callable[[WSClient, str | None], None],
    ) -> WSClient:
        """The (unconnected) session of connection ``index`` on node ``target``.

        A Pusher session has no user of its own: the server names it by its
        socket id, which ``GET users/`` counts as a user all the same.
        """
        assert self.receiver is not None
        if self.args.client == "pusher":
            kind: type[WSClient] = PusherClient
            path = PUSHER_PATH.format(key=quote(self.args.key, safe=""))
            hello = pusher_subscribe(self.channel)
        elif self.args.client == "nchan":
            kind, path, hello = NchanClient, SUBSCRIBER.format(channel=self.channel), b""
        else:
            kind = SockJSClient
            path = f"/connect/{index % 1000:03d}/{self.user_prefix}{index}/websocket"
            hello = self.hello(index)
        client = kind(
            self.tally,
            self.receiver,
            self.targets[target][2],
            path,
            hello,
            sampled,
            on_open,
            index=index,
            target=target,
            seen=self.seen[index] if self.seen else None,
        )
        if self.mover is not None:
            client.on_close = self.mover.closed
        return client

    async def open_connections(self) -> None:
        """Opens N sessions (see ``Opener``); every one of them, or says why not."""
        n = self.args.connections
        if self.receiver is None:  # the storm opens them a second time
            self.receiver = Receiver(asyncio.get_running_loop())
        if self.args.scenario == "rolling":
            self.seen = [set() for _ in range(n)]
            self.mover = Mover(self, self.receiver, self.args.request_timeout)
        sample = 100 if self.args.sample is None else self.args.sample
        opener = self.opener = Opener(self, self.receiver, n, sample)
        self.status = lambda: f"opening: {len(self.clients)}/{n} open"
        await opener.start(min(self.args.open_concurrency, n))
        self.opener = None
        detail = ", ".join(f"{why} ({count})" for why, count in opener.failures.most_common(3))
        self.report["per_url"] = opener.per_url
        self.last_open_at = opener.last_open_at
        if opener.failed:
            self.warnings.append(f"{opener.failed} connections failed: {detail}")
        if not self.clients:
            raise BenchError(f"no connection could be opened: {detail}")

    async def setup(self) -> None:
        """Opens the connections, checks them with the API, measures memory."""
        pids = self.args.server_pid
        rss_before = sum(map(proc_rss_kib, pids))
        meter = self.meter()
        await self.open_connections()
        verified = await verify_connections(self)
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
        if pids:
            await asyncio.sleep(self.args.settle)
            rss_after = sum(map(proc_rss_kib, pids))
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
        if self.args.client == "nchan":  # fanout or publish, to Nchan's publisher
            return self.channel, len(self.clients)
        if self.args.scenario == "fanout":
            return f"channels/{self.channel}/", len(self.clients)
        if self.args.scenario == "channels":
            # A channel at random, whichever node its one subscriber is on.
            index = self.clients[self.random.randrange(len(self.clients))].index
            return f"channels/{self.channel}-{index}/", 1
        # publish: nobody listens; rolling: judged by sequence numbers, not counts.
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

    async def idle_phase(self) -> dict[str, Any]:
        """Holds the connections open, idle, and measures what the server spends."""
        seconds = self.args.idle_seconds
        self.status = lambda: f"idle: holding {len(self.clients)} connections for {seconds} s"
        meter = self.meter()
        await asyncio.sleep(seconds)
        figures = meter.stop(len(self.clients), "connection")
        figures["unexpected_closes"] = self.tally.unexpected_closes
        return figures

    # the whole run

    async def run(self) -> dict[str, Any]:
        progress = asyncio.ensure_future(self.progress())
        watchdog = asyncio.ensure_future(self.watchdog())
        try:
            # listen: the harness publishes; an API connection here would only
            # take a file from a worker that holds its full share of sessions.
            if self.args.scenario != "listen":
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
        if name not in NO_LISTENERS:
            await self.setup()
        if name == "idle":
            self.report["idle"] = await self.idle_phase()
            return
        if name == "rolling":
            self.report["rolling"] = await rolling_phase(self)
            return
        if name == "storm":
            self.report["storm"] = await storm_phase(self)
            return
        if name == "listen":
            self.report["listen"] = await listen_phase(self)
            return
        messages = args.messages
        self.say(f"{name}: publishing {messages} messages flat out")
        self.report["full"] = await publish_phase(self, "full speed", messages, None)
        if name not in NO_LISTENERS and args.rate > 0 and args.rate_messages > 0:
            self.say(f"{name}: publishing {args.rate_messages} messages at {args.rate}/s")
            self.report["rate"] = await publish_phase(
                self, f"{args.rate}/s", args.rate_messages, args.rate
            )

    def finish(self) -> dict[str, Any]:
        report = self.report
        phases = ("full", "rate", "rolling", "listen", "storm")
        lost = sum(abs(report.get(p, {}).get("lost", 0)) for p in phases)
        miscounted = any(
            report[p]["api_count"] != report[p]["expected"]
            for p in ("full", "rate")
            if "api_count" in report.get(p, {})
        )
        failed = sum(report.get(p, {}).get("failed", 0) for p in phases)
        failed += report.get("rolling", {}).get("move_failed", 0)
        miscounted = miscounted or not report.get("rolling", {}).get("consistent", True)
        setup = report.get("setup", {"verified": True, "opened": 0})
        report["unexpected_closes"] = self.tally.unexpected_closes
        report["close_codes"] = dict(self.tally.close_codes)
        report["errors"] = dict(self.tally.errors)
        if self.tally.unexpected_closes:
            self.warnings.append(f"{self.tally.unexpected_closes} connections closed by the server")
        report["warnings"] = self.warnings
        opened_all = self.args.scenario in NO_LISTENERS or setup["opened"] == self.args.connections
        report["ok"] = bool(
            setup["verified"]
            and opened_all
            and not lost
            and not miscounted
            and not failed
            and not self.tally.unexpected_closes
            and not self.tally.duplicates
        )
        return report
