"""The events a webhook carries, the body that carries them, and its signature.

An event is ``(name, subject)``: ``("channel_occupied", "news")`` or
``("user_offline", "ann")``.  A POST carries a batch of them::

    {"time_ms": 1700000000000, "events": [{"name": "channel_occupied", "channel": "news"}]}

made by ``payload`` and signed with the app's secret (``signature``), so the backend knows the
events come from this server and were not changed on the way.  The event names are the
hub's transitions (``thunderpush.core.listener``: ``CHANNEL_OCCUPIED``...).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

Event = tuple[str, str]

# The two kinds of event, which are also the names of their subject's field.
CHANNEL = "channel"
USER = "user"
KINDS = (CHANNEL, USER)


def payload(events: Iterable[Event], time_ms: int) -> bytes:
    """The JSON body of one POST, UTF-8."""
    items = [{"name": name, kind(name): subject} for name, subject in events]
    return json.dumps(
        {"time_ms": time_ms, "events": items}, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``secret``: ``X-Thunder-Signature``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def kind(name: str) -> str:
    """``USER`` for ``user_online`` and ``user_offline``, else ``CHANNEL``."""
    return USER if name.startswith("user_") else CHANNEL
