"""The events a webhook carries, the body that carries them, and its headers.

An event is ``(name, subject, detail)``: ``("channel_occupied", "news", None)``,
``("user_offline", "ann", None)`` or, in Pusher's format,
``("member_added", "presence-room", {"user_id": "ann"})``.  A POST carries a
batch of them::

    {"time_ms": 1700000000000, "events": [{"name": "channel_occupied", "channel": "news"}]}

made by ``payload`` (the subject is the event's ``user`` for a user event, else
its ``channel``; the detail's fields follow) and signed with the app's secret
(``headers``), so the backend knows the events come from this server and were
not changed on the way.  The event names are the hub's transitions
(``thunderpush.core.listener``: ``CHANNEL_OCCUPIED``, ``MEMBER_ADDED``...).

Two formats share the body and differ in what they carry and how they sign:
``THUNDERPUSH`` (the default) carries the channel and user events and signs
with ``X-Thunder-Key`` / ``X-Thunder-Signature``; ``PUSHER`` carries Pusher's
events (channels, presence members, client events, cache misses,
subscription counts) and signs with ``X-Pusher-Key`` / ``X-Pusher-Signature``,
which Pusher's server libraries check (``validate_webhook``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any

from thunderpush.core.listener import (
    CACHE_MISS,
    CHANNEL_OCCUPIED,
    CHANNEL_VACATED,
    CLIENT_EVENT,
    MEMBER_ADDED,
    MEMBER_REMOVED,
    SUBSCRIPTION_COUNT,
    USER_OFFLINE,
    USER_ONLINE,
)

# Pusher's extra fields of an event (``{"user_id": "ann"}``), or None.
Detail = dict[str, Any] | None
Event = tuple[str, str, Detail]

# The kinds of event: each has its own queue and its own counts in the metrics.
# A channel's and a user's are Thunderpush's first two (and the names of their
# subject's field); the others are Pusher's.
CHANNEL = "channel"
USER = "user"
MEMBER = "member"
KINDS = (USER, CHANNEL, MEMBER, CLIENT_EVENT, CACHE_MISS, SUBSCRIPTION_COUNT)

# The formats, and the events each carries (the others are left).
THUNDERPUSH = "thunderpush"
PUSHER = "pusher"
FORMATS = (THUNDERPUSH, PUSHER)
CARRIED = {
    THUNDERPUSH: (USER_ONLINE, USER_OFFLINE, CHANNEL_OCCUPIED, CHANNEL_VACATED),
    PUSHER: (
        CHANNEL_OCCUPIED,
        CHANNEL_VACATED,
        MEMBER_ADDED,
        MEMBER_REMOVED,
        CLIENT_EVENT,
        CACHE_MISS,
        SUBSCRIPTION_COUNT,
    ),
}


def payload(events: Iterable[Event], time_ms: int) -> bytes:
    """The JSON body of one POST, UTF-8."""
    items = []
    for name, subject, detail in events:
        item = {"name": name, USER if name in _USER_EVENTS else CHANNEL: subject}
        if detail:
            item.update(detail)
        items.append(item)
    return json.dumps(
        {"time_ms": time_ms, "events": items}, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``secret``: ``X-Thunder-Signature``
    and ``X-Pusher-Signature`` alike."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def headers(form: str, key: str, secret: str, body: bytes) -> dict[str, str]:
    """The headers of a POST of ``body`` in format ``form`` for the app ``key``."""
    prefix = "X-Pusher-" if form == PUSHER else "X-Thunder-"
    return {
        "Content-Type": "application/json",
        prefix + "Key": key,
        prefix + "Signature": signature(secret, body),
    }


def kind(name: str) -> str:
    """The kind of the event ``name``: ``USER``, ``CHANNEL``, ``MEMBER``, or the
    name itself for Pusher's others."""
    return _KIND_OF.get(name, name)


_USER_EVENTS = (USER_ONLINE, USER_OFFLINE)
_KIND_OF = {
    USER_ONLINE: USER,
    USER_OFFLINE: USER,
    CHANNEL_OCCUPIED: CHANNEL,
    CHANNEL_VACATED: CHANNEL,
    MEMBER_ADDED: MEMBER,
    MEMBER_REMOVED: MEMBER,
}
