"""Pusher's limits on an app's Pusher traffic, and its encrypted channels.

An app's ``PusherLimits`` (``thunderpush.config``: Pusher's own numbers unless
configured, per app) bound what its Pusher clients and Pusher's HTTP API may
send, so that an application that fits Pusher fits here, and one that would be
refused by Pusher is refused here the same way: a trigger whose ``data`` is
over ``max_event_bytes`` gets 413, a client event over it, or past
``max_client_events_per_second``, gets ``pusher:error`` 4301 (the connection
stays), a connection past the app's ``max_app_connections`` is closed with
4004.  Thunderpush's own API and clients keep Thunderpush's rules.

Encrypted channels (``private-encrypted-``) are private channels whose events
the backend encrypts for pusher-js (the Pusher server libraries do, given an
``encryption_master_key_base64``): the server passes their ``data`` on
untouched and never sees the key, and it refuses client events there, as
Pusher does, since a client's would go out in clear.
"""

from __future__ import annotations

from thunderpush.config import PusherLimits
from thunderpush.core.apps import App
from thunderpush.core.commands import take_tokens
from thunderpush.core.presence import LocalPresence
from thunderpush.core.protocol import is_channel_name
from thunderpush.core.results import Result, then
from thunderpush.pusher.protocol import PusherError
from thunderpush.transports.door.answers import ApiError

ENCRYPTED_PREFIX = "private-encrypted-"

OVER_CONNECTION_QUOTA = PusherError(4004, "Application is over connection quota")
ENCRYPTED_CLIENT_EVENT = PusherError(
    4301, "Client events are not supported on encrypted channels (private-encrypted-)"
)
CLIENT_EVENT_RATE = PusherError(4301, "Client event rejected due to rate limit")

_SECOND_NS = 1_000_000_000


def is_encrypted_channel(channel: str) -> bool:
    return channel.startswith(ENCRYPTED_PREFIX)


def channel_name_error(name: object, limits: PusherLimits) -> str | None:
    """Why ``name`` is no channel name for Pusher (its characters, its length), or None."""
    longest = limits.max_channel_name_length
    if is_channel_name(name, longest):
        return None
    return f"Invalid channel name: 1-{longest} of a-z A-Z 0-9 _-=@,.;"


def data_size(data: str) -> int:
    """The bytes of an event's ``data`` as Pusher counts them: its UTF-8."""
    return len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))


def oversized(data: str, limits: PusherLimits) -> str | None:
    """Why ``data`` is too large for one event (over ``max_event_bytes``), or None."""
    most = limits.max_event_bytes
    if most and len(data) * 4 > most and data_size(data) > most:
        return f"Event data too large: {data_size(data)} bytes, at most {most}"
    return None


def check_event_size(data: str, limits: PusherLimits) -> None:
    """``ApiError`` 413 for a trigger's ``data`` over the app's ``max_event_bytes``."""
    why = oversized(data, limits)
    if why is not None:
        raise ApiError(413, why)


class ClientEvents:
    """One connection's client events: refused on an encrypted channel, too large,
    or past ``max_client_events_per_second`` (a token bucket kept as the time it
    is full again: ``thunderpush.core.commands.take_tokens``)."""

    __slots__ = ("_full_at",)

    def __init__(self) -> None:
        self._full_at = 0

    def refusal(self, channel: str, data: str, limits: PusherLimits) -> PusherError | None:
        """Why this client event is refused, or None (then it is counted)."""
        if is_encrypted_channel(channel):
            return ENCRYPTED_CLIENT_EVENT
        why = oversized(data, limits)
        if why is not None:
            return PusherError(4301, f"Client event rejected: {why}")
        rate = limits.max_client_events_per_second
        if rate:
            interval = _SECOND_NS // rate
            full_at = take_tokens(self._full_at, interval, interval * rate)
            if full_at is None:
                return CLIENT_EVENT_RATE
            self._full_at = full_at
        return None


def over_connection_quota(app: App) -> Result[bool]:
    """Whether ``app`` has ``max_app_connections`` open already (never, at 0).

    Counted by its presence, so across the cluster: each node's connections as
    it last recorded them (once per loop turn), so a burst of connections at
    once on several nodes may pass the limit by a few, as a count that is not
    a lock must.  A count costs one read here; in a cluster, when this node's
    are not enough, a read of each node's record in Redis (a pass over the
    app's users there), which is why it is off by default.
    """
    most = app.pusher_limits.max_app_connections
    if not most:
        return False
    if app.hub.connection_count() >= most:
        return True
    if isinstance(app.presence, LocalPresence):
        return False  # this process holds all of the app's connections
    return then(app.presence.connection_count(app), lambda total: total >= most)
