"""``thunderpush --workers N``: one parent process keeping N servers running.

One Python process uses one core; N workers on ports PORT to PORT+N-1 use N,
behind a load balancer (deploy/nginx.conf).  Each worker is an ordinary single
server with the same settings, so workers share messages and presence only
through Redis: more than one needs ``--redis-url``.  Supervisord and systemd
see one process: the parent holds the PID file at ``--pid-path`` (each worker
has its own beside it, with its port in the name), passes SIGTERM, SIGINT and
SIGHUP on to the workers (SIGHUP also reopens its own log file), waits for
them and exits 0; a worker that dies is started again after a pause, so one
crash does not take a port away for good.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from multiprocessing.connection import wait

from thunderpush.config import Config, ConfigError
from thunderpush.server.logs import LogOutput, name_worker
from thunderpush.server.process import (
    SHUTDOWN_GRACE_SECONDS,
    START_EXIT,
    USAGE_EXIT,
    PIDFile,
    Reload,
    StartupError,
    configure_logging,
    exit_with,
    run,
)

logger = logging.getLogger("thunderpush")

# A dead worker is started again after a pause that doubles while it keeps
# dying soon after its start (a port taken, a full disk), up to the maximum;
# one that ran for STABLE_SECONDS starts with the first pause again.
FIRST_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 10.0
STABLE_SECONDS = 30.0
# The first start must reach listening on every port within this, or nothing runs.
START_TIMEOUT_SECONDS = 30.0
# After the signal and the drain, each worker's own shutdown (bounded by its grace) and
# some slack.
STOP_TIMEOUT_SECONDS = SHUTDOWN_GRACE_SECONDS + 8.0

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Blocked across a fork, until the worker has its own handlers.
_HANDLED_SIGNALS = (*_STOP_SIGNALS, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1
_fork = multiprocessing.get_context("fork")


def checked(config: Config) -> Config:
    """``config``, or ``ConfigError`` saying why it cannot run as workers."""
    reason = ""
    if not config.redis_url:
        reason = (
            f"--workers {config.workers} needs --redis-url: without it every worker "
            "would serve only its own clients, with no messages or presence shared"
        )
    elif config.debug:
        reason = "--debug reloads the code by restarting the process; use it without --workers"
    elif not 0 < config.port <= 65536 - config.workers:
        reason = f"ports {config.port} to {config.port + config.workers - 1} are not all valid"
    if reason:
        raise ConfigError(reason)
    return config


def worker_config(config: Config, index: int) -> Config:
    """The ``index``-th worker's settings: its own port, PID file and metrics port."""
    port = config.port + index
    pid_path = worker_pid_path(config.pid_path, port)
    # Each worker's metrics on a port of its own too: --metrics-port + index.
    metrics_port = None if config.metrics_port is None else config.metrics_port + index
    return replace(config, port=port, pid_path=pid_path, metrics_port=metrics_port)


def _worker_reload(reload: Reload, index: int) -> Config:
    return worker_config(reload(), index)


def worker_pid_path(pid_path: str, port: int) -> str:
    """``/run/thunderpush.pid`` gives ``/run/thunderpush-8001.pid`` for port 8001."""
    root, extension = os.path.splitext(pid_path)
    return f"{root}-{port}{extension}"


def run_workers(config: Config, reload: Reload | None = None) -> None:
    """Run ``config.workers`` servers until SIGTERM or Ctrl-C, then stop them all."""
    try:
        checked(config)
        output = configure_logging(config)
        with PIDFile(config.pid_path) as pid_file, _wakeup_pipe() as wakeup:
            inherited = (pid_file.fileno(), *wakeup)
            Supervisor(config, wakeup, inherited, output, reload).run()
    except ConfigError as error:
        exit_with(USAGE_EXIT, f"Thunderpush cannot start: {error}.")
    except StartupError as error:
        exit_with(START_EXIT, f"Thunderpush cannot start: {error}.")


class Worker:
    """One port's server process, and when to start it again after it died."""

    def __init__(
        self, config: Config, index: int, inherited: tuple[int, ...], reload: Reload | None
    ) -> None:
        self.config = worker_config(config, index)
        self.number = index + 1  # as its log lines name it
        self.inherited = inherited
        # SIGHUP's reload sees the file as this worker runs it, so that what is
        # the same in the file is the same to the worker: no spurious warning.
        self.reload = None if reload is None else partial(_worker_reload, reload, index)
        self.process: multiprocessing.process.BaseProcess | None = None
        self.started_at = 0.0
        self.pause = FIRST_PAUSE_SECONDS
        # Set while the worker is dead: when to start it again.
        self.restart_at: float | None = None

    @property
    def port(self) -> int:
        return self.config.port

    def start(self) -> None:
        process = _fork.Process(
            target=_work,
            args=(self.config, self.number, self.inherited, os.getpid(), self.reload),
            name=f"port {self.port}",
        )
        # Blocked across the fork, so a signal cannot reach the worker while it
        # still has the parent's handlers; it unblocks them once it has its own.
        with _signals_blocked():
            process.start()
        self.process, self.started_at, self.restart_at = process, time.monotonic(), None

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def listening(self) -> bool:
        try:
            socket.create_connection((self.config.host or "127.0.0.1", self.port), 1).close()
        except OSError:
            return False
        return True

    def exit_status(self) -> str:
        assert self.process is not None
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def died(self, now: float) -> None:
        """Logs the death and schedules the next start."""
        assert self.process is not None
        if now - self.started_at >= STABLE_SECONDS:
            self.pause = FIRST_PAUSE_SECONDS
        logger.warning(
            "The worker on port %d (PID %d) %s; starting it again in %.1f s.",
            self.port,
            self.process.pid,
            self.exit_status(),
            self.pause,
        )
        self.process.close()
        self.process = None
        self.restart_at = now + self.pause
        self.pause = min(self.pause * 2, MAX_PAUSE_SECONDS)


class Supervisor:
    """Starts the workers, starts dead ones again, and stops them all on a signal."""

    def __init__(
        self,
        config: Config,
        wakeup: tuple[int, int],
        inherited: tuple[int, ...],
        output: LogOutput,
        reload: Reload | None = None,
    ) -> None:
        self.workers = [Worker(config, index, inherited, reload) for index in range(config.workers)]
        self.wakeup = wakeup[0]
        self.output = output
        self.received: list[int] = []
        self.drain_seconds = config.drain_seconds

    def run(self) -> None:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hangup)
        try:
            self._start_all()
            if not self.received:
                self._keep_running()
        finally:
            self._stop_all(self.received[0] if self.received else signal.SIGTERM)
        logger.info("Every worker has stopped.")

    def _on_signal(self, signum: int, frame: object) -> None:
        self.received.append(signum)

    def _on_hangup(self, signum: int, frame: object) -> None:
        """Each worker reloads its own configuration; the parent only has its log."""
        self.output.reopen()
        for worker in self.workers:
            if worker.alive():
                os.kill(worker.process.pid, signal.SIGHUP)

    def _start_all(self) -> None:
        """Starts every worker and waits until each listens; one that cannot stops it all."""
        first, last = self.workers[0].port, self.workers[-1].port
        logger.info("Starting %d workers on ports %d to %d.", len(self.workers), first, last)
        for worker in self.workers:
            worker.start()
        starting = list(self.workers)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while starting and not self.received:
            for worker in list(starting):
                if worker.listening():
                    starting.remove(worker)
                elif not worker.alive():
                    raise StartupError(f"the worker on port {worker.port} {worker.exit_status()}")
            if starting and time.monotonic() > deadline:
                raise StartupError(
                    f"port {starting[0].port} was not listening after {START_TIMEOUT_SECONDS:.0f} s"
                )
            self._sleep(0.05)
        if not starting:
            logger.info("Every worker is listening.")

    def _keep_running(self) -> None:
        while not self.received:
            now = time.monotonic()
            for worker in self.workers:
                if worker.restart_at is None and not worker.alive():
                    worker.died(now)
                elif worker.restart_at is not None and now >= worker.restart_at:
                    worker.start()
                    logger.info(
                        "The worker on port %d runs again (PID %d).",
                        worker.port,
                        worker.process.pid,
                    )
            restarts = [worker.restart_at for worker in self.workers if worker.restart_at]
            self._sleep(max(0.0, min(restarts) - now) if restarts else None)

    def _sleep(self, timeout: float | None) -> None:
        """Until a worker dies, a signal arrives, or ``timeout`` passes."""
        sentinels = [worker.process.sentinel for worker in self.workers if worker.process]
        wait([self.wakeup, *sentinels], timeout)
        with contextlib.suppress(BlockingIOError):
            os.read(self.wakeup, 512)

    def _stop_all(self, signum: int) -> None:
        running = [worker for worker in self.workers if worker.alive()]
        for worker in running:
            os.kill(worker.process.pid, signum)
        deadline = time.monotonic() + self.drain_seconds + STOP_TIMEOUT_SECONDS
        for worker in running:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                logger.warning("The worker on port %d did not stop; killing it.", worker.port)
                worker.process.kill()
                worker.process.join()


def _work(
    config: Config, number: int, inherited: tuple[int, ...], parent: int, reload: Reload | None
) -> None:
    """A worker's life: the parent's signal handling and files undone, then a plain server
    whose every log line names it."""
    name_worker(number)
    signal.set_wakeup_fd(-1)
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for fd in inherited:
        os.close(fd)
    _stop_with(parent)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED_SIGNALS)
    run(config, reload)


def _stop_with(parent: int) -> None:
    """On Linux, SIGTERM when the parent dies (even by SIGKILL): no orphan keeps a port."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED_SIGNALS)


@contextlib.contextmanager
def _wakeup_pipe() -> Iterator[tuple[int, int]]:
    """A pipe that every signal writes a byte to, so that waiting for workers wakes up."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    previous = signal.set_wakeup_fd(write)
    try:
        yield read, write
    finally:
        signal.set_wakeup_fd(previous)
        os.close(read)
        os.close(write)
