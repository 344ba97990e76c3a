"""HTTP/1.1 for the front door: one ``HttpConnection`` per TCP connection, parsed by llhttp.

``httptools`` (llhttp, the parser behind uvicorn) checks the syntax; this module
keeps the raw bytes of the unfinished request beside it, so that a request the
fast path does not serve can be handed over, from its first byte, to whoever
serves it.  Each request head is shown to the ``Door``:

* ``Door.start(request)`` returns an ``Answer`` (written at once, as Tornado
  answers before reading the body), a ``Call`` (finished with the body; its
  answer may be awaitable) or ``None``: not served here;
* a request with ``Upgrade`` goes to ``Door.upgrade(transport, request, rest)``,
  which takes the connection, refuses it with an ``Answer`` (written, then
  the connection is closed) or leaves it;
* everything else, and anything unusual (``heads.unusual``, HTTP/1.0, repeated
  header fields), goes to ``Door.hand_off(transport, data)`` once every
  earlier answer is written.

Every limit has one outcome (the head's: ``thunderpush.transports.door.heads``):

* a declared body over ``max_body_size``: the endpoint's 413, then closed;
* no complete head ``head_timeout`` seconds after a connection opens or a
  request begins, no complete body ``body_timeout`` after its head, nothing
  ``idle_timeout`` after the last answer: closed;
* answers the client does not read: reading stops while the transport's
  write buffer is over its high-water mark.

Usage, as ``FrontDoor`` does for each accepted socket::

    await loop.connect_accepted_socket(lambda: HttpConnection(door), sock)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NoReturn, Protocol

import httptools

from thunderpush.config import Config
from thunderpush.transports.door.answers import Answer
from thunderpush.transports.door.deadlines import BODY, IDLE
from thunderpush.transports.door.endpoints import Call
from thunderpush.transports.door.heads import MAX_HEAD_SIZE, HeadReader, bounds, unusual
from thunderpush.transports.door.messages import BAD_REQUEST, Request, closing_response, response

logger = logging.getLogger(__name__)

# What a connection is doing.
_READING, _HANDING_OFF, _CLOSING, _GONE = range(4)


class Door(Protocol):
    """What an ``HttpConnection`` asks of the server it belongs to."""

    config: Config
    connections: set[HttpConnection]

    def start(self, request: Request) -> Answer | Call | None:
        """The answer, a call waiting for the body, or None: not served here."""

    def upgrade(self, transport: asyncio.Transport, request: Request, rest: bytes) -> bool | Answer:
        """Take the connection for a protocol upgrade (True; ``rest`` follows the head),
        refuse it with an answer that ends the connection, or leave it (False)."""

    def hand_off(self, transport: asyncio.Transport, data: bytes) -> None:
        """Serve the connection elsewhere, ``data`` (from a request's first byte) unread."""

    def connection_closed(self, ip: str) -> None:
        """A connection counted for ``ip`` is closed or served elsewhere now."""


class _Stop(Exception):
    """Raised in a parser callback to stop llhttp; the parser is replaced to go on."""


class HttpConnection(HeadReader):
    """One TCP connection, until it is closed, upgraded or handed off."""

    __slots__ = (
        "_door",
        "_transport",
        "_peer",
        "_parser",
        "_raw",
        "_start",
        "_request",
        "_call",
        "_body",
        "_keep_alive",
        "_state",
        "_stopped",
        "_write_paused",
        "_pending",
        "_ended",
        "_handed",
        "_counted",
    )

    def __init__(self, door: Door, counted: str | None = None) -> None:
        super().__init__()
        self._door = door
        # The address the door counts this connection for, until it releases it.
        self._counted = counted
        self._transport: Any = None
        self._peer: Any = None
        self._parser: Any = None
        # Every byte from the first one of the unfinished request (``_start``).
        self._raw = bytearray()
        self._start = 0
        # The request whose head is read and whose body is not, and its call.
        self._request: Request | None = None
        self._call: Call | None = None
        # Where that body starts (from ``_start``) and how long it is.
        self._body = (0, 0)
        self._keep_alive = True
        self._state = _READING
        self._stopped = False
        self._write_paused = False
        self._pending: asyncio.Future[Answer] | None = None
        # The client half-closed while an answer was pending (``eof_received``).
        self._ended = False
        self._handed = b""

    @property
    def transport(self) -> Any:
        """The asyncio transport this connection serves."""
        return self._transport

    # -- the transport's calls -------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._peer = transport.get_extra_info("peername")
        self._parser = httptools.HttpRequestParser(self)
        self._door.connections.add(self)
        self.arm_deadline(self._door.config)

    def buffer_updated(self, nbytes: int) -> None:
        if self._state != _READING:
            return
        data = self._view[:nbytes]
        self._raw += data
        if self._parser is not None:
            self._parse(data)
        elif self._pending is not None:
            # More came while an answer is pending: nothing more is read until it
            # is sent (answers go out in request order).  Paused only now, as most
            # clients wait for each answer: pausing at every pending answer cost
            # two epoll calls per request (16% of a cluster node's publish CPU).
            self._transport.pause_reading()
        self._after_parsing()

    def eof_received(self) -> bool | None:
        """The client half-closed.  With an answer pending (reading is not paused
        for it), the requests it sent before are still answered, in order, and
        the connection closes after the last; otherwise it closes now."""
        if self._pending is None:
            return None
        self._ended = True
        return True

    def pause_writing(self) -> None:
        self._write_paused = True
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        # Not now: ending or handing over the transport inside its own write
        # callback makes asyncio call ``connection_lost`` twice.
        self._loop.call_soon(self._go_on)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._raw = bytearray()
        self._parser = None

    def close(self) -> None:
        """Close the connection once what it has to send is sent."""
        if self._state == _READING or self._state == _HANDING_OFF:
            self._end()

    # -- llhttp's callbacks (the head's: ``HeadReader``) ---------------------------

    def on_headers_complete(self) -> None:
        if self._transport.is_closing():
            self._stop()  # reset by the peer: nothing more to answer
        start, head_end = bounds(self._raw, self._start)
        if head_end - self._start > MAX_HEAD_SIZE:
            self._end()  # as Tornado: closed without an answer
            self._stop()
        self._start = start
        parser, url, values = self._parser, self._url, self._values
        method = parser.get_method()
        if self._repeats or unusual(self._raw, start, method, url, values):
            self._hand_off()
        request = Request(method.decode("latin-1"), url.decode("latin-1"), values, self._peer)
        if parser.should_upgrade():
            self._upgrade(request, head_end)
        self._keep_alive = parser.should_keep_alive()
        started = self._door.start(request)
        if started is None:
            self._hand_off()
        length = int(values.get(b"content-length", 0))
        call = None
        if isinstance(started, Answer):
            self._respond(request, started)
            if length > self._door.config.max_body_size:
                self._end()  # as Tornado: the answer, then no more reading
        else:
            call = started
        if self._state != _READING:
            self._stop()
        self._request, self._call = request, call
        self._body = (head_end - start, length)
        self.enter(BODY)

    def on_message_complete(self) -> None:
        request, call = self._request, self._call
        self._request = self._call = None
        offset, length = self._body
        body_start = self._start + offset
        self._start = body_start + length
        self.enter(IDLE)
        if call is not None:
            body = bytes(self._raw[body_start : self._start]) if length else b""
            self._finish(request, call, body)
        if not self._keep_alive and self._state == _READING and self._pending is None:
            self._end()  # (a pending answer ends the connection once it is sent)
        if self._state != _READING or self._write_paused or self._pending is not None:
            self._stop()

    # -- serving ---------------------------------------------------------------

    def _parse(self, data: Any) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if not self._stopped:
                raise  # a fault in a callback, not a decision
        except httptools.HttpParserError as error:
            self._refuse(str(error))
        if self._stopped:
            self._stopped = False
            self._parser = None

    def _after_parsing(self) -> None:
        raw = self._raw
        if (
            self._state == _READING
            and self._parser is not None
            and self._request is None
            and len(raw) - self._start > MAX_HEAD_SIZE
        ):
            self._end()  # as Tornado: closed without an answer
        if self._start:
            del raw[: self._start]
            self._start = 0
        self.arm_deadline(self._door.config)

    def _go_on(self) -> None:
        """Continue after a pause: hand off, or parse what was read meanwhile."""
        if self._state == _HANDING_OFF:
            if not self._transport.get_write_buffer_size():
                self._give_away()
            return
        if (
            self._state != _READING
            or self._write_paused
            or self._pending is not None
            or self._transport.is_closing()
        ):
            return
        self._transport.resume_reading()
        if self._parser is None:
            self._parser = httptools.HttpRequestParser(self)
            if self._raw:
                self._parse(bytes(self._raw))
        self._after_parsing()
        if self._ended and self._pending is None and self._state == _READING:
            self._end()  # what the client sent before its end is answered

    def _finish(self, request: Request, call: Call, body: bytes) -> None:
        answer = call.finish(body)  # (a fault is the call's to answer)
        if isinstance(answer, Answer):
            self._respond(request, answer)
            return
        # Answers go out in request order: the parser stops after this request
        # (``on_message_complete``), and what comes meanwhile waits in ``_raw``.
        self._pending = pending = asyncio.ensure_future(answer)
        pending.add_done_callback(lambda done: self._answered(request, done))

    def _answered(self, request: Request, done: asyncio.Future[Answer]) -> None:
        self._pending = None
        if self._state != _READING:
            return
        if done.cancelled():
            self._transport.abort()
            return
        self._respond(request, done.result())
        if not self._keep_alive:
            self._end()
        self._go_on()

    def _respond(self, request: Request, answer: Answer) -> None:
        self._transport.write(response(request, answer))
        request.log(answer.status)
        if request.close:
            self._end()

    def _upgrade(self, request: Request, head_end: int) -> NoReturn:
        taken = self._door.upgrade(self._transport, request, bytes(self._raw[head_end:]))
        if isinstance(taken, Answer):
            request.log(taken.status)
            self._end(closing_response(taken))
            self._stop()
        if taken:
            self._release()
            self._stop()
        self._hand_off()

    def _hand_off(self) -> NoReturn:
        """Give the connection away from this request on, once earlier answers are sent."""
        transport = self._transport
        self._handed = bytes(self._raw[self._start :])
        self._state = _HANDING_OFF
        transport.pause_reading()
        if transport.get_write_buffer_size():
            self.enter(IDLE)  # the client has to read them first
            transport.set_write_buffer_limits(high=0)  # resume_writing once all is sent
        else:
            self._give_away()
        self._stop()

    def _give_away(self) -> None:
        self._release()
        self._door.hand_off(self._transport, self._handed)
        self._handed = b""

    def _end(self, data: bytes = b"") -> None:
        """Close after ``data`` and every earlier answer (cut off if the client stops reading)."""
        transport = self._transport
        if data and not transport.is_closing():
            transport.write(data)
        transport.close()
        self._state = _CLOSING
        self.enter(IDLE)
        self.arm_deadline(self._door.config)

    def too_many_fields(self) -> NoReturn:
        self._refuse("too many header fields")
        self._stop()

    def _refuse(self, reason: str) -> None:
        """Tornado's answer to a request it cannot read: 400, then the end."""
        logger.debug("Bad request from %s: %s", self._remote_ip(), reason)
        self._end(BAD_REQUEST)

    def _stop(self) -> NoReturn:
        self._stopped = True
        raise _Stop

    def _release(self) -> None:
        """The connection is no longer this object's to serve."""
        self._state = _GONE
        self._door.connections.discard(self)
        self.stop_deadlines()
        self.uncount()

    def uncount(self) -> None:
        """Stop counting the connection as this object's (once; it may have passed it on)."""
        counted, self._counted = self._counted, None
        if counted is not None:
            self._door.connection_closed(counted)

    def _remote_ip(self) -> str:
        return self._peer[0] if self._peer else ""

    def timed_out(self) -> None:
        """A deadline passed: the client is too slow or gone, nothing is answered."""
        logger.debug("Closing a connection from %s: timed out", self._remote_ip())
        self._release()
        self._transport.abort()
