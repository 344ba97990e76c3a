"""The front door: an asyncio server that answers the hot paths without Tornado.

Tornado spends about 250 microseconds and several objects per HTTP request, and
keeps about 18 KiB of objects alive per open websocket.  The server listens
with ``FrontDoor`` instead of Tornado's ``HTTPServer``; one small protocol object
per TCP connection parses HTTP/1.1 itself (keep-alive and pipelining) and:

* answers ``/api/1.0.0/...`` through ``thunderpush.api`` (the same ``Api.start`` /
  ``Call.finish`` that the Tornado handlers call, so the answers are the same);
* accepts websocket upgrades of ``/connect/<server>/<session>/websocket`` and
  ``/connect/websocket`` and hands the socket to ``thunderpush.transports.websocket``;
* hands every other request, with the bytes already read, to Tornado's
  ``HTTPServer``: polling and streaming transports, ``/connect/info``, the
  iframe, ``/thunderpush.js``, and anything unusual (HTTP/1.0, chunked bodies,
  ``Expect``, repeated headers, an error answer with a body still to come...).
  When in doubt, Tornado answers: it is the reference.

The parser is written by hand because the only HTTP libraries allowed here are
Tornado's own, whose parser is the cost being avoided.  Usage::

    door = FrontDoor(application, router)
    await door.listen(8080, "")
    ...
    door.stop()
    await door.close_all_connections()
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from base64 import b64encode
from email.utils import formatdate
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import unquote_to_bytes

import tornado
import tornado.web
from sockjs.tornado.session import ConnectionInfo
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders, parse_qs_bytes
from tornado.log import access_log

from thunderpush.api import Answer, Api, Call
from thunderpush.api.actions import compiled_routes
from thunderpush.server.config import Config
from thunderpush.transports import adapter
from thunderpush.transports.sockjs import SockJSRouter
from thunderpush.transports.websocket import (
    RawWebSocket,
    SharedReadBuffer,
    SockJSWebSocket,
    WebSocket,
)

logger = logging.getLogger(__name__)

# Tornado's default: a longer header block closes the connection.
MAX_HEADER_SIZE = 64 * 1024

_BACKLOG = 1024

_PCHARS = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})"
_TARGET = rf"/{_PCHARS}*(?:\?(?:{_PCHARS}|\?)*)?"
_REQUEST_LINE = re.compile(rf"(GET|POST|DELETE|OPTIONS) ({_TARGET}) HTTP/1\.1")
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VCHAR = r"[\x21-\x7e\x80-\xff]"
_HEADER_LINE = re.compile(rf"({_TOKEN}):[ \t]*((?:{_VCHAR}(?:[ \t]*{_VCHAR})*)?)[ \t]*")
_HOST = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?")
# Headers that Tornado gives a meaning the fast path does not implement.
_HANDED_OFF_HEADERS = ("transfer-encoding", "expect", "if-none-match")

_WEBSOCKET_MAGIC = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SERVER_HEADER = f"Server: TornadoServer/{tornado.version}\r\n"
_API_HEADERS = (
    "Access-Control-Allow-Origin: *\r\n"
    "Access-Control-Allow-Methods: GET, POST, DELETE\r\n"
    "Access-Control-Allow-Headers: X-Thunder-Secret-Key, Content-Type\r\n"
)
_JSON_TYPE = "Content-Type: application/json; charset=UTF-8\r\n"


class _HandOff(Exception):
    """This request is Tornado's to answer."""


class _Date:
    """The ``Date`` header, formatted once a second."""

    second = -1
    text = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.text = second, formatdate(second, usegmt=True)
        return cls.text


class Request:
    """A parsed request head: what the fast path needs of it."""

    __slots__ = ("method", "uri", "path", "query", "headers", "started", "close")

    def __init__(self, method: str, uri: str, headers: dict[str, str]) -> None:
        self.method = method
        self.uri = uri
        self.path, _, self.query = uri.partition("?")
        self.headers = headers
        self.started = time.time()
        self.close = headers.get("connection", "").lower() == "close"

    @classmethod
    def parse(cls, head: str) -> Request:
        """The request in ``head`` (latin-1, without the blank line), or ``_HandOff``."""
        lines = head.split("\r\n")
        request_line = _REQUEST_LINE.fullmatch(lines[0])
        if request_line is None:
            raise _HandOff
        headers: dict[str, str] = {}
        for line in lines[1:]:
            field = _HEADER_LINE.fullmatch(line)
            if field is None:
                raise _HandOff
            name = field.group(1).lower()
            if name in headers:
                raise _HandOff  # Tornado joins repeats; rare enough to leave to it
            headers[name] = field.group(2)
        if not _HOST.fullmatch(headers.get("host", "")):
            raise _HandOff
        if any(name in headers for name in _HANDED_OFF_HEADERS):
            raise _HandOff
        method, uri = request_line.groups()
        return cls(method, uri, headers)

    @property
    def content_length(self) -> int:
        value = self.headers.get("content-length", "0")
        if not value.isascii() or not value.isdigit():
            raise _HandOff
        return int(value)

    def log(self, status: int, remote_ip: str) -> None:
        """One access-log line, as Tornado writes it."""
        log = access_log.info if status < 400 else access_log.warning
        elapsed_ms = 1000.0 * (time.time() - self.started)
        log("%d %s %s (%s) %.2fms", status, self.method, self.uri, remote_ip, elapsed_ms)


def api_response(request: Request, answer: Answer) -> bytes:
    """The bytes Tornado's API handlers send for ``answer``."""
    status, body = answer
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n", _SERVER_HEADER]
    if status != 204:
        lines.append(_JSON_TYPE)
    lines += ["Date: ", _Date.now(), "\r\n", _API_HEADERS]
    if status == 200 and request.method == "GET":
        lines.append(f'Etag: "{hashlib.sha1(body).hexdigest()}"\r\n')
    if status != 204:
        lines.append(f"Content-Length: {len(body)}\r\n")
    if request.close:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + body


def websocket_response(key: str) -> bytes:
    """Tornado's answer to a websocket handshake."""
    accept = b64encode(hashlib.sha1(key.encode() + _WEBSOCKET_MAGIC).digest()).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        f"{_SERVER_HEADER}Date: {_Date.now()}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-Websocket-Accept: {accept}\r\n\r\n"
    ).encode()


def _is_websocket_handshake(request: Request) -> bool:
    headers = request.headers
    connection = (part.strip().lower() for part in headers.get("connection", "").split(","))
    return (
        request.method == "GET"
        and headers.get("upgrade", "").lower() == "websocket"
        and "upgrade" in connection
        and headers.get("sec-websocket-version") == "13"
        and bool(headers.get("sec-websocket-key"))
        and "content-length" not in headers
    )


def _connection_info(request: Request, remote_ip: str) -> ConnectionInfo:
    """What sockjs-tornado's transports tell ``on_open`` about the request."""
    cookies: SimpleCookie = SimpleCookie()
    if "cookie" in request.headers:
        try:
            cookies.load(request.headers["cookie"])
        except CookieError:
            pass
    arguments = parse_qs_bytes(request.query, keep_blank_values=True) if request.query else {}
    headers = HTTPHeaders(request.headers)
    return ConnectionInfo(remote_ip, cookies, arguments, headers, request.path)


class HttpConnection(SharedReadBuffer):
    """One TCP connection until it upgrades to a websocket or goes to Tornado."""

    __slots__ = ("_door", "_transport", "_buffer", "_request", "_call", "_length", "_done")

    def __init__(self, door: FrontDoor) -> None:
        self._door = door
        self._transport: Any = None
        self._buffer = b""
        self._request: Request | None = None
        self._call: Call | None = None
        self._length = 0
        self._done = False

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._door.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._door.connections.discard(self)
        self._done = True

    def close(self) -> None:
        self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer = self._buffer + data if self._buffer else data
        while not self._done and (self._buffer or self._call is not None):
            if not (self._read_body() if self._call is not None else self._read_head()):
                return

    def _read_head(self) -> bool:
        """Handles the next request head; False while it is incomplete."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0 or end > MAX_HEADER_SIZE:
            if len(buffer) > MAX_HEADER_SIZE:
                self._done = True
                self._transport.close()  # as Tornado does
            elif b"\n\n" in buffer:
                self._hand_off()  # bare line feeds: Tornado knows what to do
            return False
        try:
            request = Request.parse(buffer[:end].decode("latin-1"))
            self._dispatch(request, end + 4)
        except _HandOff:
            self._hand_off()
            return False
        return True

    def _dispatch(self, request: Request, head_size: int) -> None:
        path = request.path
        if path.startswith("/api/"):
            self._start_api(request, head_size)
        elif not self._door.upgrade(self._transport, request, self._buffer[head_size:]):
            raise _HandOff
        else:
            self._door.connections.discard(self)
            self._done = True

    def _start_api(self, request: Request, head_size: int) -> None:
        started = _start_api_call(self._door.api, request)
        length = request.content_length
        if isinstance(started, Answer):
            if length:
                raise _HandOff  # Tornado answers, then reads and drops the body
            self._buffer = self._buffer[head_size:]
            self._answer(request, started)
            return
        if length > self._door.api.max_body_size:
            raise _HandOff
        self._buffer = self._buffer[head_size:]
        self._request, self._call, self._length = request, started, length

    def _read_body(self) -> bool:
        if len(self._buffer) < self._length:
            return False
        body, self._buffer = self._buffer[: self._length], self._buffer[self._length :]
        call, request = self._call, self._request
        self._call = self._request = None
        self._answer(request, call.finish(body))
        return True

    def _answer(self, request: Request, answer: Answer) -> None:
        self._transport.write(api_response(request, answer))
        request.log(answer.status, self._remote_ip())
        if request.close:
            self._done = True
            self._transport.close()

    def _remote_ip(self) -> str:
        peer = self._transport.get_extra_info("peername")
        return peer[0] if peer else ""

    def _hand_off(self) -> None:
        """Give the socket and every byte read so far to Tornado."""
        self._done = True
        self._door.connections.discard(self)
        self._door.hand_off(self._transport, self._buffer)
        self._buffer = b""


def _start_api_call(api: Api, request: Request) -> Answer | Call:
    for pattern, actions in compiled_routes:
        match = pattern.match(request.path)
        if match is not None:
            args = {name: _decoded(value) for name, value in match.groupdict().items()}
            headers = request.headers
            secret = headers.get("x-thunder-secret-key", "")
            return api.start(
                request.method, actions, args, secret, headers.get("content-length", "0")
            )
    return Api.unrouted(request.method, request.path)


def _decoded(segment: str) -> str:
    """A path segment as Tornado decodes it; Tornado answers one that is not UTF-8."""
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise _HandOff from None


class FrontDoor:
    """Listens for connections and sends each request where it is served best."""

    def __init__(
        self,
        config: Config,
        application: tornado.web.Application,
        router: SockJSRouter,
        api: Api,
    ) -> None:
        self.config = config
        self.router = router
        self.api = api
        self.http = HTTPServer(application, max_body_size=config.max_body_size)
        self.connections: set[HttpConnection] = set()
        self.sockets: set[WebSocket] = set()
        self._server: asyncio.AbstractServer | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        # sockjs-tornado's own URL patterns for its two websocket transports.
        self._sockjs_path = re.compile(re.escape(router.prefix) + r"/[^/.]+/([^/.]+)/websocket")
        self._raw_path = router.prefix + "/websocket"

    async def listen(self, port: int, host: str = "") -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self), host or None, port, backlog=_BACKLOG
        )

    @property
    def port(self) -> int:
        """The port listened on (useful after ``listen(0)``)."""
        return self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stop accepting connections; open ones stay."""
        if self._server is not None:
            self._server.close()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None

    async def close_all_connections(self) -> None:
        """Close idle HTTP connections, wait for websockets and Tornado's to end."""
        for connection in list(self.connections):
            connection.close()
        while self.sockets:
            await asyncio.sleep(0.01)
        await self.http.close_all_connections()

    # -- websockets ----------------------------------------------------------

    def upgrade(self, transport: Any, request: Request, rest: bytes) -> bool:
        """Serve a websocket handshake here; False leaves it to Tornado."""
        if not _is_websocket_handshake(request) or not self.router.websockets_enabled:
            return False
        if self.router.settings.get("websocket_allow_origin", "*") != "*":
            return False
        sockjs = self._sockjs_path.fullmatch(request.path)
        if sockjs is None and request.path != self._raw_path:
            return False
        transport.write(websocket_response(request.headers["sec-websocket-key"]))
        peer = transport.get_extra_info("peername")
        info = _connection_info(request, peer[0] if peer else "")
        kind = SockJSWebSocket if sockjs is not None else RawWebSocket
        socket = kind(self, transport, info)
        transport.set_protocol(socket)
        if sockjs is not None:
            socket.open_session(sockjs.group(1))
        else:
            socket.open_session()
        self._start_heartbeat()
        if rest:
            socket.data_received(rest)
        return True

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            loop = asyncio.get_running_loop()
            delay = self.router.settings["heartbeat_delay"]
            self._heartbeat = loop.call_later(delay, self._beat)

    def _beat(self) -> None:
        """One heartbeat for every websocket: a timer for all, not one each."""
        self._heartbeat = None
        for socket in list(self.sockets):
            socket.heartbeat()
        if self.sockets:
            self._start_heartbeat()

    # -- Tornado -------------------------------------------------------------

    def hand_off(self, transport: Any, data: bytes) -> None:
        """Move the connection to Tornado's ``HTTPServer`` with ``data`` unread."""
        if transport.is_closing():
            return
        transport.pause_reading()
        if transport.get_write_buffer_size():
            # Earlier answers must reach the client first.
            transport.set_protocol(_Draining(lambda: self.hand_off(transport, data)))
            transport.set_write_buffer_limits(high=0)
            return
        sock = transport.get_extra_info("socket").dup()
        address = transport.get_extra_info("peername")
        transport.abort()  # closes asyncio's descriptor; ``sock`` keeps the connection
        adapter.serve(self.http, sock, address, data)


class _Draining(asyncio.Protocol):
    """Waits until the transport's buffer is written, then calls ``then``."""

    __slots__ = ("_then",)

    def __init__(self, then: Any) -> None:
        self._then = then

    def resume_writing(self) -> None:
        self._then()
