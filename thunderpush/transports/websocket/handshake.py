"""The websocket opening handshake, answered by ``websockets``' ``ServerProtocol``.

A handshake reaches the server in one of two ways: the front door parsed it
(``serve_upgrade``, the usual way, for every kind of websocket: SockJS's
upgrade targets in ``thunderpush.transports.sockjs.websockets``, Pusher's in
``thunderpush.pusher.websocket``), or Tornado did (the SockJS
``WebSocketTransport`` calls ``answer``: the front door handed the request
over, or the router is mounted in someone else's Tornado application).
Either way it is answered here, and the connection continues as one
``thunderpush.transports.websocket.socket`` object on an asyncio transport: there is
one websocket implementation.  This module knows none of its kinds: the
caller says which socket the connection becomes.

The page's origin is checked against the service's ``origins``
(``thunderpush.transports.sockjs.origins``: 403 for any other).  The rest of the
handshake is the library's (RFC 6455 section 4.2), but for a browser's usual
one, which it would accept: that is answered with the library's 101 from
prepared text (``_prepared``; ``tests/test_websocket_prepared.py`` compares
the two on usual and unusual handshakes)::

    handshake = serve_upgrade(service, transport, request, rest, socket_for)
    if handshake is not None and not handshake.accepted:
        ...  # refused: answer it (``refusal``) or leave it to Tornado
"""

from __future__ import annotations

import asyncio
import binascii
import logging
from base64 import b64decode
from binascii import b2a_base64
from collections.abc import Callable
from functools import cached_property
from hashlib import sha1
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING

from sockjs.tornado.session import ConnectionInfo
from tornado.httputil import HTTPHeaders, parse_cookie, parse_qs_bytes
from websockets import http11
from websockets.datastructures import Headers
from websockets.server import ServerProtocol
from websockets.utils import GUID

from thunderpush.api import Answer
from thunderpush.api.answers import error_answer
from thunderpush.transports.door.messages import SERVER, SERVER_HEADER, Request, date_header
from thunderpush.transports.websocket.protocol_log import PROTOCOL_LOG

if TYPE_CHECKING:
    from thunderpush.transports.websocket.service import Origins, WebSocketService
    from thunderpush.transports.websocket.socket import WebSocket

_CROSS_ORIGIN = "Cross origin websockets not allowed"
# The fields of every refusal the library makes; ``closing_response`` writes its own.
_REJECTION_FIELDS = frozenset(("date", "connection", "content-length", "content-type", "server"))
_REFUSED = "Failed to open a WebSocket connection: not a GET over HTTP/1.1 ({}).\n"

# Answers every handshake while the library's own log lines are off: a fresh
# ``ServerProtocol`` costs a third of the answer (its uuid4, reader, parser).
# ``accept`` and ``reject`` depend only on the request and on the settings
# given to the constructor (none here: any origin, no extensions, no
# subprotocols); what they store (``origin``, ``extensions``, ``subprotocol``,
# ``handshake_exc``, ``accept_called``) is read only by ``send_response`` and
# by the frames that follow, which this protocol never sees.
_ANSWERER = ServerProtocol(logger=PROTOCOL_LOG)

# What a browser's handshake says, for ``_prepared``: these fields once each,
# with these values (lower case), and no ``Sec-WebSocket-Protocol`` to parse.
_USUAL = {
    "connection": frozenset(("upgrade", "keep-alive, upgrade")),
    "upgrade": frozenset(("websocket",)),
    "sec-websocket-version": frozenset(("13",)),
}
# The library's 101, field for field (``ServerProtocol.accept``, then ``Server``):
# the head to ``Sec-WebSocket-Accept``'s value, made once a second (its date),
# the value (``websockets.utils.accept_key``, in C calls), and the rest.
_SWITCHING = "HTTP/1.1 101 Switching Protocols\r\n{}Upgrade: websocket\r\nConnection: Upgrade\r\n"
_ACCEPT = b"Sec-WebSocket-Accept: "
_AFTER_ACCEPT = ("\r\n" + SERVER_HEADER + "\r\n").encode("latin-1")
_GUID = GUID.encode()
_switching: tuple[str, bytes] = ("", b"")


def _switching_head() -> bytes:
    """The 101's bytes up to the accept key's value, with this second's date."""
    global _switching
    date = date_header()
    if date != _switching[0]:
        _switching = (date, _SWITCHING.format(date).encode("latin-1") + _ACCEPT)
    return _switching[1]


def _packed(fields: list[tuple[str, str]]) -> str | list[tuple[str, str]]:
    """``fields`` as "name: value" lines; the list itself in the odd case that a
    value holds a line break of its own (the lines would not split back)."""
    packed = "\r\n".join([f"{name}: {value}" for name, value in fields])
    return packed if packed.count("\r\n") == len(fields) - 1 else fields


def _unpacked(packed: str) -> list[tuple[str, str]]:
    """The fields ``_packed`` joined (a name holds no colon: the first ": " ends it)."""
    if not packed:
        return []
    return [tuple(line.split(": ", 1)) for line in packed.split("\r\n")]  # type: ignore[misc]


class LazyConnectionInfo(ConnectionInfo):
    """sockjs-tornado's ``ConnectionInfo`` (what ``on_open`` gets), parsed on first use.

    Most applications, Thunderpush's own included, never look at it.  Cookies
    are parsed as Tornado parses them (``tornado.httputil.parse_cookie``, in
    linear time), never by the standard library's ``SimpleCookie.load``,
    which takes seconds on a long run of backslashes before Python 3.13.

    An idle connection keeps it for its whole life, so the header fields are
    kept as one string ("name: value" lines), not as a list of pairs: a
    browser's dozen fields cost one object instead of thirty-odd.
    """

    def __init__(self, ip: str, path: str, query: str, headers: list[tuple[str, str]]) -> None:
        self.ip = ip
        self.path = path
        self._query = query
        self._raw_headers = _packed(headers)

    @cached_property
    def headers(self) -> HTTPHeaders:  # type: ignore[override]
        headers = HTTPHeaders()
        raw = self._raw_headers
        fields = raw if isinstance(raw, list) else _unpacked(raw)
        for name, value in fields:
            headers.add(name, value)
        return headers

    @cached_property
    def arguments(self) -> dict[str, list[bytes]]:  # type: ignore[override]
        return parse_qs_bytes(self._query, keep_blank_values=True) if self._query else {}

    @cached_property
    def cookies(self) -> SimpleCookie:  # type: ignore[override]
        cookies = SimpleCookie()
        header = self.headers.get("Cookie")
        if header:
            for name, value in parse_cookie(header).items():
                try:
                    cookies[name] = value
                except CookieError:
                    pass  # a name SimpleCookie refuses: dropped, as Tornado does
        return cookies


class Handshake:
    """A handshake request and the answer to it.

    ``accepted``: the answer is a 101, whose bytes ``data`` holds, for the
    websocket to write first; ``response`` is the library's answer (None for
    a 101 made from prepared text: a refusal always has one).
    """

    __slots__ = ("accepted", "response", "data", "info")

    def __init__(
        self, response: http11.Response | None, data: bytes, info: LazyConnectionInfo
    ) -> None:
        self.accepted = response is None or response.status_code == 101
        self.response = response
        self.data = data
        self.info = info


def _prepared(method: str, version: str, headers: list[tuple[str, str]]) -> dict[str, str] | None:
    """A browser's usual handshake, which the library would accept: its fields by
    lower-case name; None for anything else, which the library answers.

    Why: the library's ``accept`` (a ``Headers`` of the request and of the
    answer, each field parsed as a list, the date formatted) was half the
    CPU of a handshake; this accepts only what it accepts, checked the same
    way (a repeated field, a subprotocol, an unusual ``Connection``: the
    library's).  Extensions are ignored by both: none is offered.
    """
    if method != "GET" or version != "HTTP/1.1":
        return None
    fields = {name.lower(): value for name, value in headers}
    if len(fields) != len(headers) or "sec-websocket-protocol" in fields:
        return None
    for name, usual in _USUAL.items():
        value = fields.get(name)
        if value is None or value.lower() not in usual:
            return None
    key = fields.get("sec-websocket-key")
    try:
        if key is None or len(b64decode(key.encode(), validate=True)) != 16:
            return None
    except (binascii.Error, UnicodeEncodeError):
        return None
    return fields


def answer(
    origins: Origins,
    method: str,
    path: str,
    query: str,
    version: str,
    headers: list[tuple[str, str]],
    remote_ip: str,
) -> Handshake:
    """The answer to a handshake, from a page ``origins`` allow or not.

    RFC 6455 section 4.1: a handshake is a GET over HTTP/1.1.  websockets 17
    checks both in ``accept``; the releases before it (the newest on Python
    3.10) check neither, so they are checked here, with the same answers.
    """
    logged = PROTOCOL_LOG.isEnabledFor(logging.INFO)
    info = LazyConnectionInfo(remote_ip, path, query, headers)
    fields = None if logged else _prepared(method, version, headers)
    if fields is not None:
        origin = fields.get("origin")
        if origin is None:
            origin = fields.get("sec-websocket-origin")
        if not origins.allows(origin, fields.get("host")):
            return Handshake(_ANSWERER.reject(HTTPStatus.FORBIDDEN, _CROSS_ORIGIN), b"", info)
        digest = sha1(fields["sec-websocket-key"].encode() + _GUID).digest()
        data = _switching_head() + b2a_base64(digest, newline=False) + _AFTER_ACCEPT
        return Handshake(None, data, info)
    # Its own protocol when the library's lines are logged ("connection open"...).
    protocol = ServerProtocol(logger=PROTOCOL_LOG) if logged else _ANSWERER
    target = f"{path}?{query}" if query else path
    request = http11.Request(path=target, headers=Headers(headers))
    if method != "GET":
        response = protocol.reject(HTTPStatus.METHOD_NOT_ALLOWED, _REFUSED.format(method))
        response.headers["Allow"] = "GET"
    elif version != "HTTP/1.1":
        response = protocol.reject(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, _REFUSED.format(version))
    else:
        response = protocol.accept(request)
    data = b""
    if response.status_code == 101:
        if origin_allowed(request.headers, origins):
            response.headers["Server"] = SERVER
            if logged:
                protocol.send_response(response)
                data = b"".join(protocol.data_to_send())
            else:
                data = response.serialize()  # the bytes ``send_response`` sends
        else:
            response = protocol.reject(HTTPStatus.FORBIDDEN, _CROSS_ORIGIN)
    return Handshake(response, data, info)


def origin_allowed(headers: Headers, origins: Origins) -> bool:
    """Whether ``origins`` allow the page that sent this handshake.

    Older browsers name it in ``Sec-WebSocket-Origin``; a repeated field is
    judged by its first value.
    """
    origin = headers.get_all("Origin") or headers.get_all("Sec-WebSocket-Origin")
    host = headers.get_all("Host")
    return origins.allows(origin[0] if origin else None, host[0] if host else None)


def refusal(handshake: Handshake) -> Answer:
    """A refused handshake's answer as the server's JSON error, on a path Tornado
    does not serve: the library's status and text, and the fields it added
    (``Allow`` for 405, ``Upgrade`` for 426)."""
    response = handshake.response
    message = response.body.decode(errors="replace").strip()
    extra = tuple(
        (name, value)
        for name, value in response.headers.raw_items()
        if name.lower() not in _REJECTION_FIELDS
    )
    return error_answer(response.status_code, message)._replace(headers=extra)


def serve_upgrade(
    service: WebSocketService,
    transport: asyncio.Transport,
    request: Request,
    rest: bytes,
    socket: Callable[[Handshake, bytes], WebSocket],
) -> Handshake | None:
    """Answers a handshake the front door parsed; once it is accepted the
    connection continues as ``socket(handshake, rest)``, on ``transport``.

    Returns the handshake (a refused one is the caller's to answer), or None
    for a request with a body: Tornado reads it before the frames.
    """
    headers = request.fields
    if any(name == "content-length" for name, _ in headers):
        return None
    handshake = answer(
        service.origins,
        request.method,
        request.path,
        request.query,
        "HTTP/1.1",
        headers,
        request.remote_ip,
    )
    if handshake.accepted:
        websocket = socket(handshake, rest)
        transport.set_protocol(websocket)
        websocket.connection_made(transport)
    return handshake
