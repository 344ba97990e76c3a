"""The front door's HTTP/1.1 on raw bytes (``thunderpush.transports.frontdoor``).

The API answers are compared byte for byte with Tornado serving the same
application: the front door must be indistinguishable from it.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from thunderpush.server.config import Config

from .wire import API, AUTH, RawClient, exchange, request, undated

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def tornado_port(server):
    """The same application behind Tornado's own HTTPServer: the reference."""
    http = HTTPServer(server.door.http.request_callback, max_body_size=Config.max_body_size)
    sockets = bind_sockets(0, "127.0.0.1")
    http.add_sockets(sockets)
    yield sockets[0].getsockname()[1]
    http.stop()
    await asyncio.wait_for(http.close_all_connections(), 5)


SAME_AS_TORNADO = {
    "user count": request("GET", f"{API}/users/"),
    "online, percent-decoded": request("GET", f"{API}/users/caf%C3%A9/"),
    "send to user": request("POST", f"{API}/users/bob/", body=b'{"a": 1}'),
    "send to channel": request("POST", f"{API}/channels/news/", body=b"[1, 2]"),
    "channel users": request("GET", f"{API}/channels/news/"),
    "invalid channel": request("GET", f"{API}/channels/a%20b/"),
    "invalid JSON": request("POST", f"{API}/users/bob/", body=b"{nope"),
    "empty body": request("POST", f"{API}/users/bob/"),
    "delete, connection close": request(
        "DELETE", f"{API}/users/bob/", AUTH + "Connection: close\r\n"
    ),
    "preflight": request("OPTIONS", f"{API}/users/bob/", ""),
    "preflight, unknown path": request("OPTIONS", "/api/nothing", ""),
    "wrong secret": request("GET", f"{API}/users/", "X-Thunder-Secret-Key: no\r\n"),
    "no secret": request("GET", f"{API}/users/", ""),
    "unknown key": request("GET", "/api/1.0.0/other/users/"),
    "405 before 401": request("DELETE", f"{API}/channels/news/", ""),
    "not found": request("GET", f"{API}/nothing/"),
    "401 with a body": request("POST", f"{API}/users/bob/", "", b'{"a": 1}'),
    "413": request("POST", f"{API}/users/bob/", AUTH + "Content-Length: 2000000\r\n"),
    "HEAD": request("HEAD", f"{API}/users/"),
    "PUT": request("PUT", f"{API}/users/bob/", body=b"1"),
    "not UTF-8": request("GET", f"{API}/users/%FF/"),
    "query string": request("GET", f"{API}/users/?x=1"),
    "malformed request line": b"GET  /api/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "no Host": b"GET /api/1.0.0/key/users/ HTTP/1.1\r\n\r\n",
    "HTTP/1.0": b"GET /api/1.0.0/key/users/ HTTP/1.0\r\n" + AUTH.encode() + b"\r\n",
    "repeated secret": request("GET", f"{API}/users/", AUTH + AUTH),
    "chunked body": request("POST", f"{API}/users/bob/", AUTH + "Transfer-Encoding: chunked\r\n")
    + b"2\r\n[]\r\n0\r\n\r\n",
    "bare line feeds": b"GET /api/1.0.0/key/users/ HTTP/1.1\nHost: x\n"
    + AUTH.encode()[:-2]
    + b"\n\n",
    "pipelined": request("GET", f"{API}/users/") + request("POST", f"{API}/users/u/", body=b"1"),
    "pipelined into a handoff": request("GET", f"{API}/users/") + request("GET", "/connect/info"),
}


@pytest.mark.parametrize("case", SAME_AS_TORNADO)
async def test_api_answers_byte_for_byte_as_tornado(server, tornado_port, case):
    data = SAME_AS_TORNADO[case]
    ours = await exchange(server.port, data)
    reference = await exchange(tornado_port, data)
    if case == "pipelined into a handoff":
        # The SockJS info carries random entropy, so its length varies too.
        noise = rb'"entropy":\d+|Etag: "\w+"|Content-Length: \d+(?=\r\n\r\n\{"websocket")'
        ours, reference = (re.sub(noise, b"", r) for r in (ours, reference))
    assert undated(ours) == undated(reference)
    assert ours.startswith(b"HTTP/1.1 ")


async def test_split_reads_and_keep_alive(server):
    data = request("POST", f"{API}/users/bob/", body=b'{"a": 1}') * 2 + request(
        "GET", f"{API}/users/"
    )
    response = await exchange(server.port, data, chunks=len(data))
    assert response.count(b"HTTP/1.1 200 OK") == 3
    assert response.endswith(b'{"count": 0}\n')


async def test_oversized_header_block_closes_without_an_answer(server):
    data = b"GET /api/ HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024)
    assert await exchange(server.port, data) == b""


async def test_a_delivery_through_the_fast_path(server):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    assert await ws.read() == (0x1, b"o")
    await ws.send(0x1, b'["CONNECT bob:key"]')
    await server.settled(lambda: server.hub.is_online("bob"))
    response = await exchange(server.port, request("POST", f"{API}/users/bob/", body=b"7"))
    assert response.endswith(b'{"count": 1}\n')
    assert await ws.read() == (0x1, b'a[{"payload":"7"}]')


# -- websockets, frame by frame -------------------------------------------------


@pytest.mark.parametrize("version", ["", "Sec-WebSocket-Version: 8\r\n"])
async def test_unusual_handshakes_go_to_tornado(server, tornado_port, version):
    headers = f"Upgrade: websocket\r\nConnection: Upgrade\r\n{version}"
    data = request("GET", "/connect/0/s1/websocket", headers)
    ours = await exchange(server.port, data)
    assert undated(ours) == undated(await exchange(tornado_port, data))
