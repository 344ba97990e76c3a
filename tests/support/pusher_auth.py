"""The app's backend for pusher-js in the tests: the auth endpoints it calls.

Served by the Node tests (tests/test_pusher_js.py) and by the browser tests'
site (tests/browser/test_pusher.py), which sign as an app's backend would,
with the Pusher signatures.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import tornado.web

from thunderpush.pusher.signatures import channel_auth, signin_auth

from . import KEY, SECRET

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
        if channel.startswith("presence-"):
            channel_data = json.dumps({"user_id": user, "user_info": {"name": user.upper()}})
            auth = channel_auth(KEY, secret, socket_id, channel, channel_data)
            self.write({"auth": auth, "channel_data": channel_data})
        else:
            self.write({"auth": channel_auth(KEY, secret, socket_id, channel)})
