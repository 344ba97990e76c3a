"""The bench's HTTP API connection: one keep-alive request at a time, by callback.

Why hand-written: Tornado's ``AsyncHTTPClient`` costs 331 us of CPU per
publish, more than the server spends answering it.  This client costs a
format string and a header scan per request, and answers a plain callback,
so that a publisher sends its next request without a Future or a task switch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

Answer = Callable[[int, bytes], None]


class HTTPClient(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection to the API, one request at a time.

    Much cheaper per request than ``AsyncHTTPClient``: the request head is a
    format string, the response parser handles only what the API sends (a
    status line, headers, a ``Content-Length`` body), and the answer goes to a
    plain callback, so that a publisher can send its next request from there
    without a Future or a task switch.  It reads into a reused buffer
    (``BufferedProtocol``) because asyncio's plain ``recv`` of 256 KiB costs an
    mmap per response.
    """

    __slots__ = ("host", "auth", "transport", "buffer", "view", "answer", "started", "lost")

    def __init__(self, host: str, secret: str | None) -> None:
        """``secret`` None: Nchan's publisher, which wants no secret and answers JSON if asked."""
        self.host = host
        auth = "Accept: application/json" if secret is None else f"X-Thunder-Secret-Key: {secret}"
        self.auth = auth + "\r\n"
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.view = memoryview(bytearray(65536))
        self.answer: Answer | None = None
        self.started = 0.0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._answer(0, b"API connection closed")

    def head(self, method: str, path: str, length: int | None) -> bytes:
        """The request head; ``length`` None means no body."""
        body = (
            ""
            if length is None
            else f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        )
        return (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth}{body}\r\n").encode()

    def send(self, data: bytes, answer: Answer) -> None:
        """Sends a whole request; ``answer(status, body)`` gets the response.

        A failure (connection lost, timeout) is answered with status 0 and the
        reason as body.
        """
        if self.lost:
            answer(0, b"API connection closed")
            return
        self.answer = answer
        self.started = time.monotonic()
        self.transport.write(data)  # type: ignore[union-attr]

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """``send`` for code that awaits: (status, body), or ConnectionError."""
        future = asyncio.get_running_loop().create_future()

        def answer(status: int, body: bytes) -> None:
            if future.done():
                return
            if status:
                future.set_result((status, body))
            else:
                future.set_exception(ConnectionError(body.decode()))

        self.send(data, answer)
        return future

    def _answer(self, status: int, body: bytes) -> None:
        answer, self.answer = self.answer, None
        if answer is not None:
            answer(status, body)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self.view[:nbytes])
        buffer = self.buffer + data if self.buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return
        head = buffer[:end].lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(buffer) < total:
            self.buffer = buffer
            return
        self.buffer = buffer[total:]
        self._answer(int(buffer[9:12]), buffer[end + 4 : total])

    def expire(self, timeout: float) -> None:
        """Fails a request that has waited longer than ``timeout`` seconds."""
        if self.answer is not None and time.monotonic() - self.started > timeout:
            self._answer(0, b"API request timed out")
            self.transport.abort()  # type: ignore[union-attr]


def api_count(body: bytes) -> int:
    """``count`` of a publish answer; the API's own format is read without json.
    A Pusher trigger's answer (``{}``) counts nothing; Nchan's publisher counts ``subscribers``."""
    if body.startswith(b'{"count": '):
        end = body.find(b"}")
        if body[10:end].isdigit():
            return int(body[10:end])
    answer = json.loads(body)
    return int(answer.get("count", answer.get("subscribers", 0)))
