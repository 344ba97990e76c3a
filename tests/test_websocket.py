"""Websockets driven frame by frame (``thunderpush.transports.websocket.socket``).

Fragmentation, control frames and protocol errors are sent as no
well-behaved client would.  Frames are read by ``websockets``' protocol, so
the answers are that library's, as RFC 6455 says: a client's close is echoed
(code and reason), a protocol error is closed with 1002 (1007 for text that
is not UTF-8) and the TCP connection ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.protocol import OPEN

from thunderpush.config import Config
from thunderpush.core.apps import Apps
from thunderpush.core.commands import Limits
from thunderpush.transports.sockjs.connection import connection_class
from thunderpush.transports.sockjs.router import SockJSConnection, SockJSRouter
from thunderpush.transports.sockjs.websockets import RawWebSocket, SockJSWebSocket
from thunderpush.transports.websocket.fanout import Outbox
from thunderpush.transports.websocket.frames import TEXT, client_frame_size, frame
from thunderpush.transports.websocket.handshake import LazyConnectionInfo, answer
from thunderpush.transports.websocket.protocol_log import PROTOCOL_LOG

from .support.wire import API, Hostile, RawClient, exchange, request

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
    assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 1009))  # the reason is the library's
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
    server.router.service.settings.heartbeat_delay = 0.05
    sockjs = await RawClient.open(server.port, "/connect/0/s1/websocket")
    raw = await RawClient.open(server.port, "/connect/websocket")
    assert await sockjs.read() == (0x1, b"o")
    assert await sockjs.read() == (0x1, b"h")
    opcode, ping = await raw.read()
    assert opcode == 0x9 and len(ping) == 4  # bytes the client cannot guess
    await raw.send(0xA, ping)
    assert (await raw.read())[0] == 0x9
    # No pong to this ping: the next beat closes, as Tornado's ping timeout does.
    assert await raw.read() == (0x8, struct.pack("!H", 1000) + b"ping timed out")


async def test_unsent_bytes_counts_queued_deliveries(server, monkeypatch):
    """An idle server writes a delivery at once; in a busy turn it waits in the
    outbox until the turn ends, and counts as unsent meanwhile."""
    monkeypatch.setattr(Outbox, "BUSY_SECONDS", 60.0)  # every turn after a send is busy
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    await ws.send(0x1, b'["CONNECT dave:key"]')
    await server.settled(lambda: server.hub.is_online("dave"))
    (connection,) = server.hub.users["dave"]
    handler = connection.session.handler
    size = len(b'a[{"payload":"1"}]') + 2
    server.hub.send_to_user("dave", "0")
    assert handler.unsent_bytes == 0  # written at once: the kernel took it
    server.hub.send_to_user("dave", "1")  # another publish in the same turn waits
    assert handler.unsent_bytes == size
    await asyncio.sleep(0)  # the turn ends (the outbox flushes); the next is busy
    server.hub.send_to_user("dave", "2")
    assert handler.unsent_bytes == size
    await ws.read()
    for n in b"012":
        assert await ws.read() == (0x1, b'a[{"payload":"%c"}]' % n)
    assert handler.unsent_bytes == 0


# -- hostile clients --------------------------------------------------------


def _pack(code: int) -> bytes:
    return struct.pack("!H", code)


async def _fill_until(server, user: str, enough) -> object:
    """Sends ``user``, who reads nothing, deliveries until ``enough(unsent_bytes)``."""
    (connection,) = server.hub.users[user]
    handler = connection.session.handler
    body = json.dumps("x" * 8000)
    for _ in range(5000):
        server.hub.send_to_user(user, body)
        await asyncio.sleep(0)  # the outbox flushes
        if enough(handler.unsent_bytes):
            return handler
    raise AssertionError(f"{handler.unsent_bytes} bytes unsent after 40 MB of deliveries")


@pytest.mark.slow
async def test_ping_flood_never_read_keeps_at_most_one_pong(server, no_tracebacks):
    ws = await RawClient.open(server.port, "/connect/websocket")
    (session,) = server.router.live_sessions
    hostile = Hostile(server, no_tracebacks)
    chunk = RawClient.frame(0x9, b"p" * 125) * 500  # 65,500 bytes of pings

    async def flood() -> None:
        # 32 MB of pings: as many pongs, were each one kept for a client
        # that reads nothing.
        for _ in range(500):
            ws.writer.write(chunk)
            await ws.writer.drain()

    flooding = asyncio.ensure_future(flood())
    while not flooding.done():
        await hostile.others_answered()
    await flooding
    await hostile.others_answered()  # every ping sent has been read by now
    assert session.handler.unsent_bytes <= 127  # one pong, at most
    hostile.check()


async def test_pings_under_back_pressure_get_the_latest_pong_once_the_client_reads(server):
    """While deliveries wait for a client that does not read, pongs are coalesced:
    the latest one waits, and goes at the first heartbeat after the client caught up."""
    server.router.service.settings.heartbeat_delay = 0.1
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    await ws.send(0x1, b'["CONNECT alice:key"]')
    await server.settled(lambda: server.hub.is_online("alice"))
    handler = await _fill_until(server, "alice", lambda unsent: unsent > 0)
    for payload in (b"first", b"second", b"latest"):
        await ws.send(0x9, payload)
    await server.settled(lambda: handler._held_pong is not None)
    pongs, beats_after = [], 0
    while beats_after < 2:  # two heartbeats after the pong: no other one comes
        opcode, data = await ws.read()
        if opcode == 0xA:
            pongs.append(data)
        beats_after += bool(pongs) and (opcode, data) == (0x1, b"h")
    assert pongs == [b"latest"]


async def test_close_then_never_read_ends_within_the_close_timeout(server, no_tracebacks):
    server.router.service.settings.websocket_close_timeout = 0.2
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    await ws.send(0x1, b'["CONNECT alice:key"]')
    await server.settled(lambda: server.hub.is_online("alice"))
    # The client reads nothing: deliveries fill the kernel's buffers, then a
    # few bytes wait in the server's, under the mark where reading pauses.
    handler = await _fill_until(server, "alice", lambda unsent: unsent > 0)
    assert handler.unsent_bytes < 64 * 1024
    hostile = Hostile(server, no_tracebacks)
    await ws.send(0x8, _pack(1000))
    await hostile.others_answered()
    await server.settled(lambda: not server.hub.is_online("alice") and not server.door.sockets)
    hostile.check()


@pytest.mark.parametrize(
    "payload, answer",
    [
        *[(_pack(code), 1002) for code in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000)],
        (b"\x03", 1002),  # a close payload of one byte
        (_pack(1000) + b"\xff\xfe", 1007),  # a reason that is not UTF-8
    ],
    ids=lambda value: value.hex() if isinstance(value, bytes) else str(value),
)
async def test_invalid_close_frames_are_answered_as_rfc_6455_says(
    server, no_tracebacks, payload, answer
):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    assert await ws.read() == (0x1, b"o")
    hostile = Hostile(server, no_tracebacks)
    await ws.send(0x8, payload)
    opcode, data = await ws.read()
    assert (opcode, data[:2]) == (0x8, _pack(answer))
    assert await ws.closed()
    await hostile.others_answered()
    ws.writer.close()
    await server.settled(lambda: not server.router.live_sessions and not server.door.sockets)
    hostile.check()


async def test_deeply_nested_frame_drops_the_websocket_with_one_warning(server, no_tracebacks):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    assert await ws.read() == (0x1, b"o")
    hostile = Hostile(server, no_tracebacks)
    await ws.send(0x1, b"[" * 30_000 + b"]" * 30_000)
    assert await ws.closed()  # dropped without a close frame, as SockJS says
    await hostile.others_answered()
    await server.settled(lambda: not server.router.live_sessions and not server.door.sockets)
    assert hostile.lines() == ["Dropping a SockJS websocket: a frame was not valid JSON."]
    hostile.check()


async def test_long_backslash_cookie_costs_nothing_until_asked_for(server, no_tracebacks):
    hostile = Hostile(server, no_tracebacks)
    # About 11 s in the standard library's SimpleCookie.load on Python 3.11.
    cookie = 'a="' + "\\" * 60_000 + '"'
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket", f"Cookie: {cookie}\r\n")
    await hostile.others_answered()
    assert await ws.read() == (0x1, b"o")
    hostile.check()
    # Asked for, a cookie is parsed as Tornado parses it (a short one: Tornado
    # 6.3's parser itself takes seconds over the long one).
    (first,) = server.router.live_sessions
    small = await RawClient.open(server.port, "/connect/0/s2/websocket", 'Cookie: a="\\\\"\r\n')
    assert await small.read() == (0x1, b"o")
    (session,) = server.router.live_sessions - {first}
    assert session.conn_info.get_cookie("a").value == "\\"


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [("host", "a"), ("x-empty", ""), ("x-colon", "b: c"), ("cookie", "a=1; b=2")],
    ],
)
def test_connection_info_keeps_every_header_field(fields):
    info = LazyConnectionInfo("1.2.3.4", "/p", "", fields)
    assert list(info.headers.get_all()) == [(n.title(), v) for n, v in fields]
    # A value with a line break of its own (which Tornado refuses) is kept as it came.
    odd = [("host", "a"), ("x-odd", "b\r\nc: d")]
    assert LazyConnectionInfo("1.2.3.4", "/p", "", odd)._raw_headers == odd


async def test_allowed_origins_are_enforced_by_the_front_door(server, monkeypatch):
    server.router.settings["websocket_allow_origin"] = ["good.example:8000"]
    handed_to_tornado = []
    hand_off = server.door.hand_off
    monkeypatch.setattr(
        server.door,
        "hand_off",
        lambda transport, data: (handed_to_tornado.append(data), hand_off(transport, data)),
    )
    origins = ["Origin: http://good.example:8000\r\n", "Origin: http://127.0.0.1\r\n", ""]
    accepted = [await RawClient.open(server.port, "/connect/websocket", o) for o in origins]
    assert not handed_to_tornado  # all three accepted without Tornado
    refused = await exchange(
        server.port, RawClient.handshake("/connect/websocket", "Origin: http://evil.example\r\n")
    )
    assert refused.startswith(b"HTTP/1.1 403 ")
    assert refused.endswith(b"\r\n\r\nCross origin websockets not allowed")
    assert len(server.door.sockets) == len(accepted)


async def test_a_client_behind_by_less_than_the_cap_is_still_read(server):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    await ws.send(0x1, b'["CONNECT alice:key"]')
    await server.settled(lambda: server.hub.is_online("alice"))
    # Over asyncio's default high-water mark (64 KiB), under ``max_unsent_bytes``.
    handler = await _fill_until(server, "alice", lambda unsent: unsent > 64 * 1024)
    assert handler._transport.is_reading()
    await ws.send(0x1, b'["SUBSCRIBE news"]')
    await server.settled(lambda: "alice" in server.hub.channel_users("news"))
    while handler.unsent_bytes:  # the client catches up, and stays
        await asyncio.wait_for(ws.reader.read(1 << 20), 5)
    assert server.hub.is_online("alice")


# -- any bytes at all ---------------------------------------------------------


class _Echo(SockJSConnection):
    def on_message(self, message):
        self.send(message)


class _FakeTransport(asyncio.Transport):
    """Keeps what the server writes; refuses writes no real transport would take."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = self.eof = False

    def write(self, data) -> None:
        assert not self.closing and not self.eof, "a write after the end"
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    resume_reading = pause_reading


def _server_frames(written: bytes) -> list[tuple[int, bytes]]:
    """The frames after the handshake's answer (servers never mask)."""
    data, frames = written[written.index(b"\r\n\r\n") + 4 :], []
    while data:
        length, start = data[1] & 0x7F, 2
        if length == 126:
            length, start = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, start = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((data[0] & 0x0F, data[start : start + length]))
        data = data[start + length :]
    return frames


_PAYLOADS = st.one_of(
    st.binary(max_size=130),
    st.sampled_from([b'["CONNECT a:b"]', b'"x"', b"[", _pack(1000), _pack(1005), b"\xff"]),
)


def _client_frame(opcode: int, payload: bytes, fin: bool, mask: bool, rsv: int) -> bytes:
    data = RawClient.frame(opcode, payload, fin=fin, mask=mask)
    return bytes([data[0] | rsv]) + data[1:]


# Mostly well-formed frames (masked, no extension bits), some of each mistake.
_FRAMES = st.builds(
    _client_frame,
    st.integers(0, 15),
    _PAYLOADS,
    st.booleans(),
    st.sampled_from([True, True, True, False]),
    st.sampled_from([0, 0, 0, 0x40, 0x10]),
)


# A handshake as a client sends it, fields in order.
_HANDSHAKE = [
    ("Host", "x"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


async def _feed(
    chunks: list[bytes], raw: bool, router: SockJSRouter | None = None
) -> tuple[_FakeTransport, object]:
    router = router or SockJSRouter(_Echo, "/echo", {"max_message_size": 256})
    handshake = answer(
        router.service.origins, "GET", "/echo/0/s/websocket", "", "HTTP/1.1", _HANDSHAKE, "::1"
    )
    socket = RawWebSocket(router, handshake, b"", None) if raw else None
    socket = socket or SockJSWebSocket(router, handshake, b"", "s")
    transport = _FakeTransport()
    socket.connection_made(transport)
    for chunk in chunks:
        if transport.closing:
            break  # a closed transport reads nothing more
        socket.data_received(chunk)
    if transport.closing:
        socket.connection_lost(None)
    router.close_all(3000, "over")
    return transport, socket


@pytest.mark.slow
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pieces=st.lists(st.one_of(_FRAMES, st.binary(max_size=40)), max_size=8),
    cuts=st.lists(st.integers(0, 4000), max_size=6),
    raw=st.booleans(),
)
def test_any_bytes_in_any_pieces_keep_going_or_close(pieces, cuts, raw):
    data = b"".join(pieces)
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    chunks = [data[a:b] for a, b in zip(points, points[1:], strict=False)]
    transport, socket = asyncio.run(_feed(chunks, raw))
    frames = _server_frames(bytes(transport.written))
    closes = [n for n, (opcode, _) in enumerate(frames) if opcode == 0x8]
    assert not closes or closes == [len(frames) - 1], "nothing may follow a close frame"
    ended = transport.closing or transport.eof or closes
    assert ended or socket._protocol.state is OPEN


# What a SockJS websocket frame may carry: JSON that old and new clients send,
# any JSON at all, and text that is not JSON.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_COMMANDS = st.sampled_from(
    [
        "CONNECT alice:key",
        "CONNECT alice:key:1.x",
        "CONNECT  alice:key",
        "SUBSCRIBE news:private-a:presence-b x",
        "UNSUBSCRIBE news",
        "SUBSCRIBE",
        "",
    ]
)
_SOCKJS_PAYLOADS = st.one_of(
    st.lists(_COMMANDS | _JSON, max_size=4).map(json.dumps),
    _JSON.map(json.dumps),
    st.text(max_size=40),
)


@pytest.mark.slow
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payloads=st.lists(_SOCKJS_PAYLOADS, min_size=1, max_size=6))
def test_any_sockjs_frame_keeps_the_session_unless_it_is_not_json(payloads):
    """What the protocol says to ignore keeps the session; only a frame that is not JSON ends it."""
    apps = Apps()
    apps.add("key", "secret")
    router = SockJSRouter(connection_class(apps, Limits()), "/connect", {})
    frames = [RawClient.frame(0x1, payload.encode()) for payload in payloads]
    transport, _socket = asyncio.run(_feed(frames, False, router))
    frames = _server_frames(bytes(transport.written))
    closes = [json.loads(data[1:])[0] for op, data in frames if op == 1 and data[:1] == b"c"]
    payloads = [payload for payload in payloads if payload]  # an empty frame is skipped
    parsed = []
    for payload in payloads:
        try:
            parsed.append(json.loads(payload))
        except ValueError:
            break
    if len(parsed) == len(payloads):
        # Every frame was JSON: the session ends only as the protocol says, or
        # at the end of the test (``close_all``'s 3000).
        assert len(closes) == 1 and closes[0] in {9000, 9001, 9003, 3000}
    else:
        # A frame that is not JSON drops the connection, unless a command
        # had closed the session already (its close handshake is under way).
        assert transport.closing or closes
    assert not apps.get("key").hub.users  # however it ended, the session left the hub


@pytest.mark.parametrize("length", [0, 125, 126, 0xFFFF, 0x10000])
def test_client_frame_size_is_the_masked_frame_length(length):
    assert client_frame_size(length) == len(frame(TEXT, b"x" * length, b"mask"))


async def test_a_connection_between_messages_lets_its_frame_reader_go(server):
    """Idle connections keep no ``ServerProtocol`` (1.5 KiB each); a split frame keeps it."""
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    assert await ws.read() == (0x1, b"o")
    (socket,) = server.door.sockets
    whole = RawClient.frame(0x1, b'["CONNECT alice:key"]')
    ws.writer.write(whole[:3])
    await server.settled(lambda: socket._protocol is not None)
    ws.writer.write(whole[3:])
    await server.settled(lambda: server.hub.is_online("alice"))
    assert socket._protocol is None
    await ws.send(0x9, b"still read")
    assert await ws.read() == (0xA, b"still read")
    await server.settled(lambda: socket._protocol is None)


def test_the_shared_answer_is_the_bytes_a_fresh_protocol_sends(caplog):
    """One ``ServerProtocol`` answers every handshake; logging the library's lines needs its own."""
    router = SockJSRouter(_Echo, "/echo", {})
    shared = [
        answer(
            router.service.origins, "GET", "/echo/websocket", "", "HTTP/1.1", _HANDSHAKE, "::1"
        ).data
    ]
    shared.append(
        answer(
            router.service.origins, "GET", "/echo/websocket", "", "HTTP/1.1", _HANDSHAKE, "::1"
        ).data
    )
    with caplog.at_level(logging.DEBUG, PROTOCOL_LOG.logger.name):
        own = answer(
            router.service.origins, "GET", "/echo/websocket", "", "HTTP/1.1", _HANDSHAKE, "::1"
        ).data
    assert "connection open" in caplog.messages
    drop_date = [re.sub(rb"Date: [^\r]*", b"", data) for data in (*shared, own)]
    assert drop_date[0] == drop_date[1] == drop_date[2]
    assert drop_date[0].startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


def test_a_frame_that_is_not_json_drops_any_sockjs_connection_with_one_line(caplog):
    """The warning carries a client's context, and a connection that is no client has none."""
    frame = _client_frame(0x1, b"[", True, True, 0)
    transport, _ = asyncio.run(_feed([frame], raw=False))
    assert transport.closing
    dropped = [r for r in caplog.records if "not valid JSON" in r.getMessage()]
    assert len(dropped) == 1 and not hasattr(dropped[0], "user")
