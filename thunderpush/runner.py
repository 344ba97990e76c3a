"""The ``thunderpush`` command: arguments, logging, PID file, serve, shut down.

``thunderpush -p 8000 key secret`` runs in the foreground and logs to stderr,
as supervisord and systemd expect.  SIGTERM and Ctrl-C stop it cleanly: no new
connections, every session closed with a code that tells clients to reconnect,
the PID file removed, exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from thunderpush import __version__, protocol, settings
from thunderpush.app import make_application
from thunderpush.frontdoor import FrontDoor
from thunderpush.sortingstation import SortingStation

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


async def serve(stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set, then close every session and return."""
    station = SortingStation.instance()
    station.create_messenger(settings.APIKEY, settings.APISECRET)
    application, router = make_application(settings.SOCKJS_URL, settings.DEBUG)
    server = FrontDoor(application, router)
    await server.listen(settings.PORT, settings.HOST)
    logger.info(
        "Thunderpush %s listening on %s:%d", __version__, settings.HOST or "*", settings.PORT
    )
    await stop.wait()

    logger.info("Shutting down...")
    server.stop()
    router.close_all(*protocol.SERVER_SHUTDOWN)
    try:
        await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_GRACE_SECONDS)
    except asyncio.TimeoutError:
        logger.warning("Some connections were still open after %.0f s.", SHUTDOWN_GRACE_SECONDS)
    station.destroy()


async def _serve_until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(stop)


def run_app() -> None:
    """Run the server with the current ``settings`` until SIGTERM or Ctrl-C."""
    configure_logging(settings.VERBOSE)
    asyncio.run(_serve_until_signalled())


def update_settings(args: argparse.Namespace) -> None:
    for name, value in vars(args).items():
        if name.isupper() and value is not None:
            setattr(settings, name, value)
    settings.APIKEY = args.clientkey
    settings.APISECRET = args.apikey


def parse_args(args: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="thunderpush")
    parser.add_argument(
        "-p",
        "--port",
        default=settings.PORT,
        type=int,
        dest="PORT",
        help="binds server to custom port",
    )
    parser.add_argument(
        "-H",
        "--host",
        default=settings.HOST,
        dest="HOST",
        help="binds server to custom address",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        default=settings.VERBOSE,
        action="store_true",
        dest="VERBOSE",
        help="verbose mode",
    )
    parser.add_argument(
        "-d",
        "--debug",
        default=settings.DEBUG,
        action="store_true",
        dest="DEBUG",
        help="debug mode (useful for development)",
    )
    parser.add_argument(
        "--pid-path", default=settings.PIDPATH, dest="PIDPATH", help="path to the PID file"
    )
    parser.add_argument(
        "--sockjs-url",
        default=settings.SOCKJS_URL,
        dest="SOCKJS_URL",
        help="sockjs-client URL loaded by the iframe transports",
    )
    parser.add_argument("-V", "--version", action="version", version=__version__)
    parser.add_argument("clientkey", help="client key")
    parser.add_argument("apikey", help="server API key")
    return parser.parse_args(args)


def main() -> None:
    if sys.argv[1:2] == ["bench"]:
        # ``thunderpush bench ...`` is the load generator, not a server.
        from thunderpush import bench

        sys.exit(bench.main(sys.argv[2:]))
    args = parse_args(sys.argv[1:])
    update_settings(args)
    with PIDFile(settings.PIDPATH):
        run_app()


if __name__ == "__main__":
    main()
