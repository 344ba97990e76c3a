"""The front door (``thunderpush.frontdoor`` and ``thunderpush.websocket``) on raw bytes.

The API answers are compared byte for byte with Tornado serving the same
application: the front door must be indistinguishable from it.  Websockets are
driven frame by frame, so that fragmentation, control frames and protocol
errors can be sent as no well-behaved client would.
"""

from __future__ import annotations

import asyncio
import os
import re
import struct

import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from thunderpush.server.config import Config

from .conftest import KEY, SECRET

pytestmark = pytest.mark.timeout(30)

API = f"/api/1.0.0/{KEY}"
AUTH = f"X-Thunder-Secret-Key: {SECRET}\r\n"


def request(method: str, path: str, headers: str = AUTH, body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}{length}\r\n"
    return head.encode() + body


async def exchange(port: int, data: bytes, chunks: int = 1) -> bytes:
    """Sends ``data`` (in ``chunks`` writes), half-closes, returns all that comes back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    step = max(1, -(-len(data) // chunks))
    for start in range(0, len(data), step):
        writer.write(data[start : start + step])
        await writer.drain()
        await asyncio.sleep(0.001)
    writer.write_eof()
    received = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return received


def undated(response: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", response)


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


class RawClient:
    """A websocket client that sends exactly the frames it is told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, path: str) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"Sec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
        return cls(reader, writer)

    @staticmethod
    def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
        first = (0x80 if fin else 0) | opcode
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", first, length | (0x80 if mask else 0))
        else:
            header = struct.pack("!BBQ", first, 127 | (0x80 if mask else 0), length)
        if not mask:
            return header + payload
        key = os.urandom(4)
        return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    async def send(self, opcode: int, payload: bytes, **kwargs) -> None:
        self.writer.write(self.frame(opcode, payload, **kwargs))
        await self.writer.drain()

    async def read(self) -> tuple[int, bytes]:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 5)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""


async def test_fragmented_message_is_reassembled(server):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    assert await ws.read() == (0x1, b"o")
    await ws.send(0x1, b'["CONNECT ', fin=False)
    await ws.send(0x9, b"in between")  # control frames may interleave
    await ws.send(0x0, b"alice:", fin=False)
    await ws.send(0x0, b'key"]')
    assert await ws.read() == (0xA, b"in between")
    await server.settled(lambda: server.hub.is_online("alice"))


async def test_client_close_is_echoed_and_ends_the_session(server):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    await ws.read()
    await ws.send(0x1, b'["CONNECT alice:key"]')
    await server.settled(lambda: server.hub.is_online("alice"))
    await ws.send(0x8, struct.pack("!H", 1001) + b"bye")
    assert await ws.read() == (0x8, struct.pack("!H", 1001))
    assert await ws.closed()
    await server.settled(lambda: not server.hub.is_online("alice"))
    assert not server.door.sockets and not server.router.live_sessions


async def test_oversized_message_closes_with_1009(server):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    await ws.read()
    await ws.send(0x1, b"x" * (Config.max_client_message_size + 1))
    assert await ws.read() == (0x8, struct.pack("!H", 1009) + b"message too big")
    ws.writer.close()  # the server reads nothing more, but sees the end
    await server.settled(lambda: not server.router.live_sessions and not server.door.sockets)


async def test_oversized_fragmented_message_closes_with_1009(server):
    ws = await RawClient.open(server.port, "/connect/websocket")
    half = b"x" * (Config.max_client_message_size // 2 + 1)
    await ws.send(0x1, half, fin=False)
    await ws.send(0x0, half)
    assert await ws.read() == (0x8, struct.pack("!H", 1009) + b"message too big")


@pytest.mark.parametrize(
    "frame",
    [
        RawClient.frame(0x1, b'["x"]', mask=False),  # clients must mask
        RawClient.frame(0x0, b"nothing to continue"),
        RawClient.frame(0x9, b"", fin=False),  # a fragmented control frame
        RawClient.frame(0x3, b"reserved opcode"),
        RawClient.frame(0x1, b"\xff\xfe not UTF-8"),
        bytes([0xC1]) + RawClient.frame(0x1, b"x")[1:],  # an extension bit
    ],
)
async def test_protocol_errors_drop_the_connection_quietly(server, frame):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    await ws.read()
    ws.writer.write(frame)
    assert await ws.closed()
    await server.settled(lambda: not server.router.live_sessions)


async def test_raw_websocket_closes_with_4xxx_and_the_reason(server):
    ws = await RawClient.open(server.port, "/connect/websocket")
    await ws.send(0x1, b"CONNECT carol:key")
    await server.settled(lambda: server.hub.is_online("carol"))
    await exchange(server.port, request("DELETE", f"{API}/users/carol/"))
    reason = b"Server closed the connection (intentionally)."
    assert await ws.read() == (0x8, struct.pack("!H", 4002) + reason)


async def test_one_heartbeat_timer_serves_both_kinds(server):
    server.router.settings["heartbeat_delay"] = 0.05
    sockjs = await RawClient.open(server.port, "/connect/0/s1/websocket")
    raw = await RawClient.open(server.port, "/connect/websocket")
    assert await sockjs.read() == (0x1, b"o")
    assert await sockjs.read() == (0x1, b"h")
    assert await raw.read() == (0x9, b"")
    await raw.send(0xA, b"")
    assert await raw.read() == (0x9, b"")
    # No pong to this ping: the next beat closes, as Tornado's ping timeout does.
    assert await raw.read() == (0x8, struct.pack("!H", 1000) + b"ping timed out")


async def test_unsent_bytes_counts_queued_deliveries(server):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    await ws.send(0x1, b'["CONNECT dave:key"]')
    await server.settled(lambda: server.hub.is_online("dave"))
    (connection,) = server.hub.users["dave"]
    server.hub.send_to_user("dave", "1")
    assert connection.session.handler.unsent_bytes == len(b'a[{"payload":"1"}]') + 2
    await ws.read()
    assert await ws.read() == (0x1, b'a[{"payload":"1"}]')
    assert connection.session.handler.unsent_bytes == 0


@pytest.mark.parametrize("version", ["", "Sec-WebSocket-Version: 8\r\n"])
async def test_unusual_handshakes_go_to_tornado(server, tornado_port, version):
    headers = f"Upgrade: websocket\r\nConnection: Upgrade\r\n{version}"
    data = request("GET", "/connect/0/s1/websocket", headers)
    ours = await exchange(server.port, data)
    assert undated(ours) == undated(await exchange(tornado_port, data))
