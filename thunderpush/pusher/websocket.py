"""The websocket at ``/app/<key>``: Pusher's path, served on the front door's fast path.

``PusherUpgrade`` is the front door's upgrade target for ``PATH`` (the door's
``Upgrade``): the handshake is answered as every websocket handshake is
(``thunderpush.transports.websocket.handshake.serve_upgrade``: the same
origin check, the same answer) and the connection continues as a
``PusherSocket``, a ``thunderpush.transports.websocket.socket.WebSocket`` like
SockJS's: the same reading, writing, limits, slow-client rule and shared
heartbeat, all from the server's websocket service.  Its session is a
``PusherConnection``, which is in the service's ``live_sessions`` while it is
open, so the shutdown drain closes it (with 4200, reconnect) as it closes
SockJS sessions; no SockJS router is involved.  Example URL (what pusher-js
opens)::

    ws://host:8080/app/<key>?protocol=7&client=js&version=8.4.0&flash=false

    upgrade = PusherUpgrade(service, apps, limits)
    door = FrontDoor(..., upgrades=[(PusherUpgrade.PATH, upgrade)])
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable
from functools import partial
from typing import TYPE_CHECKING

from thunderpush.api import Answer
from thunderpush.core.apps import App, Apps
from thunderpush.core.broker import BackendUnavailable
from thunderpush.core.commands import Limits
from thunderpush.core.throttle import Throttle
from thunderpush.pusher import protocol
from thunderpush.pusher.connection import PusherConnection
from thunderpush.pusher.limits import OVER_CONNECTION_QUOTA, over_connection_quota
from thunderpush.transports.door.messages import Request
from thunderpush.transports.websocket.fanout import FrameCache
from thunderpush.transports.websocket.frames import text_frame
from thunderpush.transports.websocket.handshake import refusal, serve_upgrade
from thunderpush.transports.websocket.socket import WebSocket

if TYPE_CHECKING:
    from thunderpush.transports.websocket.handshake import Handshake
    from thunderpush.transports.websocket.service import WebSocketService

logger = logging.getLogger(__name__)

PATH_PREFIX = "/app/"
# A line per app and minute about the connections its quota refuses.
_QUOTA_LOGS = Throttle()

# Every Pusher receiver of one publish gets the same frame.
PUSHER_FRAMES = FrameCache(lambda element: text_frame(element.encode()))


class PusherUpgrade:
    """Serves handshakes for ``/app/<key>`` with the server's websocket service.

    A refused handshake is answered here (e.g. 403 for another origin, as
    every websocket's); a request with a body is left to Tornado (False).
    ``limits`` and the two timeouts apply to connections opened after they
    change (a reload sets ``limits``; tests shorten the timeouts).
    """

    # The paths served: a key, and nothing after it (Tornado answers 404 to the rest).
    PATH = re.compile(re.escape(PATH_PREFIX) + r"[^/]+\Z")

    def __init__(self, service: WebSocketService, apps: Apps, limits: Limits) -> None:
        self.service = service
        self.apps = apps
        self.limits = limits
        # Silence after which a client is pinged, and how long it has to answer.
        self.activity_timeout: float = protocol.ACTIVITY_TIMEOUT
        self.pong_timeout: float = protocol.PONG_TIMEOUT

    def __call__(
        self, transport: asyncio.Transport, request: Request, rest: bytes
    ) -> bool | Answer:
        key = request.path[len(PATH_PREFIX) :]
        socket = partial(PusherSocket, self, key=key)  # (handshake, rest) -> PusherSocket
        handshake = serve_upgrade(self.service, transport, request, rest, socket)
        if handshake is None:
            return False
        return True if handshake.accepted else refusal(handshake)


class PusherSocket(WebSocket):
    """One pusher-js websocket; its session is the ``PusherConnection``."""

    __slots__ = ("_upgrade", "_key")

    name = "pusher"
    frames = PUSHER_FRAMES

    def __init__(self, upgrade: PusherUpgrade, handshake: Handshake, rest: bytes, key: str) -> None:
        super().__init__(upgrade.service, handshake, rest)
        self._upgrade = upgrade
        self._key = key

    def open_session(self) -> None:
        """Says ``connection_established``, or the error that closes the connection:
        a wrong protocol or key, or the app over its ``max_app_connections`` (whose
        count, in a cluster, comes later: messages until then find no session and
        are dropped, and pusher-js sends none before the welcome)."""
        error = _version_error(self._info.arguments.get("protocol"))
        app = self._upgrade.apps.get(self._key)
        if error is None and app is None:
            error = protocol.APP_NOT_FOUND
        if error is not None:
            self._refuse(error)
            return
        over = over_connection_quota(app)
        if isinstance(over, Awaitable):
            asyncio.ensure_future(over).add_done_callback(partial(self._counted, app))
        else:
            self._admit(app, over)

    def _counted(self, app: App, count: asyncio.Future[bool]) -> None:
        """The cluster's count of ``app``'s connections; without Redis, let in."""
        error = None if count.cancelled() else count.exception()
        if error is not None and not isinstance(error, BackendUnavailable):
            logger.error("Could not count the connections of app %s.", app.key, exc_info=error)
        if not self._open:  # gone while counted: never a session
            self.service.stats.on_conn_closed()
            return
        self._admit(app, not count.cancelled() and error is None and count.result())

    def _admit(self, app: App, over: bool) -> None:
        if over:
            if _QUOTA_LOGS.due(app.key):
                logger.warning(
                    "Refusing Pusher connections to app %s: over its max_app_connections (%d).",
                    app.key,
                    app.pusher_limits.max_app_connections,
                )
            self._refuse(OVER_CONNECTION_QUOTA)
            return
        upgrade = self._upgrade
        connection = PusherConnection(
            self,
            app,
            upgrade.limits,
            self.service.live_sessions,
            upgrade.activity_timeout,
            upgrade.pong_timeout,
        )
        self.session = connection
        connection.open()

    def _refuse(self, error: protocol.PusherError) -> None:
        self.service.stats.on_conn_closed()  # never a session: counted as closed now
        self.send_pack(protocol.error(error))
        self.close(error.code, error.message)

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
