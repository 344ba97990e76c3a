"""``max_connections`` and ``max_connections_per_ip``: counted at the front door.

Every accepted connection counts until it closes, whoever serves it: the
door's HTTP, a websocket, or Tornado (a streaming transport).  The one over a
limit gets a 503 JSON answer with ``Connection: close``; the others go on;
one line is logged until the count drops below the limit again.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from .support.wire import API, RawClient, exchange, request, until_closed

pytestmark = pytest.mark.timeout(30)

USERS = request("GET", f"{API}/users/")


def refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Refusing")]


def assert_refused(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:100]
    assert b"\r\nConnection: close" in head and b"application/json" in head
    assert json.loads(body) == {"message": "Too many connections.", "status": 503}


@pytest.mark.config(max_connections_per_ip=3)
async def test_the_connection_over_the_per_ip_limit_gets_503(server, no_tracebacks):
    sockets = [await RawClient.open(server.port, "/connect/websocket") for _ in range(3)]
    assert server.door.open.from_ip("127.0.0.1") == 3
    for _ in range(2):
        assert_refused(await until_closed(server.port, USERS))
    assert refusals(no_tracebacks) == [
        "Refusing connections from 127.0.0.1: 3 are open (max_connections_per_ip 3)."
    ]
    # The others are unaffected.
    await sockets[0].send(0x9, b"still here")
    assert await sockets[0].read() == (0xA, b"still here")
    # One closes: the limit frees, and the next refusal is logged again.
    sockets.pop().writer.close()
    await server.settled(lambda: server.door.open.from_ip("127.0.0.1") == 2)
    answer = await exchange(server.port, USERS)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    sockets.append(await RawClient.open(server.port, "/connect/websocket"))
    assert_refused(await until_closed(server.port, USERS))
    assert len(refusals(no_tracebacks)) == 2


@pytest.mark.config(max_connections=2)
async def test_connections_served_by_tornado_count_until_they_close(server, no_tracebacks):
    # An xhr_streaming response, served by Tornado for as long as the session lasts.
    session = f"/connect/000/{uuid.uuid4().hex}"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request("POST", session + "/xhr_streaming", ""))
    await asyncio.wait_for(reader.readuntil(b"o\n"), 5)
    # A websocket whose handshake Tornado parses (a body first), then detaches.
    ws = await RawClient.open(server.port, "/connect/websocket", "Content-Length: 0\r\n")
    assert server.door.open.total == 2
    assert_refused(await until_closed(server.port, USERS))
    assert len(refusals(no_tracebacks)) == 1
    writer.close()  # the stream's end frees one
    await server.settled(lambda: server.door.open.total == 1)
    answer = await exchange(server.port, USERS)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    ws.writer.close()
    await server.settled(lambda: server.door.open.total == 0)


async def test_without_limits_every_connection_is_served_and_counted(server):
    sockets = [await RawClient.open(server.port, "/connect/websocket") for _ in range(5)]
    assert server.door.open.total == 5
    answer = await exchange(server.port, USERS)
    assert answer.startswith(b"HTTP/1.1 200 ")
    for socket in sockets:
        socket.writer.close()
    await server.settled(lambda: server.door.open.total == 0)
