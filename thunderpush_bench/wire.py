"""The websocket wire as a client sees it: the upgrade, masked frames out, server frames in.

Why the bench reads frames itself: on a 2-core machine it has one core, and
reading deliveries is where that core goes.  ``ServerFrames`` walks the
server's (unmasked) frames by index without copying and counts deliveries
with ``bytes.count`` of its ``marker``; it leaves that fast path only for
control frames, fragments, text frames without a delivery (a SockJS
heartbeat, a Pusher ping) and sampled connections, which its subclasses
(``clients.SockJSClient``, ``clients.PusherClient``) handle.  Frames the
bench sends are encoded by the server's own ``thunderpush.transports.websocket.frames``,
so that the two cannot drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import random

from thunderpush.transports.websocket.frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    frame,
)
from thunderpush_bench.measure import Tally

# Every delivery element starts with this; inside the payload string every
# quote is escaped, so the marker cannot occur there.  Counting it is far
# cheaper than parsing the frame.
MARKER = b'{"payload":'

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT_FIN = 0x80 | TEXT  # FIN + text opcode: the frame almost every delivery comes in
# Longer than this, a handshake response is not one.
_MAX_HEAD = 65536


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 requires clients to mask)."""
    # A load generator needs no unpredictable mask.
    return frame(opcode, payload, random.randbytes(4))


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())


def upgrade_request(host: str, path: str, key: bytes) -> bytes:
    """The HTTP request that opens a websocket at ``path``."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class ServerFrames:
    """Reads one websocket's server side: the upgrade response, then its frames.

    ``feed`` takes whatever ``recv`` returned; deliveries are added to
    ``tally.received``.  A subclass says what a whole message means
    (``_message``) and how to send, fail and close, and may change ``marker``:
    what every delivery, and nothing else the server sends, contains.
    """

    marker = MARKER

    __slots__ = (
        "tally",
        "key",
        "head",
        "upgraded",
        "fast",
        "pending",
        "pending_size",
        "need",
        "fragments",
        "closing",
    )

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.key = base64.b64encode(random.randbytes(16))
        self.head = b""
        self.upgraded = False
        # Count markers in text frames without looking at them (unsampled, open).
        self.fast = False
        self.pending: list[bytes] | None = None
        self.pending_size = 0
        self.need = 0
        self.fragments: list[bytes] | None = None
        self.closing = False

    # what a subclass provides

    def _message(self, text: bytes) -> int:
        """One whole websocket message; returns how many deliveries it held."""
        raise NotImplementedError

    def _upgraded(self) -> None:
        """The server answered the upgrade (a session that is open from then on says so)."""

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _fail(self, reason: str) -> None:
        raise NotImplementedError

    def lost(self, error: Exception | None) -> None:
        """The server ended the connection (a close frame, or the socket closed)."""
        raise NotImplementedError

    # reading

    def feed(self, data: bytes) -> None:
        """Everything ``recv`` returned, in order."""
        if self.pending is not None:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size < self.need:
                return
            data = b"".join(self.pending)
            self.pending = None
        if self.upgraded:
            self._frames(data)
        else:
            self._handshake(data)

    def _handshake(self, data: bytes) -> None:
        head = self.head + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > _MAX_HEAD:
                self._fail("handshake response too long")
            self.head = head
            return
        self.head = b""
        lines = head[:end].split(b"\r\n")
        accept = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                accept = value.strip()
        if lines[0][9:12] != b"101" or accept != accept_key(self.key):
            self._fail(f"handshake refused: {lines[0][:60].decode('latin-1')}")
            return
        self.upgraded = True
        self._upgraded()
        if len(head) > end + 4:
            self._frames(head[end + 4 :])

    def _frames(self, data: bytes) -> None:
        """Walks the complete frames in ``data``; keeps a partial one for later."""
        size = len(data)
        marker = self.marker
        pos = 0
        count = 0
        need = 0
        while pos < size:
            if size - pos < 2:
                need = 2
                break
            first = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length > 125:
                if length > 127:
                    self._fail("masked frame from the server")
                    return
                start = pos + (4 if length == 126 else 10)
                if start > size:
                    need = start - pos
                    break
                length = int.from_bytes(data[pos + 2 : start], "big")
            end = start + length
            if end > size:
                need = end - pos
                break
            found = data.count(marker, start, end) if first == _TEXT_FIN and self.fast else 0
            if found:
                count += found
            else:
                count += self._frame(first, data[start:end])
                if self.closing:
                    break
            pos = end
        if count:
            self.tally.received += count
        if pos < size and need:
            self.pending = [data[pos:]]
            self.pending_size = size - pos
            self.need = need

    def _frame(self, first: int, payload: bytes) -> int:
        """The slow path: any frame but an unfragmented text frame when counting."""
        opcode = first & 0x0F
        fin = first & 0x80
        if opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.tally.close_codes[f"ws {code}"] += 1
            self.send(client_frame(CLOSE, payload[:2]))
            self.lost(ConnectionError(f"closed by the server ({code})"))
            return 0
        if opcode == PING:
            self.send(client_frame(PONG, payload))
            return 0
        if opcode in (TEXT, BINARY):
            if not fin:
                self.fragments = [payload]
                return 0
            return self._message(payload)
        if opcode == CONTINUATION and self.fragments is not None:
            self.fragments.append(payload)
            if not fin:
                return 0
            message = b"".join(self.fragments)
            self.fragments = None
            return self._message(message)
        return 0  # pong, or a stray continuation: nothing to count
