"""The ``thunderpush`` command line: the original's arguments, turned into a ``Config``.

``thunderpush [-p PORT] [-H HOST] [-v] [-d] [--pid-path PATH] [--config FILE] [clientkey apikey]``

The parser is the one list of settings: the configuration file and the
environment (``thunderpush.settings``) are checked by its rules and
become its defaults, so a flag overrides them.  A mistake in any of them is one
line on stderr and exit status 2 (``USAGE_EXIT``).  Pusher's options are
defined in ``thunderpush.server.pusher_options`` and added to the parser here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from typing import NoReturn

from thunderpush import __version__, settings
from thunderpush.config import (
    AppConfig,
    Config,
    ConfigError,
    HistoryRule,
)
from thunderpush.server import arguments, pusher_options
from thunderpush.server.process import USAGE_EXIT, run
from thunderpush.server.workers import run_workers

# The positional arguments' names (the original's) and the Config fields they set.
_POSITIONALS = {"clientkey": "apikey", "apikey": "apisecret"}
_DESTS = {field: dest for dest, field in _POSITIONALS.items()}
# Options that are not settings.
_NOT_SETTINGS = {"help", "version", "config", "print_config"}

_TIMEOUTS = {
    "head": "close a connection whose request head takes longer",
    "body": "close a connection whose declared request body takes longer",
    "idle": "close a keep-alive connection idle for longer",
}


# name: (type, help); each sets the Config field of the same name.
_LIMITS = {
    "max_client_message_size": (arguments.positive, "largest message a browser may send (bytes)"),
    "max_unsent_bytes": (arguments.positive, "close a connection holding more unsent data (bytes)"),
    "max_channels_per_connection": (arguments.positive, "channels one connection may subscribe to"),
    "max_commands_per_second": (arguments.positive, "commands one connection may send per second"),
    "max_connections_per_ip": (
        arguments.count,
        "open connections per client IP address, 0: no limit",
    ),
    "max_connections": (arguments.count, "open connections in total, 0: no limit"),
    "max_presence_members": (
        arguments.count,
        "distinct users in one presence channel, 0: no limit",
    ),
}


class _Parser(argparse.ArgumentParser):
    """Raises ``ConfigError`` for a mistake, so that SIGHUP's reload can survive one."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2: what a supervisor's log should show."""
    print(f"thunderpush: error: {message}", file=sys.stderr)
    raise SystemExit(USAGE_EXIT)


def build_parser() -> argparse.ArgumentParser:
    """Every setting the command line takes, with its rule and help."""
    defaults = Config()
    parser = _Parser(prog="thunderpush")
    parser.add_argument(
        "-p",
        "--port",
        default=defaults.port,
        type=arguments.port,
        help="binds server to custom port (0: any free one)",
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
            type=arguments.seconds,
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
        type=arguments.origins,
        default=defaults.allowed_origins,
        metavar="ORIGINS",
        help="comma-separated origins allowed to connect, e.g. https://example.com (default: any)",
    )
    arguments.add_numbers(parser, _LIMITS, defaults)
    parser.add_argument("--ssl-cert", metavar="PATH", help="PEM certificate chain: serve HTTPS/WSS")
    parser.add_argument("--ssl-key", metavar="PATH", help="PEM private key of --ssl-cert")
    parser.add_argument(
        "--redis-url",
        type=arguments.redis_urls,
        action=arguments.Repeated,
        default=defaults.redis_url,
        metavar="URL",
        help="redis://HOST:PORT/DB: join the cluster on this Redis; repeat (or separate"
        " with commas) for shards (default: a single process)",
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        default=defaults.redis_cluster,
        help="the --redis-url addresses are seeds of one Redis Cluster (Redis >= 7)",
    )
    parser.add_argument(
        "--presence-ttl",
        type=arguments.seconds,
        default=defaults.presence_ttl,
        metavar="SECONDS",
        help="a node silent for longer leaves the cluster's presence (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=arguments.positive,
        default=defaults.workers,
        metavar="N",
        help="start N server processes on ports PORT to PORT+N-1 (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=arguments.port,
        default=defaults.metrics_port,
        metavar="PORT",
        help="serve /metrics on this port (default: on the main port)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=arguments.seconds,
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
    parser.add_argument(
        "--stats-interval",
        type=arguments.interval,
        default=defaults.stats_interval,
        metavar="SECONDS",
        help="log a statistics line at INFO this often, 0: never (default: %(default)s)",
    )
    parser.add_argument(
        "--history-size",
        type=arguments.count,
        default=defaults.history_size,
        metavar="N",
        help="messages each channel keeps for clients that reconnect, 0: none "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--history-ttl",
        type=arguments.seconds,
        default=defaults.history_ttl,
        metavar="SECONDS",
        help="how long a kept message is kept (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-url",
        type=arguments.webhook_url,
        default=defaults.webhook_url,
        metavar="URL",
        help="POST channel and user events to this http(s) URL (default: none)",
    )
    parser.add_argument(
        "--webhook-format",
        choices=("thunderpush", "pusher"),
        default=defaults.webhook_format,
        help="write webhooks as Thunderpush's or as Pusher's events and headers "
        "(default: %(default)s)",
    )
    pusher_options.add_options(parser, defaults)
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="read settings from this TOML file (flags and THUNDERPUSH_* variables override it)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the merged settings, secrets masked, and exit",
    )
    parser.add_argument("-V", "--version", action="version", version=__version__)
    parser.add_argument(
        "clientkey", nargs="?", type=arguments.credential("public key"), help="client key"
    )
    parser.add_argument(
        "apikey", nargs="?", type=arguments.credential("secret"), help="server API key"
    )
    return parser


def rules(parser: argparse.ArgumentParser) -> dict[str, settings.Rule | None]:
    """Each setting's rule by ``Config`` name; None for a yes/no flag."""
    found: dict[str, settings.Rule | None] = {}
    for action in parser._actions:
        if action.dest in _NOT_SETTINGS:
            continue
        name = _POSITIONALS.get(action.dest, action.dest)
        found[name] = None if action.nargs == 0 else partial(_rule, action)
    return found


def _rule(action: argparse.Action, text: str) -> object:
    """``action``'s value of ``text``, or ValueError saying why there is none."""
    try:
        value = action.type(text) if action.type else text
    except argparse.ArgumentTypeError as error:
        raise ValueError(str(error)) from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"not one of {', '.join(map(str, action.choices))}: {text!r}")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line alone (defaults for everything it does not say)."""
    try:
        return build_parser().parse_args(argv)
    except ConfigError as error:
        fail(str(error))


def load(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[Config, bool]:
    """The configuration of file, environment and flags, and whether to only print it.

    Raises ``ConfigError`` for a mistake in any of them (SIGHUP calls it again).
    """
    parser = build_parser()
    path = _config_path(argv, environ)
    data = settings.read_file(path) if path else {}
    known = rules(parser)
    values = settings.from_file(data, known, path) if path else {}
    values.update(settings.from_environment(environ, known))
    parser.set_defaults(**{_DESTS.get(name, name): value for name, value in values.items()})
    args = parser.parse_args(argv)
    apps = settings.apps_from_file(data, path, known) if path else ()
    history = settings.history_from_file(data, path) if path else ()
    if (args.clientkey is None) != (args.apikey is None):
        raise ConfigError("give both the client key and the secret (clientkey apikey)")
    if args.clientkey is None and not apps:
        raise ConfigError(
            "no app: give the client key and secret (clientkey apikey), "
            "THUNDERPUSH_APIKEY and THUNDERPUSH_APISECRET, or [[apps]] in --config"
        )
    return config_from(args, apps, path, history), args.print_config


def _config_path(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """``--config``, looked for before the other flags are parsed (they depend on it)."""
    early = _Parser(add_help=False)
    early.add_argument("--config")
    known, _ = early.parse_known_args(argv)
    return known.config or environ.get(settings.CONFIG_VARIABLE) or None


def config_from(
    args: argparse.Namespace,
    apps: tuple[AppConfig, ...] = (),
    config_file: str | None = None,
    history: tuple[HistoryRule, ...] = (),
) -> Config:
    """The configuration the parsed arguments describe (and the file's tables)."""
    return Config(
        apikey=args.clientkey or "",
        apisecret=args.apikey or "",
        apps=apps,
        config_file=config_file,
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
        redis_cluster=args.redis_cluster,
        presence_ttl=args.presence_ttl,
        workers=args.workers,
        metrics_port=args.metrics_port,
        drain_seconds=args.drain_seconds,
        log_format=args.log_format,
        log_file=args.log_file,
        stats_interval=args.stats_interval,
        history_size=args.history_size,
        history_ttl=args.history_ttl,
        history=history,
        webhook_url=args.webhook_url,
        webhook_format=args.webhook_format,
        **{name: getattr(args, name) for name in _LIMITS},
        **pusher_options.values(args),
    )


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = dict(os.environ)
    try:
        config, print_only = load(argv, environ)
    except ConfigError as error:
        fail(str(error))
    if print_only:
        if config.config_file:
            print(f"# Read from {config.config_file}, the environment and the command line.")
        sys.stdout.write(settings.toml(settings.masked(config, rules(build_parser()))))
        return
    reload = partial(_reload, argv, environ)
    (run_workers if config.workers > 1 else run)(config, reload)


def _reload(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """The configuration again, for SIGHUP: the file may have changed since the start."""
    return load(argv, environ)[0]


if __name__ == "__main__":
    main()
