"""The one place Thunderpush leans on Tornado's internals or extension points.

The front door reads a connection's first bytes itself; when Tornado is to
serve the connection, it gets the socket and those bytes, which it must read
before anything else from the socket.  What this relies on, each checked by
``tests/test_adapter.py`` so that a Tornado release that changes it fails there:

* ``BaseIOStream.read_from_fd(buf)``, the documented method a stream subclass
  implements to read from its file: every read of an ``IOStream`` goes
  through it, so ``PrefilledIOStream`` returns the bytes it was given first;
* ``TCPServer.handle_stream(stream, address)``, the documented method through
  which ``HTTPServer`` takes a new connection;
* ``TCPServer.max_buffer_size`` and ``TCPServer.read_chunk_size``, the
  attributes where ``HTTPServer`` keeps its constructor's stream settings.

The other way round, a websocket handshake that Tornado parsed leaves Tornado
(``RequestHandler.detach``, public) with the bytes Tornado read past it:
``detached_socket`` reads them from ``IOStream._read_buffer`` and
``_read_buffer_size`` (private: no public call takes buffered bytes without
reading the socket) and takes ``IOStream.socket``; checked by
``tests/test_adapter_websocket.py``.

Usage::

    serve(http_server, sock, peer_address, already_read)
"""

from __future__ import annotations

import socket
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream


class PrefilledIOStream(IOStream):
    """An ``IOStream`` whose first reads return ``unread``, then the socket's bytes."""

    def __init__(self, sock: socket.socket, unread: bytes, **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        # Named for this module: IOStream's own attributes are all ``_read_...``.
        self._thunderpush_unread = memoryview(unread)

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        unread = self._thunderpush_unread
        if not unread:
            return super().read_from_fd(buf)
        size = min(len(buf), len(unread))
        buf[:size] = unread[:size]
        self._thunderpush_unread = unread[size:]
        return size


def serve(server: HTTPServer, sock: socket.socket, address: Any, unread: bytes) -> None:
    """Let ``server`` serve the connection ``sock`` as if it had read ``unread`` from it."""
    stream = PrefilledIOStream(
        sock, unread, max_buffer_size=server.max_buffer_size, read_chunk_size=server.read_chunk_size
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
