"""The ``thunderpush`` command line: the original's arguments, turned into a ``Config``.

``thunderpush [-p PORT] [-H HOST] [-v] [-d] [--pid-path PATH] clientkey apikey``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from thunderpush import __version__
from thunderpush.server.config import Config
from thunderpush.server.process import run

_TIMEOUTS = {
    "head": "close a connection whose request head takes longer",
    "body": "close a connection whose declared request body takes longer",
    "idle": "close a keep-alive connection idle for longer",
}


def _seconds(text: str) -> float:
    """A positive number of seconds, or argparse's usage error."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    defaults = Config()
    parser = argparse.ArgumentParser(prog="thunderpush")
    parser.add_argument(
        "-p", "--port", default=defaults.port, type=int, help="binds server to custom port"
    )
    parser.add_argument(
        "-H", "--host", default=defaults.host, help="binds server to custom address"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose mode")
    parser.add_argument(
        "-d", "--debug", action="store_true", help="debug mode (useful for development)"
    )
    parser.add_argument(
        "--pid-path", default=defaults.pid_path, metavar="PIDPATH", help="path to the PID file"
    )
    parser.add_argument(
        "--sockjs-url",
        default=defaults.sockjs_url,
        help="sockjs-client URL loaded by the iframe transports",
    )
    for name, what in _TIMEOUTS.items():
        parser.add_argument(
            f"--{name}-timeout",
            type=_seconds,
            default=getattr(defaults, f"{name}_timeout"),
            metavar="SECONDS",
            help=f"{what} (default: %(default)s)",
        )
    parser.add_argument("-V", "--version", action="version", version=__version__)
    parser.add_argument("clientkey", help="client key")
    parser.add_argument("apikey", help="server API key")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> Config:
    """The configuration the parsed arguments describe."""
    return Config(
        apikey=args.clientkey,
        apisecret=args.apikey,
        port=args.port,
        host=args.host,
        debug=args.debug,
        verbose=args.verbose,
        pid_path=args.pid_path,
        sockjs_url=args.sockjs_url,
        head_timeout=args.head_timeout,
        body_timeout=args.body_timeout,
        idle_timeout=args.idle_timeout,
    )


def main(argv: Sequence[str] | None = None) -> None:
    run(config_from(parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
