"""The SockJS side: one ``ThunderSocketHandler`` per browser connection.

It turns client commands (``CONNECT``, ``SUBSCRIBE``, ``UNSUBSCRIBE``) into
messenger calls and deliveries from the messenger into SockJS frames.  Nothing a
client sends can raise out of here: bad input is ignored with one warning line,
or closes the connection where PROTOCOL.md says so.
"""

from __future__ import annotations

import logging
from typing import Any

from thunderpush import protocol
from thunderpush.messenger import Messenger
from thunderpush.router import SockJSConnection
from thunderpush.sortingstation import SortingStation

logger = logging.getLogger(__name__)

# Long enough to recognise a bad command in the log, short enough that a
# client cannot fill the log with its garbage.
_LOGGED_CHARS = 120


def _shown(message: Any) -> str:
    text = repr(message)
    return text if len(text) <= _LOGGED_CHARS else text[:_LOGGED_CHARS] + "..."


class ThunderSocketHandler(SockJSConnection):
    """A browser connection: a user id once connected, then subscriptions."""

    messenger: Messenger | None = None
    userid: str | None = None

    def on_open(self, info: Any) -> None:
        # No messenger until the client says CONNECT with a valid key.
        self.messenger = None

    def on_message(self, msg: Any) -> None:
        if not isinstance(msg, str):
            logger.warning("Ignored a non-string message: %s.", _shown(msg))
            return
        command, space, argument = msg.partition(" ")
        action = self._commands.get(command)
        if action is None or not space:
            logger.warning("Received invalid message: %s.", _shown(msg))
            return
        action(self, argument)

    def on_close(self) -> None:
        if self.messenger is not None:
            self.messenger.unregister_user(self)
            self.messenger = None
        logger.debug("User %s has disconnected.", self.userid)

    # -- commands ---------------------------------------------------------

    def handle_connect(self, argument: str) -> None:
        if self.connected:
            logger.warning("Ignored a second CONNECT from user %s.", self.userid)
            return
        parts = argument.split(":")
        if len(parts) != 2 or not parts[0]:
            logger.warning("Ignored a malformed CONNECT: %s.", _shown(argument))
            return
        userid, apikey = parts
        messenger = SortingStation.instance().get_messenger_by_apikey(apikey)
        if messenger is None:
            self.close(*protocol.INVALID_API_KEY)
            return
        self.userid = userid
        self.messenger = messenger
        messenger.register_user(self)

    def handle_subscribe(self, argument: str) -> None:
        for channel in self._channels(argument):
            self.messenger.subscribe_user_to_channel(self, channel)

    def handle_unsubscribe(self, argument: str) -> None:
        for channel in self._channels(argument):
            self.messenger.unsubscribe_user_from_channel(self, channel)

    def _channels(self, argument: str) -> list[str]:
        """The valid channel names of a (UN)SUBSCRIBE; closes if not connected."""
        if not self.connected:
            logger.warning("Closing a connection that subscribed before CONNECT.")
            self.close(*protocol.SUBSCRIBE_BEFORE_CONNECT)
            return []
        channels = argument.split(":")
        invalid = [name for name in channels if name and not protocol.is_valid_channel_name(name)]
        if invalid:
            logger.warning("Skipped invalid channel names: %s.", _shown(invalid))
        return [name for name in channels if protocol.is_valid_channel_name(name)]

    _commands = {
        "CONNECT": handle_connect,
        "SUBSCRIBE": handle_subscribe,
        "UNSUBSCRIBE": handle_unsubscribe,
    }

    # -- what the messenger calls ----------------------------------------

    def send_delivery(self, element: str) -> None:
        """Queue one delivery; ``element`` is already JSON, encoded once."""
        session = self.session
        if not session.is_closed:
            session.send_element(element)

    def force_disconnect(self) -> None:
        self.close(*protocol.FORCED_DISCONNECT)

    def close(self, code: int = 3000, message: str = "Go away!") -> None:
        self.session.close(code, message)

    @property
    def connected(self) -> bool:
        return self.messenger is not None
