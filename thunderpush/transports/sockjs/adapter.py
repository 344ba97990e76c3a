"""The one place Thunderpush leans on Tornado's or sockjs-tornado's internals.

Everything here is named with why no public way does; each is checked by
``tests/test_adapter.py`` or ``tests/test_adapter_websocket.py`` against the
installed release, so that a release that changes it fails there first.
``tests/test_adapter.py`` also fails if any other module of the package uses a
private name of either library.

The front door reads a connection's first bytes itself; when Tornado is to
serve the connection, it gets the socket and those bytes, which it must read
before anything else from the socket.  What this relies on (all public):

* ``BaseIOStream.read_from_fd(buf)``, the documented method a stream subclass
  implements to read from its file: every read of an ``IOStream`` goes
  through it, so ``PrefilledIOStream`` returns the bytes it was given first;
* ``TCPServer.handle_stream(stream, address)``, the documented method through
  which ``HTTPServer`` takes a new connection;
* ``BaseIOStream.close_fd()``, the documented method a stream subclass
  implements to close its file, called once however the stream closes (the
  peer's end, an error, ``close()``): ``PrefilledIOStream`` calls its
  ``on_close`` there, so the front door knows when a handed-over connection
  ends (the stream's ``set_close_callback`` is ``HTTP1Connection``'s);
* ``TCPServer.max_buffer_size`` and ``TCPServer.read_chunk_size``, the
  attributes where ``HTTPServer`` keeps its constructor's stream settings;
* ``HTTPServer.start_request(server_conn, request_conn)``, the documented
  delegate method called for each request, and the request connection's
  ``stream`` and ``context`` (the object Tornado documents as the
  application's, whose ``remote_ip`` ``HTTPServerRequest`` reads): a TLS
  connection reaches Tornado through a socketpair
  (``thunderpush.transports.door.tls``), whose peer Tornado would call
  ``0.0.0.0``, and ``HandOffServer`` names the client the front door saw.

The other way round, a websocket handshake that Tornado parsed leaves Tornado
(``RequestHandler.detach``, public) with the bytes Tornado read past it:
``detached_socket`` reads them from ``IOStream._read_buffer`` and
``_read_buffer_size`` (private: no public call takes buffered bytes without
reading the socket) and takes ``IOStream.socket``.

Request handlers (Tornado ``RequestHandler``):

* ``OwnAccessLog`` overrides ``RequestHandler._log``, which ``finish`` calls to
  write the access log line: the public way, the application's
  ``log_function`` setting, would have to be set by every application that
  mounts the SockJS router; ``request_summary`` calls
  ``RequestHandler._request_summary`` so the line reads as Tornado's own;
* ``abort_response`` calls ``HTTP1Connection.close`` (``request.connection``):
  public on the class Tornado's server uses, but not part of the
  ``HTTPConnection`` interface a handler is promised; it closes the stream and
  frees whatever it still had to write, which no call of the handler does
  (``finish`` waits for the client to read it all);
* ``keep_request_open`` clears ``RequestHandler._auto_finish``: a ``get`` that
  is no coroutine is otherwise finished as soon as it returns, and a streaming
  transport answers for as long as its session lasts.  sockjs-tornado's own
  ``@asynchronous`` handlers set the same attribute.

sockjs-tornado 1.0.7:

* ``attach_session`` calls ``PollingTransportBase._attach_session``, the only
  way a polling or streaming handler takes a session by its id, for a
  corrected handler that cannot call its base class's ``get``;
* ``restart_router_timers`` restarts ``SockJSRouter._sessions_cleanup`` and
  ``StatsCollector._callback`` (``router.stats``), the router's two
  ``PeriodicCallback`` timers, which bind to the loop current when they start:
  the router has no public way to start them again on another loop.

Usage::

    server = HandOffServer(application)
    serve(server, sock, peer_address, already_read)
    sock, unread = detached_socket(handler.detach())
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

if TYPE_CHECKING:  # annotations only: the front door need not import sockjs-tornado
    from sockjs.tornado.router import SockJSRouter
    from sockjs.tornado.transports.pollingbase import PollingTransportBase
    from tornado.web import RequestHandler


class PrefilledIOStream(IOStream):
    """An ``IOStream`` whose first reads return ``unread``, then the socket's bytes.

    ``on_close`` is called once, when the stream closes, however it closes;
    ``remote_ip`` names the client when ``sock`` is not the client's connection.

    The requests read before the client ends its side are answered, as the
    front door answers its own: Tornado closes a stream whose client ended it
    while a request is served, as soon as it notices, which on uvloop is before
    the handler's next step (uvloop runs I/O callbacks before those already
    scheduled), and the answer was lost.  ``close_at_end`` restores Tornado's way.
    """

    def __init__(
        self,
        sock: socket.socket,
        unread: bytes,
        on_close: Callable[[], None] | None = None,
        remote_ip: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(sock, **kwargs)
        # Named for this module: IOStream's own attributes are all ``_read_...``.
        self._thunderpush_unread = memoryview(unread)
        self._thunderpush_on_close = on_close
        self.thunderpush_remote_ip = remote_ip
        # The client has ended its side (half-closed, or closed: TCP cannot tell).
        self._thunderpush_ended = False
        # Requests read before the client's end are answered (``close_at_end``).
        self._thunderpush_answer_at_end = True

    def close_at_end(self) -> None:
        """Close as soon as the client ends its side, as Tornado does, also while
        a request is served: for answers that last as long as their client."""
        self._thunderpush_answer_at_end = False
        if self._thunderpush_ended:
            self.io_loop.add_callback(self.close)

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        unread = self._thunderpush_unread
        if not unread:
            if self._thunderpush_ended:
                read = 0
            else:
                read = super().read_from_fd(buf)
                self._thunderpush_ended = read == 0
            if read == 0 and self._thunderpush_answer_at_end and not self.reading():
                # The client ended its side while a request is served (Tornado
                # reads only to notice that): its answer goes out first, and
                # the next read ends the stream.  Not read again until then.
                writing = IOLoop.WRITE if self.writing() else 0
                self.io_loop.update_handler(self.fileno(), IOLoop.ERROR | writing)
                return None
            return read
        size = min(len(buf), len(unread))
        buf[:size] = unread[:size]
        self._thunderpush_unread = unread[size:]
        return size

    def close_fd(self) -> None:
        super().close_fd()
        on_close, self._thunderpush_on_close = self._thunderpush_on_close, None
        if on_close is not None:
            on_close()


class HandOffServer(HTTPServer):
    """Tornado's ``HTTPServer``, naming the client of a relayed connection as the door saw it."""

    def start_request(self, server_conn: object, request_conn: Any) -> Any:
        remote_ip = getattr(request_conn.stream, "thunderpush_remote_ip", None)
        if remote_ip is not None:
            request_conn.context.remote_ip = remote_ip
        return super().start_request(server_conn, request_conn)

    def serve_connection(
        self, sock: socket.socket, address: Any, unread: bytes, on_close: Callable[[], None]
    ) -> None:
        """The front door's hand-off: ``serve`` on this server."""
        serve(self, sock, address, unread, on_close)


def serve(
    server: HTTPServer,
    sock: socket.socket,
    address: Any,
    unread: bytes,
    on_close: Callable[[], None] | None = None,
) -> None:
    """Let ``server`` serve the connection ``sock`` as if it had read ``unread`` from it.

    ``address`` is the client's, also when ``sock`` is a socketpair's end;
    ``on_close`` is called once the connection ends, whoever ends it.
    """
    relayed = sock.family not in (socket.AF_INET, socket.AF_INET6) and address
    stream = PrefilledIOStream(
        sock,
        unread,
        on_close,
        address[0] if relayed else None,
        max_buffer_size=server.max_buffer_size,
        read_chunk_size=server.read_chunk_size,
    )
    server.handle_stream(stream, address)


# -- websockets: taking a connection from Tornado after its handshake --------


def detached_socket(stream: IOStream) -> tuple[socket.socket, bytes]:
    """The socket of a detached ``IOStream`` and the bytes Tornado read past the request.

    A client may send its first frames right behind the handshake, and
    Tornado reads them into its buffer with the request.  The stream is
    closed; the returned duplicate of its socket keeps the connection.
    """
    if stream.closed():
        raise OSError("the client left before its connection was handed over")
    buffered = bytes(stream._read_buffer[: stream._read_buffer_size])
    sock = stream.socket.dup()
    stream.close()  # closes Tornado's descriptor only
    return sock, buffered


# -- request handlers ---------------------------------------------------------


class OwnAccessLog:
    """Mixin for a ``RequestHandler`` that may write its access log line itself.

    A mixin, not a subclass, so that it leaves the order of the classes it is
    mixed with alone.
    """

    def log_access(self) -> bool:
        """Log the finished request and return True, or return False for Tornado's line."""
        return False

    def _log(self) -> None:
        if not self.log_access():
            super()._log()


def request_summary(handler: RequestHandler) -> str:
    """The request as Tornado's access log line names it: method, URI and client."""
    return handler._request_summary()


def abort_response(handler: RequestHandler) -> None:
    """End ``handler``'s connection now, dropping what it has not written yet."""
    handler.request.connection.close()


def close_at_end(handler: RequestHandler) -> None:
    """End ``handler``'s connection as soon as the client ends its side, even
    before the answer (``PrefilledIOStream.close_at_end``)."""
    stream = handler.request.connection.stream
    if isinstance(stream, PrefilledIOStream):
        stream.close_at_end()


def keep_request_open(handler: RequestHandler) -> None:
    """Let the request outlive ``handler``'s ``get``; it ends when ``finish`` is called."""
    handler._auto_finish = False


# -- sockjs-tornado ------------------------------------------------------------


def attach_session(handler: PollingTransportBase, session_id: str) -> bool:
    """Attach ``handler`` to the session ``session_id``, made if it is new; False if taken."""
    return handler._attach_session(session_id)


def restart_router_timers(router: SockJSRouter) -> None:
    """Restart ``router``'s session expiry and stats timers on the current loop."""
    for timer in (router._sessions_cleanup, router.stats._callback):
        timer.stop()
        timer.start()
