"""The last publication of each channel that keeps one, in this process's memory.

A dialect may promise its clients a channel's last publication when they
subscribe (Pusher's cache channels); which channels keep it, and for how long,
is the app's (``App.last_ttl``: the registry's ``last_prefixes`` and the app's
``cache_ttl``).  The core keeps it without knowing why: the broker writes it
on each backend publish (``thunderpush.core.broker``; a client's message never
counts), and the app's ``History`` reads it (``History.last``), here from the
hub's ``lasts``, in a cluster from Redis.  Example::

    lasts = Lasts()
    lasts.keep("cache-score", Last("goal", '{"home": 1}'), 1800)
    lasts.get("cache-score")        # -> Last(event='goal', payload='{"home": 1}')

Memory is bounded: a channel keeps one publication (the next replaces it), and
each write drops the publications whose ttl ran out (``drop_expired``), so what
is kept is at most one publication per channel published to in the last ttl.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import NamedTuple

from thunderpush.core.streams import drop_expired


def marker_of(prefixes: tuple[str, ...]) -> str | None:
    """A string that every name starting with one of ``prefixes`` contains, so that
    a publish to any other channel costs an ``in`` (a third of ``startswith`` with
    a tuple): the shortest prefix if every other contains it (``cache-`` for
    Pusher's four), else ""; None when there is no prefix (no name matches)."""
    if not prefixes:
        return None
    shortest = min(prefixes, key=len)
    return shortest if all(shortest in prefix for prefix in prefixes) else ""


class Last(NamedTuple):
    """A channel's last publication: its event name (None: the dialect's default)
    and its payload, as published."""

    event: str | None
    payload: str


class _Kept:
    """A kept publication, and when it was written and for how long (``Expiring``)."""

    __slots__ = ("last", "published", "ttl")

    def __init__(self, last: Last, published: float, ttl: float) -> None:
        self.last = last
        self.published = published
        self.ttl = ttl


class Lasts:
    """One app's last publications on this process, by channel, in order of writing."""

    def __init__(self, clock: Callable[[], float] = monotonic) -> None:
        self._kept: dict[str, _Kept] = {}
        # Seconds, for the ttls: ``time.monotonic``, or a clock a test moves.
        self.clock = clock

    def keep(self, channel: str, last: Last, ttl: float) -> None:
        """``last`` is ``channel``'s last publication, for ``ttl`` seconds."""
        now = self.clock()
        kept = self._kept
        drop_expired(kept, now)
        kept.pop(channel, None)  # to the end: the order is the order of writing
        kept[channel] = _Kept(last, now, ttl)

    def get(self, channel: str) -> Last | None:
        """``channel``'s last publication, or None: none, or its ttl ran out."""
        kept = self._kept.get(channel)
        if kept is None or self.clock() - kept.published >= kept.ttl:
            return None
        return kept.last

    def __len__(self) -> int:
        return len(self._kept)
