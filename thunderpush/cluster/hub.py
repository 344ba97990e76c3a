"""The hub of one app on a cluster node: the local hub, recording itself in Redis.

Every change to who is connected or subscribed here is handed to the node's
registry (``thunderpush.cluster.registry``), which writes it to Redis once per
loop turn; the command path never waits for Redis.  Presence channels are
cluster-wide: joins and leaves are announced by Redis (each user once,
whatever node its connections are on) and reach this hub from the bus as
numbered events; a new subscriber is told the cluster's member list, and from
then on only the events numbered after that list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thunderpush.core.hub import Connection, Hub
from thunderpush.core.members import Members
from thunderpush.core.protocol import subscription_succeeded

if TYPE_CHECKING:
    from thunderpush.cluster.registry import Registry


class LocalMembers(Members):
    """Counts this node's presence-channel users, but announces nothing: Redis does."""

    def join(self, channel: str, userid: str) -> bool:
        super().join(channel, userid)
        return False

    def leave(self, channel: str, userid: str) -> bool:
        super().leave(channel, userid)
        return False


class ClusterHub(Hub):
    """The connections of app ``key`` on this node."""

    def __init__(self, key: str, registry: Registry) -> None:
        super().__init__()
        self.key = key
        self.registry = registry
        self.members = LocalMembers()
        # (connection, presence channel) -> events that came while it waited
        # for the member list, as (number, element).
        self._waiting: dict[tuple[Connection, str], list[tuple[int, str]]] = {}
        # (connection, presence channel) -> the number of the last event its
        # member list included.
        self._told_until: dict[tuple[Connection, str], int] = {}
        # Connections told only this node's members, while Redis was away.
        self._alone: dict[tuple[Connection, str], None] = {}

    # -- what Redis must learn ------------------------------------------------

    def add(self, connection: Connection) -> None:
        super().add(connection)
        self.registry.user_changed(self, connection.userid)

    def remove(self, connection: Connection) -> None:
        channels = self.channels_of(connection)
        super().remove(connection)
        for channel in channels:
            self._forget(connection, channel)
            self.registry.member_changed(self, channel, connection.userid)
        self.registry.user_changed(self, connection.userid)

    def subscribe(self, connection: Connection, channel: str) -> None:
        super().subscribe(connection, channel)
        self.registry.member_changed(self, channel, connection.userid)

    def unsubscribe(self, connection: Connection, channel: str) -> None:
        super().unsubscribe(connection, channel)
        self._forget(connection, channel)
        self.registry.member_changed(self, channel, connection.userid)

    def _transition(self, event: str, name: str) -> None:
        """Not this node's to say: Redis decides for the whole cluster (``Registry``)."""

    def has_member(self, channel: str, userid: str) -> bool:
        """Whether a connection of ``userid`` on this node is in ``channel``."""
        return any(self.is_subscribed(c, channel) for c in self.users.get(userid, ()))

    # -- presence channels across the cluster -----------------------------

    def welcome(self, connection: Connection, channel: str) -> None:
        if self.registry.welcome(self, connection, channel):
            self._waiting.setdefault((connection, channel), [])
        else:
            self.welcome_alone(connection, channel)

    def welcome_alone(self, connection: Connection, channel: str) -> None:
        """No cluster to ask: tells this node's members, and the cluster's once it is back."""
        self._waiting.pop((connection, channel), None)
        if self.is_subscribed(connection, channel):
            self._alone[connection, channel] = None
            super().welcome(connection, channel)

    def rejoined(self) -> list[tuple[Connection, str]]:
        """Back in the cluster: event numbers start again (Redis may have restarted).

        Returns the connections ``welcome_alone`` answered, to be told again.
        """
        self._told_until.clear()
        alone, self._alone = self._alone, {}
        return [key for key in alone if self.is_subscribed(*key)]

    def welcomed(self, connection: Connection, channel: str, users: list[str], seq: int) -> None:
        """The cluster's member list for ``connection``, as of event number ``seq``."""
        waiting = self._waiting.pop((connection, channel), None)
        if waiting is None or not self.is_subscribed(connection, channel):
            return
        self._told_until[connection, channel] = seq
        self._deliver([connection], subscription_succeeded(channel, users))
        for number, element in waiting:
            if number > seq:
                self._deliver([connection], element)

    def announce(self, channel: str, userid: str, seq: int, element: str) -> None:
        """Presence event number ``seq`` about ``userid``, to the others in ``channel``."""
        targets = []
        for connection in self.channels.get(channel, ()):
            if connection.userid == userid:
                continue
            waiting = self._waiting.get((connection, channel))
            if waiting is not None:
                waiting.append((seq, element))
            elif seq > self._told_until.get((connection, channel), 0):
                targets.append(connection)
        self._deliver(targets, element)

    def _forget(self, connection: Connection, channel: str) -> None:
        self._waiting.pop((connection, channel), None)
        self._told_until.pop((connection, channel), None)
        self._alone.pop((connection, channel), None)
