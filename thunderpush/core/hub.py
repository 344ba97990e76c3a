"""The hub of one app on this process: its connections, their channels, and fan-out.

A ``Hub`` knows nothing about HTTP, SockJS or Tornado.  It holds
*connections*: any object with

* ``userid`` - the user id given in ``CONNECT``,
* ``send_delivery(element)`` - queue one delivery (a JSON text) to the client,
* ``force_disconnect()`` - close the connection with code 9002,
* optionally ``closed`` - true once it takes nothing more (a recovery stops).

``thunderpush.transports.connection.ThunderConnection`` is the SockJS
connection that implements them.  A Pusher connection
(``thunderpush.pusher.connection``) also has a ``socket_id`` (not None) and
``member_info(channel)``, its user's info in a presence channel: the hub
sends it Pusher frames (``thunderpush.pusher.protocol``), built once per
publish, and a publish may exclude one socket id (the Pusher sender's).

What the API asks for reaches a hub through the ``Broker``
(``thunderpush.core.broker``), so the hub only ever serves the connections of
its own process.  In ``presence-`` channels the hub also
announces who joins and leaves (``member_added``/``member_removed`` events),
counting users in ``thunderpush.core.members``.  The channels that keep
history keep it in ``streams`` (``thunderpush.core.streams``), and a
subscriber that reconnects is sent what it missed (``recover``).  A channel's
first connection in and last out, and a user's, are told to ``on_transition``
(the app's webhook queue, ``thunderpush.webhooks``), if anything listens.
Example::

    hub = Hub()
    hub.add(conn)
    hub.subscribe(conn, "news")
    hub.send_to_channel("news", '{"a": 1}')   # -> 1
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from thunderpush.core.broker import NO_TRIGGER, Trigger
from thunderpush.core.history import Keep
from thunderpush.core.members import Members
from thunderpush.core.protocol import (
    TOO_MANY_MEMBERS,
    encode_delivery,
    is_presence_channel,
    is_valid_channel_name,
    member_added,
    member_removed,
    recovered,
    subscription_error,
    subscription_succeeded,
)
from thunderpush.core.streams import Stream, Streams
from thunderpush.pusher import protocol as pusher
from thunderpush.webhooks.events import (
    CHANNEL_OCCUPIED,
    CHANNEL_VACATED,
    USER_OFFLINE,
    USER_ONLINE,
)

logger = logging.getLogger(__name__)

Connection = Any


class Hub:
    """Connections of one app, by user and by channel, and delivery to them.

    Users and channel members are kept in insertion-ordered dicts used as sets:
    a connection that subscribes twice is one subscription, removal is O(1) and
    ``channel_users`` keeps the order of first subscription.
    """

    # The most distinct users in one presence channel (``--max-presence-members``,
    # set by ``Apps.add``); 0: no cap.
    max_members: int = 0

    def __init__(self) -> None:
        self.users: dict[str, dict[Connection, None]] = {}
        self.channels: dict[str, dict[Connection, None]] = {}
        # Which channels each connection is in, so that a disconnect costs
        # O(its channels) rather than a scan of every channel.
        self._subscriptions: dict[Connection, set[str]] = {}
        # The Pusher connections, and those of each channel: a channel with
        # none is served exactly as before, at the cost of one lookup.
        self._pusher_connections: dict[Connection, None] = {}
        self._pusher_channels: dict[str, dict[Connection, None]] = {}
        self.members = Members()
        # The history of this app's channels that keep it (filled by the broker).
        self.streams = Streams()
        # Messages handed to this hub (publishes, sends to a user), and the
        # deliveries they made (not presence events), counted once per message
        # by how many connections it reached: for the metrics and the
        # statistics line.
        self.messages = 0
        self.delivered_to_channels = 0
        self.delivered_to_users = 0
        # Told ``(event, name)`` when a channel gets its first connection or loses
        # its last, and a user likewise: the app's webhook queue
        # (``thunderpush.webhooks``); None, the default, costs a test per change.
        self.on_transition: Callable[[str, str], None] | None = None

    # -- delivery ---------------------------------------------------------

    def send_to_channel(
        self,
        channel: str,
        message: str | bytes,
        position: tuple[str, int] | None = None,
        trigger: Trigger | None = None,
    ) -> int:
        """Deliver ``message`` to every connection in ``channel``; return how many.

        ``position`` (epoch, offset) is the message's place in the channel's
        stream, when the channel keeps history.  Pusher connections get it as
        ``trigger`` says (``thunderpush.core.broker.Trigger``); Thunderpush
        connections get the payload whatever the event, and are never excluded,
        but never get a Pusher client event.
        """
        text = _text(message)
        element = encode_delivery(text, channel, position)
        subscribers = self.channels.get(channel, ())
        if trigger is not None and trigger.client:
            count = self._deliver_client_event(channel, text, trigger)
        elif channel in self._pusher_channels:
            trigger = trigger or NO_TRIGGER
            pusher_element = pusher.trigger_event(trigger, channel, text)
            count = self._deliver_both(
                channel, subscribers, element, pusher_element, trigger.exclude
            )
        else:
            count = self._deliver(subscribers, element)
        self.messages += 1
        self.delivered_to_channels += count
        return count

    def send_to_user(self, userid: str, message: str | bytes) -> int:
        """Deliver ``message`` to every connection of ``userid``; return how many.

        A Pusher connection (signed in as ``userid``) gets it as the event
        ``pusher.DEFAULT_EVENT`` on the user's channel, as pusher-js expects.
        """
        text = _text(message)
        element = encode_delivery(text)
        connections = self.users.get(userid, ())
        if self._pusher_connections:
            pushers = [c for c in connections if c in self._pusher_connections]
            others = [c for c in connections if c not in self._pusher_connections]
            user_channel = pusher.USER_CHANNEL_PREFIX + userid
            count = self._deliver(others, element) + self._deliver(
                pushers, pusher.event(pusher.DEFAULT_EVENT, user_channel, text)
            )
        else:
            count = self._deliver(connections, element)
        self.messages += 1
        self.delivered_to_users += count
        return count

    def _deliver_client_event(self, channel: str, text: str, trigger: Trigger) -> int:
        """A Pusher client's event to the channel's Pusher connections but the sender's."""
        targets = [
            c for c in self._pusher_channels.get(channel, ()) if c.socket_id != trigger.exclude
        ]
        if not targets:
            return 0
        return self._deliver(targets, pusher.trigger_event(trigger, channel, text))

    def _deliver_both(
        self,
        channel: str,
        targets: Iterable[Connection],
        element: str,
        pusher_element: str,
        exclude: str | None = None,
    ) -> int:
        """``element`` to the Thunderpush connections of ``targets`` and
        ``pusher_element`` to the Pusher ones, but the socket ``exclude``."""
        pushers = self._pusher_channels.get(channel)
        if pushers is None:
            return self._deliver(targets, element)
        targets = list(targets)
        thunder = [c for c in targets if c not in pushers]
        others = [c for c in targets if c in pushers and c.socket_id != exclude]
        return self._deliver(thunder, element) + self._deliver(others, pusher_element)

    def _deliver(self, connections: Iterable[Connection], element: str) -> int:
        # A snapshot: a send may close a connection, which removes it and
        # would otherwise change the dict under the loop.
        targets = list(connections)
        for connection in targets:
            try:
                connection.send_delivery(element)
            except Exception:
                # One broken receiver must never cost the others the message.
                logger.exception("Delivery to user %r failed.", connection.userid)
        return len(targets)

    def disconnect_user(self, userid: str) -> None:
        """Close every connection of ``userid`` (each close removes it)."""
        for connection in list(self.users.get(userid, ())):
            connection.force_disconnect()

    def disconnect_all(self) -> None:
        for userid in list(self.users):
            self.disconnect_user(userid)

    # -- membership -------------------------------------------------------

    def add(self, connection: Connection) -> None:
        """``connection`` is online as its ``userid``."""
        connections = self.users.get(connection.userid)
        if connections is None:
            connections = self.users[connection.userid] = {}
            self._transition(USER_ONLINE, connection.userid)
        connections[connection] = None
        self._subscriptions.setdefault(connection, set())
        if getattr(connection, "socket_id", None) is not None:
            self._pusher_connections[connection] = None

    def remove(self, connection: Connection) -> None:
        """``connection`` is gone: out of its user and every channel."""
        for channel in self._subscriptions.pop(connection, ()):
            self._leave(connection, channel)
        self._pusher_connections.pop(connection, None)
        if self._discard(self.users, connection.userid, connection):
            self._transition(USER_OFFLINE, connection.userid)

    def subscribe(self, connection: Connection, channel: str) -> bool:
        """Add ``connection`` to ``channel``; in a presence channel, a new user is announced.

        Returns whether it is in the channel now: False for an invalid name, or
        a presence channel that has ``max_members`` other users already (its
        ``welcome`` then says so).
        """
        if not is_valid_channel_name(channel):
            logger.debug("Invalid channel name %r.", channel)
            return False
        subscribers = self.channels.get(channel)
        if subscribers is not None and connection in subscribers:
            return True
        if self._full(channel, connection.userid):
            logger.debug("User %s refused in %s: full.", connection.userid, channel)
            return False
        if subscribers is None:
            subscribers = self.channels[channel] = {}
            self._transition(CHANNEL_OCCUPIED, channel)
        subscribers[connection] = None
        self._subscriptions.setdefault(connection, set()).add(channel)
        info = None
        if getattr(connection, "socket_id", None) is not None:
            self._pusher_channels.setdefault(channel, {})[connection] = None
            info = connection.member_info(channel)
        logger.debug("User %s subscribed to %s.", connection.userid, channel)
        userid = connection.userid
        if is_presence_channel(channel) and self.members.join(channel, userid, info):
            others = [other for other in subscribers if other is not connection]
            self._deliver_both(
                channel,
                others,
                member_added(channel, userid),
                pusher.member_added(channel, userid, self.members.info(channel, userid)),
            )
        return True

    def _full(self, channel: str, userid: str) -> bool:
        """Whether ``userid`` may not join presence ``channel``: it is not a member,
        and ``max_members`` users are (a cluster's Redis checks the cluster's)."""
        cap = self.max_members
        return (
            cap > 0
            and is_presence_channel(channel)
            and self.members.count(channel) >= cap
            and not self.members.has(channel, userid)
        )

    def welcome(self, connection: Connection, channel: str) -> None:
        """Tells ``connection``, now in presence ``channel``, who is there; or, if
        ``subscribe`` refused it as one user too many, that it is refused.

        A cluster hub answers once the cluster has told it (``thunderpush.cluster``).
        """
        if not self.is_subscribed(connection, channel):
            self.refuse_member(connection, channel)
        elif connection in self._pusher_channels.get(channel, ()):
            members = self.members.with_info(channel)
            connection.send_delivery(pusher.presence_succeeded(channel, members))
        else:
            connection.send_delivery(subscription_succeeded(channel, self.channel_members(channel)))

    @staticmethod
    def refuse_member(connection: Connection, channel: str) -> None:
        """Tells ``connection`` that presence ``channel`` has too many members for it:
        ``subscription_error`` ``Too many members.``, or Pusher's with status 403."""
        if getattr(connection, "socket_id", None) is not None:
            refusal = pusher.subscription_error(channel, TOO_MANY_MEMBERS, 403)
        else:
            refusal = subscription_error(channel, TOO_MANY_MEMBERS)
        connection.send_delivery(refusal)

    def recover(
        self, connection: Connection, channel: str, since: tuple[str, int], keep: Keep | None
    ) -> None:
        """Sends ``connection``, now in ``channel``, what it missed after ``since``
        (epoch, offset), then a ``recovered`` event that says whether that was all.

        Here nothing can be published in between, so nothing is missed or sent
        twice.  A cluster hub reads the stream from the cluster instead.
        """
        self.send_recovery(connection, channel, since, self.streams.read(channel, keep))

    def send_recovery(
        self, connection: Connection, channel: str, since: tuple[str, int], stream: Stream
    ) -> None:
        """Sends ``connection`` the messages of ``stream`` after ``since``, if it still
        has them all, then the ``recovered`` event.

        Each message is built as it is queued and the connection's unsent cap is
        checked as it is: once the connection is ``closed`` (over the cap) nothing
        more is built, so a recovery costs at most the cap and one message.
        """
        epoch, offset = since
        complete = stream.recoverable(epoch, offset)
        if complete:
            for number, payload in stream.after(offset).messages:
                if getattr(connection, "closed", False):
                    return
                connection.send_delivery(encode_delivery(payload, channel, (epoch, number)))
        if getattr(connection, "closed", False):
            return
        connection.send_delivery(recovered(channel, complete, stream.epoch, stream.offset))

    def unsubscribe(self, connection: Connection, channel: str) -> None:
        """Remove this one connection from ``channel``; the others stay."""
        channels = self._subscriptions.get(connection)
        if channels is not None and channel in channels:
            channels.discard(channel)
            self._leave(connection, channel)

    def _leave(self, connection: Connection, channel: str) -> None:
        """Out of ``channel``; in a presence channel, a user's last connection out is announced."""
        if self._discard(self.channels, channel, connection):
            self._transition(CHANNEL_VACATED, channel)
        self._discard(self._pusher_channels, channel, connection)
        userid = connection.userid
        if is_presence_channel(channel) and self.members.leave(channel, userid):
            self._deliver_both(
                channel,
                self.channels.get(channel, ()),
                member_removed(channel, userid),
                pusher.member_removed(channel, userid),
            )

    @staticmethod
    def _discard(index: dict[str, dict[Connection, None]], key: str, member: Connection) -> bool:
        """``member`` out of ``index[key]``; True if it was the last one there."""
        members = index.get(key)
        if members is None:
            return False
        members.pop(member, None)
        if members:
            return False
        # Empty entries would let clients grow the index without bound.
        del index[key]
        return True

    def _transition(self, event: str, name: str) -> None:
        """A channel or user came or went here: the webhook's event, if the app has one."""
        if self.on_transition is not None:
            self.on_transition(event, name)

    # -- what this process holds -------------------------------------------

    def user_count(self) -> int:
        return len(self.users)

    def connection_count(self) -> int:
        return sum(map(len, self.users.values()))

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


def _text(message: str | bytes) -> str:
    return message.decode("utf-8") if isinstance(message, bytes) else message
