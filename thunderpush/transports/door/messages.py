"""What the front door reads and writes: request heads, and answers in Tornado's bytes.

``Request`` is a request head as ``thunderpush.transports.door.http`` parsed it, the
object ``FrontDoor.start`` and ``FrontDoor.upgrade`` are given; the answers are
byte for byte what Tornado's handlers send, so that a client cannot tell
which of the two served it::

    request.method, request.path, request.get("x-thunder-secret-key")
    transport.write(response(request, answer))
"""

from __future__ import annotations

import hashlib
import logging
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import tornado
from tornado.log import access_log

from thunderpush.transports.door.answers import Answer

# What Tornado writes before closing a connection whose request it cannot parse.
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"

# What Tornado calls itself in ``Server``; the websocket handshake answers with it too.
SERVER = f"TornadoServer/{tornado.version}"
SERVER_HEADER = f"Server: {SERVER}\r\n"
# The header fields of each answer's ``headers``, as written (a few tuples recur).
_FIELDS: dict[tuple[tuple[str, str], ...], str] = {}
_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n" for status in HTTPStatus
}
# What may surround a header field's value (llhttp keeps it at the end).
WHITESPACE = b" \t"


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


def date_header() -> str:
    """``Date: ...`` and its line end, as Tornado writes it."""
    return f"Date: {_Date.now()}\r\n"


class Request:
    """A request head that the door may serve.

    ``fields`` are its header fields, names in lower case, each name once (a
    request with a repeated field goes to Tornado); ``headers`` are the same
    as a dict; ``get`` reads one field without building either.
    """

    __slots__ = ("method", "target", "path", "query", "peer", "close", "started", "_values")

    def __init__(self, method: str, target: str, values: dict[bytes, bytes], peer: Any) -> None:
        self.method = method
        # The request-target as sent (latin-1); path and query as Tornado splits it.
        self.target = target
        self.path, _, self.query = target.partition("?")
        # The peer address of the connection, as asyncio gives it.
        self.peer = peer
        # Tornado's rule for answering with ``Connection: close``.
        connection = values.get(b"connection")
        self.close = connection is not None and connection.rstrip(WHITESPACE).lower() == b"close"
        self.started = time.time()
        # As llhttp gives them: names in lower case, values with trailing whitespace.
        self._values = values

    def get(self, name: str, default: str = "") -> str:
        """The value of field ``name`` (lower case), or ``default``."""
        value = self._values.get(name.encode("latin-1"))
        return default if value is None else value.rstrip(WHITESPACE).decode("latin-1")

    @property
    def fields(self) -> list[tuple[str, str]]:
        return [
            (name.decode("latin-1"), value.rstrip(WHITESPACE).decode("latin-1"))
            for name, value in self._values.items()
        ]

    @property
    def remote_ip(self) -> str:
        return self.peer[0] if self.peer else ""

    def log(self, status: int) -> None:
        """One access-log line, as Tornado writes it; but a 503 (a cluster node while
        Redis is away, which the node has said once) is a warning, not a server fault."""
        if status < 400:
            level = logging.INFO
        elif status < 500 or status == 503:
            level = logging.WARNING
        else:
            level = logging.ERROR
        if access_log.isEnabledFor(level):
            elapsed_ms = 1000.0 * (time.time() - self.started)
            access_log.log(
                level,
                "%d %s %s (%s) %.2fms",
                status,
                self.method,
                self.target,
                self.remote_ip,
                elapsed_ms,
            )


def _fields(answer: Answer) -> str:
    """``Content-Type`` (none for 204), ``Date`` and the answer's own fields, in Tornado's order."""
    headers = answer.headers
    fields = _FIELDS.get(headers)
    if fields is None:
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers)
        if len(_FIELDS) < 64:
            _FIELDS[headers] = fields
    if answer.status == 204:
        return date_header() + fields
    return f"Content-Type: {answer.content_type}\r\n{date_header()}{fields}"


class _Heads:
    """The first lines of the answers of this second (status to own fields), as bytes:
    a publish's answer differs from the last one's in its body alone."""

    date = ""
    heads: dict[tuple[int, tuple[tuple[str, str], ...], str], bytes] = {}


def _head(answer: Answer) -> bytes:
    """The status line, ``Server`` and ``_fields``, made once a second for each kind of answer."""
    date = _Date.now()
    if date is not _Heads.date:
        _Heads.date, _Heads.heads = date, {}
    heads = _Heads.heads
    key = (answer.status, answer.headers, answer.content_type)
    head = heads.get(key)
    if head is None:
        head = f"{_STATUS_LINES[answer.status]}{SERVER_HEADER}{_fields(answer)}".encode("latin-1")
        if len(heads) < 64:
            heads[key] = head
    return head


def response(request: Request, answer: Answer) -> bytes:
    """The bytes Tornado's handlers send for ``answer``."""
    status, body = answer.status, answer.body
    head = _head(answer)
    if status == 200 and request.method == "GET":
        head += f'Etag: "{hashlib.sha1(body).hexdigest()}"\r\n'.encode()
    if status != 204:
        head += b"Content-Length: %d\r\n" % len(body)
    if request.close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def closing_response(answer: Answer) -> bytes:
    """``answer`` as the last response of a connection, then ``Connection: close``."""
    tail = b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(answer.body)
    return _head(answer) + tail + answer.body
