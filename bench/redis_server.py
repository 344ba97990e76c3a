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
from typing import Protocol

from bench.servers import free_port


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


class Backend(Protocol):
    """What the nodes of a benchmark join: their options, and the PIDs whose CPU is Redis's."""

    def options(self) -> tuple[str, ...]: ...

    def pids(self) -> list[int]: ...

    def stop(self) -> None: ...


class OneRedis(Redis):
    """One ``redis-server`` as a ``Backend``."""

    def options(self) -> tuple[str, ...]:
        return ("--redis-url", self.url)

    def pids(self) -> list[int]:
        return [self.proc.pid]


class ThreeMasters:
    """A three-master Redis Cluster of our own as a ``Backend`` (the tests'
    ``RedisCluster``: ``redis-cli --cluster create``), every master a seed."""

    def __init__(self, workdir: Path) -> None:
        # Imported here: only a cluster run needs the tests' support (and pytest).
        from tests.support.cluster import RedisCluster

        directory = workdir / "redis-cluster"
        directory.mkdir()
        self.cluster = RedisCluster(directory)
        self.cluster.create()

    def options(self) -> tuple[str, ...]:
        seeds = [option for url in self.cluster.urls for option in ("--redis-url", url)]
        return ("--redis-cluster", *seeds)

    def pids(self) -> list[int]:
        return [server.proc.pid for server in self.cluster.servers if server.proc is not None]

    def stop(self) -> None:
        self.cluster.destroy()
