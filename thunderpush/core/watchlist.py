"""Who watches whom: connections told when the users they watch come online and go.

A connection that watches users (a Pusher client signed in with a
``watchlist``, ``thunderpush.pusher.signin``) is told, through its own
``watched(online, users)``, which of them are online once the hub's listener
has found out (``HubListener.watching``: on one process the hub's own users,
on a cluster Redis's counts), then each time one of them comes online (its
first connection, cluster-wide) or goes offline (its last).  The hub keeps a
``Watchlist`` and calls it at those transitions; what a connection is told
depends on what it was told before, so a transition heard twice, or heard
while the first answer is on its way, is told once, in the right order: the
changes heard before the answer are held (the last state of each user) and
told after it, as far as they differ from it.

Bounded: a connection watches at most ``MAX_WATCHED`` users, and holds one
state per watched user.  Example::

    hub.watch(connection, ["ann", "bob"])   # connection.watched(True, ["ann"]) if ann is on
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# The users one connection may watch (Pusher's limit).
MAX_WATCHED = 100


class _Watch:
    """What one watching connection watches, was told, and waits for."""

    __slots__ = ("held", "online", "users", "waiting")

    def __init__(self, users: tuple[str, ...], waiting: int) -> None:
        self.users = users
        # The users it was told are online.
        self.online: set[str] = set()
        # How many answers its first states wait for, and what changed meanwhile.
        self.waiting = waiting
        self.held: dict[str, bool] = {}


class Watchlist:
    """The watching connections of one hub, by the users they watch."""

    def __init__(self) -> None:
        self.watchers: dict[str, dict[Any, None]] = {}
        self._watches: dict[Any, _Watch] = {}

    def add(self, connection: Any, users: Iterable[str]) -> list[str]:
        """``connection`` watches ``users`` from now on (instead of any before); its
        first states come in one part (``answered``) unless ``expect`` says more.
        Returns the users nobody here watched before."""
        self.remove(connection)
        watched = tuple(dict.fromkeys(users))
        self._watches[connection] = _Watch(watched, 1)
        new = []
        for user in watched:
            watchers = self.watchers.get(user)
            if watchers is None:
                watchers = self.watchers[user] = {}
                new.append(user)
            watchers[connection] = None
        return new

    def remove(self, connection: Any) -> list[str]:
        """``connection`` watches nobody any more; returns the users nobody here watches now."""
        watch = self._watches.pop(connection, None)
        if watch is None:
            return []
        gone = []
        for user in watch.users:
            watchers = self.watchers.get(user)
            if watchers is not None:
                watchers.pop(connection, None)
                if not watchers:
                    del self.watchers[user]
                    gone.append(user)
        return gone

    def users_of(self, connection: Any) -> tuple[str, ...]:
        """The users ``connection`` watches."""
        watch = self._watches.get(connection)
        return () if watch is None else watch.users

    def expect(self, connection: Any, parts: int) -> None:
        """``connection``'s first states come in ``parts`` answers (one per shard)."""
        watch = self._watches.get(connection)
        if watch is not None:
            watch.waiting = parts
            if not parts:
                self._waited(connection, watch)

    def answered(self, connection: Any, online: Iterable[str]) -> None:
        """One part of ``connection``'s first states: these of its users are online.
        Once every part came it is told them, then what changed meanwhile."""
        watch = self._watches.get(connection)
        if watch is None or watch.waiting <= 0:
            return
        watched = set(watch.users)
        watch.online.update(user for user in online if user in watched)
        watch.waiting -= 1
        if not watch.waiting:
            self._waited(connection, watch)

    def _waited(self, connection: Any, watch: _Watch) -> None:
        """Every part came: ``connection`` is told who is online, then what changed."""
        if watch.online:
            connection.watched(True, [user for user in watch.users if user in watch.online])
        held, watch.held = watch.held, {}
        for user, now in held.items():
            self._tell(connection, watch, user, now)

    def changed(self, user: str, online: bool) -> None:
        """``user`` came online (its first connection) or went offline (its last)."""
        for connection in list(self.watchers.get(user, ())):
            watch = self._watches[connection]
            if watch.waiting:
                watch.held[user] = online
            else:
                self._tell(connection, watch, user, online)

    @staticmethod
    def _tell(connection: Any, watch: _Watch, user: str, online: bool) -> None:
        if (user in watch.online) == online:
            return  # told already
        if online:
            watch.online.add(user)
        else:
            watch.online.discard(user)
        connection.watched(online, [user])
