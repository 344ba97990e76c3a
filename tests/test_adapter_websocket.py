"""The Tornado private attributes ``thunderpush.transports.sockjs.adapter`` reads, checked
against the installed release: a release that renames one fails here first.

These are the websocket hand-over's (``detached_socket``).
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from tornado.iostream import IOStream

from thunderpush.transports.sockjs.adapter import detached_socket


async def test_detached_socket_keeps_the_bytes_read_past_the_request():
    ours, theirs = socket.socketpair()
    stream = IOStream(ours)
    theirs.sendall(b"GET / HTTP/1.1\r\n\r\n\x81\x85first")
    # Tornado reads in chunks: the frame's bytes come in with the request head.
    assert await asyncio.wait_for(stream.read_until(b"\r\n\r\n"), 5) == b"GET / HTTP/1.1\r\n\r\n"
    sock, rest = detached_socket(stream)
    try:
        assert rest == b"\x81\x85first"  # IOStream._read_buffer, _read_buffer_size
        assert stream.closed()
        theirs.sendall(b"more")  # the connection outlives the stream (IOStream.socket)
        sock.setblocking(True)
        assert sock.recv(4) == b"more"
    finally:
        sock.close()
        theirs.close()


async def test_detached_socket_of_a_stream_with_nothing_more_read():
    ours, theirs = socket.socketpair()
    stream = IOStream(ours)
    theirs.sendall(b"GET / HTTP/1.1\r\n\r\n")
    await asyncio.wait_for(stream.read_until(b"\r\n\r\n"), 5)
    sock, rest = detached_socket(stream)
    sock.close()
    theirs.close()
    assert rest == b""


async def test_detached_socket_of_a_closed_stream_is_an_os_error():
    ours, theirs = socket.socketpair()
    stream = IOStream(ours)
    stream.close()
    theirs.close()
    with pytest.raises(OSError):
        detached_socket(stream)
