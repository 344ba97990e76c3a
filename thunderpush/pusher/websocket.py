"""The websocket at ``/app/<key>``: Pusher's path, served on the front door's fast path.

The front door hands a handshake for ``/app/...`` to ``serve_pusher``; it is
answered as every websocket handshake is (``thunderpush.transports.websocket.handshake``:
the same origin check, the same answer) and the connection continues as a
``PusherSocket``, a ``thunderpush.transports.websocket.socket.WebSocket`` like
SockJS's: the same reading, writing, limits, slow-client rule and shared
heartbeat.  Its session is a ``PusherConnection``, which is also in the
router's ``live_sessions``, so the shutdown drain closes it (with 4200,
reconnect) as it closes SockJS sessions.  Example URL (what pusher-js opens)::

    ws://host:8080/app/<key>?protocol=7&client=js&version=8.4.0&flash=false
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from thunderpush.api import Answer
from thunderpush.core.apps import Apps
from thunderpush.core.commands import Limits
from thunderpush.pusher import protocol
from thunderpush.pusher.connection import PusherConnection
from thunderpush.transports.websocket.fanout import FrameCache
from thunderpush.transports.websocket.frames import text_frame
from thunderpush.transports.websocket.handshake import answer, refusal
from thunderpush.transports.websocket.socket import WebSocket

if TYPE_CHECKING:
    from thunderpush.transports.sockjs.router import SockJSRouter
    from thunderpush.transports.websocket.handshake import Handshake

PATH_PREFIX = "/app/"

# Every Pusher receiver of one publish gets the same frame.
PUSHER_FRAMES = FrameCache(lambda element: text_frame(element.encode()))


class PusherSocket(WebSocket):
    """One pusher-js websocket; its session is the ``PusherConnection``."""

    __slots__ = ("_apps", "_limits", "_key")

    name = "pusher"
    frames = PUSHER_FRAMES

    def __init__(
        self, server: Any, handshake: Handshake, rest: bytes, apps: Apps, limits: Limits, key: str
    ) -> None:
        super().__init__(server, handshake, rest)
        self._apps = apps
        self._limits = limits
        self._key = key

    def open_session(self) -> None:
        """Says ``connection_established``, or the error that closes the connection."""
        error = _version_error(self._info.arguments.get("protocol"))
        app = self._apps.get(self._key)
        if error is None and app is None:
            error = protocol.APP_NOT_FOUND
        if error is not None:
            self.server.stats.on_conn_closed()  # never a session: counted as closed now
            self.send_pack(protocol.error(error))
            self.close(error.code, error.message)
            return
        connection = PusherConnection(self, app, self._limits, self.server.settings)
        self.session = connection
        self.server.live_sessions.add(connection)
        connection.open()

    def heartbeat(self) -> None:
        super().heartbeat()
        if self.session is not None:
            self.session.heartbeat()

    def on_message(self, message: str | bytes) -> None:
        if self.session is not None:
            self.session.on_message(message)


def _version_error(versions: list[bytes] | None) -> protocol.PusherError | None:
    """Why the ``protocol=`` of the URL is refused, or None (5, 6 and 7 are served)."""
    if not versions or not versions[0].isdigit():
        return protocol.INVALID_VERSION
    if versions[0].decode() not in protocol.PROTOCOL_VERSIONS:
        return protocol.UNSUPPORTED_PROTOCOL
    return None


def serve_pusher(
    router: SockJSRouter,
    apps: Apps,
    limits: Limits,
    transport: asyncio.Transport,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    rest: bytes,
) -> bool | Answer:
    """Serves a handshake for ``/app/<key>``, or answers its refusal (e.g. 403 for
    another origin, as every websocket's); False leaves a request that is no
    ``/app/<key>`` handshake to Tornado (404)."""
    key = path[len(PATH_PREFIX) :]
    if not key or "/" in key or any(name == "content-length" for name, _ in headers):
        return False
    peer = transport.get_extra_info("peername")
    handshake = answer(router, method, path, query, "HTTP/1.1", headers, peer[0] if peer else "")
    if not handshake.accepted:
        return refusal(handshake)
    router._bind_to_running_loop()  # raw sessions do the same (``RawSession``)
    socket = PusherSocket(router, handshake, rest, apps, limits, key)
    transport.set_protocol(socket)
    socket.connection_made(transport)
    return True
