"""Pusher's signatures: HMAC-SHA256 with the app's secret, in lowercase hex.

An app's backend signs what a browser may do (a channel subscription, a user
sign-in) with the secret the browser never sees; the browser passes the
signature on as ``auth`` = ``<key>:<hex>``.  Each kind of signature has its own
function, and the checks compare in constant time.  No Tornado here.
"""

from __future__ import annotations

import hashlib
import hmac


def _hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def channel_auth(
    key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None
) -> str:
    """The ``auth`` of a ``private-`` or ``presence-`` subscription (presence signs
    ``channel_data`` too): ``key:HMAC(secret, "socket_id:channel[:channel_data]")``."""
    message = f"{socket_id}:{channel}"
    if channel_data is not None:
        message += f":{channel_data}"
    return f"{key}:{_hex(secret, message)}"


def signin_auth(key: str, secret: str, socket_id: str, user_data: str) -> str:
    """The ``auth`` of a ``pusher:signin``: ``key:HMAC(secret, "socket_id::user::user_data")``."""
    return f"{key}:{_hex(secret, f'{socket_id}::user::{user_data}')}"


def matches(expected: str, given: object) -> bool:
    """Whether the client's ``given`` auth is ``expected``, compared in constant time."""
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())
