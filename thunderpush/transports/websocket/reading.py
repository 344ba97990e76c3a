"""The reading side of a websocket: client frames in, messages and pongs out.

Every client frame is read by ``websockets``' Sans-I/O ``ServerProtocol``
(``receive_data`` / ``events_received`` / ``data_to_send``), so
fragmentation, control frames, close codes, UTF-8 and the size limit are
exactly RFC 6455 as that library enforces it; only a whole text frame between
messages, the one frame most clients send, is read without it
(``frames.whole_text``, which takes only what the library would take as one
valid message).  The protocol is made when a frame arrives and let go while
the connection is open between messages (1.5 KiB a connection).

Pings are each answered at once, in the order of the frames around it (a pong
goes out before the answer to a message that came after its ping), while
nothing waits to be written.  Under back-pressure (bytes wait in the
transport's buffer: the client does not read) pongs are coalesced: only the
latest ping's pong waits, and goes once the buffer is empty (RFC 6455 section
5.5.3 allows answering only the latest), so a ping flood from a client that
reads nothing costs one pong of memory.

``FrameReader`` is the base of ``thunderpush.transports.websocket.socket.WebSocket``,
which owns the connection and its writes; the reader uses its ``service``,
``_transport``, ``_open``, ``_response`` and its ``_uncork``,
``_write_output`` and ``_abort``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from websockets.frames import CloseCode, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from thunderpush.transports.reads import SharedReadBuffer
from thunderpush.transports.websocket.frames import client_frame_size, whole_text
from thunderpush.transports.websocket.protocol_log import PROTOCOL_LOG

if TYPE_CHECKING:
    from thunderpush.transports.websocket.service import WebSocketService

# The socket's logger, as before the reading side had a module of its own
# (``PROTOCOL_LOG`` is its child ``.frames``).
logger = logging.getLogger("thunderpush.transports.websocket.socket")


# The first byte of a server's pong frame (FIN, opcode 0xA, no extension).
_PONG = b"\x8a"


class DropConnection(Exception):
    """Raised by ``on_message``: the TCP connection is dropped without a close frame."""


class FrameReader(SharedReadBuffer):
    """Reads a websocket's frames and hands each message to ``on_message``.

    Its slots hold only what reading needs; the connection's own state is the
    subclass's (``WebSocket``), so one object still holds a whole connection.
    """

    __slots__ = ("_protocol", "_unparsed", "_fragments", "_text", "_held_pong")

    # The subclass's, read here.
    service: WebSocketService
    _transport: Any
    _open: bool
    _response: bytes

    def __init__(self) -> None:
        # What reads the frames: made when a frame arrives, let go while the
        # connection is open between messages (``_reader``).
        self._protocol: ServerProtocol | None = None
        # Bytes given to the protocol and not yet seen as frames.
        self._unparsed = 0
        self._fragments: list[bytes] | None = None
        self._text = False
        self._held_pong: bytes | None = None

    def data_received(self, data: bytes) -> None:
        if self._protocol is None and self._open:
            # Between messages, one whole text frame (a command) needs no reader.
            message = whole_text(data, self.service.settings.max_message_size)
            if message is not None:
                self._on_message(message)
                self._open = self._open and not self._transport.is_closing()
                return
        protocol = self._reader()
        protocol.receive_data(data)
        events = protocol.events_received()
        unparsed = self._unparsed + len(data)
        for event in events:
            unparsed -= client_frame_size(len(event.data))
        self._unparsed = unparsed
        # The protocol answered every ping of ``events`` (one pong each, in
        # order); each pong goes out as its ping is reached among the frames.
        writes = protocol.data_to_send()
        pongs = iter([data for data in writes if data[:1] == _PONG])
        if events:
            self._on_frames(events, pongs)
        if not self._transport.is_closing():
            rest = [data for data in writes if data[:1] != _PONG]
            self._write_output(rest + protocol.data_to_send())
        if not unparsed and self._fragments is None and self._open and protocol.state is OPEN:
            # Between two messages the protocol holds nothing worth its
            # 1.5 KiB: most connections send a command or two, then only listen.
            # (A client that encodes a length longer than needed keeps it.)
            self._protocol = None

    def _reader(self) -> ServerProtocol:
        """The protocol reading this connection, made anew after it was let go."""
        protocol = self._protocol
        if protocol is None:
            max_size = self.service.settings.max_message_size
            protocol = ServerProtocol(state=OPEN, max_size=max_size, logger=PROTOCOL_LOG)
            self._protocol = protocol
        return protocol

    def _on_frames(self, frames: list[Any], pongs: Iterator[bytes]) -> None:
        """Hands each message to the session and answers each ping, in the frames' order."""
        for event in frames:
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if not event.fin:
                    self._fragments, self._text = [event.data], opcode is Opcode.TEXT
                    continue
                text, data = opcode is Opcode.TEXT, event.data
            elif opcode is Opcode.CONT and self._fragments is not None:
                self._fragments.append(event.data)
                if not event.fin:
                    continue
                text, data, self._fragments = self._text, b"".join(self._fragments), None
            else:
                if opcode is Opcode.PING:
                    self._pong(next(pongs))
                elif opcode is Opcode.PONG:
                    self.on_pong(event.data)
                continue  # closes are the protocol's to answer
            if not self._on_data(text, data):
                return

    def _on_data(self, text: bool, data: bytes) -> bool:
        """Hands one message to the session; False once the connection is ending."""
        message: str | bytes = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError as error:
                reason = f"{error.reason} at position {error.start}"
                self._protocol.fail(CloseCode.INVALID_DATA, reason)
                return False
        return self._on_message(message)

    def _on_message(self, message: str | bytes) -> bool:
        """``on_message``, its failures dropping the connection; False once it is ending."""
        try:
            self.on_message(message)
        except DropConnection:
            self._abort()
            return False
        except Exception:
            logger.exception("Uncaught exception in a websocket message handler.")
            self._abort()
            return False
        return True

    def on_message(self, message: str | bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def on_pong(self, data: bytes) -> None:
        """A pong arrived with ``data``; only the raw websocket pings."""

    def _pong(self, data: bytes) -> None:
        """Writes a pong now, or holds it (the latest only) while the client is not reading."""
        if self._response:
            self._uncork()
        transport = self._transport
        if not self._open or transport.is_closing():
            self._held_pong = None  # a close went: nothing more is sent
            return
        if transport.get_write_buffer_size():
            self._held_pong = data  # the client is not reading: one pong waits
        else:
            self._held_pong = None
            transport.write(data)

    def _release_pong(self) -> None:
        if self._held_pong is not None and not self._transport.get_write_buffer_size():
            self._pong(self._held_pong)
