"""What ``thunderpush.transports.adapter`` relies on in Tornado, one test each.

A Tornado release that renames, stops calling or changes any of these fails
here, not in production.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders, HTTPServerRequest, ResponseStartLine

from thunderpush.transports.adapter import PrefilledIOStream, serve

pytestmark = pytest.mark.timeout(30)


async def test_every_read_of_an_iostream_goes_through_read_from_fd():
    ours, theirs = socket.socketpair()
    # A large prefix, in small chunks: the stream calls read_from_fd again and again.
    stream = PrefilledIOStream(ours, b"x" * 10_000 + b"|", read_chunk_size=1024)
    theirs.sendall(b"and then the socket")
    theirs.shutdown(socket.SHUT_WR)
    assert await asyncio.wait_for(stream.read_until_close(), 5) == (
        b"x" * 10_000 + b"|and then the socket"
    )
    stream.close()
    theirs.close()


def test_http_server_keeps_its_stream_settings_where_the_adapter_reads_them():
    server = HTTPServer(lambda request: None, max_buffer_size=12345, chunk_size=678)
    assert (server.max_buffer_size, server.read_chunk_size) == (12345, 678)


async def test_a_server_given_a_socket_and_its_first_bytes_serves_them():
    def answer(request: HTTPServerRequest) -> None:
        start_line = ResponseStartLine("HTTP/1.1", 200, "OK")
        headers = HTTPHeaders({"Content-Length": "2"})
        request.connection.write_headers(start_line, headers, request.method.encode()[:2])
        request.connection.finish()

    server = HTTPServer(answer)
    ours, theirs = socket.socketpair()
    # The whole request is already read: nothing more comes from the socket.
    serve(server, ours, ("127.0.0.1", 1), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    response = await asyncio.wait_for(loop.sock_recv(theirs, 65536), 5)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"\r\n\r\nGE")
    theirs.close()
    await server.close_all_connections()
