"""The command line's argument types: each turns one option's text into its value,
or into argparse's usage error that names the option.

They are apart from ``thunderpush.server.cli``, which lists the options, because
the same rules check the configuration file and the environment
(``thunderpush.settings`` calls them through the parser's ``rules``): each is a
small function of one string, tested and read on its own::

    seconds("2.5")   # -> 2.5
    port("80000")    # -> ArgumentTypeError: not a port (0 to 65535): '80000'

``add_numbers`` adds a table of numeric options (name: type, help) at once,
for ``cli``'s limits and ``pusher_options``' alike.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from thunderpush import settings
from thunderpush.config import LONGEST_CHANNEL_NAME, Config, checked_credential

# Where a list of URLs is cut: a comma followed by the next URL's scheme.
_URL_LIST = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
N = TypeVar("N", int, float)


def _number(text: str, parse: Callable[[str], N], accepted: Callable[[N], bool], what: str) -> N:
    """``parse(text)`` if it parses and is ``accepted``, else argparse's usage error
    saying the text is not ``what``."""
    try:
        value = parse(text)
        good = accepted(value)
    except ValueError:
        good = False
    if not good:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
    return value


def seconds(text: str) -> float:
    """A positive number of seconds, or argparse's usage error."""
    return _number(text, float, lambda value: 0 < value < math.inf, "a positive number of seconds")


def count(text: str) -> int:
    """A whole number >= 0, or argparse's usage error."""
    return _number(text, int, lambda value: value >= 0, "a whole number >= 0")


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: one the system picks, which the log names)."""
    return _number(text, int, lambda value: 0 <= value <= 65535, "a port (0 to 65535)")


def interval(text: str) -> float:
    """A number of seconds >= 0 (0: never)."""
    return 0.0 if text.strip() in ("0", "0.0") else seconds(text)


def positive(text: str) -> int:
    value = count(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"not a whole number > 0: {text!r}")
    return value


def channel_name_length(text: str) -> int:
    """1 to ``LONGEST_CHANNEL_NAME`` characters: the hub takes no longer name."""
    return _number(
        text,
        int,
        lambda value: 0 < value <= LONGEST_CHANNEL_NAME,
        f"a whole number from 1 to {LONGEST_CHANNEL_NAME}",
    )


def credential(what: str) -> Callable[[str], str]:
    """The argument type of the key or the secret: argparse's usage error when blank."""

    def credential(text: str) -> str:
        try:
            return checked_credential(what, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return credential


def origins(text: str) -> tuple[str, ...]:
    """``a,b`` as a tuple; ``*`` (or nothing) means any origin."""
    origins = tuple(origin.strip() for origin in text.split(",") if origin.strip())
    return () if origins in ((), ("*",)) else origins


def redis_urls(text: str) -> tuple[str, ...]:
    """``redis://a,redis://b`` as a tuple of URLs; an empty one is a usage error.

    Split only at a comma before a scheme (``redis://``, ``rediss://``,
    ``unix://``...), so a password with a comma stays whole.
    """
    urls = tuple(url.strip() for url in _URL_LIST.split(text))
    if not all(urls):
        raise argparse.ArgumentTypeError(f"an empty Redis URL in {settings.masked_url(text)!r}")
    return urls


class Repeated(argparse.Action):
    """A flag given several times adds up; the first one given replaces the value
    of the file or the environment (flags come last in precedence)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given = getattr(namespace, self.dest) if self.dest in _given(namespace) else ()
        setattr(namespace, self.dest, (*given, *values))
        _given(namespace).add(self.dest)


def _given(namespace: argparse.Namespace) -> set[str]:
    """The repeatable flags this command line gave (kept on the namespace)."""
    if not hasattr(namespace, "_repeated"):
        namespace._repeated = set()
    return namespace._repeated


def webhook_url(text: str) -> str:
    """An absolute http or https URL, or argparse's usage error."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = settings.masked_url(text)  # a mistyped URL may still hold a token
        raise argparse.ArgumentTypeError(f"not an http or https URL: {shown!r}")
    return text.strip()


def add_numbers(
    parser: argparse.ArgumentParser,
    options: Mapping[str, tuple[Callable[[str], float], str]],
    defaults: Config,
    metavar: str = "N",
) -> None:
    """A ``metavar`` option for each of ``options`` (name: (type, help)), setting the
    ``Config`` field of the same name, whose value is its default."""
    for name, (kind, what) in options.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=getattr(defaults, name),
            metavar=metavar,
            help=f"{what} (default: %(default)s)",
        )
