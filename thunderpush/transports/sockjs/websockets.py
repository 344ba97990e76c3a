"""The two websocket transports of SockJS, on ``thunderpush.transports.websocket.socket``.

``SockJSWebSocket`` serves ``<prefix>/<server>/<session>/websocket``: SockJS
framing (``o``, ``h``, ``a[...]``, ``c[...]``), one session per socket.
``RawWebSocket`` serves ``<prefix>/websocket``: one message per frame, no
framing, a ping where SockJS sends ``h``, and closes that carry the
session's code (9xxx as 4xxx) and reason.  This is all that differs between
them; reading, writing and closing are ``WebSocket``'s.

A handshake reaches them from the front door, through the upgrade targets
``websocket_upgrades`` gives (a path pattern and a callable each, the door's
``Upgrade``), or from Tornado (``serve_detached``); each socket opens its
session on the router and shares the router's websocket service::

    for pattern, upgrade in websocket_upgrades(router):
        ...  # the door calls upgrade(transport, request, rest) for a path it matches
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from functools import partial
from typing import TYPE_CHECKING, Any

from tornado.iostream import IOStream

from thunderpush.core.commands import log_context
from thunderpush.core.protocol import raw_websocket_close_code
from thunderpush.transports.door.messages import Request
from thunderpush.transports.sockjs.adapter import detached_socket
from thunderpush.transports.websocket.fanout import FrameCache
from thunderpush.transports.websocket.frames import text_frame
from thunderpush.transports.websocket.handshake import Handshake, serve_upgrade
from thunderpush.transports.websocket.reading import DropConnection
from thunderpush.transports.websocket.socket import WebSocket

if TYPE_CHECKING:
    from thunderpush.transports.sockjs.router import SockJSRouter

logger = logging.getLogger(__name__)

# Every receiver of one publish on one kind of websocket gets the same frame.
SOCKJS_FRAMES = FrameCache(lambda element: text_frame(b"a[" + element.encode() + b"]"))
# No SockJS framing on the raw websocket: the element is the whole message.
RAW_FRAMES = FrameCache(lambda element: text_frame(element.encode()))


def sockjs_messages(message: str | bytes) -> list[Any] | None:
    """The messages of one SockJS websocket frame, or None if it must be dropped.

    A frame that is not JSON (nested too deeply to parse included) drops the
    connection, as sockjs-tornado always did, with one warning line (the
    caller's, which knows the client) and no traceback.
    """
    try:
        messages = json.loads(message)
    except (ValueError, RecursionError):
        return None
    return messages if isinstance(messages, list) else [messages]


class SockJSWebSocket(WebSocket):
    """``/connect/<server>/<session>/websocket``: SockJS framing."""

    __slots__ = ("_router", "_session_id")

    frames = SOCKJS_FRAMES

    def __init__(
        self, router: SockJSRouter, handshake: Handshake, rest: bytes, session_id: str
    ) -> None:
        super().__init__(router.service, handshake, rest)
        self._router = router
        self._session_id = session_id

    def open_session(self) -> None:
        self.session = self._router.create_session(self._session_id, register=False)
        # One timer beats for every websocket (``thunderpush.transports.websocket.heartbeat``).
        if not self.session.set_handler(self, start_heartbeat=False):
            self.close()
            return
        self.session.verify_state()
        if self.session:
            self.session.flush()

    def heartbeat(self) -> None:
        super().heartbeat()
        if self.session is not None:
            self.send_pack("h")

    def on_message(self, message: str | bytes) -> None:
        if not message or not self.session:
            return
        messages = sockjs_messages(message)
        if messages is None:
            logger.warning(
                "Dropping a SockJS websocket: a frame was not valid JSON.",
                extra=log_context(self.session.conn),
            )
            raise DropConnection
        self.session.on_messages(messages)


class RawWebSocket(WebSocket):
    """``/connect/websocket``: one message per frame, pinged like the heartbeat.

    Each ping carries bytes the client cannot guess, and only a pong that
    echoes them answers it: a client that reads nothing cannot stay open by
    sending pongs of its own accord (RFC 6455 allows unsolicited pongs, as
    heartbeats that need no answer, not as answers).
    """

    __slots__ = ("_router", "_ping")

    name = "rawwebsocket"
    frames = RAW_FRAMES

    def __init__(
        self, router: SockJSRouter, handshake: Handshake, rest: bytes, session_id: None
    ) -> None:
        super().__init__(router.service, handshake, rest)
        self._router = router
        # The payload of the ping not yet answered, if any.
        self._ping: bytes | None = None

    def open_session(self) -> None:
        self.session = self._router.create_raw_session()
        self.session.set_handler(self)
        self.session.verify_state()

    def heartbeat(self) -> None:
        super().heartbeat()
        # As Tornado's ping: a ping unanswered by the next beat closes.
        if self._ping is not None:
            self.close(reason="ping timed out")
            return
        self._ping = os.urandom(4)
        if self._open:
            self._reader().send_ping(self._ping)
            self._write_output()

    def on_pong(self, data: bytes) -> None:
        if data == self._ping:
            self._ping = None

    def on_message(self, message: str | bytes) -> None:
        if message and self.session:
            self.session.on_message(message)

    def _close_for_session(self) -> None:
        code, reason = self.session.get_close_reason()
        self.close(raw_websocket_close_code(code), reason)


def websocket(
    router: SockJSRouter, handshake: Handshake, rest: bytes, session_id: str | None
) -> WebSocket:
    """A SockJS websocket for a session id, the raw websocket without one."""
    if session_id is not None:
        return SockJSWebSocket(router, handshake, rest, session_id)
    return RawWebSocket(router, handshake, rest, None)


class _Upgrade:
    """The front door's upgrade target for one of the router's websocket paths.

    A refused handshake is left to Tornado (False), which answers it through
    ``transports.WebSocketTransport`` with the same checks, logged as the
    client's fault; so is a handshake while websockets are disabled.
    """

    __slots__ = ("_router", "_raw")

    def __init__(self, router: SockJSRouter, raw: bool) -> None:
        self._router = router
        self._raw = raw

    def __call__(self, transport: asyncio.Transport, request: Request, rest: bytes) -> bool:
        router = self._router
        if not router.websockets_enabled:
            return False
        # <prefix>/<server>/<session>/websocket: the pattern checked the shape.
        session_id = None if self._raw else request.path.rsplit("/", 2)[1]
        socket = partial(websocket, router, session_id=session_id)  # (handshake, rest) -> socket
        handshake = serve_upgrade(router.service, transport, request, rest, socket)
        return handshake is not None and handshake.accepted


def websocket_upgrades(router: SockJSRouter) -> list[tuple[re.Pattern[str], _Upgrade]]:
    """The front door's upgrade targets for ``router``'s two websocket paths,
    each with its path pattern (sockjs-tornado's own URL rules)."""
    prefix = re.escape(router.prefix)
    return [
        (re.compile(prefix + r"/[^/.]+/[^/.]+/websocket\Z"), _Upgrade(router, raw=False)),
        (re.compile(prefix + r"/websocket\Z"), _Upgrade(router, raw=True)),
    ]


async def serve_detached(
    router: SockJSRouter, handshake: Handshake, stream: IOStream, session_id: str | None
) -> None:
    """Serves an accepted handshake that Tornado parsed, on the stream it detached.

    The socket leaves Tornado with the bytes Tornado read past the request
    (``adapter.detached_socket``) and is served by asyncio like any other.
    """
    try:
        sock, rest = detached_socket(stream)
    except OSError:
        return  # the client left: nothing to answer
    socket = websocket(router, handshake, rest, session_id)
    loop = asyncio.get_running_loop()
    try:
        await loop.connect_accepted_socket(lambda: socket, sock)
    except OSError:
        sock.close()  # the client left during the hand-over
