"""The command language a browser speaks, and the state of one browser connection.

A client sends ``CONNECT <user>:<key>``, then ``SUBSCRIBE c1:c2`` and
``UNSUBSCRIBE c1:c2`` (PROTOCOL.md section 4).  ``Client`` turns those into
hub calls and holds what a connection is to the hub (its app and user id).  It
knows no transport: ``thunderpush.transports.connection`` mixes it into a
SockJS connection, which provides ``close`` and ``send_delivery``.

Nothing a client sends can raise out of here: bad input is ignored with one
warning line, or closes the connection where the protocol says so.
"""

from __future__ import annotations

import logging
from typing import Any

from thunderpush.core import protocol
from thunderpush.core.apps import App, Apps

logger = logging.getLogger(__name__)

# Long enough to recognise a bad command in the log, short enough that a
# client cannot fill the log with its garbage.
_LOGGED_CHARS = 120


def shown(message: Any) -> str:
    """``message`` as a log line may show it: repr'd, and cut short."""
    text = repr(message)
    return text if len(text) <= _LOGGED_CHARS else text[:_LOGGED_CHARS] + "..."


class Client:
    """A browser connection: a user id once connected, then subscriptions.

    Subclasses provide ``apps`` (where CONNECT finds the app of a key),
    ``close(code, reason)`` and ``send_delivery(element)``.
    """

    apps: Apps
    app: App | None = None
    userid: str | None = None

    def handle(self, message: Any) -> None:
        """Run one client command."""
        if not isinstance(message, str):
            logger.warning("Ignored a non-string message: %s.", shown(message))
            return
        command, space, argument = message.partition(" ")
        action = self._commands.get(command)
        if action is None or not space:
            logger.warning("Received invalid message: %s.", shown(message))
            return
        action(self, argument)

    def leave(self) -> None:
        """The connection ended: it is no longer online anywhere."""
        if self.app is not None:
            self.app.hub.remove(self)
            self.app = None
        logger.debug("User %s has disconnected.", self.userid)

    @property
    def connected(self) -> bool:
        return self.app is not None

    def force_disconnect(self) -> None:
        self.close(*protocol.FORCED_DISCONNECT)

    def close(self, code: int, reason: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    # -- commands ---------------------------------------------------------

    def _connect(self, argument: str) -> None:
        if self.connected:
            logger.warning("Ignored a second CONNECT from user %s.", self.userid)
            return
        parts = argument.split(":")
        if len(parts) != 2 or not parts[0]:
            logger.warning("Ignored a malformed CONNECT: %s.", shown(argument))
            return
        userid, key = parts
        app = self.apps.get(key)
        if app is None:
            self.close(*protocol.INVALID_API_KEY)
            return
        self.userid = userid
        self.app = app
        app.hub.add(self)

    def _subscribe(self, argument: str) -> None:
        for channel in self._channels(argument):
            self.app.hub.subscribe(self, channel)

    def _unsubscribe(self, argument: str) -> None:
        for channel in self._channels(argument):
            self.app.hub.unsubscribe(self, channel)

    def _channels(self, argument: str) -> list[str]:
        """The valid channel names of a (UN)SUBSCRIBE; closes if not connected."""
        if not self.connected:
            logger.warning("Closing a connection that subscribed before CONNECT.")
            self.close(*protocol.SUBSCRIBE_BEFORE_CONNECT)
            return []
        channels = argument.split(":")
        invalid = [name for name in channels if name and not protocol.is_valid_channel_name(name)]
        if invalid:
            logger.warning("Skipped invalid channel names: %s.", shown(invalid))
        return [name for name in channels if protocol.is_valid_channel_name(name)]

    _commands = {
        "CONNECT": _connect,
        "SUBSCRIBE": _subscribe,
        "UNSUBSCRIBE": _unsubscribe,
    }
