"""The ``thunderpush`` command line: the original's arguments, turned into a ``Config``.

``thunderpush [-p PORT] [-H HOST] [-v] [-d] [--pid-path PATH] clientkey apikey``
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from thunderpush import __version__
from thunderpush.server.config import Config, checked_credential
from thunderpush.server.process import run
from thunderpush.server.workers import run_workers

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


def _count(text: str) -> int:
    """A whole number >= 0, or argparse's usage error."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a whole number >= 0: {text!r}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"not a whole number > 0: {text!r}")
    return value


def _credential(what: str) -> Callable[[str], str]:
    """The argument type of the key or the secret: argparse's usage error when blank."""

    def credential(text: str) -> str:
        try:
            return checked_credential(what, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return credential


def _origins(text: str) -> tuple[str, ...]:
    """``a,b`` as a tuple; ``*`` (or nothing) means any origin."""
    origins = tuple(origin.strip() for origin in text.split(",") if origin.strip())
    return () if origins in ((), ("*",)) else origins


# name: (type, help); each sets the Config field of the same name.
_LIMITS = {
    "max_client_message_size": (_positive, "largest message a browser may send (bytes)"),
    "max_unsent_bytes": (_positive, "close a connection holding more unsent data (bytes)"),
    "max_channels_per_connection": (_positive, "channels one connection may subscribe to"),
    "max_commands_per_second": (_positive, "commands one connection may send per second"),
    "max_connections_per_ip": (_count, "open connections per client IP address, 0: no limit"),
    "max_connections": (_count, "open connections in total, 0: no limit"),
}


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
    parser.add_argument(
        "--require-signature",
        action="store_true",
        help="CONNECT must carry a user token signed with the secret",
    )
    parser.add_argument(
        "--allowed-origins",
        type=_origins,
        default=defaults.allowed_origins,
        metavar="ORIGINS",
        help="comma-separated origins allowed to connect, e.g. https://example.com (default: any)",
    )
    for name, (kind, what) in _LIMITS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=getattr(defaults, name),
            metavar="N",
            help=f"{what} (default: %(default)s)",
        )
    parser.add_argument("--ssl-cert", metavar="PATH", help="PEM certificate chain: serve HTTPS/WSS")
    parser.add_argument("--ssl-key", metavar="PATH", help="PEM private key of --ssl-cert")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("THUNDERPUSH_REDIS_URL") or defaults.redis_url,
        metavar="URL",
        help="redis://HOST:PORT/DB: join the cluster on this Redis "
        "(default: $THUNDERPUSH_REDIS_URL, else a single process)",
    )
    parser.add_argument(
        "--presence-ttl",
        type=_seconds,
        default=defaults.presence_ttl,
        metavar="SECONDS",
        help="a node silent for longer leaves the cluster's presence (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=defaults.workers,
        metavar="N",
        help="start N server processes on ports PORT to PORT+N-1 (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_positive,
        default=defaults.metrics_port,
        metavar="PORT",
        help="serve /metrics on this port (default: on the main port)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=_seconds,
        default=defaults.drain_seconds,
        metavar="SECONDS",
        help="on SIGTERM, close sessions in batches over this long (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=defaults.log_format,
        help="readable lines, or one JSON object per line (default: %(default)s)",
    )
    parser.add_argument(
        "--log-file",
        metavar="PATH",
        default=defaults.log_file,
        help="log to this file instead of stderr; SIGHUP reopens it",
    )
    parser.add_argument("-V", "--version", action="version", version=__version__)
    parser.add_argument("clientkey", type=_credential("public key"), help="client key")
    parser.add_argument("apikey", type=_credential("secret"), help="server API key")
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
        require_signature=args.require_signature,
        allowed_origins=args.allowed_origins,
        ssl_cert=args.ssl_cert,
        ssl_key=args.ssl_key,
        redis_url=args.redis_url,
        presence_ttl=args.presence_ttl,
        workers=args.workers,
        metrics_port=args.metrics_port,
        drain_seconds=args.drain_seconds,
        log_format=args.log_format,
        log_file=args.log_file,
        **{name: getattr(args, name) for name in _LIMITS},
    )


def main(argv: Sequence[str] | None = None) -> None:
    config = config_from(parse_args(sys.argv[1:] if argv is None else argv))
    (run_workers if config.workers > 1 else run)(config)


if __name__ == "__main__":
    main()
