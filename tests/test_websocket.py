"""Websockets driven frame by frame (``thunderpush.transports.websocket``).

Fragmentation, control frames and protocol errors are sent as no
well-behaved client would.  Frames are read by ``websockets``' protocol, so
the answers are that library's, as RFC 6455 says: a client's close is echoed
(code and reason), a protocol error is closed with 1002 (1007 for text that
is not UTF-8) and the TCP connection ends.
"""

from __future__ import annotations

import struct

import pytest

from thunderpush.server.config import Config

from .wire import API, RawClient, exchange, request

pytestmark = pytest.mark.timeout(30)


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
    assert await ws.read() == (0x8, struct.pack("!H", 1001) + b"bye")
    assert await ws.closed()
    await server.settled(lambda: not server.hub.is_online("alice"))
    assert not server.door.sockets and not server.router.live_sessions


async def test_oversized_message_closes_with_1009(server):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    await ws.read()
    await ws.send(0x1, b"x" * (Config.max_client_message_size + 1))
    opcode, payload = await ws.read()
    assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 1009))
    assert b"exceeds limit of 65536 bytes" in payload
    ws.writer.close()  # the server reads nothing more, but sees the end
    await server.settled(lambda: not server.router.live_sessions and not server.door.sockets)


async def test_oversized_fragmented_message_closes_with_1009(server):
    ws = await RawClient.open(server.port, "/connect/websocket")
    half = b"x" * (Config.max_client_message_size // 2 + 1)
    await ws.send(0x1, half, fin=False)
    await ws.send(0x0, half)
    opcode, payload = await ws.read()
    assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 1009))


@pytest.mark.parametrize(
    "frame, code",
    [
        (RawClient.frame(0x1, b'["x"]', mask=False), 1002),  # clients must mask
        (RawClient.frame(0x0, b"nothing to continue"), 1002),
        (RawClient.frame(0x9, b"", fin=False), 1002),  # a fragmented control frame
        (RawClient.frame(0x3, b"reserved opcode"), 1002),
        (RawClient.frame(0x1, b"\xff\xfe not UTF-8"), 1007),
        (bytes([0xC1]) + RawClient.frame(0x1, b"x")[1:], 1002),  # an extension bit
    ],
)
async def test_protocol_errors_close_and_end_the_connection_quietly(server, frame, code):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    await ws.read()
    ws.writer.write(frame)
    opcode, payload = await ws.read()
    assert (opcode, payload[:2]) == (0x8, struct.pack("!H", code))
    assert await ws.closed()  # the server ends the TCP connection (half-close)
    ws.writer.close()
    await server.settled(lambda: not server.router.live_sessions and not server.door.sockets)


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
