"""The hub of one app on this process: its connections, their channels, and fan-out.

A ``Hub`` knows nothing about HTTP, SockJS or Tornado, nor about Redis.  It
holds *connections*: what it asks of one is ``Connection``, below, which
imports none of them (the SockJS connection,
``thunderpush.transports.sockjs.connection.ThunderConnection``, and the Pusher
one, ``thunderpush.pusher.connection``, implement it).  A publish is framed
once per dialect among its receivers (``Dialect.publication``); a channel
whose connections all speak Thunderpush costs one frame and one loop.

What the API asks for reaches a hub through the ``Broker``
(``thunderpush.core.broker``), so the hub only ever serves the connections of
its own process.  In ``presence-`` channels the hub also announces who joins
and leaves, counting users in ``thunderpush.core.members``, and tells
``on_transition`` (the app's webhooks: Pusher's ``member_added`` and
``member_removed``) where it announces them itself.  The channels that
keep history keep it in ``streams`` (``thunderpush.core.streams``), and a
subscriber that reconnects is sent what it missed (``recover``,
``thunderpush.core.recovery``).

The hub is never subclassed: it states facts (a user's first connection here
and its last, a channel's, every subscription) to its ``listener``
(``thunderpush.core.listener``), by default ``Transitions``, the app's
webhooks.  A cluster node's listener (``thunderpush.cluster.hub``) turns
``presence_here`` off, announces members through ``announce`` and answers
welcomes (``welcomed``, ``thunderpush.core.welcomes``) and recoveries
(``recovered``); the hub then holds a welcomed connection's presence events,
and a recovering connection's deliveries (``thunderpush.core.gates``), until
the answer comes.  Subscription counts and watchlists are told through
``Telling`` (``thunderpush.core.telling``), as the listener decides.  Example::

    hub = Hub()
    hub.add(conn)
    hub.subscribe(conn, "news")
    hub.send_to_channel("news", '{"a": 1}')   # -> 1
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from thunderpush.core.broker import PLAIN, PublishOptions
from thunderpush.core.counts import Counts
from thunderpush.core.dialect import OWN, THUNDERPUSH, Dialect, Foreign, dialect_of
from thunderpush.core.gates import Gates
from thunderpush.core.holdings import Holdings
from thunderpush.core.lasts import Lasts
from thunderpush.core.listener import MEMBER_ADDED, MEMBER_REMOVED, HubListener, Transitions
from thunderpush.core.members import Members
from thunderpush.core.protocol import is_channel_name, is_presence_channel
from thunderpush.core.recovery import Recovery
from thunderpush.core.streams import Streams
from thunderpush.core.telling import Telling
from thunderpush.core.watchlist import Watchlist
from thunderpush.core.welcomes import Welcomes

logger = logging.getLogger(__name__)


class Connection(Protocol):
    """What a hub asks of a connection it holds (a dict key: hashable by identity).

    A hub also reads, where a connection has them: ``closed`` (true once it
    takes nothing more: a recovery stops), ``dialect`` (how its clients are told
    things, ``thunderpush.core.dialect``; ``THUNDERPUSH`` without one), and with
    a dialect ``id`` (the name a publish's ``skip`` gives it) and
    ``member_info(channel)`` (its user's info in a presence channel).
    """

    @property
    def userid(self) -> str:
        """The user id given in ``CONNECT``."""

    def send_delivery(self, element: str) -> None:
        """Queue one delivery (a JSON text) to the client."""

    def force_disconnect(self) -> None:
        """Close the connection with code 9002 (the API's disconnect)."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` and ``reason`` (``close_holding``)."""


class Hub(Holdings, Welcomes, Recovery, Telling):
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
        # The connections of other dialects than Thunderpush's, and those of
        # each channel: a channel with none is served at the cost of one lookup.
        self._foreign: dict[Connection, Foreign] = {}
        self._mixed: dict[str, dict[Connection, None]] = {}
        self.members = Members()
        # False: presence events come from elsewhere (``announce``), not from
        # this hub's joins and leaves (a cluster's Redis counts the users).
        self.presence_here = True
        self.gates = Gates()
        # The history of this app's channels that keep it (filled by the broker).
        self.streams = Streams()
        # The last publication of the channels that keep it (filled by the broker).
        self.lasts = Lasts()
        # Messages handed to this hub (publishes, sends to a user), and the
        # deliveries they made (not presence events), counted once per message
        # by how many connections it reached: for the metrics and the
        # statistics line.
        self.messages = 0
        self.delivered_to_channels = 0
        self.delivered_to_users = 0
        # Told ``(event, name[, detail])`` of the app's webhook events
        # (``thunderpush.webhooks``; the names and details are in
        # ``thunderpush.core.listener``); None, the default, costs a test per change.
        self.on_transition: Callable[..., None] | None = None
        self.listener: HubListener = Transitions(self)
        # The channels' subscription counts to tell (``count_subscriptions``); None: off.
        self.counts: Counts | None = None
        # Who watches whom (``watch``): told as users come online and go.
        self.watchlist = Watchlist()

    # -- delivery ---------------------------------------------------------

    def send_to_channel(
        self,
        channel: str,
        message: str | bytes,
        position: tuple[str, int] | None = None,
        options: PublishOptions = PLAIN,
    ) -> int:
        """Deliver ``message`` to every connection in ``channel``; return how many.

        ``position`` (epoch, offset) is the message's place in the channel's
        stream, when the channel keeps history.  Each dialect frames it as
        ``options`` say, or leaves it out; a connection whose ``id`` is
        ``options.skip`` does not get it.  A connection recovering the channel
        gets it after what it missed, or not at all if that included it.
        """
        text = _text(message)
        subscribers = self.channels.get(channel)
        if subscribers is None:
            count = 0
        elif channel in self._mixed or (position is not None and self.gates.guards(channel)):
            count = self._fan_out(channel, subscribers, text, position, options)
        else:
            element = THUNDERPUSH.publication(channel, text, position, options)
            count = 0 if element is None else self._deliver(subscribers, element)
        self.messages += 1
        self.delivered_to_channels += count
        return count

    def _fan_out(
        self,
        channel: str,
        subscribers: Iterable[Connection],
        text: str,
        position: tuple[str, int] | None,
        options: PublishOptions,
    ) -> int:
        """A publish framed once per dialect among ``subscribers``, and held or
        dropped for the connections recovering ``channel``."""
        foreign, skip, gates = self._foreign, options.skip, self.gates
        guarded = position is not None and gates.guards(channel)
        batches: dict[Dialect, tuple[str | None, list[Connection]]] = {}
        held = 0
        for connection in list(subscribers):
            dialect, name = foreign.get(connection, OWN)
            if skip is not None and name == skip:
                continue
            batch = batches.get(dialect)
            if batch is None:
                frame = dialect.publication(channel, text, position, options)
                batch = batches[dialect] = (frame, [])
            if batch[0] is None:
                continue
            if guarded:
                verdict = gates.admit(connection, channel, position, batch[0])
                if verdict is not True:
                    held += verdict is None
                    continue
            batch[1].append(connection)
        count = held
        for element, targets in batches.values():
            if element is not None:
                count += self._deliver(targets, element)
        return count

    def send_to_user(self, userid: str, message: str | bytes) -> int:
        """Deliver ``message`` to every connection of ``userid``; return how many."""
        text = _text(message)
        connections = self.users.get(userid, ())
        if self._foreign:
            count = self._deliver_each(connections, lambda d: d.user_delivery(userid, text))
        else:
            count = self._deliver(connections, THUNDERPUSH.user_delivery(userid, text))
        self.messages += 1
        self.delivered_to_users += count
        return count

    def _deliver_each(
        self, connections: Iterable[Connection], frame: Callable[[Dialect], str]
    ) -> int:
        """To each of ``connections`` the ``frame`` of its dialect, built once per dialect."""
        batches: dict[Dialect, list[Connection]] = {}
        foreign = self._foreign
        for connection in connections:
            batches.setdefault(foreign.get(connection, OWN)[0], []).append(connection)
        return sum(self._deliver(targets, frame(d)) for d, targets in batches.items())

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

    def close_holding(self, code: int, reason: str, held: Callable[[str, str], bool]) -> None:
        """Close with ``code`` every connection whose user, one of whose channels or
        one of whose watched users ``held`` answers True for (``held("u", user id)``,
        ``held("c", channel)``): those a backend that came back may have missed
        messages for (each close removes it)."""
        users_of = self.watchlist.users_of
        for connection, channels in list(self._subscriptions.items()):
            if (
                held("u", connection.userid)
                or any(held("c", channel) for channel in channels)
                or any(held("u", user) for user in users_of(connection))
            ):
                connection.close(code, reason)

    def disconnect_all(self) -> None:
        for userid in list(self.users):
            self.disconnect_user(userid)

    # -- membership -------------------------------------------------------

    def add(self, connection: Connection) -> None:
        """``connection`` is online as its ``userid``."""
        userid = connection.userid
        connections = self.users.get(userid)
        first = connections is None
        if connections is None:
            connections = self.users[userid] = {}
        connections[connection] = None
        self._subscriptions.setdefault(connection, set())
        dialect = dialect_of(connection)
        if dialect is not THUNDERPUSH:
            self._foreign[connection] = (dialect, getattr(connection, "id", None))
        self.listener.connected(userid, first)

    def remove(self, connection: Connection) -> None:
        """``connection`` is gone: out of its user and every channel."""
        for channel in self._subscriptions.pop(connection, ()):
            self._leave(connection, channel)
        if self.watchlist.watchers:
            self.unwatch(connection)
        self._foreign.pop(connection, None)
        userid = connection.userid
        if userid in self.users:
            self.listener.disconnected(userid, self._discard(self.users, userid, connection))

    def subscribe(self, connection: Connection, channel: str) -> bool:
        """Add ``connection`` to ``channel``; in a presence channel, a new user is announced.

        Returns whether it is in the channel now: False for an invalid name, or
        a presence channel that has ``max_members`` other users already (its
        ``welcome`` then says so).
        """
        if not is_channel_name(channel):
            logger.debug("Invalid channel name %r.", channel)
            return False
        subscribers = self.channels.get(channel)
        if subscribers is not None and connection in subscribers:
            return True
        userid = connection.userid
        if self._full(channel, userid):
            logger.debug("User %s refused in %s: full.", userid, channel)
            return False
        first = subscribers is None
        if subscribers is None:
            subscribers = self.channels[channel] = {}
        subscribers[connection] = None
        self._subscriptions.setdefault(connection, set()).add(channel)
        if connection in self._foreign:
            self._mixed.setdefault(channel, {})[connection] = None
        logger.debug("User %s subscribed to %s.", userid, channel)
        if is_presence_channel(channel):
            member_info = getattr(connection, "member_info", None)
            info = None if member_info is None else member_info(channel)
            if self.members.join(channel, userid, info) and self.presence_here:
                info = self.members.info(channel, userid)
                others = [other for other in subscribers if other is not connection]
                self._deliver_each(others, lambda d: d.member_added(channel, userid, info))
                if self.on_transition is not None:
                    self.on_transition(MEMBER_ADDED, channel, {"user_id": userid})
        self.listener.subscribed(channel, userid, first)
        if self.counts is not None and not is_presence_channel(channel):
            self.counts.changed(channel)
        return True

    def when_routed(self, connection: Connection, channel: str, answer: Callable[[], None]) -> None:
        """Calls ``answer`` (a subscription's answer to ``connection``) once the
        listener says ``channel``'s messages reach this hub, if ``connection`` is
        still in ``channel`` then: in a cluster, a client told it is subscribed
        gets every message published after it was told."""

        def answer_if_subscribed() -> None:
            if self.is_subscribed(connection, channel):
                answer()

        self.listener.when_routed(channel, answer_if_subscribed)

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

    def unsubscribe(self, connection: Connection, channel: str) -> None:
        """Remove this one connection from ``channel``; the others stay."""
        channels = self._subscriptions.get(connection)
        if channels is not None and channel in channels:
            channels.discard(channel)
            self._leave(connection, channel)

    def _leave(self, connection: Connection, channel: str) -> None:
        """Out of ``channel``; in a presence channel, a user's last connection out is announced."""
        last = self._discard(self.channels, channel, connection)
        self._discard(self._mixed, channel, connection)
        self.gates.forget(connection, channel)
        userid = connection.userid
        if is_presence_channel(channel) and self.members.leave(channel, userid):
            if self.presence_here:
                self._deliver_each(
                    self.channels.get(channel, ()), lambda d: d.member_removed(channel, userid)
                )
                if self.on_transition is not None:
                    self.on_transition(MEMBER_REMOVED, channel, {"user_id": userid})
        self.listener.unsubscribed(channel, userid, last)
        if self.counts is not None and not is_presence_channel(channel):
            self.counts.changed(channel)

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


def _text(message: str | bytes) -> str:
    return message.decode("utf-8") if isinstance(message, bytes) else message
