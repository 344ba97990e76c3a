"""An app's hub on a cluster node, as Redis sees it: the hub's listener.

The node gives each app an ordinary ``Hub`` (``thunderpush.core.hub``) and a
``HubReporter`` as its listener.  A channel's first connection here, and a
user's, subscribes the node to its route (``thunderpush.cluster.bus``); the
last one out unsubscribes it.  Every change the hub states (a connection of
a user, a subscription) is handed to the registry of the name's shard
(``thunderpush.cluster.registry``, one per Redis of the node's), which writes
it to Redis once per loop turn; the command path never waits for Redis.  The
registry reads the hub only through its read-only methods (``user_connection_count``,
``channel_connection_count``, ``subscriptions``, ``has_member``...).

Presence channels are cluster-wide: the hub's ``presence_here`` is off, so it
announces nothing itself; joins and leaves are announced by Redis (each user
once, whatever node its connections are on) and reach the hub on the
channel's route as events numbered per channel (``Hub.announce``).  A new
subscriber's member list is read from Redis (``members_wanted``) and told
with ``Hub.welcomed``; the hub holds the events that come meanwhile and sends
those numbered after the list.

Recovery works the same way: a client that resubscribes with the last
position it saw is subscribed at once, and its channel's stream is read from
Redis (``stream_wanted``, ``thunderpush.cluster.history``); the hub holds the
deliveries that reach it from the bus meanwhile, then sends those after the
missed ones; those published before the read, still on their way from the
bus after it answered, are dropped until the bus passes the position sent
(``thunderpush.core.gates``), so there is no gap and no duplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from thunderpush.cluster.keys import tag
from thunderpush.core.hub import Connection, Hub
from thunderpush.core.retention import Keep

if TYPE_CHECKING:
    from thunderpush.cluster.node import Node
    from thunderpush.cluster.registry import Registry


class HubReporter:
    """Reports the hub of app ``key`` on ``node`` to the registry of each name's shard."""

    def __init__(self, key: str, hub: Hub, node: Node) -> None:
        self.key = key
        self.local = hub
        self.node = node
        hub.presence_here = False
        hub.listener = self

    def connected(self, userid: str, first: bool) -> None:
        named = tag(self.key, "u", userid)
        if first:
            self.node.route_opened(self.local, named)
        self.node.registry_of(named).user_changed(self, userid)

    def disconnected(self, userid: str, last: bool) -> None:
        named = tag(self.key, "u", userid)
        if last:
            self.node.route_closed(named)
        self.node.registry_of(named).user_changed(self, userid)

    def subscribed(self, channel: str, userid: str, first: bool) -> None:
        named = tag(self.key, "c", channel)
        if first:
            self.node.route_opened(self.local, named)
        self.node.registry_of(named).member_changed(self, channel, userid)

    def unsubscribed(self, channel: str, userid: str, last: bool) -> None:
        named = tag(self.key, "c", channel)
        if last:
            self.node.route_closed(named)
        self.node.registry_of(named).member_changed(self, channel, userid)

    def count(self, channel: str) -> None:
        """The cluster's count is told through Redis (``TELL_COUNT``), on the channel's
        route, after this turn's writes of the counts."""
        self.node.registry_of(tag(self.key, "c", channel)).counted(self, channel)

    def watching(self, connection: Connection, users: tuple[str, ...], new: list[str]) -> None:
        """Each user's watch route opened here (``new``), then its shard's registry
        reads who is online (``thunderpush.cluster.telling``)."""
        node = self.node
        for user in new:
            node.route_opened(self.local, tag(self.key, "u", user), watch=True)
        by_shard: dict[Registry, list[str]] = {}
        for user in users:
            by_shard.setdefault(node.registry_of(tag(self.key, "u", user)), []).append(user)
        watchlist = self.local.watchlist
        watchlist.expect(connection, len(by_shard))
        for registry, shard_users in by_shard.items():
            if not registry.watch(self, connection, shard_users):
                online = [user for user in shard_users if self.local.is_online(user)]
                watchlist.answered(connection, online)

    def unwatched(self, users: list[str]) -> None:
        for user in users:
            self.node.route_closed(tag(self.key, "u", user), watch=True)

    def when_routed(self, channel: str, then: Callable[[], None]) -> None:
        self.node.when_confirmed(tag(self.key, "c", channel), then)

    def members_wanted(self, connection: Connection, channel: str) -> bool:
        registry = self.node.registry_of(tag(self.key, "c", channel))
        return registry.welcome(self, connection, channel)

    def stream_wanted(
        self, connection: Connection, channel: str, since: tuple[str, int], keep: Keep
    ) -> bool:
        registry = self.node.registry_of(tag(self.key, "c", channel))
        return registry.recover(self, connection, channel, keep.ttl, since[1])

    # -- what the registry reads and answers, through the hub -------------------

    @property
    def max_members(self) -> int:
        return self.local.max_members

    @property
    def on_transition(self) -> Any:
        """Where the cluster-wide transitions of this app go (its webhooks), or None."""
        return self.local.on_transition
