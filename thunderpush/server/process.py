"""The server's life as a process: logging, the PID file, serving, clean shutdown.

``thunderpush -p 8000 key secret`` runs in the foreground and logs to stderr,
as supervisord and systemd expect.  SIGTERM and Ctrl-C stop it cleanly: no new
connections, ``/ready`` says 503, every session closed with a code that tells
clients to reconnect, in batches over ``drain_seconds`` (a second signal closes
the rest at once), the PID file removed, exit status 0.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sys
from typing import Any

from thunderpush import __version__
from thunderpush.core import protocol
from thunderpush.observe.drain import drain
from thunderpush.observe.endpoints import listen_for_metrics
from thunderpush.server.application import Server, build
from thunderpush.server.config import Config, ConfigError

logger = logging.getLogger("thunderpush")

# How long shutdown waits for clients to take their close frames.
SHUTDOWN_GRACE_SECONDS = 2.0


class PIDFile:
    """Holds an exclusive lock on the PID file for as long as the server runs.

    A file left behind by a crashed process is not locked, so it is reused; a
    file locked by a live process means another server is running.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> PIDFile:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SystemExit(f"Thunderpush is already running (PID file: {self.path}).") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def fileno(self) -> int:
        """The locked file's descriptor (a forked worker closes its copy)."""
        return self._fd

    def __exit__(self, *exc_info: Any) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)


def configure_logging(verbose: bool) -> None:
    """INFO (start-up line, warnings) by default, everything with ``-v``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # One line per HTTP request is debugging detail, not operations news.
    logging.getLogger("tornado.access").setLevel(logging.DEBUG if verbose else logging.WARNING)


async def serve(config: Config, stop: asyncio.Event, hurry: asyncio.Event) -> None:
    """Serve until ``stop`` is set, then drain (until ``hurry``) and return."""
    server = build(config)
    metrics = None
    if config.metrics_port is not None:
        metrics = listen_for_metrics(server, config.metrics_port, config.host)
    await server.start()
    await server.door.listen(config.port, config.host)
    logger.info("Thunderpush %s listening on %s:%d", __version__, config.host or "*", config.port)
    await stop.wait()
    logger.info("Shutting down...")
    await shut_down(server, config.drain_seconds, hurry)
    if metrics is not None:
        metrics.stop()


async def shut_down(
    server: Server, drain_seconds: float = 0.0, hurry: asyncio.Event | None = None
) -> None:
    """Stop accepting, say not ready, close every session (9010) over ``drain_seconds``,
    wait (bounded) for clients, leave the cluster."""
    server.draining = True
    server.door.stop()
    await drain(server.router, drain_seconds, protocol.SERVER_SHUTDOWN, hurry)
    try:
        await asyncio.wait_for(server.door.close_all_connections(), SHUTDOWN_GRACE_SECONDS)
    except asyncio.TimeoutError:
        logger.warning("Some connections were still open after %.0f s.", SHUTDOWN_GRACE_SECONDS)
    server.apps.disconnect_all()
    await server.stop()


async def _serve_until_signalled(config: Config) -> None:
    stop, hurry = asyncio.Event(), asyncio.Event()

    def signalled() -> None:
        (hurry if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signalled)
    await serve(config, stop, hurry)


def run(config: Config) -> None:
    """Run a server for ``config`` until SIGTERM or Ctrl-C."""
    configure_logging(config.verbose)
    with PIDFile(config.pid_path):
        try:
            asyncio.run(_serve_until_signalled(config))
        except ConfigError as error:
            raise SystemExit(f"Thunderpush cannot start: {error}") from None
