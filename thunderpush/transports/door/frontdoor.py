"""The front door: an asyncio server that answers the hot paths without Tornado.

Tornado spends about 250 microseconds and several objects per HTTP request, and
keeps about 18 KiB of objects alive per open websocket.  The server listens
with ``FrontDoor`` instead of Tornado's ``HTTPServer``; each TCP connection is
an ``HttpConnection`` (``thunderpush.transports.door.http``: HTTP/1.1 on llhttp,
keep-alive, pipelining, limits and timeouts), and the door decides where each
request is served.  It is handed what it serves (``thunderpush.server.application``
decides; the door knows no API and no websocket):

* ``endpoints``: HTTP APIs (``thunderpush.transports.door.endpoints``), tried in
  order; the first whose ``start`` takes a request answers it (Thunderpush's
  ``/api/1.0.0/...``, Pusher's ``/apps/<id>/...``);
* ``upgrades``: (path pattern, ``Upgrade``) pairs; a websocket handshake goes to
  the first whose pattern matches its path (SockJS's, Pusher's ``/app/<key>``);
* every other request goes, with the bytes already read, to Tornado's
  ``HTTPServer`` (``thunderpush.transports.sockjs.adapter``): polling and streaming
  transports, ``/connect/info``, the iframe, ``/thunderpush.js``, and anything
  unusual, where the endpoints answer through ``fallback``.  When in doubt,
  Tornado answers: it is the reference.

The door accepts connections itself, so that running out of file descriptors
is one log line and a pause, not an error per attempt.  With a certificate
(``Config.ssl_cert``) every connection is TLS, served on asyncio's TLS
transport; Tornado's share goes through ``thunderpush.transports.door.tls.relay``.
Usage::

    door = FrontDoor(config, tornado, [api, pusher_api], upgrades, sockets)
    await door.listen(8080, "")
    ...
    door.stop()
    await door.close_all_connections()
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import socket
from collections.abc import Callable, Sequence
from socket import socket as Socket
from typing import Any, Protocol

from tornado.netutil import bind_sockets

from thunderpush.config import Config
from thunderpush.transports.door import tls
from thunderpush.transports.door.answers import Answer
from thunderpush.transports.door.endpoints import Call, Endpoint
from thunderpush.transports.door.http import HttpConnection
from thunderpush.transports.door.limits import OpenConnections, Refusal
from thunderpush.transports.door.messages import Request

logger = logging.getLogger(__name__)

_BACKLOG = 1024
# asyncio's figure: how long accepting pauses when the process is out of resources.
_ACCEPT_RETRY_SECONDS = 1.0
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# The methods whose answers the door writes (HEAD has none); Tornado answers the others.
_METHODS = frozenset(("GET", "POST", "DELETE", "OPTIONS"))


class Upgrade(Protocol):
    """Serves a websocket handshake: takes the connection (True; ``rest`` follows
    the head), refuses it with an answer that ends the connection, or leaves it
    to Tornado (False)."""

    def __call__(
        self, transport: asyncio.Transport, request: Request, rest: bytes
    ) -> bool | Answer:
        """See the class."""


class Tornado(Protocol):
    """Tornado's ``HTTPServer`` as the door hands it connections
    (``thunderpush.transports.sockjs.adapter.HandOffServer``)."""

    def serve_connection(
        self, sock: Socket, address: Any, unread: bytes, on_close: Callable[[], None]
    ) -> None:
        """Serve ``sock`` as if ``unread`` had been read from it; ``on_close`` when it ends."""

    async def close_all_connections(self) -> None:
        """Close every connection it serves."""


class Sockets(Protocol):
    """The open websockets, however accepted: counted in ``connections`` while open."""

    connections: OpenConnections | None

    def __len__(self) -> int: ...

    def stop(self) -> None:
        """No more heartbeats: the server is stopping."""


class FrontDoor:
    """Listens for connections and sends each request where it is served best."""

    def __init__(
        self,
        config: Config,
        tornado: Tornado,
        endpoints: Sequence[Endpoint],
        upgrades: Sequence[tuple[re.Pattern[str], Upgrade]],
        sockets: Sockets,
    ) -> None:
        self.config = config
        self.endpoints = endpoints
        self.upgrades = upgrades
        self.tls = tls.server_context(config)
        # Where every request the door does not serve goes, with the bytes read so far.
        self.http = tornado
        self.connections: set[HttpConnection] = set()
        # Every accepted connection until it closes, whoever serves it (``limits``).
        self.open = OpenConnections(config.max_connections, config.max_connections_per_ip)
        # Every open websocket, however it was accepted.
        self.sockets = sockets
        self.sockets.connections = self.open
        self._listeners: list[Socket] = []
        # Per listener: when accepting resumes after running out of descriptors.
        self._retries: dict[int, asyncio.TimerHandle] = {}
        # Sockets becoming connections, accepted or relayed (asyncio keeps only
        # weak references to tasks).
        self._accepting: set[asyncio.Task[None]] = set()
        self._starved = False

    async def listen(self, port: int, host: str = "") -> None:
        """Listen on ``port`` of ``host`` (every interface when empty)."""
        loop = asyncio.get_running_loop()
        for listener in bind_sockets(port, host or None, backlog=_BACKLOG):
            self._listeners.append(listener)
            loop.add_reader(listener.fileno(), self._accept, listener)

    @property
    def port(self) -> int:
        """The port listened on (useful after ``listen(0)``)."""
        return self._listeners[0].getsockname()[1]

    def stop(self) -> None:
        """Stop accepting connections; open ones stay."""
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            loop.remove_reader(listener.fileno())
            listener.close()
        self._listeners = []
        for retry in self._retries.values():
            retry.cancel()
        self._retries.clear()
        self.sockets.stop()

    async def close_all_connections(self) -> None:
        """Close idle HTTP connections, wait for websockets and Tornado's to end."""
        for connection in list(self.connections):
            connection.close()
        while self.sockets:
            await asyncio.sleep(0.01)
        await self.http.close_all_connections()

    # -- accepting -------------------------------------------------------------

    def _accept(self, listener: Socket) -> None:
        """Accept every waiting connection, up to the backlog."""
        loop = asyncio.get_running_loop()
        for _ in range(_BACKLOG):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                self._starved = False  # everyone waiting got in
                return
            except OSError as error:
                if error.errno not in _OUT_OF_RESOURCES:
                    # A connection that failed before it was accepted (Linux
                    # reports its network error here): the next one may not.
                    logger.debug("A connection failed before it was accepted: %s", error)
                    continue
                self._out_of_resources(error)
                # The listener stays readable: look again in a while, not at once.
                loop.remove_reader(listener.fileno())
                self._retries[listener.fileno()] = loop.call_later(
                    _ACCEPT_RETRY_SECONDS, self._accept_again, listener
                )
                return
            ip = address[0]
            if self.open.admits(ip):
                self.open.opened(ip)  # now: the next accept of this loop counts it
                task = loop.create_task(self._serve(sock, HttpConnection(self, ip)))
            else:
                task = loop.create_task(self._serve(sock, Refusal(self.config.head_timeout)))
            self._accepting.add(task)
            task.add_done_callback(self._accepting.discard)

    def _accept_again(self, listener: Socket) -> None:
        del self._retries[listener.fileno()]
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept, listener)

    async def _serve(self, sock: Socket, protocol: HttpConnection | Refusal) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: protocol,
                sock,
                ssl=self.tls,
                ssl_handshake_timeout=self.config.head_timeout if self.tls else None,
            )
        except (OSError, asyncio.TimeoutError):
            # Gone, or no TLS (plain HTTP to this port): asyncio has closed it.
            sock.close()
            if isinstance(protocol, HttpConnection):
                protocol.uncount()

    def connection_closed(self, ip: str) -> None:
        self.open.closed(ip)

    def _out_of_resources(self, error: OSError) -> None:
        """Logged once until the listen queue is empty again, not once per connection."""
        if not self._starved:
            self._starved = True
            logger.warning(
                "Cannot accept connections (%s); they wait until connections close.",
                error.strerror,
            )

    # -- what is served here ----------------------------------------------------

    def start(self, request: Request) -> Answer | Call | None:
        """The first endpoint's answer or call for ``request``; None leaves it to Tornado."""
        if request.method not in _METHODS:
            return None
        for endpoint in self.endpoints:
            started = endpoint.start(request)
            if started is not None:
                return started
        return None

    def upgrade(self, transport: Any, request: Request, rest: bytes) -> bool | Answer:
        """Serve a websocket handshake here or refuse it (an answer); False: Tornado serves it."""
        for pattern, upgrade in self.upgrades:
            if pattern.match(request.path):
                return upgrade(transport, request, rest)
        return False

    # -- Tornado -------------------------------------------------------------

    def hand_off(self, transport: Any, data: bytes) -> None:
        """Move the connection to Tornado's ``HTTPServer`` with ``data`` unread."""
        if transport.is_closing():
            return
        address = transport.get_extra_info("peername")
        try:
            if self.tls is None:
                sock = transport.get_extra_info("socket").dup()
            else:
                sock, ours = socket.socketpair()
        except OSError as error:
            self._out_of_resources(error)
            transport.abort()
            return
        if self.tls is None:
            transport.abort()  # closes asyncio's descriptor; ``sock`` keeps the connection
        else:
            relayed = asyncio.get_running_loop().create_task(tls.relay(transport, ours))
            self._accepting.add(relayed)
            relayed.add_done_callback(self._accepting.discard)
        ip = address[0] if address else ""
        self.open.opened(ip)
        self.http.serve_connection(sock, address, data, lambda: self.open.closed(ip))
