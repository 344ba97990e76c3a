"""The SockJS HTTP transports of sockjs-tornado 1.0.7, corrected, and its websocket URLs.

``thunderpush.transports.sockjs.router`` lists the corrections and mounts these
classes in place of sockjs-tornado's own (``CORRECTED``): the polling and
streaming transports, the send handlers, ``/info``, and the two websocket
URLs as Tornado serves them (the connection then leaves Tornado for
``thunderpush.transports.websocket.socket``).  Each class is sockjs-tornado's,
with mixins for what it got wrong: allowed origins, callbacks that could
inject script, oversized sends, proxies that buffer, and unsent data
(``InFlightMixin``, which sessions read to close clients that are too slow).
"""

from __future__ import annotations

import random
import re
import sys
from collections import deque
from typing import TYPE_CHECKING, Any

from sockjs.tornado import static as _static
from sockjs.tornado import transports as _transports
from sockjs.tornado.proto import json_encode
from sockjs.tornado.transports import htmlfile as _htmlfile
from tornado.httputil import HTTPServerRequest
from tornado.log import access_log
from tornado.web import RequestHandler

from thunderpush.transports.sockjs.adapter import (
    OwnAccessLog,
    abort_response,
    attach_session,
    close_at_end,
    keep_request_open,
    request_summary,
)
from thunderpush.transports.sockjs.websockets import serve_detached
from thunderpush.transports.websocket.handshake import answer

if TYPE_CHECKING:
    from thunderpush.transports.sockjs.router import SockJSRouter

_CALLBACK = re.compile(r"[A-Za-z0-9_.-]+")


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
        limit = self.server.service.settings.max_message_size
        if len(self.request.body) > limit:
            self.refuse(413, "Payload too large.")

    def post(self, session_id: str) -> None:
        super().post(session_id)
        # sockjs-tornado answers 500 to a body it cannot use (none, broken or
        # too deeply nested JSON): the SockJS protocol's answer, the client's fault.
        if self.get_status() == 500:
            self.client_fault = True


class InFlightMixin:
    """Counts what a polling or streaming response has written and the client not taken.

    sockjs-tornado writes one batch at a time (``active`` is False until its
    flush completes, later messages wait in the session's queue), and calls
    ``send_complete`` as each flush completes, in order.
    """

    def initialize(self, server: SockJSRouter) -> None:
        super().initialize(server)
        self.in_flight: deque[int] = deque()
        # The answer lasts as long as the session's client: a client that
        # leaves is noticed at once, as Tornado does.
        close_at_end(self)

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
    _OriginMixin, _OneResponseMixin, InFlightMixin, _transports.XhrPollingTransport
):
    pass


class JSONPTransport(
    _OriginMixin, _OneResponseMixin, _CallbackMixin, InFlightMixin, _transports.JSONPTransport
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


class HtmlFileTransport(_OriginMixin, _CallbackMixin, InFlightMixin, _transports.HtmlFileTransport):
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
    _OriginMixin, _NoTransformMixin, InFlightMixin, _transports.XhrStreamingTransport
):
    pass


class EventSourceTransport(
    _OriginMixin, _NoTransformMixin, InFlightMixin, _transports.EventSourceTransport
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


class IFrameHandler(_static.IFrameHandler):
    """The iframe page of the iframe transports, which only allowed pages may embed.

    Inside it, the page's requests come from the server's own origin, which
    ``allowed_origins`` must list for the iframe transports to work: any site
    framing it would then get around the list.  ``frame-ancestors`` leaves
    that to the browser.
    """

    def get(self) -> None:
        origins = self.server.origins
        if not origins.any:
            ancestors = " ".join(("'self'", *origins.entries))
            self.set_header("Content-Security-Policy", f"frame-ancestors {ancestors}")
        super().get()


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
    ``thunderpush.transports.websocket.handshake``, and once it is accepted the
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
            self.server.service.origins,
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


CORRECTED = {
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
    _static.IFrameHandler: IFrameHandler,
}
