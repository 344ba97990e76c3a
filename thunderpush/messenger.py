"""The hub of one application: who is online, who listens where, and fan-out.

A ``Messenger`` knows nothing about Tornado or SockJS.  It holds *connections*:
any object with

* ``userid`` - the user id given in ``CONNECT``,
* ``send_delivery(element)`` - queue one delivery (a JSON text) to the client,
* ``force_disconnect()`` - close the connection with code 9002.

``thunderpush.handler.ThunderSocketHandler`` is the SockJS connection that
implements them; tests and embedding applications may pass their own.

Example::

    messenger = Messenger("key", "secret")
    messenger.register_user(conn)
    messenger.subscribe_user_to_channel(conn, "news")
    messenger.send_to_channel("news", '{"a": 1}')   # -> 1
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from thunderpush.protocol import encode_delivery, is_valid_channel_name

logger = logging.getLogger(__name__)

Connection = Any


class Messenger:
    """Users, channels and connections of one API key, and delivery to them.

    Users and channel members are kept in insertion-ordered dicts used as sets:
    a connection that subscribes twice is one subscription, removal is O(1) and
    ``get_users_in_channel`` keeps the order of first subscription.
    """

    def __init__(self, apikey: str, apisecret: str, *args: Any, **kwargs: Any) -> None:
        self.apikey = apikey
        self.apisecret = apisecret
        self.users: dict[str, dict[Connection, None]] = {}
        self.channels: dict[str, dict[Connection, None]] = {}
        # Which channels each connection is in, so that a disconnect costs
        # O(its channels) rather than a scan of every channel.
        self._subscriptions: dict[Connection, set[str]] = {}

    is_valid_channel_name = staticmethod(is_valid_channel_name)

    # -- delivery ---------------------------------------------------------

    def send_to_channel(self, channel: str, message: str | bytes) -> int:
        """Deliver ``message`` to every connection in ``channel``; return how many."""
        element = encode_delivery(_text(message), channel)
        return self._deliver(self.channels.get(channel, ()), element)

    def send_to_user(self, userid: str, message: str | bytes) -> int:
        """Deliver ``message`` to every connection of ``userid``; return how many."""
        element = encode_delivery(_text(message))
        return self._deliver(self.users.get(userid, ()), element)

    def _deliver(self, connections: Iterable[Connection], element: str) -> int:
        # A snapshot: a send may close a connection, which unregisters it and
        # would otherwise change the dict under the loop.
        targets = list(connections)
        for connection in targets:
            try:
                connection.send_delivery(element)
            except Exception:
                # One broken receiver must never cost the others the message.
                logger.exception("Delivery to user %r failed.", connection.userid)
        return len(targets)

    # -- membership -------------------------------------------------------

    def register_user(self, user: Connection) -> None:
        self.users.setdefault(user.userid, {})[user] = None
        self._subscriptions.setdefault(user, set())

    def unregister_user(self, user: Connection) -> None:
        for channel in self._subscriptions.pop(user, ()):
            self._discard(self.channels, channel, user)
        self._discard(self.users, user.userid, user)

    def subscribe_user_to_channel(self, user: Connection, channel: str) -> None:
        if not is_valid_channel_name(channel):
            logger.debug("Invalid channel name %r.", channel)
            return
        self.channels.setdefault(channel, {})[user] = None
        self._subscriptions.setdefault(user, set()).add(channel)
        logger.debug("User %s subscribed to %s.", user.userid, channel)

    def unsubscribe_user_from_channel(self, user: Connection, channel: str) -> None:
        """Remove this one connection from ``channel``; the others stay."""
        self._discard(self.channels, channel, user)
        self._subscriptions.get(user, set()).discard(channel)

    def force_disconnect_user(self, userid: str) -> None:
        """Close every connection of ``userid`` (each close unregisters it)."""
        for connection in list(self.users.get(userid, ())):
            connection.force_disconnect()

    @staticmethod
    def _discard(index: dict[str, dict[Connection, None]], key: str, user: Connection) -> None:
        members = index.get(key)
        if members is None:
            return
        members.pop(user, None)
        if not members:
            # Empty entries would let clients grow the index without bound.
            del index[key]

    # -- queries ----------------------------------------------------------

    def get_user_count(self) -> int:
        return len(self.users)

    def get_connections_count(self) -> int:
        return sum(map(len, self.users.values()))

    def is_user_online(self, userid: str) -> bool:
        return userid in self.users

    def get_channel_user_count(self, channel: str) -> int:
        return len(self.channels.get(channel, ()))

    def get_users_in_channel(self, channel: str) -> list[Connection]:
        """The connections in ``channel``, in order of subscription."""
        return list(self.channels.get(channel, ()))

    def destroy(self) -> None:
        for userid in list(self.users):
            self.force_disconnect_user(userid)


def _text(message: str | bytes) -> str:
    return message.decode("utf-8") if isinstance(message, bytes) else message
