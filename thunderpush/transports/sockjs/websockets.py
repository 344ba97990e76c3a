"""The two websocket transports of SockJS, on ``thunderpush.transports.websocket.socket``.

``SockJSWebSocket`` serves ``<prefix>/<server>/<session>/websocket``: SockJS
framing (``o``, ``h``, ``a[...]``, ``c[...]``), one session per socket.
``RawWebSocket`` serves ``<prefix>/websocket``: one message per frame, no
framing, a ping where SockJS sends ``h``, and closes that carry the
session's code (9xxx as 4xxx) and reason.  This is all that differs between
them; reading, writing and closing are ``WebSocket``'s.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

from thunderpush.core.commands import log_context
from thunderpush.core.protocol import raw_websocket_close_code
from thunderpush.transports.websocket.fanout import FrameCache
from thunderpush.transports.websocket.frames import text_frame
from thunderpush.transports.websocket.socket import DropConnection, WebSocket

if TYPE_CHECKING:
    from thunderpush.transports.websocket.handshake import Handshake

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

    __slots__ = ("_session_id",)

    frames = SOCKJS_FRAMES

    def __init__(self, server: Any, handshake: Handshake, rest: bytes, session_id: str) -> None:
        super().__init__(server, handshake, rest)
        self._session_id = session_id

    def open_session(self) -> None:
        self.session = self.server.create_session(self._session_id, register=False)
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

    __slots__ = ("_ping",)

    name = "rawwebsocket"
    frames = RAW_FRAMES

    def __init__(self, server: Any, handshake: Handshake, rest: bytes, session_id: None) -> None:
        super().__init__(server, handshake, rest)
        # The payload of the ping not yet answered, if any.
        self._ping: bytes | None = None

    def open_session(self) -> None:
        self.session = self.server.create_raw_session()
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
