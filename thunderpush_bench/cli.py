"""The ``thunderpush-bench`` command: its options, the open-file limit, the exit status.

Why the options are checked here and not in the run: a mistyped option or a
wrong ``--server-pid`` should stop the bench before it opens a single socket.
The exit status is 0 only when every connection opened and nothing was lost,
so that scripts can trust it without reading the report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
from collections.abc import Sequence
from typing import Any

from thunderpush_bench import BenchError
from thunderpush_bench.nchan import NCHAN_SCENARIOS
from thunderpush_bench.report import format_report
from thunderpush_bench.scenarios import (
    CLIENTS,
    NO_LISTENERS,
    PUSHER_SCENARIOS,
    SCENARIOS,
    Bench,
)

PROG = "thunderpush-bench"

DEFAULT_MESSAGES = {
    "fanout": 100,
    "users": 5000,
    "publish": 5000,
    "trigger": 5000,
    "idle": 0,
    "rolling": 0,
    "channels": 5000,
    "listen": 1,
    "storm": 0,
}
DEFAULT_CONCURRENCY = {
    "fanout": 4, "users": 8, "publish": 8, "trigger": 8, "idle": 1, "rolling": 1, "channels": 8,
    "listen": 1, "storm": 1,
}  # fmt: skip
DEFAULT_URL = "http://127.0.0.1:8080"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Load generator for Thunderpush: fan-out, user sends, publish API, idle.",
    )
    add = parser.add_argument
    add(
        "--url",
        action="append",
        help=f"server address (default {DEFAULT_URL}); repeat for the nodes of a cluster:"
        " connections and API connections are spread over them",
    )
    add("--key", default="key", help="public API key (default: key)")
    add("--secret", default="secret", help="API secret (default: secret)")
    add(
        "--app-id",
        default="1",
        help="the trigger scenario: the app's Pusher id, digits as the pusher library wants"
        " (default: 1; start the server with the same --app-id)",
    )
    add("--scenario", choices=SCENARIOS, default="fanout")
    add(
        "--client",
        choices=CLIENTS,
        default="sockjs",
        help="what the connections speak: Thunderpush's SockJS (default), or Pusher Channels"
        " (/app/<key>?protocol=7, fanout and idle only)",
    )
    add("-n", "--connections", type=int, default=1000, help="websocket connections (default 1000)")
    add(
        "-m",
        "--messages",
        type=int,
        help="messages published flat out (default: fanout 100, users, channels and publish"
        " 5000); listen: messages each connection waits for (default 1)",
    )
    add("--duration", type=float, help="stop publishing flat out after this many seconds")
    add(
        "--rate",
        type=float,
        default=5.0,
        help="messages/s of the fixed-rate phase; 0 skips it (default 5)",
    )
    add(
        "--rate-messages",
        type=int,
        default=50,
        help="messages of the fixed-rate phase (default 50)",
    )
    add(
        "-c",
        "--concurrency",
        type=int,
        help="API connections publishing at once (default: fanout 4, users and publish 8)",
    )
    add("--size", type=int, default=0, help="pad each published body to this many bytes")
    add(
        "--sample",
        type=int,
        help="connections whose deliveries are timed (default 100)",
    )
    add("--open-concurrency", type=int, default=100, help="handshakes in flight (default 100)")
    add("--channel", default="bench", help="channel name prefix")
    add(
        "--idle-seconds",
        type=float,
        default=2.0,
        help="how long the idle scenario holds; listen: how long it waits for the first delivery",
    )
    add("--settle", type=float, default=0.5, help="seconds before reading the server's RSS")
    add("--drain", type=float, default=5.0, help="give up after this long without a delivery")
    add("--request-timeout", type=float, default=30.0, help="per handshake or API request")
    add("--timeout", type=float, default=900.0, help="whole run")
    add(
        "--server-pid",
        type=int,
        action="append",
        help="server PID: CPU per delivery and RSS per connection; repeat for a cluster's"
        " nodes (added up)",
    )
    add(
        "--redis-pid",
        type=int,
        action="append",
        help="Redis's PID: its CPU, reported apart from the server's; repeat for a Redis"
        " Cluster's masters (added up)",
    )
    add(
        "--bystander-pid",
        type=int,
        action="append",
        help="PID of a node that holds none of the connections (no --url of the run): its CPU,"
        " reported apart, is what it pays for messages it has no subscriber for; repeatable",
    )
    add("--json", action="store_true", help="print one JSON object on stdout")
    add("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    args.url = args.url or [DEFAULT_URL]
    args.server_pid = args.server_pid or []
    args.bystander_pid = args.bystander_pid or []
    args.redis_pid = args.redis_pid or []
    if args.messages is None:
        args.messages = DEFAULT_MESSAGES[args.scenario]
    if args.concurrency is None:
        args.concurrency = DEFAULT_CONCURRENCY[args.scenario]
    for name in ("connections", "concurrency", "open_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.messages < 0 or args.rate < 0 or args.rate_messages < 0:
        parser.error("--messages, --rate and --rate-messages cannot be negative")
    if not re.fullmatch(r"[a-zA-Z0-9_\-=@,.;]{1,50}", args.channel):
        parser.error("--channel: 1-50 letters, digits or _-=@,.; (a suffix is added)")
    pids = [("--server-pid", pid) for pid in args.server_pid]
    pids += [("--bystander-pid", pid) for pid in args.bystander_pid]
    pids += [("--redis-pid", pid) for pid in args.redis_pid]
    for option, pid in pids:
        if not os.path.exists(f"/proc/{pid}/stat"):
            parser.error(f"no process {pid} ({option})")
    if args.client == "pusher" and args.scenario not in PUSHER_SCENARIOS:
        parser.error(f"--client pusher: only --scenario {' or '.join(PUSHER_SCENARIOS)}")
    if args.client == "nchan" and args.scenario not in NCHAN_SCENARIOS:
        parser.error(f"--client nchan: only --scenario {', '.join(NCHAN_SCENARIOS)}")
    if args.scenario == "rolling" and (args.rate <= 0 or args.rate_messages < 1):
        parser.error("--scenario rolling publishes at --rate: it must be above 0")
    return args


def raise_fd_limit(wanted: int) -> str | None:
    """Raises RLIMIT_NOFILE's soft limit to the hard one: one fd per socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        return f"the open-file limit ({soft}) is below the {wanted} sockets asked for"
    return None


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    try:
        return await asyncio.wait_for(bench.run(), args.timeout)
    except asyncio.TimeoutError:
        raise BenchError(f"the run took longer than --timeout {args.timeout:.0f} s") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``thunderpush-bench ARGS`` (``sys.argv[1:]`` when ``argv`` is None).

    Returns 0 when nothing was lost or refused.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    wanted = (0 if args.scenario in NO_LISTENERS else args.connections) + args.concurrency + 32
    limit_warning = raise_fd_limit(wanted)
    try:
        report = asyncio.run(_run(args))
    except BenchError as error:
        report = {"scenario": args.scenario, "url": " ".join(args.url), "ok": False}
        report["error"] = str(error)
        print(f"{PROG}: {error}", file=sys.stderr)
    except (OSError, asyncio.TimeoutError) as error:
        report = {"scenario": args.scenario, "url": " ".join(args.url), "ok": False}
        report["error"] = repr(error)
        print(f"{PROG}: cannot reach {' '.join(args.url)}: {error!r}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    if limit_warning:
        report.setdefault("warnings", []).append(limit_warning)
    if args.json:
        print(json.dumps(report))
    elif "error" not in report:
        print(format_report(report))
    return 0 if report.get("ok") else 1
