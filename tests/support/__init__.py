"""What the tests share: a running server, connected clients, a cluster.

Fixtures and hooks stay in ``tests/conftest.py``; everything a test imports
comes from here, one module per concept:

* ``served`` - ``LiveServer``: a Thunderpush app served in the test's own loop;
* ``processes`` - ``thunderpush`` (ours or the original) as a separate process;
* ``api`` - ``call_api``: one request to the HTTP API;
* ``clients`` - SockJS clients, one per transport, all alike;
* ``wire`` - raw HTTP/1.1 and websocket bytes, for what no polite client sends;
* ``cluster`` - real ``redis-server`` and Redis Cluster processes, nodes joined to them;
* ``webhooks`` - a backend's webhook endpoint that keeps what it is POSTed;
* ``clock`` - a clock the test moves, for TTLs without sleeping;
* ``echo`` - a bare websocket echo server, for the conformance suite;
* ``pusher_auth`` - a backend's Pusher auth endpoint;
* ``parity`` - the side-by-side script run against ours and the original;
* ``browser`` - Chromium pages driving the browser client.

``KEY`` and ``SECRET`` are the app every server here serves.
"""

KEY, SECRET = "key", "secret"
