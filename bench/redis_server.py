"""A ``redis-server`` of our own for the cluster benchmarks, on a free port of 127.0.0.1.

Why a fresh one per run: Redis's CPU is part of what a cluster costs, and
a server shared with anything else (or holding an earlier run's keys) would
measure that too.  No persistence: nothing of a benchmark is worth a fork.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from bench.compare import free_port


class Redis:
    """A ``redis-server`` of our own on a free port, without persistence."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit(
                "the cluster benchmarks need redis-server (Debian: apt install redis-server)"
            )
        self.port = free_port()
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", *extra]
        with open(workdir / "redis.log", "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: see {workdir / 'redis.log'}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
