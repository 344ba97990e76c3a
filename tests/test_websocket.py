"""Websockets driven frame by frame (``thunderpush.transports.websocket``).

Fragmentation, control frames and protocol errors are sent as no
well-behaved client would.
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
