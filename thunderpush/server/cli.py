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
    parser.add_argument("--pid-path", default=defaults.pid_path, help="path to the PID file")
    parser.add_argument(
        "--sockjs-url",
        default=defaults.sockjs_url,
        help="sockjs-client URL loaded by the iframe transports",
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
    )


def main(argv: Sequence[str] | None = None) -> None:
    run(config_from(parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
