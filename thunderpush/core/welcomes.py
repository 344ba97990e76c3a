"""What a hub tells a presence channel's connections of its members: the welcome
(who is there), each member added or removed after it, and a refusal (too many).

``Hub`` (``thunderpush.core.hub``) gets these methods from ``Welcomes``; they
are apart from the hub's fan-out and membership because they are where the
listener answers later: a cluster node's listener (``thunderpush.cluster.hub``)
welcomes from Redis (``welcomed``) and numbers the presence events it
``announce``s, and the hub holds a welcomed connection's events
(``thunderpush.core.gates``) until its member list comes.  On one process
``welcome`` answers at once from ``members`` and nothing is held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from thunderpush.core.dialect import OWN, Dialect, Foreign, MemberList, dialect_of
from thunderpush.core.protocol import TOO_MANY_MEMBERS

if TYPE_CHECKING:
    from thunderpush.core.gates import Gates
    from thunderpush.core.hub import Connection
    from thunderpush.core.listener import HubListener
    from thunderpush.core.members import Members


class Welcomes:
    """The presence half of a hub: welcomes, announcements, refusals."""

    users: dict[str, dict[Connection, None]]
    channels: dict[str, dict[Connection, None]]
    members: Members
    presence_here: bool
    gates: Gates
    listener: HubListener
    _foreign: dict[Connection, Foreign]
    # The hub's, for these methods: membership and delivery.
    is_subscribed: Callable[[Connection, str], bool]
    unsubscribe: Callable[[Connection, str], None]
    _deliver: Callable[[Iterable[Connection], str], int]

    def welcome(self, connection: Connection, channel: str) -> None:
        """Tells ``connection``, now in presence ``channel``, who is there; or, if
        ``subscribe`` refused it as one user too many, that it is refused.

        The listener may answer instead (a cluster's members): its events are
        then held until ``welcomed``.
        """
        if not self.is_subscribed(connection, channel):
            self.refuse_member(connection, channel)
        elif self.listener.members_wanted(connection, channel):
            self.gates.wait_for_members(connection, channel)
        else:
            self.welcome_alone(connection, channel)

    def welcome_alone(self, connection: Connection, channel: str) -> None:
        """Tells ``connection`` the members this hub knows; where presence is not
        here's alone (no cluster to ask), it is remembered to be told again."""
        self.gates.members_told(connection, channel)
        if not self.is_subscribed(connection, channel):
            return
        if not self.presence_here:
            self.gates.told_alone(connection, channel)
        welcome = dialect_of(connection).welcome(channel, self.members.with_info(channel))
        connection.send_delivery(welcome)

    def welcomed(self, connection: Connection, channel: str, members: MemberList, seq: int) -> None:
        """The listener's member list for ``connection``, as (user id, info) pairs, as
        of presence event number ``seq``; then the held events numbered after it."""
        subscribed = self.is_subscribed(connection, channel)
        waiting = self.gates.members_told(connection, channel, seq if subscribed else None)
        if waiting is None or not subscribed:
            return
        self._deliver([connection], dialect_of(connection).welcome(channel, members))
        for number, element in waiting:
            if number > seq:
                self._deliver([connection], element)

    def announce(self, channel: str, userid: str, seq: int, added: bool, info: Any = None) -> None:
        """Presence event number ``seq`` from the listener: ``userid`` was ``added``
        (with its ``info``) or removed; to the others in ``channel``, or held for
        those whose member list is on its way."""
        frames: dict[Dialect, str] = {}
        batches: dict[Dialect, list[Connection]] = {}
        foreign, gates = self._foreign, self.gates
        for connection in self.channels.get(channel, ()):
            if connection.userid == userid:
                continue
            dialect = foreign.get(connection, OWN)[0]
            frame = frames.get(dialect)
            if frame is None:
                frame = frames[dialect] = (
                    dialect.member_added(channel, userid, info)
                    if added
                    else dialect.member_removed(channel, userid)
                )
            if gates.presence_event(connection, channel, seq, frame):
                batches.setdefault(dialect, []).append(connection)
        for dialect, targets in batches.items():
            self._deliver(targets, frames[dialect])

    def refused(self, channel: str, userid: str) -> None:
        """``userid`` may not be in presence ``channel`` (the cluster has ``max_members``
        other users there): its connections here leave it and are told why."""
        for connection in list(self.users.get(userid, ())):
            if self.is_subscribed(connection, channel):
                self.unsubscribe(connection, channel)
                self.refuse_member(connection, channel)

    @staticmethod
    def refuse_member(connection: Connection, channel: str) -> None:
        """Tells ``connection`` that presence ``channel`` has too many members for it."""
        connection.send_delivery(dialect_of(connection).refusal(channel, TOO_MANY_MEMBERS))

    def rejoined(self, listed: Callable[[str], bool]) -> list[tuple[Connection, str]]:
        """The listener is back for the channels ``listed`` answers True for
        (presence event numbers start again there): their connections
        ``welcome_alone`` told, to be welcomed again."""
        return [key for key in self.gates.rejoined(listed) if self.is_subscribed(*key)]
