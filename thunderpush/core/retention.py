"""History: how much of each channel's stream of messages an app keeps.

A channel that keeps history gives each message a position in its stream
(an offset, counting from 1, and the stream's epoch, which changes whenever
the stream starts again), so that a client that lost its connection can ask
for everything after the last position it saw.  Off by default: a channel
keeps nothing unless the app's policy says how much.  Example::

    policy = HistoryPolicy(Keep(0, 300), (("chat-", Keep(100, 600)),))
    policy.keep("chat-42")   # -> Keep(size=100, ttl=600)
    policy.keep("news")      # -> None: no history
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from thunderpush.config import HISTORY_TTL as DEFAULT_TTL
from thunderpush.config import HistoryRule


@dataclass(frozen=True)
class Keep:
    """A channel keeps its last ``size`` messages, each for ``ttl`` seconds."""

    size: int
    ttl: float


NOTHING = Keep(0, DEFAULT_TTL)


@dataclass(frozen=True)
class HistoryPolicy:
    """What one app keeps: ``default``, unless a channel's name starts with one of
    ``prefixes`` (the first that matches wins, so list longer prefixes first)."""

    default: Keep = NOTHING
    prefixes: tuple[tuple[str, Keep], ...] = ()

    def keep(self, channel: str) -> Keep | None:
        """How much ``channel`` keeps; None when it keeps no history.

        Asked on every publish: an app without history answers after one
        attribute read.
        """
        if not self.enabled:
            return None
        keep = self.default
        for prefix, rule in self.prefixes:
            if channel.startswith(prefix):
                keep = rule
                break
        return keep if keep.size > 0 else None

    @cached_property
    def enabled(self) -> bool:
        """Whether any channel keeps history (else nothing on the wire changes);
        computed once, then an attribute."""
        return self.default.size > 0 or any(keep.size > 0 for _, keep in self.prefixes)


def declared_policy(
    size: int | None, ttl: float | None, rules: Iterable[HistoryRule]
) -> HistoryPolicy:
    """The policy of an app the configuration declares (``AppConfig``): its
    ``history_size`` and ``history_ttl`` for every channel, but those its
    ``[[history]]`` rules name; longer prefixes win over shorter ones."""
    ordered = sorted(rules, key=lambda rule: -len(rule.prefix))
    return HistoryPolicy(
        Keep(size or 0, DEFAULT_TTL if ttl is None else ttl),
        tuple((rule.prefix, Keep(rule.size, rule.ttl)) for rule in ordered),
    )
