"""Tokens by which an app's backend vouches for a user id or a channel subscription.

The browser holds only the public key, so it cannot prove who it is; the
backend, which knows the user and the app's secret, can.  It makes a token
with these functions and hands it to its page, which passes it on in
``CONNECT`` (a user token) or ``SUBSCRIBE`` (a channel token, for ``private-``
and ``presence-`` channels).  The server checks it with the same secret.
Standard library only, so a Django, Flask or FastAPI backend imports it with
``pip install thunderpush-client`` and nothing of the server::

    from thunderpush_client.auth import channel_token, user_token

    token = user_token("key", "secret", "alice")                  # CONNECT alice:key:<token>
    token = channel_token("key", "secret", "alice", "private-a")  # SUBSCRIBE private-a <token>

A token is ``<expires>.<signature>``: the Unix time after which it is refused,
and the HMAC-SHA256 (lowercase hex) of the key, the user id, the channel and
that time, keyed with the secret.  The first signed field names the kind of
token, so a user token never passes as a channel token, nor the reverse.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

__all__ = [
    "DEFAULT_TTL",
    "channel_token",
    "check_channel_token",
    "check_user_token",
    "user_token",
]

DEFAULT_TTL = 3600

_USER = "thunderpush-user"
_CHANNEL = "thunderpush-channel"
# A token's shape; anything else is refused before any hashing.
_TOKEN = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")


def user_token(
    apikey: str, secret: str, user: str, ttl: int = DEFAULT_TTL, now: float | None = None
) -> str:
    """A token that lets ``user`` CONNECT to the app ``apikey`` for ``ttl`` seconds."""
    return _make(secret, (_USER, apikey, user), ttl, now)


def channel_token(
    apikey: str,
    secret: str,
    user: str,
    channel: str,
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
) -> str:
    """A token that lets ``user`` SUBSCRIBE to ``channel`` of the app ``apikey`` for ``ttl`` s."""
    return _make(secret, (_CHANNEL, apikey, user, channel), ttl, now)


def check_user_token(
    apikey: str, secret: str, user: str, token: str, now: float | None = None
) -> bool:
    """Whether ``token`` is an unexpired user token for ``user`` of the app ``apikey``."""
    return _check(secret, (_USER, apikey, user), token, now)


def check_channel_token(
    apikey: str, secret: str, user: str, channel: str, token: str, now: float | None = None
) -> bool:
    """Whether ``token`` is an unexpired token for ``user`` on ``channel`` of the app ``apikey``."""
    return _check(secret, (_CHANNEL, apikey, user, channel), token, now)


def _make(secret: str, fields: tuple[str, ...], ttl: int, now: float | None) -> str:
    expires = str(int((time.time() if now is None else now) + ttl))
    return f"{expires}.{_signature(secret, fields, expires)}"


def _signature(secret: str, fields: tuple[str, ...], expires: str) -> str:
    message = "\n".join((*fields, expires)).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def _check(secret: str, fields: tuple[str, ...], token: object, now: float | None) -> bool:
    if not isinstance(token, str):
        return False
    match = _TOKEN.fullmatch(token)
    if match is None:
        return False
    expires, signature = match.groups()
    if int(expires) < (time.time() if now is None else now):
        return False
    try:
        expected = _signature(secret, fields, expires)
    except UnicodeEncodeError:
        # A lone surrogate (JSON can carry one) has no UTF-8: no token signs it.
        return False
    return hmac.compare_digest(signature.encode("ascii"), expected.encode("ascii"))
