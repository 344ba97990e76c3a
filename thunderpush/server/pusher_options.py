"""The command line's Pusher options: their arguments, and the ``Config`` fields they set.

``--app-id``, ``--client-events``, Pusher's limits (``config.PusherLimits``,
docs/pusher.rst), ``--cache-ttl`` and ``--subscription-count`` are the
defaults of every app's Pusher side; an app of the configuration file may set
its own.  They are apart from ``thunderpush.server.cli`` because Pusher's
protocol grows settings of its own, which then land here and not in the
command line's core; ``cli`` adds them to its parser
(``add_options``, in their place in ``--help``) and sets the ``Config`` from
them (``values``).  Their types are ``thunderpush.server.arguments``'.
"""

from __future__ import annotations

import argparse
from typing import Any

from thunderpush.config import Config
from thunderpush.server import arguments

# Pusher's limits on Pusher traffic, per app (``config.PusherLimits``, docs/pusher.rst):
# whole numbers >= 0 (0: no limit) but the channel names' length.
LIMITS = {
    name: (arguments.count, f"{what}, 0: no limit")
    for name, what in (
        ("max_event_bytes", "bytes of a Pusher event's data"),
        ("max_trigger_channels", "channels of one Pusher trigger"),
        ("max_batch_events", "events of one Pusher batch trigger"),
        ("max_client_events_per_second", "client events a Pusher connection may send a second"),
        ("max_user_info_bytes", "bytes of a Pusher presence member's user_info"),
        ("max_app_connections", "open connections of one app (Pusher clients past it: 4004)"),
    )
}
LIMITS["max_channel_name_length"] = (
    arguments.channel_name_length,
    "characters of a channel name for Pusher clients and Pusher's API",
)


def add_options(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """Every Pusher option, with its rule and help."""
    parser.add_argument(
        "--app-id",
        default=defaults.app_id,
        type=arguments.credential("app id"),
        metavar="ID",
        help="the Pusher app id of clientkey and apikey (default: the client key)",
    )
    parser.add_argument(
        "--client-events",
        action="store_true",
        help="Pusher clients may send client-* events on private and presence channels",
    )
    arguments.add_numbers(parser, LIMITS, defaults)
    cache = "how long a Pusher cache channel keeps its last event"
    arguments.add_numbers(parser, {"cache_ttl": (arguments.seconds, cache)}, defaults, "SECONDS")
    parser.add_argument(
        "--subscription-count",
        action="store_true",
        help="tell Pusher subscribers of non-presence channels their subscription count",
    )


def values(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Config`` fields the parsed Pusher options set, by name."""
    return {
        "app_id": args.app_id,
        "client_events": args.client_events,
        "cache_ttl": args.cache_ttl,
        "subscription_count": args.subscription_count,
        **{name: getattr(args, name) for name in LIMITS},
    }
