"""The checks every request to Pusher's HTTP API passes before it is served.

A request is checked in this order, each failure a 401 with Pusher's
explanation: the authentication parameters are there, ``auth_key`` is an
app's key, ``auth_version`` is 1.0, ``auth_timestamp`` is within
``MAX_SKEW`` seconds of this server's clock, ``auth_signature`` signs the
method, the path as sent and every other parameter with that app's secret
(``signatures.request_signature``), and only then the app id of the path
(``/apps/<app_id>/...``) is that app's.  So the app id is never looked up
before the signature holds: a request that is not correctly signed is
answered the same whether its app id exists or not, and a correctly signed
one for another or an unknown id (only a secret's holder can make one) gets
a 401 too.  The one path the ``pusher`` PyPI library sends without an app id
(``/users/<id>/terminate_connections``) is the key's app's.  The signature
covers ``body_md5``; that it is the body's MD5 is checked once the body is in
(``check_body``), so a body is never read for a request whose signature is
wrong.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping

from thunderpush.core.apps import App, Apps
from thunderpush.pusher.signatures import matches, request_signature
from thunderpush.transports.door.answers import ApiError

# Pusher accepts a request whose auth_timestamp is this close to its clock, in seconds.
MAX_SKEW = 600

_REQUIRED = ("auth_key", "auth_timestamp", "auth_version", "auth_signature")

# A request signed with an app's secret whose path names another app id (or none's).
WRONG_APP = ApiError(401, "auth_key is not the key of the app in the path")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message)


def authenticate(
    apps: Apps, app_id: str | None, method: str, path: str, params: Mapping[str, str]
) -> App:
    """The app this signed request is for; ``ApiError`` says why it is not acceptable.

    ``path`` is the path exactly as the client sent it (not percent-decoded):
    it is what the client signed.
    """
    for name in _REQUIRED:
        if name not in params:
            raise unauthorized(f"Missing authentication parameter: {name}")
    app = apps.get(params["auth_key"])
    if app is None:
        raise unauthorized("Unknown auth_key")
    if params["auth_version"] != "1.0":
        raise unauthorized("Unsupported auth_version: only 1.0 is supported")
    _check_timestamp(params["auth_timestamp"])
    expected = request_signature(app.secret, method, path, params)
    if not matches(expected, params["auth_signature"]):
        raise unauthorized("Invalid signature")
    if app_id is not None and app_id != app.id:
        raise WRONG_APP
    return app


def _check_timestamp(text: str) -> None:
    now = time.time()
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise unauthorized("Invalid auth_timestamp: seconds since the epoch")
    if abs(now - int(text)) > MAX_SKEW:
        raise unauthorized(
            f"Timestamp expired: given timestamp ({text}) not within {MAX_SKEW}s"
            f" of server time ({now:.0f})"
        )


def check_body(params: Mapping[str, str], body: bytes) -> None:
    """A body must come with its MD5 (``body_md5``), which the signature covered."""
    given = params.get("body_md5")
    if given is None:
        if body:
            raise unauthorized("Missing authentication parameter: body_md5")
        return
    if not matches(hashlib.md5(body).hexdigest(), given.lower()):
        raise unauthorized("body_md5 does not match the body")
