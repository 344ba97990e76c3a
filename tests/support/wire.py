"""Raw-socket helpers for tests that speak HTTP/1.1 and websocket frames byte by byte.

Well-behaved clients (Tornado's, websockets') cannot send what hostile or
broken clients send; these write exactly the bytes a test gives them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import struct
from typing import Any

from . import KEY, SECRET

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


async def answer_of(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Sends ``data`` and returns one answer, its head and its ``Content-Length``
    body, without half-closing: Tornado itself closes a connection whose client
    ended its side while the answer is on its way (a race ``exchange`` would lose
    now and then against a plain Tornado server)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + await asyncio.wait_for(reader.readexactly(length), timeout)
    finally:
        writer.close()


async def until_closed(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Sends ``data`` and returns all that comes back until the server closes (or resets)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(data)
        while chunk := await asyncio.wait_for(reader.read(65536), timeout):
            received += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed with bytes of ours still unread: the kernel resets
    finally:
        writer.close()
    return received


def statuses(responses: bytes) -> list[int]:
    """The status codes of the responses in ``responses``, in order."""
    return [int(code) for code in re.findall(rb"^HTTP/1\.1 (\d{3}) ", responses, re.MULTILINE)]


def undated(response: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", response)


class RawClient:
    """A websocket client that sends exactly the frames it is told to.

    Every client made is in ``opened`` until ``close_all`` (the ``server``
    fixture calls it): a test need not close its clients, and the server's
    shutdown never waits for a client that will not answer its close.
    """

    opened: list[RawClient] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        RawClient.opened.append(self)

    @classmethod
    def close_all(cls) -> None:
        for client in cls.opened:
            client.writer.close()
        cls.opened.clear()

    @staticmethod
    def handshake(path: str, headers: str = "") -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
        ).encode()

    @classmethod
    async def open(cls, port: int, path: str, headers: str = "") -> RawClient:
        """A handshake (with ``headers``, lines ending in CRLF) that must be accepted."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(cls.handshake(path, headers))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n" in head.lower()
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


def rss_kib() -> int:
    """This process's resident memory; the in-process server's included."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


class Hostile:
    """What must hold while a hostile client does its worst.

    Other clients are answered: the server's loop (this test's loop) never
    stalls for seconds, and an API call gets its answer.  Memory stays within
    a wide margin of where it was, and the server logs at most one line about
    it (access-log lines of the probing API calls aside).  Start it once the
    hostile client's set-up is done; tracebacks fail every test anyway.
    """

    # Far more than a well-behaved connection costs, far less than what each
    # hostile input here cost before it was fixed.
    RSS_MARGIN_KIB = 16 * 1024
    # Far longer than any loop turn here takes, far shorter than the stalls
    # hostile inputs caused (11-15 s for a cookie).
    STALL_LIMIT = 2.0
    _TICK = 0.05

    def __init__(self, server: Any, caplog: Any) -> None:
        self.server, self.caplog = server, caplog
        self.rss = rss_kib()
        self.seen = len(caplog.records)
        self.worst_stall = 0.0
        self._watchdog = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self._TICK)
            now = loop.time()
            self.worst_stall = max(self.worst_stall, now - last - self._TICK)
            last = now

    async def others_answered(self) -> None:
        answer = await exchange(self.server.port, request("GET", f"{API}/users/"))
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]

    def lines(self) -> list[str]:
        return [
            record.getMessage()
            for record in self.caplog.records[self.seen :]
            if record.levelno >= logging.INFO and " /api/" not in record.getMessage()
        ]

    def check(self) -> None:
        self._watchdog.cancel()
        assert self.worst_stall < self.STALL_LIMIT, f"the loop stalled {self.worst_stall:.1f} s"
        assert rss_kib() - self.rss < self.RSS_MARGIN_KIB
        assert len(self.lines()) <= 1, self.lines()
