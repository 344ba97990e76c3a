"""What a hub holds, read-only: for the API's local answers, ``observe/`` and a listener.

``Hub`` (``thunderpush.core.hub``) gets these methods from ``Holdings``; they
only read its ``users``, ``channels``, ``members`` and subscriptions.  A
cluster node's listener (``thunderpush.cluster``) reads a hub through the
last group only, and nothing else of it: the hub's indexes can change
without the cluster noticing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from thunderpush.core.members import Members

if TYPE_CHECKING:
    from thunderpush.core.hub import Connection


class Holdings:
    """The read-only queries of a hub."""

    users: dict[str, dict[Connection, None]]
    channels: dict[str, dict[Connection, None]]
    members: Members
    _subscriptions: dict[Connection, set[str]]

    # -- what this process holds -------------------------------------------

    def user_count(self) -> int:
        return len(self.users)

    def connection_count(self) -> int:
        # Every connection the hub holds has an entry (``Hub.add``): one read, not a
        # pass over the users (a Pusher app's connection quota asks it per connection).
        return len(self._subscriptions)

    def is_online(self, userid: str) -> bool:
        return userid in self.users

    def subscription_count(self, connection: Connection) -> int:
        """How many channels ``connection`` is in."""
        return len(self._subscriptions.get(connection, ()))

    def channels_of(self, connection: Connection) -> list[str]:
        """The channels ``connection`` is in."""
        return list(self._subscriptions.get(connection, ()))

    def is_subscribed(self, connection: Connection, channel: str) -> bool:
        return channel in self._subscriptions.get(connection, ())

    def channel_members(self, channel: str) -> list[str]:
        """The users in presence ``channel``, each once, in the order they joined."""
        return self.members.users(channel)

    def channel_connections(self, channel: str) -> list[Connection]:
        """The connections in ``channel``, in order of subscription."""
        return list(self.channels.get(channel, ()))

    def channel_users(self, channel: str) -> list[str]:
        """The user ids in ``channel``, each once, in order of first subscription."""
        return list(dict.fromkeys(c.userid for c in self.channels.get(channel, ())))

    def channel_counts(self, prefix: str = "") -> dict[str, int]:
        """Connections per channel, of the channels whose names start with ``prefix``."""
        return {
            name: len(connections)
            for name, connections in self.channels.items()
            if name.startswith(prefix)
        }

    def user_channels(self, userid: str) -> set[str]:
        """The channels any connection of ``userid`` is in."""
        channels: set[str] = set()
        for connection in self.users.get(userid, ()):
            channels.update(self._subscriptions.get(connection, ()))
        return channels

    # -- what a listener reads (a cluster reads nothing else) ---------------

    def has_channel(self, channel: str) -> bool:
        """Whether a connection here is in ``channel``."""
        return channel in self.channels

    def channel_connection_count(self, channel: str) -> int:
        return len(self.channels.get(channel, ()))

    def user_connection_count(self, userid: str) -> int:
        return len(self.users.get(userid, ()))

    def user_ids(self) -> list[str]:
        """The users with a connection here."""
        return list(self.users)

    def subscriptions(self) -> Iterator[tuple[str, str]]:
        """Every (channel, user id) with a connection of that user in that channel."""
        for channel, connections in self.channels.items():
            for connection in connections:
                yield channel, connection.userid

    def has_member(self, channel: str, userid: str) -> bool:
        """Whether a connection of ``userid`` here is in ``channel``."""
        return any(self.is_subscribed(c, channel) for c in self.users.get(userid, ()))

    def member_info(self, channel: str, userid: str) -> Any:
        """The info ``userid`` has in presence ``channel`` here; None if none."""
        return self.members.info(channel, userid)
