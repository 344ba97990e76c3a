"""What a hub tells beside deliveries and presence: subscription counts and watchlists.

``Hub`` (``thunderpush.core.hub``) gets these methods from ``Telling``.  Both
are told where the listener decides: a channel's count is the hub's own on
one process and the cluster's on a node (``HubListener.count``,
``thunderpush.core.counts``); who of a watchlist is online is the hub's users
on one process and Redis's on a node (``HubListener.watching``,
``thunderpush.core.watchlist``).  An app that uses neither pays a test per
subscription and one per connection removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from thunderpush.core.counts import Counts

if TYPE_CHECKING:
    from thunderpush.core.dialect import Dialect, Foreign
    from thunderpush.core.hub import Connection
    from thunderpush.core.listener import HubListener
    from thunderpush.core.watchlist import Watchlist


class Telling:
    """Subscription counts and watchlists, for a hub."""

    listener: HubListener
    counts: Counts | None
    watchlist: Watchlist
    _foreign: dict[Connection, Foreign]
    _mixed: dict[str, dict[Connection, None]]
    _deliver: Callable[[Iterable[Connection], str], int]

    def count_subscriptions(self, on: bool) -> None:
        """Tell non-presence channels' subscription counts as they change (on), or
        not; the listener says how (``HubListener.count``)."""
        if not on:
            self.counts = None
        elif self.counts is None:
            self.counts = Counts(self.listener.count)

    def tell_count(self, channel: str, count: int) -> int:
        """Tell ``channel``'s connections whose dialect frames it that it has ``count``
        subscriptions (``thunderpush.core.counts``); returns how many were told."""
        told = 0
        frames: dict[Dialect, str | None] = {}
        foreign = self._foreign
        for connection in list(self._mixed.get(channel, ())):
            dialect = foreign[connection][0]
            if dialect not in frames:
                frames[dialect] = dialect.subscription_count(channel, count)
            frame = frames[dialect]
            if frame is not None:
                told += self._deliver((connection,), frame)
        return told

    def watch(self, connection: Connection, users: list[str]) -> None:
        """``connection`` watches ``users`` (``thunderpush.core.watchlist``): it is told
        ``watched(True, [...])`` those online once the listener found out, then
        each one that comes online or goes offline."""
        new = self.watchlist.add(connection, users)
        self.listener.watching(connection, self.watchlist.users_of(connection), new)

    def unwatch(self, connection: Connection) -> None:
        """``connection`` watches nobody any more."""
        gone = self.watchlist.remove(connection)
        if gone:
            self.listener.unwatched(gone)
