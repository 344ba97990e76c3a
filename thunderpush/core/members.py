"""Who is in each presence channel: user ids, each once however many connections.

The hub counts a user's connections per presence channel here and asks which
join or leave changes the member list (a user's first connection in, its last
one out): only those are announced.  A cluster node's hub counts its own users
here too, but announces nothing itself (``Hub.presence_here``): Redis counts
the users of every node and announces them.
"""

from __future__ import annotations

from typing import Any


class Members:
    """Presence channel -> user id -> how many of the user's connections are in it.

    The inner dicts keep insertion order, which is the order users joined in.
    """

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, int]] = {}
        # Pusher's ``user_info`` of the members that have one, as their first
        # connection in gave it (Thunderpush connections give none).
        self._info: dict[str, dict[str, Any]] = {}

    def join(self, channel: str, userid: str, info: Any = None) -> bool:
        """One more connection of ``userid`` in ``channel``; True if it is the user's first."""
        users = self._channels.setdefault(channel, {})
        count = users.get(userid, 0)
        users[userid] = count + 1
        if info is not None and userid not in self._info.get(channel, ()):
            self._info.setdefault(channel, {})[userid] = info
        return count == 0

    def leave(self, channel: str, userid: str) -> bool:
        """One connection of ``userid`` fewer in ``channel``; True if it was the user's last."""
        users = self._channels.get(channel)
        if users is None or userid not in users:
            return False
        count = users[userid] - 1
        if count:
            users[userid] = count
            return False
        del users[userid]
        infos = self._info.get(channel)
        if infos is not None and infos.pop(userid, None) is not None and not infos:
            del self._info[channel]
        if not users:
            # Empty entries would let clients grow the index without bound.
            del self._channels[channel]
        return True

    def count(self, channel: str) -> int:
        """How many users are in ``channel``."""
        return len(self._channels.get(channel, ()))

    def has(self, channel: str, userid: str) -> bool:
        """Whether ``userid`` is in ``channel``."""
        return userid in self._channels.get(channel, ())

    def users(self, channel: str) -> list[str]:
        """The members of ``channel``, in the order they joined."""
        return list(self._channels.get(channel, ()))

    def info(self, channel: str, userid: str) -> Any:
        """The ``user_info`` of member ``userid`` of ``channel``; None if it has none."""
        return self._info.get(channel, {}).get(userid)

    def with_info(self, channel: str) -> list[tuple[str, Any]]:
        """The members of ``channel`` and their ``user_info``, in the order they joined."""
        infos = self._info.get(channel, {})
        return [(userid, infos.get(userid)) for userid in self._channels.get(channel, ())]
