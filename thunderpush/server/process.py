"""The server's life as a process: logging, the PID file, serving, clean shutdown.

``thunderpush -p 8000 key secret`` runs in the foreground and logs to stderr,
as supervisord and systemd expect.  SIGTERM and Ctrl-C stop it cleanly: no new
connections, every session closed with a code that tells clients to reconnect,
the PID file removed, exit status 0.
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


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set, then close every session and return."""
    server = build(config)
    await server.start()
    await server.door.listen(config.port, config.host)
    logger.info("Thunderpush %s listening on %s:%d", __version__, config.host or "*", config.port)
    await stop.wait()
    logger.info("Shutting down...")
    await shut_down(server, *protocol.SERVER_SHUTDOWN)


async def shut_down(server: Server, code: int, reason: str) -> None:
    """Stop accepting, close every session with ``code``, wait (bounded) for clients,
    leave the cluster."""
    server.door.stop()
    server.router.close_all(code, reason)
    try:
        await asyncio.wait_for(server.door.close_all_connections(), SHUTDOWN_GRACE_SECONDS)
    except asyncio.TimeoutError:
        logger.warning("Some connections were still open after %.0f s.", SHUTDOWN_GRACE_SECONDS)
    server.apps.disconnect_all()
    await server.stop()


async def _serve_until_signalled(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, stop)


def run(config: Config) -> None:
    """Run a server for ``config`` until SIGTERM or Ctrl-C."""
    configure_logging(config.verbose)
    with PIDFile(config.pid_path):
        try:
            asyncio.run(_serve_until_signalled(config))
        except ConfigError as error:
            raise SystemExit(f"Thunderpush cannot start: {error}") from None
