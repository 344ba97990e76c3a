"""The Pusher Channels protocol beside Thunderpush's own (docs/pusher.rst).

* ``signatures`` - Pusher's HMAC signatures: channel and sign-in auth, API requests;
* ``authentication`` - the checks every request to Pusher's HTTP API passes;
* ``api`` - Pusher's HTTP API under ``/apps/<app_id>/``, on the same broker and presence;
* ``handlers`` - that API as Tornado request handlers.
"""
