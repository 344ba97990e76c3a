"""Websocket connections served straight on an asyncio transport.

Tornado keeps a request, a handler, a protocol object, stream buffers and
several suspended coroutines alive for every open websocket.  Here one
``WebSocket`` is the whole connection.  This module holds its life (open,
close, end) and its writes; its base class,
``thunderpush.transports.websocket.reading.FrameReader``, reads its frames with
``websockets``' Sans-I/O ``ServerProtocol`` (RFC 6455 as that library
enforces it) and answers pings.  Deliveries never go through the library:
a publish builds its frame once (``thunderpush.transports.websocket.fanout``)
and each socket writes it straight to its transport: at once when the server
is idle, else one send per loop turn.

Towards sockjs-tornado a ``WebSocket`` is a transport handler like any other
(``name``, ``active``, ``get_conn_info``, ``send_pack``, ``session_closed``):
the ``o``, ``h`` and ``c[...]`` frames, close codes and ``live_sessions``
behave as on every other transport; ``thunderpush.transports.sockjs.websockets``
has the two kinds, SockJS-framed and raw.  ``thunderpush.transports.websocket.handshake``
answers the handshake, whoever parsed it, and then starts one of these::

    socket = SockJSWebSocket(router, handshake, rest, session_id)
    transport.set_protocol(socket)
    socket.connection_made(transport)   # writes the 101, opens the session

Limits, each with one outcome:

* a message over the service's ``max_message_size``: close 1009;
* a protocol error: close 1002 (1007 for text that is not UTF-8), then the
  TCP connection ends;
* a close handshake the client does not finish within the service's
  ``websocket_close_timeout``: the TCP connection is aborted;
* pings: each answered at once, in the frames' order; while the client
  does not read, only the latest ping's pong waits (``reading``);
* more than the service's ``max_unsent_bytes`` waiting to be written (the
  transport's high-water mark, so asyncio says so with ``pause_writing``):
  the client is too slow, the transport is aborted at once (its buffer is
  freed; a close frame would wait behind it), the session closes with 9011
  and one line is logged (``thunderpush.transports.slow``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ProtocolError
from websockets.frames import Close, CloseCode
from websockets.protocol import OPEN

from thunderpush.transports.slow import close_too_slow, log_too_slow
from thunderpush.transports.websocket.fanout import FrameCache
from thunderpush.transports.websocket.frames import BINARY, TEXT, frame
from thunderpush.transports.websocket.reading import FrameReader

if TYPE_CHECKING:
    from thunderpush.transports.websocket.handshake import Handshake
    from thunderpush.transports.websocket.service import WebSocketService

# A close frame's payload is at most 125 bytes, two of them the code.
_MAX_REASON = 123


class WebSocket(FrameReader):
    """One websocket after its handshake; subclasses say how it meets its session
    (``open_session``, ``on_message``, ``heartbeat``, ``frames``).

    ``service`` is what the server's websockets share (settings, outbox,
    heartbeat, counters: ``thunderpush.transports.websocket.service``);
    ``handshake`` is the accepted handshake (``thunderpush.transports.websocket.handshake``);
    ``connection_made`` writes its answer, opens the session and reads
    ``rest``, the bytes that arrived with the request.  The frames are read by
    a ``ServerProtocol`` started in the OPEN state, the library's way of
    taking over after a handshake answered elsewhere (``FrameReader``).
    """

    __slots__ = (
        "session",
        "pending",
        "service",
        "_info",
        "_rest",
        "_response",
        "_transport",
        "_open",
        "_closer",
        "_too_slow",
    )

    name = "websocket"
    active = True
    frames: FrameCache

    def __init__(self, service: WebSocketService, handshake: Handshake, rest: bytes) -> None:
        super().__init__()
        self.session: Any = None
        # Frames queued this loop turn (``fanout.Outbox``): one frame's bytes,
        # or a list of them; an idle socket holds the shared empty bytes.
        self.pending: bytes | list[bytes] = b""
        self.service = service
        self._info = handshake.info
        self._rest = rest
        self._response = handshake.data
        self._transport: Any = None
        # Deliveries may be written: the protocol is OPEN and the transport too.
        self._open = False
        self._closer: asyncio.TimerHandle | None = None
        self._too_slow = False

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        service = self.service
        service.bind_to_running_loop()
        # Past this, asyncio calls ``pause_writing``: the client is too slow.
        transport.set_write_buffer_limits(high=service.settings.max_unsent_bytes)
        # The 101 waits in ``_response`` for what the session sends as it opens
        # (SockJS's ``o``): both leave in one send (``_uncork``).
        self._open = not transport.is_closing()
        service.sockets.add(self)
        service.stats.on_conn_opened()
        self.open_session()
        self._uncork()
        rest, self._rest = self._rest, b""
        if rest and not transport.is_closing():
            self.data_received(rest)

    def open_session(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def get_conn_info(self) -> Any:
        return self._info

    def _uncork(self) -> None:
        """Writes the 101 and what was sent with it, once, before anything else."""
        response = self._response
        if response:
            self._response = b""
            self._transport.write(response)
            self._open = self._open and not self._transport.is_closing()

    # -- writing -----------------------------------------------------------

    def send_element(self, element: str) -> None:
        outbox = self.service.outbox
        frame = self.frames.frame(element)
        if frame is outbox.direct and not self.pending:
            # An idle turn's publish (``fanout.Outbox``): written at once, inline,
            # as the hub reaches this receiver (the hottest line of a paced fan-out).
            self.write_now(frame)
            return
        outbox.queue(self, frame)

    def flush_pending(self) -> None:
        if self._response:
            self._uncork()
        pending, self.pending = self.pending, b""
        if pending and self._open and not self._transport.is_closing():
            self._transport.write(pending if pending.__class__ is bytes else b"".join(pending))

    def write_now(self, frame: bytes) -> None:
        """A delivery the outbox need not hold (``fanout.Outbox``: an idle turn)."""
        if self._response:
            self._uncork()
        if self._open and not self._transport.is_closing():
            self._transport.write(frame)

    @property
    def unsent_bytes(self) -> int:
        """Bytes accepted for this client and not yet taken by the kernel."""
        pending = self.pending
        queued = len(pending) if pending.__class__ is bytes else sum(map(len, pending))
        return self._transport.get_write_buffer_size() + queued

    def send_pack(self, message: str | bytes, binary: bool = False) -> None:
        if self.pending:
            self.flush_pending()  # keep heartbeats and closes in order
        if self._open and not self._transport.is_closing():
            data = message.encode() if isinstance(message, str) else message
            if self._response:  # opening: after the 101, in the same send
                self._response += frame(BINARY if binary else TEXT, data)
            else:
                self._transport.write(frame(BINARY if binary else TEXT, data))

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start the closing handshake; the client has ``websocket_close_timeout`` to answer."""
        if self.pending:
            self.flush_pending()
        protocol = self._reader()
        if protocol.state is not OPEN or self._transport.is_closing():
            return
        if code is None and reason is not None:
            code = CloseCode.NORMAL_CLOSURE
        if code is None:
            protocol.send_close()
        else:
            protocol.send_close(*_close_frame(code, reason or ""))
        self._write_output()

    def heartbeat(self) -> None:
        """One beat of the service's shared timer (``transports.websocket.heartbeat``)."""
        self._release_pong()

    def pause_writing(self) -> None:
        """Over ``max_unsent_bytes``: let the connection and what it holds go now.

        Called from inside ``transport.write``, possibly while the hub is
        sending to a channel: the session is closed in ``connection_lost``,
        which asyncio calls soon after the abort.
        """
        if self._too_slow:
            return
        self._too_slow = True
        log_too_slow(self.session, self._info.ip, self.service.settings.max_unsent_bytes)
        self._abort()

    def _write_output(self, writes: list[bytes] | None = None) -> None:
        """Writes what the protocol has to send (``writes``, or all it holds: pings,
        closes; pongs are ``data_received``'s), then follows its state."""
        if self._response:
            self._uncork()
        protocol, transport = self._protocol, self._transport
        for data in protocol.data_to_send() if writes is None else writes:
            if not data:
                self._end_stream()
            elif not transport.is_closing():
                transport.write(data)
        self._open = protocol.state is OPEN and not transport.is_closing()
        if self._closer is None and protocol.close_expected():
            timeout = self.service.settings.websocket_close_timeout
            self._closer = asyncio.get_running_loop().call_later(timeout, transport.abort)

    def _end_stream(self) -> None:
        """The protocol has nothing more to send: end the TCP connection."""
        transport = self._transport
        if transport.is_closing():
            return
        if self._protocol.close_rcvd is not None or not transport.can_write_eof():
            transport.close()  # both close frames went: nothing more is expected
        else:
            # Failing the connection while the client may still be sending: a
            # half-close lets it read the close frame instead of a reset, and
            # the transport closes when the client's end arrives.
            transport.write_eof()

    def _abort(self) -> None:
        self._open = False
        self._transport.abort()

    # -- the end -----------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self.service.sockets.discard(self)
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        self.pending = b""
        self._open = False
        self._held_pong = None
        session = self.session
        if session is not None:
            self.service.stats.on_conn_closed()
            self._detach()
            if self._too_slow:
                close_too_slow(session)
            else:
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


def _close_frame(code: int, reason: str) -> tuple[int, str]:
    """A close code and reason the protocol will send: valid, and short enough."""
    fitted = reason.encode()[:_MAX_REASON].decode(errors="ignore")
    try:
        Close(code, fitted).check()
    except ProtocolError:
        code = CloseCode.NORMAL_CLOSURE  # e.g. an application's code outside 1000-4999
    return code, fitted
