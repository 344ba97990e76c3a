"""``thunderpush-bench``: a load generator for sizing a Thunderpush deployment.

It opens N SockJS websocket connections (``CONNECT`` + ``SUBSCRIBE``), or
Pusher Channels ones (``--client pusher``: ``/app/<key>``, ``pusher:subscribe``),
publishes through the HTTP API and reports deliveries per second, messages
lost, publish-to-receive latency (at full speed and at a fixed rate),
connection setup rate and, given the server's PID, server CPU per delivery and
memory per idle connection.  It only talks to the addresses it is given: one
server, or the nodes of a cluster (``--url`` repeated), where its ``rolling``
scenario reopens on another node the sessions a restarting node ends, and
checks by sequence number that nothing arrived twice.

Why it is its own package: it is a client of the server, not part of it, so
it shares nothing with the server but the frame encoder
(``thunderpush.transports.websocket.frames``), and a client key can never be mistaken
for it.

Why it is written the way it is: a load generator that is slower than the
server measures itself, and on a 2-core machine it has one core.  Tornado's
clients are far too heavy for that (``AsyncHTTPClient``: 331 us of CPU per
publish), so both clients parse the wire format themselves.  The websocket
sessions are plain sockets in an epoll set that a single asyncio reader drains
(``clients.Receiver``); deliveries are counted with ``bytes.count`` of a
marker in each frame (``wire``), and JSON is parsed only on a sample of
connections, where latency is measured.  Opening and publishing are driven by
callbacks (``drivers.Opener``, ``drivers.Publisher``), with no task or future
per connection or request.  On the machine of bench/RESULTS.md it opens about
20,000 connections/s, receives about 200,000 deliveries/s sent one frame each,
and publishes about 68,000 requests/s, on one core.  It reports its own CPU
beside the server's (``measure``) and warns when it was near 100%.

Example::

    thunderpush-bench --url http://127.0.0.1:8080 --key key --secret secret \\
        --scenario fanout --connections 2000 --messages 100 --server-pid 1234
"""


class BenchError(Exception):
    """A run that cannot go on: unreachable server, refused key, timeout."""
