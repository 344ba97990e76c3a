"""Minimal SockJS clients for the tests, one per transport, all alike.

Each client keeps every frame it receives (``frames``, the exact text) and
offers bounded waits for the next delivery (``message``) or the close frame
(``closed``).  Only the framing differs between transports; what a test
asserts is the same for all of them.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

WAIT = 5.0


class Closed(Exception):
    """The session closed while a test waited for a message."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code, self.reason = code, reason


class SockJSClient:
    transport = ""

    def __init__(self, base_url: str, ssl_options: ssl.SSLContext | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # For https:// and wss://: the context that trusts the test's certificate.
        self.ssl_options = ssl_options
        self.session_url = f"{self.base_url}/connect/000/{uuid.uuid4().hex}"
        self.frames: list[str] = []
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.close_code: tuple[int, str] | None = None

    # -- what tests use ---------------------------------------------------

    async def open(self) -> SockJSClient:
        self._reader = asyncio.ensure_future(self._read())
        kind, value = await asyncio.wait_for(self._events.get(), WAIT)
        assert kind == "open", (kind, value)
        return self

    async def send(self, *messages: Any) -> None:
        raise NotImplementedError

    async def message(self, timeout: float = WAIT) -> Any:
        """The next delivered message element, parsed."""
        kind, value = await asyncio.wait_for(self._events.get(), timeout)
        if kind == "close":
            raise Closed(*value)
        assert kind == "message", (kind, value)
        return value

    async def closed(self, timeout: float = WAIT) -> tuple[int, str]:
        """Waits for the close frame, failing on any message before it."""
        kind, value = await asyncio.wait_for(self._events.get(), timeout)
        assert kind == "close", (kind, value)
        return value

    async def no_message(self, within: float = 0.3) -> None:
        """Asserts that nothing arrives: only for checking that a send did not happen."""
        try:
            event = await asyncio.wait_for(self._events.get(), within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected {event!r}")

    async def close(self) -> None:
        """Lets the reader end with its session (bounded), else cancels it."""
        if self._reader is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), 2)
        except asyncio.TimeoutError:
            self._reader.cancel()
        except Exception:
            pass

    # -- framing ----------------------------------------------------------

    def _frame(self, frame: str) -> bool:
        """Records one SockJS frame; returns False once the session is closed."""
        self.frames.append(frame)
        kind, body = frame[:1], frame[1:]
        if kind == "o":
            self._events.put_nowait(("open", None))
        elif kind == "a":
            for element in json.loads(body):
                self._events.put_nowait(("message", element))
        elif kind == "c":
            code, reason = json.loads(body)
            self.close_code = (code, reason)
            self._events.put_nowait(("close", (code, reason)))
            return False
        return True

    def _lost(self, code: int = 1006, reason: str = "connection lost") -> None:
        if self.close_code is None:
            self.close_code = (code, reason)
            self._events.put_nowait(("close", (code, reason)))

    async def _read(self) -> None:
        raise NotImplementedError


class WebSocketClient(SockJSClient):
    transport = "websocket"

    async def _read(self) -> None:
        url = self.session_url.replace("http", "ws", 1) + "/websocket"
        self.ws = await websocket_connect(HTTPRequest(url, ssl_options=self.ssl_options))
        while True:
            frame = await self.ws.read_message()
            if frame is None:
                self._lost(self.ws.close_code or 1006, self.ws.close_reason or "")
                return
            if not self._frame(frame):
                return

    async def send(self, *messages: Any) -> None:
        await self.ws.write_message(json.dumps(list(messages)))

    async def send_raw(self, text: str) -> None:
        await self.ws.write_message(text)


class RawWebSocketClient(SockJSClient):
    """``/connect/websocket``: no SockJS framing, one message per delivery."""

    transport = "rawwebsocket"

    async def _read(self) -> None:
        url = self.base_url.replace("http", "ws", 1) + "/connect/websocket"
        self.ws = await websocket_connect(HTTPRequest(url, ssl_options=self.ssl_options))
        self._events.put_nowait(("open", None))
        while True:
            frame = await self.ws.read_message()
            if frame is None:
                self._lost(self.ws.close_code or 1006, self.ws.close_reason or "")
                return
            self.frames.append(frame)
            self._events.put_nowait(("message", json.loads(frame)))

    async def send(self, *messages: Any) -> None:
        for message in messages:
            await self.ws.write_message(message)


class _HttpClient(SockJSClient):
    async def send(self, *messages: Any) -> None:
        response = await AsyncHTTPClient().fetch(
            self.session_url + "/xhr_send",
            method="POST",
            body=json.dumps(list(messages)),
            ssl_options=self.ssl_options,
        )
        assert response.code == 204, response.code


class XhrPollingClient(_HttpClient):
    transport = "xhr"

    async def _read(self) -> None:
        while True:
            try:
                response = await AsyncHTTPClient().fetch(
                    self.session_url + "/xhr",
                    method="POST",
                    body=b"",
                    request_timeout=60,
                    ssl_options=self.ssl_options,
                )
            except HTTPClientError as error:
                self._lost(error.code, str(error))
                return
            body = response.body.decode()
            assert body.endswith("\n") and int(response.headers["Content-Length"]) == len(
                response.body
            ), body
            if not self._frame(body[:-1]):
                return


class XhrStreamingClient(_HttpClient):
    transport = "xhr_streaming"

    async def _read(self) -> None:
        # A stream ends after 128 KiB; the client then opens the next one.
        while self.close_code is None:
            lines = _LineSplitter(self._stream_line)
            request = HTTPRequest(
                self.session_url + "/xhr_streaming",
                method="POST",
                body=b"",
                streaming_callback=lines.feed,
                request_timeout=60,
                ssl_options=self.ssl_options,
            )
            try:
                await AsyncHTTPClient().fetch(request)
            except HTTPClientError as error:
                self._lost(error.code, str(error))
                return

    def _stream_line(self, index: int, line: bytes) -> None:
        if index == 0:
            assert line == b"h" * 2048, line[:20]  # the prelude of every stream
        elif self.close_code is None:
            self._frame(line.decode())


class _LineSplitter:
    """Feeds complete lines of a chunked body to ``on_line(index, line)``."""

    def __init__(self, on_line) -> None:
        self.on_line = on_line
        self.buffer = b""
        self.count = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.on_line(self.count, line)
            self.count += 1


CLIENTS = [WebSocketClient, RawWebSocketClient, XhrPollingClient, XhrStreamingClient]
SOCKJS_CLIENTS = [WebSocketClient, XhrPollingClient, XhrStreamingClient]
