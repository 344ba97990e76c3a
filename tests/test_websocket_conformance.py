"""Pings answered at once and in order: Autobahn's cases 2.10, 2.11, 5.6, 5.19, 5.20, byte by byte.

These five failed before (``bench/autobahn.py`` runs the whole suite; it
needs Python 2): pongs were coalesced even when nothing was pending, so ten
pings got one to four pongs, and the pong of a ping sent in the middle of a
fragmented message went out after the echo of that message.  Each test sends
the frames Autobahn sends, in the same chops, to the front door's websocket
engine behind an echo (``tests.support.echo``), and reads the answers in order.
Autobahn's octet-wise chops (2.11, 5.20) reached the server in larger
pieces, as the whole writes here do; here each octet is a segment of its own.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from .support.echo import ECHO_PATH, echo_server
from .support.wire import RawClient

pytestmark = pytest.mark.timeout(30)

PING, PONG, TEXT, CONT = 0x9, 0xA, 0x1, 0x0


@pytest.fixture
async def echo():
    async with echo_server() as door:
        yield door
        RawClient.close_all()


async def opened(port: int, path: str = ECHO_PATH) -> RawClient:
    client = await RawClient.open(port, path)
    client.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


async def write(client: RawClient, data: bytes, octet_wise: bool) -> None:
    """All of ``data`` in one write, or one octet per write as Autobahn's sync mode sends."""
    for piece in [data[n : n + 1] for n in range(len(data))] if octet_wise else [data]:
        client.writer.write(piece)
        await client.writer.drain()
        if octet_wise:
            await asyncio.sleep(0.001)  # each octet in a segment of its own


def frames(*specs: tuple[Any, ...]) -> bytes:
    """Client frames, each given as ``(opcode, payload)`` or ``(opcode, payload, fin)``."""
    return b"".join(RawClient.frame(opcode, payload, *fin) for opcode, payload, *fin in specs)


TEN_PINGS = frames(*[(PING, b"payload-%d" % n) for n in range(10)])
PONGS = [(PONG, b"payload-%d" % n) for n in range(10)]


@pytest.mark.parametrize("octet_wise", [False, True], ids=["2.10", "2.11"])
async def test_ten_pings_get_ten_pongs_in_order(echo, octet_wise):
    client = await opened(echo.port)
    await write(client, TEN_PINGS, octet_wise)
    assert [await client.read() for _ in range(10)] == PONGS


async def test_thunderpush_raw_websocket_answers_every_ping(server):
    """The same on a Thunderpush endpoint: every ping of one write is answered, in order."""
    client = await opened(server.port, "/connect/websocket")
    await write(client, TEN_PINGS, False)
    assert [await client.read() for _ in range(10)] == PONGS


async def test_a_ping_inside_a_fragmented_message_is_answered_before_its_echo(echo):
    """Case 5.6: the pong comes first; the message is echoed once whole."""
    client = await opened(echo.port)
    sent = frames((TEXT, b"fragment1", False), (PING, b"ping payload"), (CONT, b"fragment2"))
    await write(client, sent, False)
    assert await client.read() == (PONG, b"ping payload")
    assert await client.read() == (TEXT, b"fragment1fragment2")


@pytest.mark.parametrize("octet_wise", [False, True], ids=["5.19", "5.20"])
async def test_pings_between_fragments_are_answered_before_the_echo(echo, octet_wise):
    """Cases 5.19 and 5.20: two pings among five fragments, a pause after the first."""
    client = await opened(echo.port)
    first = frames((TEXT, b"fragment1", False), (CONT, b"fragment2", False), (PING, b"pongme 1!"))
    await write(client, first, octet_wise)
    assert await client.read() == (PONG, b"pongme 1!")  # before the message is whole
    rest = frames(
        (CONT, b"fragment3", False),
        (CONT, b"fragment4", False),
        (PING, b"pongme 2!"),
        (CONT, b"fragment5"),
    )
    await write(client, rest, octet_wise)
    assert await client.read() == (PONG, b"pongme 2!")
    assert await client.read() == (TEXT, b"fragment1fragment2fragment3fragment4fragment5")


async def test_the_echo_server_is_the_front_doors_engine(echo):
    """Empty and binary messages come back as they went; a close is echoed."""
    client = await opened(echo.port)
    await client.send(TEXT, b"")
    assert await client.read() == (TEXT, b"")
    await client.send(0x2, b"\x00\xff")
    assert await client.read() == (0x2, b"\x00\xff")
    await client.send(0x8, b"\x03\xe8")
    assert await client.read() == (0x8, b"\x03\xe8")
    assert await client.closed()
