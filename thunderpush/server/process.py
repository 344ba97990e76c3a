"""The server's life as a process: logging, the PID file, serving, signals, clean shutdown.

``thunderpush -p 8000 key secret`` runs in the foreground and logs to stderr,
as supervisord and systemd expect.  SIGTERM and Ctrl-C stop it cleanly: no new
connections, ``/ready`` says 503, every session closed with a code that tells
clients to reconnect, in batches over ``drain_seconds`` (a second signal closes
the rest at once), the PID file removed, exit status 0.  SIGHUP reopens the log
file and reloads what the configuration file may change
(``thunderpush.server.reload``).  A server that cannot start says why in one
line and exits with ``USAGE_EXIT`` (the settings are wrong) or ``START_EXIT``
(the host refuses them), leaving no PID file.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import gc
import logging
import os
import pwd
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from thunderpush import __version__
from thunderpush.config import Config, ConfigError
from thunderpush.core import protocol
from thunderpush.observe.drain import drain
from thunderpush.observe.endpoints import listen_for_metrics
from thunderpush.server import logs
from thunderpush.server.application import Server, build
from thunderpush.server.reload import reload_settings

logger = logging.getLogger("thunderpush")

# How long shutdown waits for clients to take their close frames.
SHUTDOWN_GRACE_SECONDS = 2.0
# Exit statuses (docs/quickstart.rst): a setting is wrong (the command line, the
# configuration file, the environment), or the host refuses one (a port in use,
# an address it does not have, a PID or log file it cannot write).
USAGE_EXIT = 2
START_EXIT = 3

# Reads the configuration again (file, environment, flags), for SIGHUP.
Reload = Callable[[], Config]


class StartupError(Exception):
    """The host refuses what the settings ask for; the message says what and how to fix it."""


class PIDFile:
    """Holds an exclusive lock on the PID file for as long as the server runs.

    A file left behind by a crashed process is not locked, so it is reused; a
    file locked by a live process means another server is running.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> PIDFile:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StartupError(self._why(error)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StartupError(
                f"another Thunderpush is already running with the PID file {self.path}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _why(self, error: OSError) -> str:
        """What is wrong with the PID path, in the operator's terms."""
        path = self.path
        folder = os.path.dirname(os.path.abspath(path))
        if error.errno == errno.EISDIR:
            return f"the PID path {path} is a folder; give a file path with --pid-path"
        if error.errno == errno.ENOENT:
            return f"the folder {folder} of the PID file does not exist"
        if error.errno in (errno.EACCES, errno.EPERM) and os.path.exists(path):
            owner = _user(os.stat(path).st_uid)
            return (
                f"cannot write the PID file {path}, which belongs to {owner} "
                f"(left by another user's server?); remove it or give another --pid-path"
            )
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"cannot create the PID file {path}: {folder} is not writable by {_user()}"
        return f"cannot open the PID file {path}: {error.strerror}"

    def fileno(self) -> int:
        """The locked file's descriptor (a forked worker closes its copy)."""
        return self._fd

    def __exit__(self, *exc_info: Any) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)


def _user(uid: int | None = None) -> str:
    uid = os.geteuid() if uid is None else uid
    try:
        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"user {uid}"


def configure_logging(config: Config) -> logs.LogOutput:
    """INFO (start-up line, statistics, warnings) by default, everything with ``-v``.

    Raises ``StartupError`` when the log file cannot be opened.
    """
    try:
        return logs.configure(config.log_format, config.log_file, config.verbose)
    except OSError as error:
        raise StartupError(
            f"cannot open the log file {config.log_file}: {error.strerror}"
        ) from None


async def listen(server: Server, config: Config) -> None:
    """Listens on the configured port and address, or ``StartupError`` saying why not."""
    where = f"port {config.port}" + (f" on {config.host}" if config.host else "")
    try:
        await server.door.listen(config.port, config.host)
    except socket.gaierror as error:
        raise StartupError(f"cannot resolve the address {config.host}: {error.strerror}") from None
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            reason = f"{where} is in use (another server on the port?)"
        elif error.errno == errno.EADDRNOTAVAIL:
            reason = f"this host has no address {config.host}"
        elif error.errno == errno.EACCES:
            reason = f"no permission to listen on {where} (ports below 1024 need privileges)"
        else:
            reason = f"cannot listen on {where}: {error.strerror}"
        raise StartupError(reason) from None


async def serve(
    config: Config,
    stop: asyncio.Event,
    hurry: asyncio.Event | None = None,
    output: logs.LogOutput | None = None,
    reload: Reload | None = None,
) -> None:
    """Serve until ``stop`` is set, then drain (until ``hurry``) and return.

    SIGHUP reopens ``output``'s file and applies what ``reload`` reads.
    """
    server = build(config)
    metrics = None
    if config.metrics_port is not None:
        try:
            metrics = listen_for_metrics(
                server.figures, server.metrics, config.metrics_port, config.host
            )
        except ConfigError as error:
            raise StartupError(str(error)) from None
    await server.start()
    await listen(server, config)
    host = config.host or "*"
    logger.info("Thunderpush %s listening on %s:%d", __version__, host, server.door.port)
    loop = asyncio.get_running_loop()
    if output is not None or reload is not None:  # the process's own server (``run``)
        loop.add_signal_handler(signal.SIGHUP, _hang_up, server, output, reload)
        _freeze_start_up()
    statistics = None
    if config.stats_interval:
        statistics = loop.create_task(logs.log_statistics(server.figures, config.stats_interval))
    try:
        await stop.wait()
    finally:
        if statistics is not None:
            statistics.cancel()
    logger.info("Shutting down...")
    await shut_down(server, config.drain_seconds, hurry)
    if metrics is not None:
        metrics.stop()


def _freeze_start_up() -> None:
    """Leaves what start-up made (modules, classes, the server's parts: about
    45,000 objects) out of every later garbage collection.

    Why: with thousands of connections open, each full collection walks every
    object tracked; these live as long as the process and are never garbage.
    """
    gc.collect()
    gc.freeze()


def _hang_up(server: Server, output: logs.LogOutput | None, reload: Reload | None) -> None:
    """SIGHUP: a new log file (logrotate), then the configuration file again."""
    if output is not None:
        output.reopen()
    logger.info("SIGHUP: log file reopened, reloading the configuration.")
    if reload is not None:
        reload_settings(server, reload)


async def shut_down(
    server: Server, drain_seconds: float = 0.0, hurry: asyncio.Event | None = None
) -> None:
    """Stop accepting, say not ready, close every session (9010) over ``drain_seconds``,
    wait (bounded) for clients, leave the cluster."""
    server.draining = True
    server.door.stop()
    await drain(server.websockets, drain_seconds, protocol.SERVER_SHUTDOWN, hurry)
    try:
        await asyncio.wait_for(server.door.close_all_connections(), SHUTDOWN_GRACE_SECONDS)
    except asyncio.TimeoutError:
        logger.warning("Some connections were still open after %.0f s.", SHUTDOWN_GRACE_SECONDS)
    server.apps.disconnect_all()
    await server.stop()


async def _serve_until_signalled(
    config: Config, output: logs.LogOutput, reload: Reload | None
) -> None:
    stop, hurry = asyncio.Event(), asyncio.Event()

    def signalled() -> None:
        (hurry if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signalled)
    await serve(config, stop, hurry, output, reload)


def run(config: Config, reload: Reload | None = None) -> None:
    """Run a server for ``config`` until SIGTERM or Ctrl-C; SIGHUP calls ``reload``."""
    # Until the event loop handles it, and after: a SIGHUP must never stop the server.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        output = configure_logging(config)
        with PIDFile(config.pid_path):
            asyncio.run(_serve_until_signalled(config, output, reload))
    except ConfigError as error:
        exit_with(USAGE_EXIT, f"Thunderpush cannot start: {error}.")
    except StartupError as error:
        exit_with(START_EXIT, f"Thunderpush cannot start: {error}.")


def exit_with(status: int, line: str) -> NoReturn:
    """The one line on stderr (and in the log file, if there is one), then ``status``."""
    print(line, file=sys.stderr)
    root = logging.getLogger()
    if any(getattr(handler, "stream", None) is not sys.stderr for handler in root.handlers):
        logger.critical(line)
    raise SystemExit(status)
