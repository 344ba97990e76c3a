"""The app's backend for pusher-js in the tests: the auth endpoints it calls.

Served by the Node tests (tests/test_pusher_js.py) and by the browser tests'
site (tests/browser/test_pusher.py), which sign as an app's backend would,
with the Pusher signatures.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs

import pusher
import tornado.web

from thunderpush.pusher.signatures import channel_auth, signin_auth

from . import KEY, SECRET

# The backend's key for encrypted channels (``private-encrypted-``), which the
# server never sees: the backend encrypts triggers, pusher-js decrypts them.
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
# The Pusher app id the tests give the server, which the ``pusher`` library needs.
APP_ID = "1"


def encrypting_backend(port: int = 0) -> pusher.Pusher:
    """The ``pusher`` library as a backend with encrypted channels, whose triggers
    go to the server on ``port``."""
    return pusher.Pusher(
        app_id=APP_ID,
        key=KEY,
        secret=SECRET,
        host="127.0.0.1",
        port=port or None,
        ssl=False,
        encryption_master_key_base64=MASTER_KEY,
    )


# The route: ``/u/<user>/auth`` (``channelAuthorization``) and ``/u/<user>/signin``
# (``userAuthentication``).
AUTH_ROUTE = r"/u/([^/]+)/(auth|signin)"


class AuthHandler(tornado.web.RequestHandler):
    """The backend's answers for ``user``, as Laravel's ``/broadcasting/auth`` gives them.

    ``private-forged`` is signed with the wrong secret, so the server refuses it.
    A user ``ann;bob,cat`` is ``ann`` signing in with the watchlist ``["bob", "cat"]``.
    """

    def post(self, user: str, kind: str) -> None:
        form = {name: values[0] for name, values in parse_qs(self.request.body.decode()).items()}
        socket_id = form["socket_id"]
        user, watching, watched = user.partition(";")
        if kind == "signin":
            signed: dict = {"id": user, "name": user.upper()}
            if watching:
                signed["watchlist"] = watched.split(",")
            user_data = json.dumps(signed)
            self.write(
                {"auth": signin_auth(KEY, SECRET, socket_id, user_data), "user_data": user_data}
            )
            return
        channel = form["channel_name"]
        secret = "forged" if channel == "private-forged" else SECRET
        if channel.startswith("private-encrypted-"):
            # With the channel's shared_secret, from the backend's master key.
            answer = encrypting_backend().authenticate(channel, socket_id)
            self.write({**answer, "shared_secret": answer["shared_secret"].decode()})
            return
        if channel.startswith("presence-"):
            # The user "big" has a user_info over Pusher's 1 KB.
            info = {"name": "x" * 1100 if user == "big" else user.upper()}
            channel_data = json.dumps({"user_id": user, "user_info": info})
            auth = channel_auth(KEY, secret, socket_id, channel, channel_data)
            self.write({"auth": auth, "channel_data": channel_data})
        else:
            self.write({"auth": channel_auth(KEY, secret, socket_id, channel)})
