"""One pusher-js client: the hub connection behind a websocket at ``/app/<key>``.

``PusherConnection`` reads Pusher's messages (``pusher:ping``, ``pusher:subscribe``,
``pusher:unsubscribe``, ``pusher:signin``, ``client-*`` events) and acts on the
app's hub as a Thunderpush connection does, so counts, presence, ``DELETE
users/<u>/`` and the API's listings cover both kinds.  It knows no transport:
``thunderpush.pusher.websocket`` gives it a ``socket`` (``send_element``,
``send_pack``, ``close``) and is, to the socket, its session.

Until it signs in or joins a presence channel a connection is anonymous: its
user id is its socket id.  It then becomes that user, once: a connection is one
user, and a presence subscription or sign-in as another one is refused.

A sign-in (``thunderpush.pusher.signin``) and a client event
(``thunderpush.pusher.client_events``) are each handled in a module of their
own, which is handed the connection: they read its state and call its
``become``, ``refuse``, ``fail`` and ``log``.

Nothing a client sends raises out of here: bad input gets a ``pusher:error``
(4300-4399, the connection stays) or is refused with a
``pusher:subscription_error``; a client over the command rate is closed with
4100 (reconnect later).
"""

from __future__ import annotations

import json
import logging
from time import monotonic
from typing import Any

from thunderpush.core import protocol as thunder
from thunderpush.core.apps import App
from thunderpush.core.commands import Limits, shown
from thunderpush.pusher import protocol, signin
from thunderpush.pusher.cache import CacheReplies
from thunderpush.pusher.client_events import client_event
from thunderpush.pusher.dialect import PUSHER
from thunderpush.pusher.limits import ClientEvents, channel_name_error
from thunderpush.pusher.protocol import PusherError
from thunderpush.pusher.signatures import channel_auth, matches

logger = logging.getLogger(__name__)

# What a Thunderpush close means for a Pusher client (the drain, DELETE users/<u>/...).
_CLOSES = {
    thunder.SERVER_SHUTDOWN.code: protocol.SERVER_SHUTDOWN,
    thunder.FORCED_DISCONNECT.code: protocol.TERMINATED,
}


class PusherConnection:
    """A Pusher client's state: its app, socket id, user, and presence infos."""

    # How the hub frames what it delivers here.
    dialect = PUSHER

    def __init__(
        self,
        socket: Any,
        app: App,
        limits: Limits,
        sessions: set[Any],
        activity_timeout: float = protocol.ACTIVITY_TIMEOUT,
        pong_timeout: float = protocol.PONG_TIMEOUT,
    ) -> None:
        self.socket = socket
        self.app = app
        self.limits = limits
        # The server's open sessions, which this one is among while it is open
        # (so that a shutdown drains it).
        self._sessions = sessions
        self.socket_id = protocol.new_socket_id()
        # The hub's name for this connection, which a publish may skip: its socket id.
        self.id = self.socket_id
        self.userid = self.socket_id
        # The user this connection is, once it signed in or joined a presence channel.
        self.user: str | None = None
        # Whether it signed in (``thunderpush.pusher.signin``): its user's channel is its own.
        self.signed_in = False
        # Presence channel -> this user's ``user_info`` there.
        self._infos: dict[str, Any] = {}
        self._activity_timeout = activity_timeout
        self._pong_timeout = pong_timeout
        self._heard_at = monotonic()
        self._pinged_at: float | None = None
        self._bucket_full_at = 0
        self._warned = False
        self._closed = False
        # Its cache-channel subscriptions still to be told their last event
        # (``thunderpush.pusher.cache``), while there are any.
        self.cache: CacheReplies | None = None
        # Its client events' rate (``thunderpush.pusher.client_events``).
        self.client_events = ClientEvents()
        # For the socket's log line when it is too slow (``thunderpush.transports.slow``).
        self.conn = self

    def open(self) -> None:
        self._sessions.add(self)
        self.app.hub.add(self)
        welcome = protocol.connection_established(self.socket_id, self._activity_timeout)
        self.socket.send_pack(welcome)

    # -- what the hub asks ------------------------------------------------

    def send_delivery(self, element: str) -> None:
        """Queue one frame, already JSON (encoded once per publish)."""
        if not self._closed:
            if self.cache is None:
                self.socket.send_element(element)
            else:
                self.cache.deliver(element)

    @property
    def closed(self) -> bool:
        """Whether it takes nothing more (the hub and ``CacheReplies`` ask)."""
        return self._closed

    def member_info(self, channel: str) -> Any:
        return self._infos.get(channel)

    def force_disconnect(self) -> None:
        self.close(*thunder.FORCED_DISCONNECT)

    def watched(self, online: bool, users: list[str]) -> None:
        """Users of this connection's watchlist came online or went offline
        (``thunderpush.core.watchlist``)."""
        self.send_delivery(protocol.watchlist_events(online, users))

    # -- what the socket asks (it takes this for its session) --------------

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """The connection ends: with ``code``, the server closes it (as the
        Pusher error the Thunderpush code means); without, the socket is gone."""
        if code is not None and not self._closed:
            self.fail(_CLOSES.get(code, protocol.RECONNECT))
        self._leave()

    def fail(self, error: PusherError) -> None:
        """Tell the client ``error`` and close with its code."""
        self.socket.send_pack(protocol.error(error))
        self.socket.close(error.code, error.message)
        self._leave()

    def remove_handler(self, handler: Any) -> None:
        """The socket lets go of this connection: nothing to do, ``close`` follows."""

    def log_context(self) -> dict[str, Any]:
        return {"app": self.app.key, "user": self.userid, "socket_id": self.socket_id}

    def heartbeat(self) -> None:
        """A beat of the shared timer: ping a silent client, close one that did not answer."""
        if self._closed:
            return
        now = monotonic()
        if self._pinged_at is not None:
            if now - self._pinged_at >= self._pong_timeout:
                self.fail(protocol.PONG_NOT_RECEIVED)
            return
        if now - self._heard_at >= self._activity_timeout:
            self._pinged_at = now
            self.socket.send_pack(protocol.PING)

    def on_message(self, message: str | bytes) -> None:
        """One websocket message from the client."""
        if self._closed:
            return
        self._heard_at = monotonic()
        self._pinged_at = None
        full_at = self.limits.take(self._bucket_full_at)
        if full_at is None:
            self.log(logging.WARNING, "Closing a Pusher connection: over the command rate.")
            self.fail(protocol.OVER_CAPACITY)
            return
        self._bucket_full_at = full_at
        try:
            parsed = json.loads(message)
        except (ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("event"), str):
            self.refuse(protocol.INVALID_MESSAGE, message)
            return
        name = parsed["event"]
        data = parsed.get("data")
        if name.startswith("client-"):
            client_event(self, name, parsed.get("channel"), data)
            return
        action = _ACTIONS.get(name)
        if action is None:
            self.log(logging.DEBUG, "Ignored the Pusher event %s.", shown(name))
        elif not isinstance(data, dict) and action is not PusherConnection._ping:
            self.refuse(protocol.INVALID_MESSAGE, message)
        else:
            action(self, data)

    # -- the client's messages ---------------------------------------------

    def _ping(self, data: Any) -> None:
        self.socket.send_pack(protocol.PONG)

    def _pong(self, data: Any) -> None:
        """Heard: ``on_message`` noted it."""

    def _subscribe(self, data: dict[str, Any]) -> None:
        channel = data.get("channel")
        if not isinstance(channel, str):
            self.refuse(protocol.INVALID_MESSAGE, data)
            return
        if channel.startswith(protocol.USER_CHANNEL_PREFIX):
            self._subscribe_user_channel(channel)
            return
        refusal = self._refusal(channel, data)
        if refusal is not None:
            message, status = refusal
            self.log(logging.DEBUG, "Refused %s on %s: %s", self.userid, shown(channel), message)
            self.socket.send_pack(protocol.subscription_error(channel, message, status))
            return
        hub = self.app.hub
        hub.subscribe(self, channel)
        cached = protocol.is_cache_channel(channel)
        if thunder.is_presence_channel(channel):
            if cached:  # its last event follows the member list, which the hub sends
                self._cache_replies().welcoming[channel] = None
            hub.welcome(self, channel)
        else:
            answer = protocol.subscription_succeeded(channel)
            hub.when_routed(self, channel, lambda: self._succeeded(channel, answer, cached))

    def _succeeded(self, channel: str, answer: str, cached: bool) -> None:
        self.socket.send_pack(answer)
        if cached:
            self._cache_replies().send_last(channel)

    def _cache_replies(self) -> CacheReplies:
        if self.cache is None:
            self.cache = CacheReplies(self)
        return self.cache

    def _refusal(self, channel: str, data: dict[str, Any]) -> tuple[str, int] | None:
        """Why ``channel`` is refused (the message and an HTTP-like status), or None.

        A presence subscription that passes makes this connection its user.
        """
        invalid = channel_name_error(channel, self.app.pusher_limits)
        if invalid is not None:
            return invalid, 400
        hub = self.app.hub
        if hub.subscription_count(self) >= self.limits.max_channels and not hub.is_subscribed(
            self, channel
        ):
            return thunder.TOO_MANY_CHANNELS, 400
        if not thunder.needs_channel_token(channel):
            return None
        presence = thunder.is_presence_channel(channel)
        channel_data = data.get("channel_data") if presence else None
        if presence and not isinstance(channel_data, str):
            return "A presence subscription needs channel_data.", 400
        app = self.app
        expected = channel_auth(app.key, app.secret, self.socket_id, channel, channel_data)
        if not matches(expected, data.get("auth")):
            return "Invalid signature: expected the HMAC-SHA256 of the socket id and channel.", 401
        if not presence:
            return None
        member = signin.member(channel_data)
        if member is None:
            return "channel_data must be a JSON object with a user_id.", 400
        userid, info = member
        most = app.pusher_limits.max_user_info_bytes
        if most and protocol.user_info_size(info) > most:
            return f"user_info too large: at most {most} bytes as JSON.", 400
        if self.user is not None and self.user != userid:
            return f"This connection is user {self.user}.", 403
        self.become(userid)
        self._infos[channel] = info
        return None

    def _subscribe_user_channel(self, channel: str) -> None:
        """pusher-js 8 subscribes to its user's channel once signed in: ``send_to_user``
        reaches it there (``Hub.send_to_user``)."""
        if self.signed_in and channel == protocol.USER_CHANNEL_PREFIX + self.user:
            self.socket.send_pack(protocol.subscription_succeeded(channel))
        else:
            message = "Only the user this connection signed in as has this channel."
            self.socket.send_pack(protocol.subscription_error(channel, message, 403))

    def _unsubscribe(self, data: dict[str, Any]) -> None:
        channel = data.get("channel")
        if isinstance(channel, str):
            self._infos.pop(channel, None)
            if self.cache is not None:
                self.cache.forget(channel)
            self.app.hub.unsubscribe(self, channel)

    # -- what the messages' handlers use (``signin``, ``client_events`` too) --

    def become(self, userid: str) -> None:
        """This connection is ``userid`` from now on (it was anonymous: its socket id)."""
        if self.user == userid:
            return
        hub = self.app.hub
        channels = hub.channels_of(self)
        hub.remove(self)
        self.user = self.userid = userid
        hub.add(self)
        for channel in channels:
            hub.subscribe(self, channel)

    def _leave(self) -> None:
        if not self._closed:
            self._closed = True
            self.app.hub.remove(self)
            self._sessions.discard(self)

    def refuse(self, error: PusherError, what: Any) -> None:
        """A ``pusher:error`` that keeps the connection; the first is logged as a warning."""
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        self.log(level, "Refused a Pusher message (%s): %s.", error.message, shown(what))
        self.socket.send_pack(protocol.error(error))

    def log(self, level: int, message: str, *args: Any) -> None:
        """A log line with this connection's app, user and socket id."""
        if logger.isEnabledFor(level):
            logger.log(level, message, *args, extra=self.log_context())


_ACTIONS = {
    "pusher:ping": PusherConnection._ping,
    "pusher:pong": PusherConnection._pong,
    "pusher:subscribe": PusherConnection._subscribe,
    "pusher:unsubscribe": PusherConnection._unsubscribe,
    "pusher:signin": signin.sign_in,
}
