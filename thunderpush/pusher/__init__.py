"""The Pusher Channels protocol, a second front door to the same hubs.

``protocol`` holds Pusher's frames and error codes, ``signatures`` the
HMAC signatures its clients and server libraries send, ``connection`` the
websocket at ``/app/<key>`` that pusher-js and Laravel Echo open (its sign-in
and watchlist in ``signin``, its ``client-*`` events in ``client_events``).  A Pusher
connection is one more kind of hub connection (``thunderpush.core.hub``):
the hub renders Pusher frames for it, so a publish through either API
reaches both kinds of client.

Pusher's HTTP API (``/apps/<app_id>/...``, for the server libraries) is
``authentication`` (the request signature and its checks), ``api`` (what each
route does, through the app's broker and presence) and ``endpoint`` (the
endpoint the front door serves, answering refusals in plain text).
"""
