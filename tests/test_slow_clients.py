"""Clients that stop reading: closed past ``max_unsent_bytes``, on every transport.

Each slow client reads nothing while thousands of deliveries go to its
channel.  What must hold: the server's memory stays within a wide margin
(``Hostile``), the slow client is closed (with 9011 where the transport can
still say it), one line is logged that names it, and a subscriber that reads
gets every message, each within ordinary latency.  Also: a raw websocket that
sends pongs nobody asked for is closed by the ping timeout all the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid

import pytest
from tornado.httpclient import AsyncHTTPClient

from .support import KEY
from .support.clients import RawWebSocketClient
from .support.wire import Hostile, RawClient, request

pytestmark = pytest.mark.timeout(60)

MESSAGES = 3000
# 3000 x 10 KB = 30 MB: far over the margin, were it kept for the slow client.
BODY = "x" * 10_000
# Far more than a loop turn here, far less than waiting for a slow client would take.
LATENCY_LIMIT = 2.0


async def slow_socket(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that sends ``data`` and keeps its receive buffer small, never reading."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def ended(reader: asyncio.StreamReader) -> None:
    """Reads (what is left of) the stream to its end: EOF or a reset."""
    try:
        while await asyncio.wait_for(reader.read(1 << 20), 5):
            pass
    except ConnectionResetError:
        pass


async def publish_to_a_reader(server) -> None:
    """Thousands of deliveries to ``news``: a reading subscriber gets each one promptly."""
    reader = await server.client(RawWebSocketClient, "reader", "news")
    latencies = []

    async def receive() -> None:
        for n in range(MESSAGES):
            message = await reader.message(10)
            reader.frames.clear()  # the test's client keeps no history: RSS is the server's
            payload = json.loads(message["payload"])
            assert payload["n"] == n
            latencies.append(time.monotonic() - payload["at"])

    receiving = asyncio.ensure_future(receive())
    deadline = time.monotonic() + 30
    for n in range(MESSAGES):
        server.hub.send_to_channel("news", json.dumps({"n": n, "at": time.monotonic(), "x": BODY}))
        # The reader shares this loop: publish no faster than it can read.
        while n - len(latencies) > 20 and not receiving.done():
            assert time.monotonic() < deadline, "the reader fell behind"
            await asyncio.sleep(0)
    await asyncio.wait_for(receiving, 30)
    assert max(latencies) < LATENCY_LIMIT


class Watch(Hostile):
    """``Hostile``, counting every line but access-log lines (a stream logs its own as it ends)."""

    def lines(self) -> list[str]:
        return [
            record.getMessage()
            for record in self.caplog.records[self.seen :]
            if record.levelno >= logging.INFO and record.name != "tornado.access"
        ]


def too_slow_lines(hostile: Hostile) -> list[str]:
    return [line for line in hostile.lines() if "too slow" in line]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/connect/websocket", "/connect/0/s1/websocket"])
async def test_a_websocket_that_never_reads_is_closed(server, no_tracebacks, path):
    raw = path == "/connect/websocket"
    command = b"CONNECT slow:%s" if raw else b'["CONNECT slow:%s"]'
    reader, writer = await slow_socket(server.port, RawClient.handshake(path))
    slow = RawClient(reader, writer)
    await slow.send(0x1, command % KEY.encode())
    await slow.send(0x1, b"SUBSCRIBE news" if raw else b'["SUBSCRIBE news"]')
    await server.settled(lambda: "slow" in server.hub.channel_users("news"))
    hostile = Watch(server, no_tracebacks)

    await publish_to_a_reader(server)

    await server.settled(lambda: not server.hub.is_online("slow"))
    await ended(reader)  # the TCP connection ends (a close frame would wait behind the rest)
    assert len(server.door.sockets) == 1  # the reader's
    [line] = too_slow_lines(hostile)
    assert "user slow from 127.0.0.1" in line
    await hostile.others_answered()
    hostile.check()


@pytest.mark.slow
@pytest.mark.config(idle_timeout=1.0)
@pytest.mark.parametrize("response_limit", [None, 1 << 30], ids=["ends at 128 KiB", "endless"])
async def test_an_xhr_streaming_client_that_stops_reading_is_closed(
    server, no_tracebacks, response_limit
):
    """sockjs-tornado ends a stream after 128 KiB (the client then opens the next):
    when the kernel takes that much, the session's queue fills with no stream
    attached, and the finished response's connection idles out; when it does
    not (or streams are endless), the response is aborted."""
    if response_limit is not None:
        server.router.settings["response_limit"] = response_limit
    session = f"/connect/000/{uuid.uuid4().hex}"
    reader, writer = await slow_socket(server.port, request("POST", session + "/xhr_streaming", ""))
    await server.settled(lambda: len(server.router.live_sessions) == 1)
    commands = json.dumps([f"CONNECT slow:{KEY}", "SUBSCRIBE news"])
    sent = await AsyncHTTPClient().fetch(
        f"{server.url}{session}/xhr_send", method="POST", body=commands
    )
    assert sent.code == 204
    await server.settled(lambda: "slow" in server.hub.channel_users("news"))
    hostile = Watch(server, no_tracebacks)

    await publish_to_a_reader(server)

    await server.settled(lambda: not server.hub.is_online("slow"))
    await ended(reader)
    [line] = too_slow_lines(hostile)
    assert "user slow from 127.0.0.1" in line
    await hostile.others_answered()
    hostile.check()


@pytest.mark.slow
async def test_an_xhr_polling_session_that_never_polls_again_is_closed(server, no_tracebacks):
    session = f"{server.url}/connect/000/{uuid.uuid4().hex}"
    client = AsyncHTTPClient()
    opened = await client.fetch(session + "/xhr", method="POST", body=b"")
    assert opened.body == b"o\n"
    commands = json.dumps([f"CONNECT slow:{KEY}", "SUBSCRIBE news"])
    await client.fetch(session + "/xhr_send", method="POST", body=commands)
    await server.settled(lambda: "slow" in server.hub.channel_users("news"))
    hostile = Watch(server, no_tracebacks)

    await publish_to_a_reader(server)

    await server.settled(lambda: not server.hub.is_online("slow"))
    [line] = too_slow_lines(hostile)
    assert "user slow from 127.0.0.1" in line
    await hostile.others_answered()
    hostile.check()
    # The queue is gone; the next poll hears why.
    polled = await client.fetch(session + "/xhr", method="POST", body=b"")
    assert polled.body == b'c[9011,"Client too slow."]\n'


async def test_a_client_under_the_cap_is_not_closed(server, no_tracebacks):
    """A subscriber that reads late but within ``max_unsent_bytes`` gets everything."""
    session = f"{server.url}/connect/000/{uuid.uuid4().hex}"
    client = AsyncHTTPClient()
    await client.fetch(session + "/xhr", method="POST", body=b"")
    commands = json.dumps([f"CONNECT late:{KEY}", "SUBSCRIBE news"])
    await client.fetch(session + "/xhr_send", method="POST", body=commands)
    await server.settled(lambda: "late" in server.hub.channel_users("news"))
    for _ in range(90):  # 900 KB, under 1 MiB
        server.hub.send_to_channel("news", BODY)
    polled = await client.fetch(session + "/xhr", method="POST", body=b"")
    assert polled.body.startswith(b"a[") and polled.body.count(b'"payload"') == 90
    assert server.hub.is_online("late")
    assert not [r for r in no_tracebacks.records if "too slow" in r.getMessage()]


async def test_unsolicited_pongs_do_not_escape_the_ping_timeout(server):
    server.router.service.settings.heartbeat_delay = 0.1
    ws = await RawClient.open(server.port, "/connect/websocket")
    started = time.monotonic()

    async def pong_of_its_own_accord() -> None:
        while True:
            await ws.send(0xA, b"")
            await asyncio.sleep(0.03)

    ponging = asyncio.ensure_future(pong_of_its_own_accord())
    try:
        opcode, _ping = await ws.read()
        assert opcode == 0x9
        # Never answered: the next beat closes, whatever pongs came meanwhile.
        opcode, data = await ws.read()
        assert (opcode, data[2:]) == (0x8, b"ping timed out")
        assert time.monotonic() - started < 1.0
    finally:
        ponging.cancel()
