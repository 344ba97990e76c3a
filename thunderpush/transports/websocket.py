"""Websocket connections served straight on an asyncio transport.

Tornado keeps a request, a handler, a protocol object, stream buffers and
several suspended coroutines alive for every open websocket: about 18 KiB of
heap per idle connection.  Here one small object with ``__slots__`` is the
whole connection: it reads RFC 6455 frames as they arrive, writes frames
straight to the transport, and acts towards sockjs-tornado's ``Session`` and
``RawSession`` exactly as ``router.WebSocketTransport`` and
``router.RawWebSocketTransport`` do (the ``o`` and ``c[...]`` frames, close
codes, ``live_sessions``, the fan-out fast path of ``thunderpush.transports.fanout``).

``thunderpush.transports.frontdoor`` does the handshake and then hands the transport to
one of these with ``transport.set_protocol``::

    socket = SockJSWebSocket(door, transport, info)
    transport.set_protocol(socket)
    socket.open_session(session_id)   # RawWebSocket: open_session()

Frames are handled as Tornado 6 handles them (a protocol error drops the TCP
connection, a message over the router's ``max_message_size`` is closed with
1009, a client's close is echoed with its code), except that an unmasked
client frame is refused, as RFC 6455 requires.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING, Any

from sockjs.tornado import proto
from sockjs.tornado.session import ConnectionInfo

from thunderpush.core.protocol import raw_websocket_close_code
from thunderpush.transports.fanout import FrameCache, Queued
from thunderpush.transports.frames import BINARY, CLOSE, PING, PONG, TEXT, frame
from thunderpush.transports.http import SharedReadBuffer
from thunderpush.transports.sockjs import RAW_FRAMES, SOCKJS_FRAMES, RawSession, sockjs_messages

if TYPE_CHECKING:
    from thunderpush.transports.frontdoor import FrontDoor

logger = logging.getLogger(__name__)

# How long a close waits for the client's close frame (Tornado's figure).
CLOSE_TIMEOUT_SECONDS = 5.0

_CODE = struct.Struct("!H")
_MEDIUM = struct.Struct("!H")
_LONG = struct.Struct("!Q")


def unmask(mask: bytes, data: bytes) -> bytes:
    """The payload of a client frame (XOR with the repeated 4-byte mask)."""
    length = len(data)
    if not length:
        return b""
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


class _Refused(Exception):
    """The peer broke the protocol: the connection is dropped without a close."""


class WebSocket(SharedReadBuffer, Queued):
    """One websocket; subclasses say how it meets its session.

    The attributes a sockjs-tornado session expects of its handler are here:
    ``name``, ``active``, ``get_conn_info``, ``send_pack``, ``session_closed``.
    """

    __slots__ = (
        "session",
        "pending",
        "_door",
        "_transport",
        "_info",
        "_buffer",
        "_fragments",
        "_opcode",
        "_server_closed",
        "_client_closed",
        "_deaf",
        "_closer",
    )

    name = "websocket"
    active = True
    frames: FrameCache

    def __init__(self, door: FrontDoor, transport: asyncio.Transport, info: ConnectionInfo) -> None:
        self.session: Any = None
        self.pending: list[bytes] = []
        self._door = door
        self._transport = transport
        self._info = info
        self._buffer = b""
        self._fragments: bytearray | None = None
        self._opcode = 0
        self._server_closed = False
        self._client_closed = False
        self._deaf = False
        self._closer: asyncio.TimerHandle | None = None

    @property
    def server(self) -> Any:
        return self._door.router

    def open(self) -> None:
        """Attach a new session; called once the handshake is written."""
        self._door.sockets.add(self)
        self.server.stats.on_conn_opened()

    def get_conn_info(self) -> ConnectionInfo:
        return self._info

    # -- writing -----------------------------------------------------------

    def send_element(self, element: str) -> None:
        self.server.outbox.queue(self, self.frames.frame(element))

    def flush_pending(self) -> None:
        pending, self.pending = self.pending, []
        if pending and not self._server_closed and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    @property
    def unsent_bytes(self) -> int:
        """Bytes accepted for this client and not yet taken by the kernel."""
        return self._transport.get_write_buffer_size() + sum(map(len, self.pending))

    def send_pack(self, message: str | bytes, binary: bool = False) -> None:
        if self.pending:
            self.flush_pending()  # keep heartbeats and closes in order
        if self._server_closed or self._transport.is_closing():
            return  # the connection's end is under way and will close the session
        data = message.encode() if isinstance(message, str) else message
        self._transport.write(frame(BINARY if binary else TEXT, data))

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start the closing handshake; the client has a few seconds to answer."""
        if self.pending:
            self.flush_pending()
        if not self._server_closed:
            self._server_closed = True
            if code is None and reason is not None:
                code = 1000
            payload = b"" if code is None else _CODE.pack(code)
            if reason is not None:
                payload += reason.encode()
            self._transport.write(frame(CLOSE, payload))
        if self._client_closed:
            self._transport.close()
        elif self._closer is None:
            loop = asyncio.get_running_loop()
            self._closer = loop.call_later(CLOSE_TIMEOUT_SECONDS, self._transport.abort)

    def heartbeat(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    # -- reading -----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._deaf:
            return
        buffer = self._buffer + data if self._buffer else data
        try:
            used = self._read_frames(buffer)
        except _Refused:
            self._transport.abort()
            return
        self._buffer = buffer[used:] if used < len(buffer) and not self._deaf else b""

    def _read_frames(self, buffer: bytes) -> int:
        """Handles every whole frame in ``buffer``; returns the bytes used."""
        position = 0
        end = len(buffer)
        while end - position >= 2 and not self._deaf and not self._transport.is_closing():
            first, second = buffer[position], buffer[position + 1]
            length, start = self._frame_length(first, second, buffer, position)
            if start < 0 or end - start < length:
                break
            payload = unmask(buffer[start - 4 : start], buffer[start : start + length])
            position = start + length
            self._on_frame(first, payload)
        return position

    def _frame_length(
        self, first: int, second: int, buffer: bytes, position: int
    ) -> tuple[int, int]:
        """The payload length and where it starts (-1 while the header is incomplete)."""
        if first & 0x70 or not second & 0x80:
            raise _Refused  # an unknown extension, or a client frame not masked
        length = second & 0x7F
        control = first & 0x08
        if control and (length >= 126 or not first & 0x80):
            raise _Refused  # control frames are short and never fragmented
        start = position + 6
        if length == 126:
            start += 2
            if len(buffer) < start:
                return 0, -1
            length = _MEDIUM.unpack_from(buffer, position + 2)[0]
        elif length == 127:
            start += 8
            if len(buffer) < start:
                return 0, -1
            length = _LONG.unpack_from(buffer, position + 2)[0]
        if not control:
            self._check_size(length)
        return length, start if len(buffer) >= start and not self._deaf else -1

    def _check_size(self, length: int) -> None:
        held = len(self._fragments) if self._fragments is not None else 0
        if held + length > self.server.settings["max_message_size"]:
            # Nothing more is read: the client gets the close frame instead
            # of a reset for the bytes still on their way, and has the usual
            # few seconds to answer it.
            self._deaf = True
            self._buffer = b""
            self.close(1009, "message too big")

    def _on_frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        final = first & 0x80
        if opcode & 0x08:
            self._on_control(opcode, payload)
            return
        if opcode == 0:
            if self._fragments is None:
                raise _Refused  # nothing to continue
            self._fragments += payload
            if not final:
                return
            opcode, payload, self._fragments = self._opcode, bytes(self._fragments), None
        elif self._fragments is not None:
            raise _Refused  # a new message before the last one ended
        elif not final:
            self._opcode, self._fragments = opcode, bytearray(payload)
            return
        self._on_data(opcode, payload)

    def _on_data(self, opcode: int, payload: bytes) -> None:
        if self._client_closed:
            return
        if opcode == TEXT:
            try:
                message: str | bytes = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise _Refused from None
        elif opcode == BINARY:
            message = payload
        else:
            raise _Refused
        try:
            self.on_message(message)
        except _Refused:
            raise
        except Exception:
            logger.exception("Uncaught exception in a websocket message handler.")
            raise _Refused from None

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == CLOSE:
            self._client_closed = True
            code = _CODE.unpack_from(payload)[0] if len(payload) >= 2 else None
            self.close(code)  # echo the client's code (RFC 6455 section 5.5.1)
        elif opcode == PING:
            self._transport.write(frame(PONG, payload))
        elif opcode == PONG:
            self.on_pong()
        else:
            raise _Refused

    def on_message(self, message: str | bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def on_pong(self) -> None:
        """A pong arrived; only the raw websocket pings."""

    # -- the end -----------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self._door.sockets.discard(self)
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        self.pending = []
        session = self.session
        if session is not None:
            self.server.stats.on_conn_closed()
            self._detach()
            session.close()

    def session_closed(self) -> None:
        """The application closed the session: end the websocket too."""
        try:
            self._close_for_session()
        finally:
            self._detach()

    def _close_for_session(self) -> None:
        self.close()

    def _detach(self) -> None:
        if self.session is not None:
            self.session.remove_handler(self)
            self.session = None


class SockJSWebSocket(WebSocket):
    """``/connect/<server>/<session>/websocket``: SockJS framing."""

    __slots__ = ()

    frames = SOCKJS_FRAMES

    def open_session(self, session_id: str) -> None:
        self.open()
        self.session = self.server.create_session(session_id, register=False)
        # One heartbeat timer serves every front-door socket (``heartbeat``).
        self.session.set_handler(self, start_heartbeat=False)
        self.session.verify_state()
        if self.session:
            self.session.flush()

    def heartbeat(self) -> None:
        if self.session is not None:
            self.send_pack(proto.HEARTBEAT)

    def on_message(self, message: str | bytes) -> None:
        if not message or not self.session:
            return
        messages = sockjs_messages(message)
        if messages is None:
            raise _Refused
        self.session.on_messages(messages)


class RawWebSocket(WebSocket):
    """``/connect/websocket``: one message per frame, pinged like the heartbeat."""

    __slots__ = ("_awaiting_pong",)

    name = "rawwebsocket"
    frames = RAW_FRAMES

    def __init__(self, door: FrontDoor, transport: asyncio.Transport, info: ConnectionInfo) -> None:
        super().__init__(door, transport, info)
        self._awaiting_pong = False

    def open_session(self) -> None:
        self.open()
        self.session = RawSession(self.server.get_connection_class(), self.server)
        self.session.set_handler(self)
        self.session.verify_state()

    def heartbeat(self) -> None:
        # As Tornado's ping: a ping unanswered by the next one closes.
        if self._awaiting_pong:
            self.close(reason="ping timed out")
            return
        self._awaiting_pong = True
        if not self._server_closed and not self._transport.is_closing():
            self._transport.write(frame(PING, b""))

    def on_pong(self) -> None:
        self._awaiting_pong = False

    def on_message(self, message: str | bytes) -> None:
        if message and self.session:
            self.session.on_message(message)

    def _close_for_session(self) -> None:
        code, reason = self.session.get_close_reason()
        self.close(raw_websocket_close_code(code), reason)
