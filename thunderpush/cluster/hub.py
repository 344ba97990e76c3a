"""The hub of one app on a cluster node: the local hub, recording itself in Redis.

Every change to who is connected or subscribed here is handed to the node's
registry (``thunderpush.cluster.registry``), which writes it to Redis once per
loop turn; the command path never waits for Redis.  Presence channels are
cluster-wide: joins and leaves are announced by Redis (each user once,
whatever node its connections are on) and reach this hub from the bus as
numbered events; a new subscriber is told the cluster's member list, and from
then on only the events numbered after that list.  Pusher connections are
told both as Pusher frames, with the members' ``user_info`` that Redis keeps.

Recovery works the same way: a client that resubscribes with the last
position it saw is subscribed at once, and its channel's stream is read from
Redis (``thunderpush.cluster.history``); the messages that reach it from the
bus meanwhile are held, then sent after the missed ones if they come after
the last one sent.  Messages published before the read may still be on their
way from the bus after it answered; they are dropped until the bus passes the
position sent, so there is no gap and no duplicate.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from thunderpush.core.broker import NO_TRIGGER, Trigger
from thunderpush.core.history import Keep
from thunderpush.core.hub import Connection, Hub
from thunderpush.core.members import Members
from thunderpush.core.protocol import (
    encode_delivery,
    member_added,
    member_removed,
    subscription_succeeded,
)
from thunderpush.core.streams import NO_STREAM, Stream
from thunderpush.pusher import protocol as pusher

if TYPE_CHECKING:
    from thunderpush.cluster.registry import Registry

# A connection in a channel.
Subscription = tuple[Connection, str]
# A message held for a recovering connection: its (epoch, offset) and element.
Held = tuple[tuple[str, int], str]


class LocalMembers(Members):
    """Counts this node's presence-channel users, but announces nothing: Redis does."""

    def join(self, channel: str, userid: str, info: Any = None) -> bool:
        super().join(channel, userid, info)
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
        # (connection, channel) -> the position a recovery waits to read after,
        # and the channel's messages that came meanwhile, as (position, element).
        self._recovering: dict[Subscription, tuple[tuple[str, int], list[Held]]] = {}
        # (connection, channel) -> the position its recovery sent up to, until
        # the bus delivers a later one of that epoch.
        self._sent_until: dict[Subscription, tuple[str, int]] = {}
        # channel -> how many of its connections are in either dict above: a
        # publish to any other channel is delivered as on one process.
        self._guarded: dict[str, int] = {}

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

    def subscribe(self, connection: Connection, channel: str) -> bool:
        joined = super().subscribe(connection, channel)
        if joined:
            self.registry.member_changed(self, channel, connection.userid)
        return joined

    def unsubscribe(self, connection: Connection, channel: str) -> None:
        super().unsubscribe(connection, channel)
        self._forget(connection, channel)
        self.registry.member_changed(self, channel, connection.userid)

    def _transition(self, event: str, name: str) -> None:
        """Not this node's to say: Redis decides for the whole cluster (``Registry``)."""

    @staticmethod
    def is_pusher(connection: Connection) -> bool:
        """Whether ``connection`` speaks Pusher's protocol: for its whole life, even
        once removed (a welcome's answer may come after)."""
        return getattr(connection, "socket_id", None) is not None

    def has_member(self, channel: str, userid: str) -> bool:
        """Whether a connection of ``userid`` on this node is in ``channel``."""
        return any(self.is_subscribed(c, channel) for c in self.users.get(userid, ()))

    # -- presence channels across the cluster -----------------------------

    def welcome(self, connection: Connection, channel: str) -> None:
        if not self.is_subscribed(connection, channel):
            self.refuse_member(connection, channel)  # full on this node already
        elif self.registry.welcome(self, connection, channel):
            self._waiting.setdefault((connection, channel), [])
        else:
            self.welcome_alone(connection, channel)

    def refused(self, channel: str, userid: str) -> None:
        """Redis refused ``userid`` in presence ``channel``: the cluster has
        ``max_members`` other users there.  Its connections here leave the
        channel (their welcome and recovery are dropped) and are told why."""
        for connection in list(self.users.get(userid, ())):
            if self.is_subscribed(connection, channel):
                self.unsubscribe(connection, channel)
                self.refuse_member(connection, channel)

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

    def welcomed(
        self, connection: Connection, channel: str, members: list[tuple[str, Any]], seq: int
    ) -> None:
        """The cluster's member list for ``connection``, as (user id, ``user_info``)
        pairs, as of event number ``seq``."""
        waiting = self._waiting.pop((connection, channel), None)
        if waiting is None or not self.is_subscribed(connection, channel):
            return
        self._told_until[connection, channel] = seq
        if self.is_pusher(connection):
            welcome = pusher.presence_succeeded(channel, members)
        else:
            welcome = subscription_succeeded(channel, [user for user, _ in members])
        self._deliver([connection], welcome)
        for number, element in waiting:
            if number > seq:
                self._deliver([connection], element)

    def announce(
        self, channel: str, userid: str, seq: int, added: bool, info: str | None = None
    ) -> None:
        """Presence event number ``seq``: ``userid`` was ``added`` (with its ``user_info``
        as JSON, if it has one) or removed; to the others in ``channel``."""
        pushers = self._pusher_channels.get(channel, {})
        element = (member_added if added else member_removed)(channel, userid)
        frame = element
        if pushers and added:
            frame = pusher.member_added(channel, userid, None if info is None else json.loads(info))
        elif pushers:
            frame = pusher.member_removed(channel, userid)
        thunder, others = [], []
        for connection in self.channels.get(channel, ()):
            if connection.userid == userid:
                continue
            told = frame if connection in pushers else element
            waiting = self._waiting.get((connection, channel))
            if waiting is not None:
                waiting.append((seq, told))
            elif seq > self._told_until.get((connection, channel), 0):
                (others if connection in pushers else thunder).append(connection)
        self._deliver(thunder, element)
        self._deliver(others, frame)

    # -- recovery across the cluster ----------------------------------------

    def recover(
        self, connection: Connection, channel: str, since: tuple[str, int], keep: Keep | None
    ) -> None:
        """Asks Redis for ``channel``'s stream; ``recovered`` sends the answer."""
        key = (connection, channel)
        if key in self._recovering:
            return  # the read under way answers this one too
        if self._sent_until.pop(key, None) is not None:
            self._unguard(channel)  # this recovery's read supersedes the last one's
        asked = keep is not None and self.registry.recover(
            self, connection, channel, keep.ttl, since[1]
        )
        if asked:
            self._recovering[key] = (since, [])
            self._guard(channel)
        else:
            self.send_recovery(connection, channel, since, NO_STREAM)

    def recovered(self, connection: Connection, channel: str, stream: Stream | None) -> None:
        """The stream read for ``connection``'s recovery; None if Redis could not answer."""
        key = (connection, channel)
        waiting = self._recovering.pop(key, None)
        if waiting is None:
            return
        self._unguard(channel)
        since, held = waiting
        stream = stream or NO_STREAM
        self.send_recovery(connection, channel, since, stream)
        if stream.epoch:
            self._sent_until[key] = (stream.epoch, stream.offset)
            self._guard(channel)
        for position, element in held:
            if self._fresh(key, position):
                self._deliver([connection], element)

    def send_to_channel(
        self,
        channel: str,
        message: str | bytes,
        position: tuple[str, int] | None = None,
        trigger: Trigger | None = None,
    ) -> int:
        """As on one process, except for the connections whose recovery is under way
        (the message waits for the read) or that the read sent it to already.

        Only Thunderpush connections recover: the Pusher ones get the event at once.
        """
        if position is None or channel not in self._guarded:
            return super().send_to_channel(channel, message, position, trigger)
        trigger = trigger or NO_TRIGGER
        text = message if isinstance(message, str) else message.decode("utf-8")
        element = encode_delivery(text, channel, position)
        pushers = self._pusher_channels.get(channel, {})
        targets, others, held = [], [], 0
        for connection in self.channels.get(channel, ()):
            if connection in pushers:
                if connection.socket_id != trigger.exclude:
                    others.append(connection)
                continue
            key = (connection, channel)
            waiting = self._recovering.get(key)
            if waiting is not None:
                waiting[1].append((position, element))
                held += 1
            elif self._fresh(key, position):
                targets.append(connection)
        count = self._deliver(targets, element) + held
        if others:
            frame = pusher.trigger_event(trigger, channel, text)
            count += self._deliver(others, frame)
        self.messages += 1
        self.delivered_to_channels += count
        return count

    def _fresh(self, key: Subscription, position: tuple[str, int]) -> bool:
        """Whether the message at ``position`` comes after what the recovery of
        ``key`` sent (so always when none did)."""
        until = self._sent_until.get(key)
        if until is None or position[0] != until[0]:
            return True
        if position[1] <= until[1]:
            return False
        # The bus is past what the read saw: nothing more to drop.
        del self._sent_until[key]
        self._unguard(key[1])
        return True

    def _guard(self, channel: str) -> None:
        self._guarded[channel] = self._guarded.get(channel, 0) + 1

    def _unguard(self, channel: str) -> None:
        left = self._guarded.pop(channel) - 1
        if left:
            self._guarded[channel] = left

    def _forget(self, connection: Connection, channel: str) -> None:
        key = (connection, channel)
        self._waiting.pop(key, None)
        self._told_until.pop(key, None)
        self._alone.pop(key, None)
        if self._recovering.pop(key, None) is not None:
            self._unguard(channel)
        if self._sent_until.pop(key, None) is not None:
            self._unguard(channel)
