"""What a hub tells the one listener that watches it.

A ``Hub`` (``thunderpush.core.hub``) is never subclassed: it states facts and
its ``listener`` acts on them.  On one process the listener is
``Transitions``, which turns a channel's first connection and last, and a
user's, into the four transitions named here (``CHANNEL_OCCUPIED``...), told
to ``hub.on_transition``: ``thunderpush.webhooks`` sets it and sends them as
the app's webhook events, under these names.  The names live here, with the
facts they name, so that the core knows nothing of webhooks.  A cluster
node's listener is ``thunderpush.cluster.hub.HubReporter``, which writes every
change to Redis and answers presence welcomes, recoveries and watchlists from
the cluster.  On one process a user watched (``thunderpush.core.watchlist``)
is told online and offline here, at its first connection and its last.
Each fact costs the hub one call.

Example: a listener that logs who comes and goes::

    class Log(Transitions):
        def connected(self, userid, first):
            if first:
                print(userid, "is here")

    hub.listener = Log(hub)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from thunderpush.core.hub import Hub
    from thunderpush.core.retention import Keep

# A channel's first connection here and its last; a user's first and last.
CHANNEL_OCCUPIED = "channel_occupied"
CHANNEL_VACATED = "channel_vacated"
USER_ONLINE = "user_online"
USER_OFFLINE = "user_offline"
# What Pusher's webhooks say besides (``hub.on_transition(name, channel, detail)``):
# a presence member's first connection in a channel and its last (detail
# ``{"user_id"}``), a client event (``{"event", "data", "socket_id"[, "user_id"]}``),
# a cache channel subscribed with nothing kept, and a channel's new subscription
# count (``{"subscription_count"}``).
MEMBER_ADDED = "member_added"
MEMBER_REMOVED = "member_removed"
CLIENT_EVENT = "client_event"
CACHE_MISS = "cache_miss"
SUBSCRIPTION_COUNT = "subscription_count"


class HubListener(Protocol):
    """The facts a hub states, as they happen (each call is told the change done)."""

    def connected(self, userid: str, first: bool) -> None:
        """A connection of ``userid`` came; ``first``: the user's first here."""

    def disconnected(self, userid: str, last: bool) -> None:
        """A connection of ``userid`` left; ``last``: the user has none here now."""

    def subscribed(self, channel: str, userid: str, first: bool) -> None:
        """A connection of ``userid`` joined ``channel``; ``first``: the channel's first here."""

    def unsubscribed(self, channel: str, userid: str, last: bool) -> None:
        """A connection of ``userid`` left ``channel``; ``last``: the channel has none here now."""

    def count(self, channel: str) -> None:
        """Tell ``channel``'s subscription count, which changed (``thunderpush.core.counts``
        calls this at most once a second per channel): to its subscribers
        (``Hub.tell_count``) and as ``SUBSCRIPTION_COUNT``, unless it is the count
        told last."""

    def watching(self, connection: Any, users: tuple[str, ...], new: list[str]) -> None:
        """``connection`` watches ``users`` (``new``: nobody here watched them before);
        the listener answers which are online (``hub.watchlist.answered``) and, from
        now on, tells ``hub.watchlist.changed`` each one's first connection and last."""

    def unwatched(self, users: list[str]) -> None:
        """Nobody here watches ``users`` any more."""

    def when_routed(self, channel: str, then: Callable[[], None]) -> None:
        """Calls ``then`` once a message published to ``channel`` reaches this hub:
        a subscription is answered only then, so no message the answer promises
        can be published before it is routed here."""

    def members_wanted(self, connection: Any, channel: str) -> bool:
        """``connection`` in presence ``channel`` is to be told its members; True if the
        listener answers (``Hub.welcomed``), False if the hub answers from what it holds."""

    def stream_wanted(
        self, connection: Any, channel: str, since: tuple[str, int], keep: Keep
    ) -> bool:
        """``connection`` recovers ``channel`` after ``since``; True if the listener reads
        the stream (``Hub.recovered``), False if the hub reads its own."""


class Transitions:
    """One process's listener: a channel's or a user's first connection in and last out
    are the app's webhook events, told to ``hub.on_transition`` if it is set."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        # The subscription count last told of each channel with subscribers
        # (``--subscription-count``).
        self._told: dict[str, int] = {}

    def connected(self, userid: str, first: bool) -> None:
        if first and (self.hub.on_transition is not None or self.hub.watchlist.watchers):
            self._user(userid, True)

    def disconnected(self, userid: str, last: bool) -> None:
        if last and (self.hub.on_transition is not None or self.hub.watchlist.watchers):
            self._user(userid, False)

    def _user(self, userid: str, online: bool) -> None:
        """``userid``'s first connection (``online``) or its last: to the webhooks and
        to the connections that watch it."""
        hub = self.hub
        if hub.on_transition is not None:
            hub.on_transition(USER_ONLINE if online else USER_OFFLINE, userid)
        if hub.watchlist.watchers:
            hub.watchlist.changed(userid, online)

    def subscribed(self, channel: str, userid: str, first: bool) -> None:
        if first and self.hub.on_transition is not None:
            self.hub.on_transition(CHANNEL_OCCUPIED, channel)

    def unsubscribed(self, channel: str, userid: str, last: bool) -> None:
        if last and self.hub.on_transition is not None:
            self.hub.on_transition(CHANNEL_VACATED, channel)

    def count(self, channel: str) -> None:
        hub = self.hub
        count = hub.channel_connection_count(channel)
        if self._told.get(channel, 0) == count:
            return
        if count:
            self._told[channel] = count
        else:
            del self._told[channel]
        hub.tell_count(channel, count)
        if hub.on_transition is not None:
            hub.on_transition(SUBSCRIPTION_COUNT, channel, {"subscription_count": count})

    def watching(self, connection: Any, users: tuple[str, ...], new: list[str]) -> None:
        hub = self.hub
        hub.watchlist.answered(connection, [user for user in users if hub.is_online(user)])

    def unwatched(self, users: list[str]) -> None:
        """Nothing to let go of on one process."""

    def when_routed(self, channel: str, then: Callable[[], None]) -> None:
        then()  # one process: every publish reaches this hub

    def members_wanted(self, connection: Any, channel: str) -> bool:
        return False

    def stream_wanted(
        self, connection: Any, channel: str, since: tuple[str, int], keep: Keep
    ) -> bool:
        return False
