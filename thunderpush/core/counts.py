"""Channel subscription counts told as they change, at most once an interval per channel.

An app with subscription counts on (``--subscription-count``) tells each
non-presence channel's subscribers how many connections the channel has
whenever that number changes: a dialect frames it (``Dialect.subscription_count``;
Pusher's is ``pusher_internal:subscription_count``, Thunderpush's clients get
nothing) and the app's webhooks hear ``SUBSCRIPTION_COUNT``.  A busy channel
changes many times a second, so the changes are coalesced: the first change
of a quiet channel is told at the end of the loop turn, and those that come
within ``interval`` seconds after it are told together when the interval is
over, the count as it is then.  What telling is depends on the hub's listener
(``HubListener.count``): on one process the hub's own count, told at once; on a
cluster node the cluster's, through Redis, whose clock gates the interval for
every node (``thunderpush.cluster.telling``).

What it holds is bounded by the channels that changed within the last interval.
An app without the option has no ``Counts``: its hub pays one test per
subscription.  Example, with a scheduler a test drives by hand::

    told, calls = [], []
    counts = Counts(told.append, later=lambda delay, f, *a: calls.append((delay, f, a)))
    counts.changed("news")   # told at the end of the turn, then not again for a second
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

# At most one count a second per channel, as Pusher sends them.
INTERVAL = 1.0

Later = Callable[..., Any]


def _call_later(delay: float, callback: Callable[..., None], *args: Any) -> Any:
    return asyncio.get_running_loop().call_later(delay, callback, *args)


class Counts:
    """Calls ``tell(channel)`` for each channel whose count changed: at the end of the
    turn of its first change, then at most once an ``interval`` while it keeps changing.

    ``later(delay, callback, *args)`` schedules (the running loop's ``call_later``
    by default; a test passes its own and needs no clock).
    """

    def __init__(
        self, tell: Callable[[str], None], interval: float = INTERVAL, later: Later | None = None
    ) -> None:
        self.tell = tell
        self.interval = interval
        self._later = later or _call_later
        # Channel -> whether it changed since it was last told; a channel is here
        # from its first change until an interval passed without one.
        self._waiting: dict[str, bool] = {}

    def changed(self, channel: str) -> None:
        """``channel``'s count changed."""
        if channel in self._waiting:
            self._waiting[channel] = True
            return
        self._waiting[channel] = True
        self._later(0, self._tell, channel)

    def again(self, channel: str) -> None:
        """Telling ``channel`` had to wait (another node told it within the interval):
        told again at the end of this interval."""
        self.changed(channel)

    def _tell(self, channel: str) -> None:
        self._waiting[channel] = False
        self._later(self.interval, self._quiet, channel)
        self.tell(channel)

    def _quiet(self, channel: str) -> None:
        if self._waiting.get(channel):
            self._tell(channel)
        else:
            self._waiting.pop(channel, None)

    def __len__(self) -> int:
        """The channels held (changed within the last interval)."""
        return len(self._waiting)
