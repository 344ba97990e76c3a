"""Starting and stopping the servers the side-by-side scripts measure: ours and the original.

Why apart: bench/compare.py, bench/cluster.py and bench/hundred_k.py all start
servers the same way (a fresh process on a free port, one fd per connection,
optionally pinned to a CPU), and the original 1.0.1 is installed once, from
PyPI, into ``.venv-original``.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-original"
KEY, SECRET = "key", "secret"


def say(text: str) -> None:
    print(f"[compare] {text}", file=sys.stderr, flush=True)


# -- servers ----------------------------------------------------------------------


def ensure_original() -> Path:
    """The original's ``thunderpush`` script, installed from PyPI if missing."""
    script = VENV / "bin" / "thunderpush"
    if script.exists():
        return script
    say(f"installing the original Thunderpush 1.0.1 into {VENV}")
    pip = str(VENV / "bin" / "pip")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([pip, "install", "--no-deps", "thunderpush==1.0.1"], check=True)
    subprocess.run([pip, "install", "tornado==6.6.1", "sockjs-tornado==1.0.7", "simplejson"],
                   check=True)  # fmt: skip
    return script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_preexec(cpu: int | None) -> Callable[[], None]:
    """Runs in the server's child process: one fd per connection, optional pinning."""

    def setup() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return setup


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen
    port: int
    log_path: Path
    # More processes whose CPU and memory are the server's (nginx's worker).
    children: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid, *self.children]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not gone within 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(
    kind: str,
    workdir: Path,
    original: Path | None,
    python: str,
    cpu: int | None,
    extra: Sequence[str] = (),
    port: int | None = None,
) -> Server:
    """Starts one server (on ``port``, else a free one); returns once it accepts connections.

    ``extra``: more options for ours (``--redis-url`` for a cluster node).

    The readiness check opens and closes a TCP connection.  Every server gets
    it; for ours (asyncio transports on glibc) that first EOF also puts malloc
    in the steady state a server reaches in production (see RESULTS.md).
    """
    port = port or free_port()
    pid_path = workdir / f"{kind}-{port}.pid"
    log_path = workdir / f"{kind}-{port}.log"
    args = ["-p", str(port), "-H", "127.0.0.1", "--pid-path", str(pid_path), KEY, SECRET]
    env = dict(os.environ)
    if kind == "ours":
        command = [python, "-m", "thunderpush", *args, *extra]
    else:
        # Run the script from its own venv, with nothing of this repo on the path.
        command = [str(original), *args]
        env.pop("PYTHONPATH", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT if kind == "ours" else workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=server_preexec(cpu),
        )
    return wait_listening(Server(kind, proc, port, log_path))


def wait_listening(server: Server) -> Server:
    """``server`` once it accepts connections (bounded: it is killed if it never does)."""
    kind, proc, port, log_path = server.kind, server.proc, server.port, server.log_path
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{kind} server did not start: {log_path.read_text()}") from None
            time.sleep(0.05)
