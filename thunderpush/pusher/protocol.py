"""Pusher Channels' wire vocabulary (protocol 7): the frames the server sends, its error codes.

Every frame is a JSON object with an ``event``; most carry their ``data`` as a
JSON *string* (Pusher's servers do, and pusher-js parses either).  Like
``thunderpush.core.protocol`` this module is Tornado-free and builds each
frame as text, so the hub encodes a publish's frame once for every Pusher
subscriber.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, NamedTuple

# The event name Pusher clients get for a publish through Thunderpush's own API.
DEFAULT_EVENT = "message"

# pusher-js 8 subscribes to this channel plus its user id once signed in: the
# server's messages to the user (``send_to_user``) arrive on it.
USER_CHANNEL_PREFIX = "#server-to-user-"

# Pusher's cache channels: each keeps the last event the backend published to
# it, sent to a new subscriber right after its subscription succeeded
# (``thunderpush.pusher.cache``).  ``str.startswith`` takes the tuple.
CACHE_PREFIXES = ("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-")

# The protocol versions served (``protocol=`` in the websocket URL's query).
PROTOCOL_VERSIONS = frozenset({"5", "6", "7"})

# How long a client may stay silent before it pings (Pusher's default), and
# how long the server waits for the pong to its own ping.
ACTIVITY_TIMEOUT = 120
PONG_TIMEOUT = 30

# Pusher caps event names at 200 characters; the HTTP API and client events
# both take printable ones only (``is_event_name``).
MAX_EVENT_NAME = 200


class PusherError(NamedTuple):
    """A ``pusher:error`` code and its message; 4000-4099 also close the connection."""

    code: int
    message: str


# 4000-4099: the client must not reconnect with the same settings.
APP_NOT_FOUND = PusherError(4001, "Application does not exist")
APP_DISABLED = PusherError(4003, "Application disabled")
PATH_NOT_FOUND = PusherError(4005, "Path not found")
INVALID_VERSION = PusherError(4006, "Invalid version string format")
UNSUPPORTED_PROTOCOL = PusherError(4007, "Unsupported protocol version")
UNAUTHORIZED = PusherError(4009, "Connection is unauthorized")
TERMINATED = PusherError(4009, "Connection terminated by the server")
# 4100-4199: reconnect after a while.
OVER_CAPACITY = PusherError(4100, "Over capacity")
# 4200-4299: reconnect at once.
RECONNECT = PusherError(4200, "Generic reconnect immediately")
PONG_NOT_RECEIVED = PusherError(4201, "Pong reply not received")
CLOSED_AFTER_INACTIVITY = PusherError(4202, "Closed after inactivity")
SERVER_SHUTDOWN = PusherError(4200, "Server shutting down")
# 4300-4399: errors that do not close the connection.
CLIENT_EVENT_REJECTED = PusherError(4301, "Client event rejected")
CLIENT_EVENTS_DISABLED = PusherError(4301, "Client events are not enabled for this app")
INVALID_MESSAGE = PusherError(4300, "Invalid message")

_SOCKET_ID = re.compile(r"[0-9]{1,20}\.[0-9]{1,20}")


def new_socket_id() -> str:
    """A socket id as Pusher makes them (``\\d+.\\d+``), unpredictable: it is signed."""
    return f"{secrets.randbelow(10**9) + 1}.{secrets.randbelow(10**9) + 1}"


def is_socket_id(value: object) -> bool:
    return isinstance(value, str) and _SOCKET_ID.fullmatch(value) is not None


def is_event_name(name: object) -> bool:
    """1-``MAX_EVENT_NAME`` printable characters (``str.isprintable``): no control,
    separator or unassigned character reaches a client in an event's name."""
    return isinstance(name, str) and 0 < len(name) <= MAX_EVENT_NAME and name.isprintable()


def user_info_size(info: Any) -> int:
    """The bytes of ``info`` as the server sends it (compact JSON, non-ASCII escaped):
    what an app's ``max_user_info_bytes`` (Pusher's 1 KB) bounds, since each join
    is announced to every member of the channel."""
    return len(_string(info))


def _frame(event: str, data: Any, channel: str | None = None) -> str:
    frame: dict[str, Any] = {"event": event}
    if channel is not None:
        frame["channel"] = channel
    frame["data"] = data
    return json.dumps(frame, separators=(",", ":"))


def _string(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def event(name: str, channel: str, data: str, user_id: str | None = None) -> str:
    """An event on ``channel``; ``data`` is sent as the string it is, never re-parsed."""
    frame = '{"event":' + json.dumps(name) + ',"channel":' + json.dumps(channel)
    frame += ',"data":' + json.dumps(data)
    if user_id is not None:
        frame += ',"user_id":' + json.dumps(user_id)
    return frame + "}"


def connection_established(socket_id: str, activity_timeout: int = ACTIVITY_TIMEOUT) -> str:
    data = {"socket_id": socket_id, "activity_timeout": activity_timeout}
    return _frame("pusher:connection_established", _string(data))


def error(error: PusherError) -> str:
    """``pusher:error``; its ``data`` is an object, as Pusher sends it."""
    return _frame("pusher:error", {"code": error.code, "message": error.message})


PING = _frame("pusher:ping", {})
PONG = _frame("pusher:pong", {})


def is_cache_channel(channel: str) -> bool:
    return channel.startswith(CACHE_PREFIXES)


def cache_miss(channel: str) -> str:
    """What a cache channel's new subscriber gets when nothing is kept: no ``data``,
    as Pusher sends it."""
    return '{"event":"pusher:cache_miss","channel":' + json.dumps(channel) + "}"


# How the frames that answer a subscription begin (``subscription_succeeded``,
# ``presence_succeeded``, ``subscription_error``): the channel follows.
SUCCEEDED_HEAD = '{"event":"pusher_internal:subscription_succeeded","channel":'
REFUSED_HEAD = '{"event":"pusher:subscription_error","channel":'


def answered_channel(frame: str) -> str | None:
    """The channel whose subscription ``frame`` answers (it succeeded or was
    refused), or None for any other frame."""
    if frame.startswith(SUCCEEDED_HEAD) or frame.startswith(REFUSED_HEAD):
        channel = json.loads(frame).get("channel")
        return channel if isinstance(channel, str) else None
    return None


def subscription_succeeded(channel: str) -> str:
    return _frame("pusher_internal:subscription_succeeded", "{}", channel)


def presence_succeeded(channel: str, members: list[tuple[str, Any]]) -> str:
    """The member list a new presence subscriber gets: ``(user id, user info)`` pairs."""
    presence = {
        "ids": [user for user, _ in members],
        "hash": dict(members),
        "count": len(members),
    }
    data = _string({"presence": presence})
    return _frame("pusher_internal:subscription_succeeded", data, channel)


def subscription_error(channel: str, message: str, status: int = 401) -> str:
    data = {"type": "AuthError", "error": message, "status": status}
    return _frame("pusher:subscription_error", _string(data), channel)


def member_added(channel: str, user_id: str, user_info: Any) -> str:
    data = {"user_id": user_id, "user_info": user_info}
    return _frame("pusher_internal:member_added", _string(data), channel)


def member_removed(channel: str, user_id: str) -> str:
    return _frame("pusher_internal:member_removed", _string({"user_id": user_id}), channel)


def subscription_count(channel: str, count: int) -> str:
    """A channel's subscription count (``--subscription-count``), which pusher-js
    hands to ``channel.bind("pusher:subscription_count", ...)``."""
    data = _string({"subscription_count": count})
    return _frame("pusher_internal:subscription_count", data, channel)


def watchlist_events(online: bool, user_ids: list[str]) -> str:
    """Users of a signed-in connection's watchlist came online or went offline, which
    pusher-js hands to ``pusher.user.watchlist.bind("online" | "offline", ...)``."""
    events = [{"name": "online" if online else "offline", "user_ids": user_ids}]
    return _frame("pusher_internal:watchlist_events", _string({"events": events}))


def signin_success(user_data: str) -> str:
    return _frame("pusher:signin_success", _string({"user_data": user_data}))
