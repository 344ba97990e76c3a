"""The ``thunderpush-token`` command: a user or channel token from the shell.

For trying signed users and private channels by hand, and for scripts.  The
key and secret come from ``THUNDERPUSH_APIKEY`` and ``THUNDERPUSH_APISECRET``
by default, because a secret given as an argument shows in ``ps``.  Its own
console script (not a ``thunderpush`` subcommand), so that any API key still
starts a server.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from thunderpush_client.auth import DEFAULT_TTL, channel_token, user_token

from thunderpush.core.protocol import is_valid_channel_name, is_valid_user_id

KEY_VARIABLE = "THUNDERPUSH_APIKEY"
SECRET_VARIABLE = "THUNDERPUSH_APISECRET"


def _ttl(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds > 0: {text!r}")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="thunderpush-token",
        description="Print a token for USER: a user token for CONNECT, or with --channel "
        "a channel token for SUBSCRIBE.",
    )
    parser.add_argument("user", metavar="USER", help="the user id the token vouches for")
    parser.add_argument("--channel", help="make a channel token for this channel")
    parser.add_argument(
        "--ttl",
        type=_ttl,
        default=DEFAULT_TTL,
        metavar="S",
        help="seconds the token stays valid (default: %(default)s)",
    )
    parser.add_argument(
        "--key", default=os.environ.get(KEY_VARIABLE), help=f"API key (default: ${KEY_VARIABLE})"
    )
    parser.add_argument(
        "--secret",
        default=os.environ.get(SECRET_VARIABLE),
        help=f"API secret (default: ${SECRET_VARIABLE}, which keeps it out of ps)",
    )
    args = parser.parse_args(argv)
    if not args.key:
        parser.error(f"no API key: give --key or set {KEY_VARIABLE}")
    if not args.secret or args.secret.isspace():
        parser.error(f"no API secret: set {SECRET_VARIABLE} or give --secret")
    if not is_valid_user_id(args.user):
        parser.error(f"not a user id (1-128 characters, no spaces or controls): {args.user!r}")
    if args.channel is not None and not is_valid_channel_name(args.channel):
        parser.error(f"not a channel name (1-64 of a-z A-Z 0-9 _-=@,.;): {args.channel!r}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.channel is None:
        token = user_token(args.key, args.secret, args.user, args.ttl)
    else:
        token = channel_token(args.key, args.secret, args.user, args.channel, args.ttl)
    print(token)


if __name__ == "__main__":
    main()
