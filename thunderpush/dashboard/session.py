"""The dashboard's session cookie: proof that its holder gave an app's key and secret.

The secret crosses the network once, in the login form's POST body; the
browser then keeps only ``<key>.<expires>.<signature>``: the key (base64url
without padding, so the value needs no quoting), the expiry, and the
HMAC-SHA256 of both keyed with the app's secret.  So the cookie never holds
the secret, it expires on its own, and a new secret (a restart, or the
configuration reloaded) ends every session made with the old one.  The first
signed field names the purpose, so no token of ``thunderpush.auth`` passes as a session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time

from thunderpush.core.apps import App, Apps

# How long a login lasts, in seconds.
SESSION_SECONDS = 12 * 3600

_PURPOSE = "thunderpush-dashboard"
# The cookie's shape; anything else is refused before any hashing.
_SESSION = re.compile(r"([A-Za-z0-9_-]{1,2000})\.([0-9]{1,12})\.([0-9a-f]{64})")


def make_session(app: App, now: float | None = None) -> str:
    """A cookie value that lets its holder see the dashboard as ``app`` for a while."""
    expires = str(int((time.time() if now is None else now) + SESSION_SECONDS))
    key = base64.urlsafe_b64encode(app.key.encode("utf-8")).decode("ascii").rstrip("=")
    return f"{key}.{expires}.{_signature(app.secret, app.key, expires)}"


def check_session(apps: Apps, cookie: str | None, now: float | None = None) -> App | None:
    """The app whose unexpired session ``cookie`` is, or None."""
    match = _SESSION.fullmatch(cookie or "")
    if match is None:
        return None
    encoded, expires, signature = match.groups()
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    app = apps.get(key)
    if app is None or int(expires) < (time.time() if now is None else now):
        return None
    if not hmac.compare_digest(signature, _signature(app.secret, key, expires)):
        return None
    return app


def _signature(secret: str, key: str, expires: str) -> str:
    message = "\n".join((_PURPOSE, key, expires)).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
