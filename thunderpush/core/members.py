"""Who is in each presence channel: user ids, each once however many connections.

The hub counts a user's connections per presence channel here and asks which
join or leave changes the member list (a user's first connection in, its last
one out): only those are announced.  All presence bookkeeping is in this one
class, so a cluster backend can replace it with one that counts across nodes.
"""

from __future__ import annotations


class Members:
    """Presence channel -> user id -> how many of the user's connections are in it.

    The inner dicts keep insertion order, which is the order users joined in.
    """

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, int]] = {}

    def join(self, channel: str, userid: str) -> bool:
        """One more connection of ``userid`` in ``channel``; True if it is the user's first."""
        users = self._channels.setdefault(channel, {})
        count = users.get(userid, 0)
        users[userid] = count + 1
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
        if not users:
            # Empty entries would let clients grow the index without bound.
            del self._channels[channel]
        return True

    def users(self, channel: str) -> list[str]:
        """The members of ``channel``, in the order they joined."""
        return list(self._channels.get(channel, ()))
