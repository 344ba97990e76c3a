"""One heartbeat timer for every open websocket of a router.

sockjs-tornado gives each session a periodic timer of its own, and Tornado
each websocket another for its pings: at thousands of sockets, thousands of
timer handles in the loop's heap.  Here the router keeps its open websockets
in one ``OpenWebSockets`` and a single timer beats for all of them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thunderpush.transports.websocket import WebSocket


class OpenWebSockets:
    """The open websockets of one router; every ``heartbeat_delay`` seconds
    each gets ``heartbeat()`` (the SockJS ``h`` frame, the raw websocket's ping).

    The timer runs while any socket is open, from the loop the first one
    opened in.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        self._sockets: set[WebSocket] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, socket: WebSocket) -> None:
        self._sockets.add(socket)
        if self._timer is None:
            self._schedule()

    def discard(self, socket: WebSocket) -> None:
        self._sockets.discard(socket)

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
        self._timer = loop.call_later(self._settings["heartbeat_delay"], self._beat)

    def _beat(self) -> None:
        self._timer = None
        for socket in list(self._sockets):
            socket.heartbeat()
        if self._sockets:
            self._schedule()
