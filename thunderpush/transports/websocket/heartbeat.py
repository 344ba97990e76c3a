"""One heartbeat timer for every open websocket of a server.

sockjs-tornado gives each session a periodic timer of its own, and Tornado
each websocket another for its pings: at thousands of sockets, thousands of
timer handles in the loop's heap.  Here the server's websocket service
(``thunderpush.transports.websocket.service``) keeps its open websockets in
one ``OpenWebSockets`` and a single timer beats for all of them.

The front door counts every connection it accepted until it closes; a
websocket is counted here, from ``add`` to ``discard``, in the door's
``connections`` when it has given them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thunderpush.transports.door.limits import OpenConnections
    from thunderpush.transports.websocket.service import WebSocketSettings
    from thunderpush.transports.websocket.socket import WebSocket


class OpenWebSockets:
    """The open websockets of one server; every ``heartbeat_delay`` seconds
    each gets ``heartbeat()`` (the SockJS ``h`` frame, the raw websocket's ping).

    The timer runs while any socket is open, from the loop the first one
    opened in.
    """

    def __init__(self, settings: WebSocketSettings) -> None:
        self._settings = settings
        self._sockets: set[WebSocket] = set()
        self._timer: asyncio.TimerHandle | None = None
        # The front door's count of open connections, when a door serves them.
        self.connections: OpenConnections | None = None

    def add(self, socket: WebSocket) -> None:
        self._sockets.add(socket)
        if self.connections is not None:
            self.connections.opened(socket.get_conn_info().ip)
        if self._timer is None:
            self._schedule()

    def discard(self, socket: WebSocket) -> None:
        if socket in self._sockets:
            self._sockets.remove(socket)
            if self.connections is not None:
                self.connections.closed(socket.get_conn_info().ip)

    def __len__(self) -> int:
        return len(self._sockets)

    def __iter__(self) -> Any:
        return iter(self._sockets)

    def stop(self) -> None:
        """Stop the heartbeat; the next socket to open starts it again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._settings.heartbeat_delay, self._beat)

    def _beat(self) -> None:
        self._timer = None
        for socket in list(self._sockets):
            socket.heartbeat()
        if self._sockets:
            self._schedule()
