"""Many connections on one box: ``thunderpush --workers W`` on one Redis, one publish to all.

    python -m bench.hundred_k [--connections 100000] [--workers 5] [--processes 10]

Run from the repository root.  It starts its own ``redis-server`` and one
``thunderpush --workers W`` (ports PORT to PORT+W-1 on 127.0.0.1), then
``--processes`` load generators at once (``thunderpush-bench --scenario
listen``), process i on port PORT + i % W, together opening ``--connections``
SockJS websocket sessions subscribed to one channel.  Once every process says
all its sessions are open, it publishes one message to that channel through
the first port and waits for every process to count its delivery.

It prints a Markdown table for bench/RESULTS.md: the time to open them all,
the workers' memory (RSS, all W added up) and CPU per connection, the API's
count, and the time from the publish to the last delivery, with the load
average.  The exit status is 1 unless every session opened and got the
message.

Why several generator processes: a process may hold 20,000 open files on the
machine of bench/RESULTS.md (hard limit), and each session is one; each
generator raises its own soft limit to the hard one.  The same limit holds
for each worker, which needs a few files of its own besides its sessions.
Every wait is bounded (``--timeout``); all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.compare_report import fmt_load, machine
from bench.redis_server import Redis
from bench.servers import KEY, ROOT, SECRET, Server, say, server_preexec
from thunderpush_bench.listen import LISTEN_MARK
from thunderpush_bench.measure import proc_rss_kib, total_cpu_seconds

CHANNEL = "everyone"


@dataclass
class Workers:
    """The ``thunderpush --workers`` parent (as a ``Server``: its stop), ports and workers' PIDs.

    Stopping the parent stops the workers: it passes SIGTERM on, and on Linux
    they also die with it if it has to be killed.
    """

    parent: Server
    ports: list[int]
    pids: list[int]

    def stop(self) -> None:
        self.parent.stop()


def free_ports(count: int) -> int:
    """A first port such that it and the ``count - 1`` after it are free.

    Below the ephemeral range (32768 and up on Linux), where the generators'
    100,000 client ports come from and linger in TIME_WAIT after a run; bound
    with SO_REUSEADDR, as the server binds them.
    """
    for _ in range(200):
        first = random.randrange(20000, 32768 - count)
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} free ports in a row")


def start_workers(args: argparse.Namespace, workdir: Path, redis: Redis) -> Workers:
    first = free_ports(args.workers)
    pid_path = workdir / "thunderpush.pid"
    command = [args.python, "-m", "thunderpush", "--workers", str(args.workers)]
    command += ["-p", str(first), "-H", "127.0.0.1", "--pid-path", str(pid_path)]
    command += ["--redis-url", redis.url, KEY, SECRET]
    with open(workdir / "workers.log", "wb") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=server_preexec(None)
        )
    ports = list(range(first, first + args.workers))
    paths = [workdir / f"thunderpush-{port}.pid" for port in ports]
    deadline = time.monotonic() + 60
    while not all(path.exists() and path.read_text().strip() for path in paths):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"workers did not start: {(workdir / 'workers.log').read_text()}")
        time.sleep(0.1)
    parent = Server("ours", proc, first, workdir / "workers.log")
    workers = Workers(parent, ports, [int(path.read_text()) for path in paths])
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    workers.stop()
                    raise RuntimeError(f"port {port} does not answer") from None
                time.sleep(0.1)
    return workers


def start_generators(args: argparse.Namespace, workdir: Path, ports: list[int]) -> list[Any]:
    """``--processes`` listeners; process i on port i % W, ``--connections`` in all."""
    procs = []
    for index in range(args.processes):
        share = args.connections // args.processes + (index < args.connections % args.processes)
        command = [args.python, "-m", "thunderpush_bench", "--scenario", "listen"]
        command += ["--url", f"http://127.0.0.1:{ports[index % len(ports)]}"]
        command += ["--key", KEY, "--secret", SECRET, "-n", str(share), "--channel", CHANNEL]
        command += ["--sample", "0", "--json", "--quiet", "--drain", "10"]
        command += ["--idle-seconds", str(args.timeout), "--timeout", str(args.timeout)]
        stderr = open(workdir / f"bench-{index}.err", "w+b")  # noqa: SIM115 (closed in finish)
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            preexec_fn=server_preexec(None),
        )
        procs.append((proc, stderr))
    return procs


def wait_listening(procs: list[Any], deadline: float, api: Api) -> bool:
    """Until every generator has printed ``LISTEN_MARK`` (False: one ended or time ran out)."""
    while time.monotonic() < deadline:
        if time.monotonic() - api.touched > 20:
            api.touch()
        marks = 0
        for proc, stderr in procs:
            stderr.seek(0)
            if LISTEN_MARK.encode() in stderr.read():
                marks += 1
            elif proc.poll() is not None:
                return False
        if marks == len(procs):
            return True
        time.sleep(0.05)
    return False


class Api:
    """The harness's one API connection, opened before the workers fill up.

    A worker holding its full share of sessions has no file left to accept
    another connection, so the publish goes over a connection opened first
    and kept alive (``touch``) while the sessions open.
    """

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"X-Thunder-Secret-Key": SECRET, "Content-Type": "application/json"}
        self.touched = time.monotonic()
        self.touch()

    def call(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        self.connection.request(method, f"/api/1.0.0/{KEY}/{path}", body, self.headers)
        answer = self.connection.getresponse()
        return answer.status, answer.read()

    def touch(self) -> None:
        """A cheap request, well within the server's keep-alive idle timeout (75 s)."""
        self.call("GET", "users/nobody/")
        self.touched = time.monotonic()

    def publish(self) -> tuple[float, int, bytes]:
        """One POST to the channel; (wall time just before it, status, body)."""
        sent_at = time.time()
        status, body = self.call("POST", f"channels/{CHANNEL}/", json.dumps({"hello": "all"}))
        return sent_at, status, body


def finish(procs: list[Any], deadline: float) -> list[dict[str, Any]]:
    """Every generator's JSON report (killed at ``deadline``)."""
    reports = []
    for proc, stderr in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        stderr.seek(0)
        try:
            reports.append(json.loads(out))
        except ValueError:
            reports.append({"ok": False, "error": stderr.read()[-2000:].decode(errors="replace")})
        stderr.close()
    return reports


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Redis, the workers, the generators, one publish; the figures."""
    redis = Redis(workdir)
    figures: dict[str, Any] = {"connections": args.connections, "workers": args.workers}
    try:
        workers = start_workers(args, workdir, redis)
        try:
            time.sleep(1)  # the workers' own start-up is not the connections' cost
            pids = workers.pids
            figures["rss_before_kib"] = sum(map(proc_rss_kib, pids))
            cpu_before = total_cpu_seconds(pids)
            api = Api(workers.ports[0])
            started = time.time()
            deadline = time.monotonic() + args.timeout
            procs = start_generators(args, workdir, workers.ports)
            try:
                listening = wait_listening(procs, deadline, api)
                figures["open_seconds"] = round(time.time() - started, 2)
                figures["all_listening"] = listening
                time.sleep(args.settle)
                figures["rss_after_kib"] = sum(map(proc_rss_kib, pids))
                figures["fds"] = [len(os.listdir(f"/proc/{pid}/fd")) for pid in pids]
                cpu_open = total_cpu_seconds(pids)
                figures["load_after_open"] = os.getloadavg()[0]
                if listening:
                    sent_at, status, body = api.publish()
                    figures["publish_status"] = status
                    figures["publish_answer"] = body.decode(errors="replace").strip()
            except OSError as error:
                figures["publish_error"] = repr(error)
            finally:
                # Nobody waits for a message that was never sent.
                sent = "publish_status" in figures
                reports = finish(procs, deadline if sent else time.monotonic() + 1)
            cpu_after = total_cpu_seconds(pids)
            figures["load_after_publish"] = os.getloadavg()[0]
            log = (workdir / "workers.log").read_text(errors="replace")
        finally:
            workers.stop()
    finally:
        redis.stop()
    listens = [report.get("listen", {}) for report in reports]
    opened = sum(report.get("setup", {}).get("opened", 0) for report in reports)
    figures.update(
        opened=opened,
        delivered=sum(listen.get("delivered", 0) for listen in listens),
        server_cpu_us_per_connection=round(1e6 * (cpu_open - cpu_before) / max(opened, 1), 1),
        log_errors=[line for line in log.splitlines() if " ERROR " in line or "Traceback" in line][
            :5
        ],
        failures=[r.get("error") or r.get("warnings") for r in reports if not r.get("ok")][:5]
        + ([figures["publish_error"]] if "publish_error" in figures else []),
    )
    # From the first generator's first connect to the last session that opened:
    # the generators' own start-up (a Python process each) left out, and so are
    # the handshakes a full worker never answers (they time out after 30 s).
    spans = [
        (listen["opened_at"] - report["setup"]["seconds"], listen["last_open_at"])
        for report, listen in zip(reports, listens, strict=True)
        if listen.get("last_open_at") and "setup" in report
    ]
    if spans:
        figures["open_span_seconds"] = round(
            max(end for _, end in spans) - min(start for start, _ in spans), 2
        )
    if "publish_status" in figures:
        last = [listen["last_at"] for listen in listens if listen.get("last_at")]
        first = [listen["first_at"] for listen in listens if listen.get("first_at")]
        figures["first_delivery_ms"] = round(1000 * (min(first) - sent_at), 1) if first else None
        figures["last_delivery_ms"] = round(1000 * (max(last) - sent_at), 1) if last else None
        figures["publish_cpu_s"] = round(cpu_after - cpu_open, 2)
    figures["ok"] = bool(
        figures.get("publish_status") == 200
        and opened == figures["delivered"] == args.connections
        and not figures["failures"]
    )
    return figures


def table(figures: dict[str, Any]) -> str:
    opened = figures["opened"]
    span = figures.get("open_span_seconds", 0.0)
    rss = figures.get("rss_after_kib", 0) - figures.get("rss_before_kib", 0)
    rows = [
        ("Connections asked for / opened / got the publish",
         f"{figures['connections']:,} / {opened:,} / {figures['delivered']:,}"),
        ("Time to open them all: first connect to last session open (all generators at once)",
         f"{span:.1f} s ({opened / max(span, 1e-9):,.0f} /s)"),
        ("From starting the generators until all said they were done (start-up and"
         " refused handshakes' 30 s timeouts included)",
         f"{figures['open_seconds']:.1f} s"),
        ("Workers' RSS before / after (all added up)",
         f"{figures['rss_before_kib'] / 1024:,.0f} / {figures.get('rss_after_kib', 0) / 1024:,.0f}"
         f" MiB"),
        ("Workers' memory per connection", f"{rss / max(opened, 1):.1f} KiB"),
        ("Workers' CPU per connection opened (all added up)",
         f"{figures['server_cpu_us_per_connection']:,.0f} us"),
        ("Open files per worker", ", ".join(f"{n:,}" for n in figures["fds"])),
        ("The publish's answer",
         f"{figures.get('publish_status')} {figures.get('publish_answer')}"),
        ("Publish to first / last delivery",
         f"{figures.get('first_delivery_ms')} / {figures.get('last_delivery_ms')} ms"),
        ("Workers' CPU from the publish to the generators' exit",
         f"{figures.get('publish_cpu_s')} s"),
        ("Load average (1 min) after opening / after the publish",
         f"{figures['load_after_open']:.2f} / {figures['load_after_publish']:.2f}"),
    ]  # fmt: skip
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in rows]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Many connections over --workers, one publish.")
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--processes", type=int, default=10, help="load generator processes")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before reading RSS")
    parser.add_argument("--timeout", type=float, default=600.0, help="the whole run, bounded")
    parser.add_argument("--python", default=sys.executable, help="python that runs both")
    parser.add_argument("--output", type=Path, help="write the figures here (JSON)")
    args = parser.parse_args()
    if min(args.connections, args.workers, args.processes) < 1:
        parser.error("--connections, --workers and --processes must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    started = datetime.now(timezone.utc)
    before = machine()
    say(f"{args.connections:,} connections over {args.workers} workers from {args.processes}"
        f" processes; load average {fmt_load(before)}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="thunderpush-100k-") as workdir:
        figures = run(args, Path(workdir))
    after = machine()
    command = " ".join(["python -m bench.hundred_k", *sys.argv[1:]])
    print(f"Run of {started:%Y-%m-%d %H:%M} UTC: `{command}`")
    print(f"Machine: {before['cpus']} x {before['cpu_model']}, Linux {before['kernel']},"
          f" Python {before['python']}; load average before {fmt_load(before)},"
          f" after {fmt_load(after)}.\n")  # fmt: skip
    print(table(figures))
    for failure in figures["failures"] + figures["log_errors"]:
        print(f"\nFAILED: {failure}")
    if args.output:
        args.output.write_text(json.dumps(figures, indent=1))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
