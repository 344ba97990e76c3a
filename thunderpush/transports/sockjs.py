"""sockjs-tornado 1.0.7, corrected.

sockjs-tornado is dormant and pinned; its known defects are corrected here by
subclassing and settings, never by forking, so that this module is the whole
difference.  ``SockJSRouter`` takes any ``SockJSConnection`` subclass exactly
as ``sockjs.tornado.SockJSRouter`` does, so any Tornado application can mount
it::

    router = SockJSRouter(EchoConnection, "/echo")
    app = tornado.web.Application(router.urls)

The corrections, each tested in ``tests/test_router.py``:

* both websocket transports are served by ``thunderpush.transports.websocket``
  (Tornado hands the connection over after the handshake,
  ``thunderpush.transports.handshake``): a send to a websocket that is
  closing no longer raises ``WebSocketClosedError`` out of ``broadcast`` and
  heartbeats, so every other receiver still gets the message and the log is
  not flooded; a client that never finishes a close handshake is cut off after
  ``websocket_close_timeout`` seconds; pongs, cookies and deep JSON cost no
  more than a well-behaved client does;
* ``close()`` inside ``on_open`` on xhr/jsonp polling wrote a second response
  into the first one; the close frame now waits for the next poll;
* the JSONP/htmlfile callback was reflected unchecked; anything outside
  ``[A-Za-z0-9_.-]`` now gets a 500, and JSONP bodies start with ``/**/``;
  htmlfile no longer mangles valid callbacks such as sockjs-client's
  ``_jp.a1b2c3``;
* ``Cache-Control`` gains ``no-transform`` so proxies do not buffer streams;
* timers bound to whichever loop existed when the router was built, so session
  expiry and heartbeats silently never ran under ``asyncio.run``; they are now
  (re)bound to the running loop when the first session starts;
* importing sockjs-tornado under ``-W error::DeprecationWarning`` failed (the
  filter is in ``thunderpush.transports``, before any import of it);
* the iframe page's ``sockjs_url`` defaults to the tested sockjs-client;
* a websocket frame that is not JSON logged a traceback; it logs one warning;
* the raw websocket closes with the session's code (9xxx sent as 4xxx) and
  reason, pings like the heartbeat, and keeps track of its sessions like every
  other transport, so ``close_all`` reaches every open session on shutdown;
* xhr_send and jsonp_send refuse messages over ``max_message_size`` (413),
  and log their 500 for broken JSON as the client's fault (a warning), not as
  a server error;
* every origin's CORS request was answered and reflected, and ``/info`` said
  ``"origins": ["*:*"]`` whatever ``websocket_allow_origin`` said; one rule
  (``origins``: the ``allowed_origins`` setting and sockjs-tornado's
  ``websocket_allow_origin``, ``thunderpush.transports.origins``) now serves
  the websocket handshake, the polling and streaming transports and ``/info``:
  any other page gets 403 and is never named in ``Access-Control-Allow-Origin``.
* a session's queue grew without bound while no poll came or a streaming
  response was not read; past ``max_unsent_bytes`` (queue and response in
  flight) the queue is dropped, the response aborted, and the session closed
  as too slow (9011, ``thunderpush.transports.slow``; tested in
  ``tests/test_slow_clients.py``).
"""

from __future__ import annotations

import random
import re
import sys
from collections import deque
from typing import Any

from sockjs.tornado import SockJSConnection
from sockjs.tornado import router as _router
from sockjs.tornado import session as _session
from sockjs.tornado import static as _static
from sockjs.tornado import transports as _transports
from sockjs.tornado.proto import json_encode
from sockjs.tornado.session import CLOSING
from sockjs.tornado.transports import htmlfile as _htmlfile
from tornado.httputil import HTTPServerRequest
from tornado.ioloop import IOLoop
from tornado.log import access_log
from tornado.web import RequestHandler

from thunderpush.server.config import Config
from thunderpush.transports.adapter import (
    OwnAccessLog,
    abort_response,
    attach_session,
    keep_request_open,
    request_summary,
    restart_router_timers,
)
from thunderpush.transports.fanout import Outbox, Queued
from thunderpush.transports.handshake import answer, serve_detached
from thunderpush.transports.heartbeat import OpenWebSockets
from thunderpush.transports.origins import AllowedOrigins
from thunderpush.transports.slow import close_too_slow, log_too_slow

__all__ = ["SockJSConnection", "SockJSRouter"]


_CALLBACK = re.compile(r"[A-Za-z0-9_.-]+")

DEFAULT_SETTINGS = {
    "sockjs_url": Config.sockjs_url,
    # Largest message accepted: xhr_send and jsonp_send bodies, websocket messages.
    "max_message_size": Config.max_client_message_size,
    # How long a websocket waits for the client's end of a close handshake.
    "websocket_close_timeout": 5.0,
    # Origins allowed to open sessions (thunderpush.transports.origins); empty: any.
    "allowed_origins": (),
    # Unsent data a session may hold before it is closed as too slow.
    "max_unsent_bytes": Config.max_unsent_bytes,
}


class _NoTransformMixin:
    """Responses may never be re-encoded or buffered by proxies."""

    def disable_cache(self) -> None:
        self.set_header(
            "Cache-Control", "no-store, no-cache, no-transform, must-revalidate, max-age=0"
        )


class _RefusalMixin(OwnAccessLog):
    """Refuses bad client input with the status the SockJS protocol prescribes.

    Such an answer is logged as a warning: the 500 that SockJS prescribes for
    a bad callback is the client's fault, not a server error.
    """

    client_fault = False

    def refuse(self, status: int, text: str | bytes) -> None:
        self.client_fault = True
        self.set_status(status)
        self.finish(text)

    def log_access(self) -> bool:
        if not self.client_fault:
            return False
        elapsed_ms = 1000.0 * self.request.request_time()
        access_log.warning("%d %s %.2fms", self.get_status(), request_summary(self), elapsed_ms)
        return True


class _OriginMixin(_RefusalMixin):
    """Serves the router's allowed origins only; any other page is answered 403.

    Checked before anything else, so a refused page is never reflected in
    ``Access-Control-Allow-Origin`` and never reaches a session.
    """

    # sockjs-tornado's statistics flag, set by ``prepare``: a refusal comes
    # first, and ``InfoHandler.initialize`` never sets it.
    logged = False

    def prepare(self) -> None:
        origins = self.server.origins
        if not origins.any:
            headers = self.request.headers
            if not origins.allows(headers.get("Origin"), headers.get("Host")):
                self.refuse(403, "Origin not allowed.")
                return
            self.add_header("Vary", "Origin")  # the answer depends on it
        super().prepare()


class _CallbackMixin(_RefusalMixin, _NoTransformMixin):
    """Refuses JSONP/htmlfile callbacks that could inject script."""

    def valid_callback(self) -> str | None:
        callback = self.get_argument("c", None, strip=False)
        if not callback:
            self.refuse(500, '"callback" parameter required')
            return None
        if not _CALLBACK.fullmatch(callback):
            self.refuse(500, 'invalid "callback" parameter')
            return None
        return callback


class _SendLimitMixin(_RefusalMixin, _NoTransformMixin):
    """Client messages are commands of a few bytes: refuse big ones early.

    The server's ``max_body_size`` bounds what is read at all; this bounds
    what reaches the connection, as ``websocket_max_message_size`` does for
    websockets.
    """

    def prepare(self) -> None:
        super().prepare()
        limit = self.server.settings["max_message_size"]
        if len(self.request.body) > limit:
            self.refuse(413, "Payload too large.")

    def post(self, session_id: str) -> None:
        super().post(session_id)
        # sockjs-tornado answers 500 to a body it cannot use (none, broken or
        # too deeply nested JSON): the SockJS protocol's answer, the client's fault.
        if self.get_status() == 500:
            self.client_fault = True


class _InFlightMixin:
    """Counts what a polling or streaming response has written and the client not taken.

    sockjs-tornado writes one batch at a time (``active`` is False until its
    flush completes, later messages wait in the session's queue), and calls
    ``send_complete`` as each flush completes, in order.
    """

    def initialize(self, server: Any) -> None:
        super().initialize(server)
        self.in_flight: deque[int] = deque()

    @property
    def unsent_bytes(self) -> int:
        return sum(self.in_flight)

    def send_pack(self, message: str, binary: bool = False) -> None:
        self.in_flight.append(len(message))
        super().send_pack(message, binary)

    def send_complete(self, f: Any = None) -> None:
        if self.in_flight:
            self.in_flight.popleft()
        super().send_complete(f)

    def abort(self) -> None:
        """Drop the response and what it still had to write."""
        self.in_flight.clear()
        abort_response(self)


class _OneResponseMixin(_NoTransformMixin):
    """A polling request carries one response; anything after it waits.

    Only ``Session.close`` writes without checking ``active``; once the
    response is under way its close frame stays in the session and goes out
    on the next poll, as for any other queued frame.
    """

    def send_pack(self, message: str, binary: bool = False) -> None:
        if self.active:
            super().send_pack(message, binary)


class XhrPollingTransport(
    _OriginMixin, _OneResponseMixin, _InFlightMixin, _transports.XhrPollingTransport
):
    pass


class JSONPTransport(
    _OriginMixin, _OneResponseMixin, _CallbackMixin, _InFlightMixin, _transports.JSONPTransport
):
    def get(self, session_id: str) -> None:
        if self.valid_callback() is not None:
            super().get(session_id)

    def send_pack(self, message: str, binary: bool = False) -> None:
        # The base class writes "callback(...)"; a leading comment keeps the
        # body from ever starting with attacker-chosen bytes (Rosetta Flash).
        if not self.callback.startswith("/**/"):
            self.callback = "/**/" + self.callback
        super().send_pack(message, binary)


class HtmlFileTransport(
    _OriginMixin, _CallbackMixin, _InFlightMixin, _transports.HtmlFileTransport
):
    def get(self, session_id: str) -> None:
        # The base class strips "." and "_" from the callback, which breaks
        # sockjs-client 1.x ("_jp.a1b2c3"); a validated callback is used as is.
        keep_request_open(self)
        self.preflight()
        self.handle_session_cookie()
        self.disable_cache()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        callback = self.valid_callback()
        if callback is None:
            return
        self.write(_htmlfile.HTMLFILE_HEAD % callback)
        self.flush()
        if not attach_session(self, session_id):
            self.finish()
        elif self.session:
            self.session.flush()


class XhrStreamingTransport(
    _OriginMixin, _NoTransformMixin, _InFlightMixin, _transports.XhrStreamingTransport
):
    pass


class EventSourceTransport(
    _OriginMixin, _NoTransformMixin, _InFlightMixin, _transports.EventSourceTransport
):
    pass


class XhrSendHandler(_OriginMixin, _SendLimitMixin, _transports.XhrSendHandler):
    pass


class JSONPSendHandler(_OriginMixin, _SendLimitMixin, _transports.JSONPSendHandler):
    pass


class InfoHandler(_OriginMixin, _NoTransformMixin, _static.InfoHandler):
    def get(self) -> None:
        # The base class says "origins": ["*:*"] whatever is allowed.
        self.preflight()
        self.disable_cache()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        info = {
            "websocket": self.server.websockets_enabled,
            "cookie_needed": self.server.cookie_needed,
            "origins": self.server.origins.reported,
            "entropy": random.randint(0, sys.maxsize),
        }
        self.write(json_encode(info))


class ChunkingTestHandler(_OriginMixin, _static.ChunkingTestHandler):
    pass


def _not_a_handshake(request: HTTPServerRequest) -> tuple[int, str] | None:
    """sockjs-tornado's answer to a request on a websocket URL that is no handshake."""
    if request.method != "GET":
        return 405, "WebSocket only supports GET requests."
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return 400, 'Can "Upgrade" only to "WebSocket".'
    connection = request.headers.get("Connection", "").split(",")
    if "upgrade" not in (part.strip().lower() for part in connection):
        return 400, '"Connection" must be "Upgrade".'
    return None


class WebSocketTransport(_RefusalMixin, RequestHandler):
    """Both websocket URLs as Tornado serves them: the connection leaves Tornado.

    A request that is no handshake gets sockjs-tornado's answers (which the
    SockJS protocol tests expect); a handshake is answered by
    ``thunderpush.transports.handshake``, and once it is accepted the
    connection is detached from Tornado (``RequestHandler.detach``) and served
    by the same asyncio websocket as the front door's.  Refusals are the
    client's fault, logged as warnings.
    """

    def initialize(self, server: SockJSRouter) -> None:
        self.server = server

    def prepare(self) -> None:
        refusal = _not_a_handshake(self.request)
        if refusal is not None:
            status, text = refusal
            self.set_header("Connection", "Close")
            if status == 405:
                self.set_header("Allow", "GET")
            self.refuse(status, text)

    async def get(self, session_id: str | None = None) -> None:
        request = self.request
        handshake = answer(
            self.server,
            request.method or "GET",
            request.path,
            request.query,
            request.version,
            list(request.headers.get_all()),
            request.remote_ip or "",
        )
        response = handshake.response
        if not handshake.accepted:
            for name, value in response.headers.raw_items():
                if name not in ("Date", "Content-Length"):
                    self.set_header(name, value)
            self.refuse(response.status_code, response.body)
            return
        stream = self.detach()
        self.set_status(101)
        self.application.log_request(self)
        await serve_detached(self.server, handshake, stream, session_id)


class _TrackedMixin:
    """Sessions tell the router when they end, so it can reach the open ones."""

    def close(self, code: int = 3000, message: str = "Go away!") -> None:
        self.server.live_sessions.discard(self)
        super().close(code, message)


class Session(_TrackedMixin, _session.Session):
    def send_element(self, element: str) -> None:
        """Sends one message element that is JSON already (no re-encoding)."""
        handler = self.handler
        if isinstance(handler, Queued) and not self.send_queue:
            handler.send_element(element)
        else:
            self.send_jsonified(element, False)

    def send_jsonified(self, msg: str, stats: bool = True) -> None:
        super().send_jsonified(msg, stats)
        handler = self.handler
        unsent = len(self.send_queue)
        if isinstance(handler, _InFlightMixin):
            unsent += handler.unsent_bytes
        limit = self.server.settings["max_unsent_bytes"]
        if unsent > limit and self.state != CLOSING:
            self._let_go(handler, limit)

    def _let_go(self, handler: Any, limit: int) -> None:
        """Too slow: free the queue and the response now, close on the next turn.

        Not at once: this may run while the hub sends to a channel, and
        closing removes the connection from the channels.  Until then the
        session is CLOSING, which queues nothing more.
        """
        log_too_slow(self, self.conn_info.ip if self.conn_info else "", limit)
        self.send_queue = ""
        self.state = CLOSING
        self.server.io_loop.add_callback(close_too_slow, self)
        if isinstance(handler, _InFlightMixin):
            handler.abort()


class RawSession(_TrackedMixin, _transports.rawwebsocket.RawSession):
    def __init__(self, conn: type, server: SockJSRouter) -> None:
        server._bind_to_running_loop()  # raw sessions bypass create_session
        super().__init__(conn, server)
        server.live_sessions.add(self)

    def send_element(self, element: str) -> None:
        self.handler.send_element(element)


_CORRECTED = {
    _transports.XhrPollingTransport: XhrPollingTransport,
    _transports.JSONPTransport: JSONPTransport,
    _transports.HtmlFileTransport: HtmlFileTransport,
    _transports.XhrStreamingTransport: XhrStreamingTransport,
    _transports.EventSourceTransport: EventSourceTransport,
    _transports.XhrSendHandler: XhrSendHandler,
    _transports.JSONPSendHandler: JSONPSendHandler,
    _transports.WebSocketTransport: WebSocketTransport,
    _transports.RawWebSocketTransport: WebSocketTransport,
    _static.InfoHandler: InfoHandler,
    _static.ChunkingTestHandler: ChunkingTestHandler,
}


class SockJSRouter(_router.SockJSRouter):
    """``sockjs.tornado.SockJSRouter`` with the corrected transports.

    ``live_sessions`` holds every open session on every transport, and
    ``close_all`` closes them, e.g. on shutdown.  ``websockets`` holds the
    open websockets and their shared heartbeat.
    """

    def __init__(
        self,
        connection: type[SockJSConnection],
        prefix: str = "",
        user_settings: dict[str, Any] | None = None,
        io_loop: IOLoop | None = None,
        session_kls: type | None = None,
    ) -> None:
        self.live_sessions: set[Any] = set()
        self.prefix = prefix
        merged = {**DEFAULT_SETTINGS, **(user_settings or {})}
        super().__init__(connection, prefix, merged, io_loop, session_kls or Session)
        self.websockets = OpenWebSockets(self.settings)
        # A bad entry is refused now, not at the first request.
        key = self._origins_key()
        self._origins = (key, AllowedOrigins(*key))
        self._bound_loop: IOLoop | None = None
        self._corrected_urls = [
            (pattern, _CORRECTED.get(handler, handler), kwargs)
            for pattern, handler, kwargs in super().urls
        ]

    @property
    def urls(self) -> list[tuple[str, type, dict[str, Any]]]:
        """The URLs to add to a Tornado application, with the corrected handlers."""
        return self._corrected_urls

    @property
    def origins(self) -> AllowedOrigins:
        """The origins allowed to open sessions, as the settings say now.

        ``allowed_origins`` holds origins; sockjs-tornado's
        ``websocket_allow_origin`` (``"*"`` or ``host[:port]`` entries, any
        scheme) counts too.  A setting changed at run time applies, as in
        sockjs-tornado.  Raises ``ValueError`` for an entry that is no origin.
        """
        key = self._origins_key()
        if key != self._origins[0]:
            self._origins = (key, AllowedOrigins(*key))
        return self._origins[1]

    def _origins_key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        settings = self.settings
        hosts = settings["websocket_allow_origin"]
        return tuple(settings["allowed_origins"]), () if hosts == "*" else tuple(hosts)

    def apply_routes(self, routes: list[Any]) -> list[Any]:
        """Add the URLs to ``routes`` and return it, as the base class does with its own."""
        routes.extend(self.urls)
        return routes

    def _bind_to_running_loop(self) -> None:
        """Move the router's timers onto the loop that serves its sessions."""
        loop = IOLoop.current()
        if loop is self._bound_loop:
            return
        self._bound_loop = self.io_loop = loop
        self.outbox = Outbox(loop.asyncio_loop)
        restart_router_timers(self)

    def create_session(self, session_id: str, register: bool = True) -> Any:
        self._bind_to_running_loop()
        session = super().create_session(session_id, register)
        self.live_sessions.add(session)
        return session

    def create_raw_session(self) -> RawSession:
        """A session for the raw websocket (no SockJS framing, no session id)."""
        return RawSession(self.get_connection_class(), self)

    def close_all(self, code: int, reason: str) -> None:
        """Close every open session with ``code`` and ``reason``."""
        for session in list(self.live_sessions):
            session.close(code, reason)
