"""Thunderpush servers as separate processes: ours, or the original for comparison.

Tests that need the real command line (signals, PID file, logging) or the
original Thunderpush start servers with ``start_server_process``; the waits are
bounded and a server that fails to start says why.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import KEY, SECRET

OURS = (sys.executable, "-m", "thunderpush")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """``thunderpush`` as users run it: a separate process on a free port."""

    proc: subprocess.Popen
    port: int
    pid_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Signals the server and returns its exit status (killed if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


def start_server_process(
    tmp_path: Path,
    *extra: str,
    port: int | None = None,
    command: Sequence[str] = OURS,
    key: str = KEY,
) -> ServerProcess:
    """Starts ``command`` (ours by default) and waits (bounded) until it accepts connections.

    The client key and secret come first, as in ``thunderpush KEY SECRET -p 8000``:
    where a key could be mistaken for a subcommand, that is where it would be.
    """
    port = port or free_port()
    pid_path = tmp_path / f"thunderpush-{port}.pid"
    log_path = tmp_path / f"thunderpush-{port}.log"
    command = [*command, key, SECRET, "-p", str(port), "-H", "127.0.0.1"]
    command += ["--pid-path", str(pid_path), *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stderr=log, stdout=log, env={**os.environ})
    wait_until_listening(proc, port, log_path)
    return ServerProcess(proc, port, pid_path, log_path)


def wait_until_listening(proc: subprocess.Popen, port: int, log_path: Path) -> None:
    """Waits (bounded) until ``proc`` accepts connections on ``port``; kills it if it never does."""
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{proc.args} did not start: {log_path.read_text()}") from None
            time.sleep(0.05)


def refused_start(tmp_path: Path, *extra: str, port: int | None = None) -> tuple[int, str]:
    """Runs our server with ``extra`` arguments, which must stop it at start (bounded).

    Returns its exit status and what it wrote to stderr.
    """
    command = [*OURS, KEY, SECRET, "-p", str(port or free_port()), "-H", "127.0.0.1"]
    command += ["--pid-path", str(tmp_path / "thunderpush.pid"), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stderr


# What a server must never write, whatever its clients or its Redis do.
_BAD_LOG_LINE = re.compile(r"^Traceback|\bERROR\b", re.MULTILINE)


def bad_log_lines(node: ServerProcess) -> list[str]:
    """The lines of ``node``'s log that are a traceback or an error."""
    return [line for line in node.log().splitlines() if _BAD_LOG_LINE.search(line)]
