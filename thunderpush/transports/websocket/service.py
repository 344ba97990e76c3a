"""What every websocket of one server shares, in one object handed to each of them.

uvicorn hands its connections a ``ServerState`` (the set of connections, the
counters) rather than letting them look things up; this is Thunderpush's: the
typed settings every websocket reads, the outbox its deliveries wait in for
the end of the loop turn, the open websockets and their shared heartbeat,
the sessions a shutdown drains, and the hooks that count connections.  The
server owns one (the SockJS router makes it from its settings:
``SockJSRouter.service``) and hands it to every kind of websocket, SockJS's
and Pusher's alike, and to the drain; none of them needs the router::

    service = WebSocketService(WebSocketSettings(max_unsent_bytes=1 << 20), origins)
    socket = PusherSocket(service, handshake, rest, ...)

Settings may change while the server runs (a reload lowers
``max_unsent_bytes``; tests shorten ``heartbeat_delay``): each is read when
it is used.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from thunderpush.config import Config
from thunderpush.transports.websocket.fanout import Outbox
from thunderpush.transports.websocket.heartbeat import OpenWebSockets


@dataclass
class WebSocketSettings:
    """The limits and timers of a server's websockets, each with one outcome."""

    # Largest message a client may send; a larger one closes with 1009.
    max_message_size: int = Config.max_client_message_size
    # Bytes that may wait for a client that does not read; past them it is too slow (9011).
    max_unsent_bytes: int = Config.max_unsent_bytes
    # How long a close handshake may wait for the client's end; then the TCP connection is aborted.
    websocket_close_timeout: float = 5.0
    # Seconds between two beats of the shared heartbeat (SockJS ``h``, pings).
    heartbeat_delay: float = 25.0


class Origins(Protocol):
    """Which pages may open a websocket (``thunderpush.transports.sockjs.origins``)."""

    def allows(self, origin: str | None, host: str | None) -> bool: ...


class Session(Protocol):
    """A session a websocket serves (SockJS's, Pusher's): the drain closes it."""

    def close(self, code: int, reason: str, /) -> None: ...


class ConnectionStats(Protocol):
    """Told when a websocket's connection opens and closes (sockjs-tornado's
    ``StatsCollector`` is one: its ``conn_active`` counts websockets too)."""

    def on_conn_opened(self) -> None: ...

    def on_conn_closed(self) -> None: ...


class ConnectionCounts:
    """Connections opened and closed, for a service with no statistics of its own."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0

    def on_conn_opened(self) -> None:
        self.opened += 1

    def on_conn_closed(self) -> None:
        self.closed += 1


class AnyOrigin:
    """Every page may open a websocket (a server with no origin rule)."""

    def allows(self, origin: str | None, host: str | None) -> bool:
        return True


@dataclass(eq=False)
class WebSocketService:
    """The settings, outbox, heartbeat, sessions and counters of a server's websockets."""

    settings: WebSocketSettings = field(default_factory=WebSocketSettings)
    # The origin rule every handshake is judged by (403 for any other page).
    origins: Origins = field(default_factory=AnyOrigin)
    # Told of every websocket connection opened and closed.
    stats: ConnectionStats = field(default_factory=ConnectionCounts)
    # Every open session, whatever its transport or dialect: ``close_all`` closes them.
    live_sessions: set[Session] = field(default_factory=set)
    # The open websockets and the one timer that beats for them.
    sockets: OpenWebSockets = field(init=False)
    # Deliveries queued this loop turn (``bind_to_running_loop`` makes it).
    outbox: Outbox = field(init=False)

    def __post_init__(self) -> None:
        self.sockets = OpenWebSockets(self.settings)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_to_running_loop(self) -> None:
        """Makes the outbox on the running loop, unless it is there already.

        An outbox flushes on the loop it was made on; a server served by one
        loop after another (tests, ``asyncio.run`` twice) gets a new one on
        each, so no flush waits on a loop that has stopped.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self.outbox = Outbox(loop)

    def close_all(self, code: int, reason: str) -> None:
        """Close every open session with ``code`` and ``reason`` (e.g. on shutdown)."""
        for session in list(self.live_sessions):
            session.close(code, reason)
