"""sockjs-tornado 1.0.7, corrected.

sockjs-tornado is dormant and pinned; its known defects are corrected here by
subclassing and settings, never by forking, so that this module is the whole
difference.  ``SockJSRouter`` takes any ``SockJSConnection`` subclass exactly
as ``sockjs.tornado.SockJSRouter`` does, so any Tornado application can mount
it::

    router = SockJSRouter(EchoConnection, "/echo")
    app = tornado.web.Application(router.urls)

The corrections, each tested in ``tests/test_router.py``:

* a send to a websocket that is closing raises ``WebSocketClosedError`` out of
  ``broadcast`` and heartbeats; it is now dropped quietly, so every other
  receiver still gets the message and the log is not flooded;
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
* importing sockjs-tornado under ``-W error::DeprecationWarning`` failed;
* the iframe page's ``sockjs_url`` defaults to the tested sockjs-client;
* a websocket frame that is not JSON logged a traceback; it logs one warning;
* the raw websocket closes with the session's code (9xxx sent as 4xxx) and
  reason, pings like the heartbeat, and keeps track of its sessions like every
  other transport, so ``close_all`` reaches every open session on shutdown;
* xhr_send and jsonp_send refuse messages over ``max_message_size`` (413).
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from typing import Any

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream
from tornado.log import access_log
from tornado.websocket import WebSocketClosedError

# sockjs-tornado decorates its handlers with its own deprecated @asynchronous at
# import time; silence that one warning, nothing broader.
warnings.filterwarnings(
    "ignore", message="@asynchronous is deprecated", category=DeprecationWarning
)

from sockjs.tornado import SockJSConnection  # noqa: E402
from sockjs.tornado import router as _router  # noqa: E402
from sockjs.tornado import session as _session  # noqa: E402
from sockjs.tornado import static as _static  # noqa: E402
from sockjs.tornado import transports as _transports  # noqa: E402
from sockjs.tornado.transports import htmlfile as _htmlfile  # noqa: E402

from thunderpush.core.protocol import raw_websocket_close_code  # noqa: E402
from thunderpush.server.config import Config  # noqa: E402
from thunderpush.transports.fanout import FrameCache, Outbox, Queued  # noqa: E402
from thunderpush.transports.frames import text_frame  # noqa: E402

__all__ = ["SockJSConnection", "SockJSRouter"]

logger = logging.getLogger(__name__)

_CALLBACK = re.compile(r"[A-Za-z0-9_.-]+")

DEFAULT_SETTINGS = {
    "sockjs_url": Config.sockjs_url,
    # Largest message body accepted by xhr_send and jsonp_send.
    "max_message_size": Config.max_client_message_size,
}


# Every receiver of one publish on one kind of websocket gets the same frame,
# whichever server (Tornado or the front door) holds its socket.
SOCKJS_FRAMES = FrameCache(lambda element: text_frame(b"a[" + element.encode() + b"]"))
# No SockJS framing on the raw websocket: the element is the whole message.
RAW_FRAMES = FrameCache(lambda element: text_frame(element.encode()))


def sockjs_messages(message: str | bytes) -> list[Any] | None:
    """The messages of one SockJS websocket frame, or None if it must be dropped.

    A frame that is not JSON drops the connection, as sockjs-tornado always
    did, but with one warning line instead of a traceback.
    """
    try:
        messages = json.loads(message)
    except ValueError:
        logger.warning("Dropping a SockJS websocket: a frame was not valid JSON.")
        return None
    return messages if isinstance(messages, list) else [messages]


def _retrieve(future: Any) -> None:
    """Mark a write's outcome as seen: a closed peer is not worth a log line."""
    if not future.cancelled():
        future.exception()


class _NoTransformMixin:
    """Responses may never be re-encoded or buffered by proxies."""

    def disable_cache(self) -> None:
        self.set_header(
            "Cache-Control", "no-store, no-cache, no-transform, must-revalidate, max-age=0"
        )


class _RefusalMixin:
    """Refuses bad client input with the status the SockJS protocol prescribes.

    Such an answer is logged as a warning: the 500 that SockJS prescribes for
    a bad callback is the client's fault, not a server error.
    """

    client_fault = False

    def refuse(self, status: int, text: str) -> None:
        self.client_fault = True
        self.set_status(status)
        self.finish(text)

    def _log(self) -> None:
        if not self.client_fault:
            super()._log()
            return
        elapsed_ms = 1000.0 * self.request.request_time()
        access_log.warning("%d %s %.2fms", self.get_status(), self._request_summary(), elapsed_ms)


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


class _OneResponseMixin(_NoTransformMixin):
    """A polling request carries one response; anything after it waits.

    Only ``Session.close`` writes without checking ``active``; once the
    response is under way its close frame stays in the session and goes out
    on the next poll, as for any other queued frame.
    """

    def send_pack(self, message: str, binary: bool = False) -> None:
        if self.active:
            super().send_pack(message, binary)


class XhrPollingTransport(_OneResponseMixin, _transports.XhrPollingTransport):
    pass


class JSONPTransport(_OneResponseMixin, _CallbackMixin, _transports.JSONPTransport):
    def get(self, session_id: str) -> None:
        if self.valid_callback() is not None:
            super().get(session_id)

    def send_pack(self, message: str, binary: bool = False) -> None:
        # The base class writes "callback(...)"; a leading comment keeps the
        # body from ever starting with attacker-chosen bytes (Rosetta Flash).
        if not self.callback.startswith("/**/"):
            self.callback = "/**/" + self.callback
        super().send_pack(message, binary)


class HtmlFileTransport(_CallbackMixin, _transports.HtmlFileTransport):
    def get(self, session_id: str) -> None:
        # The base class strips "." and "_" from the callback, which breaks
        # sockjs-client 1.x ("_jp.a1b2c3"); a validated callback is used as is.
        self._auto_finish = False
        self.preflight()
        self.handle_session_cookie()
        self.disable_cache()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        callback = self.valid_callback()
        if callback is None:
            return
        self.write(_htmlfile.HTMLFILE_HEAD % callback)
        self.flush()
        if not self._attach_session(session_id):
            self.finish()
        elif self.session:
            self.session.flush()


class XhrStreamingTransport(_NoTransformMixin, _transports.XhrStreamingTransport):
    pass


class EventSourceTransport(_NoTransformMixin, _transports.EventSourceTransport):
    pass


class XhrSendHandler(_SendLimitMixin, _transports.XhrSendHandler):
    pass


class JSONPSendHandler(_SendLimitMixin, _transports.JSONPSendHandler):
    pass


class InfoHandler(_NoTransformMixin, _static.InfoHandler):
    pass


class _WebSocketMixin(Queued):
    """Websocket writes: quiet once closing, and the fan-out fast path.

    ``send_element`` queues a delivery's frame, built once per publish, in
    the router's ``Outbox``; ``flush_pending`` sends what is queued with one
    ``send`` when Tornado has nothing buffered for this socket, and hands the
    rest to the ``IOStream`` otherwise, so ``unsent_bytes`` always sees it.
    """

    frames: FrameCache

    def initialize(self, server: Any) -> None:
        super().initialize(server)
        self.pending: list[bytes] = []

    def send_element(self, element: str) -> None:
        self.server.outbox.queue(self, self.frames.frame(element))

    def flush_pending(self) -> None:
        pending, self.pending = self.pending, []
        connection = self.ws_connection
        if not pending or connection is None or connection.is_closing():
            return
        stream = connection.stream
        if stream.closed():
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        if not stream._write_buffer and type(stream) is IOStream:
            try:
                sent = stream.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                stream.close()  # Tornado then runs on_close
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        stream.write(data)

    @property
    def unsent_bytes(self) -> int:
        """Bytes accepted for this client and not yet taken by the kernel."""
        connection = self.ws_connection
        buffered = len(connection.stream._write_buffer) if connection is not None else 0
        return buffered + sum(map(len, self.pending))

    def send_pack(self, message: str, binary: bool = False) -> None:
        if self.pending:
            self.flush_pending()  # keep heartbeats and closes in order
        try:
            future = self.write_message(message, binary)
        except WebSocketClosedError:
            # Tornado calls on_close once the close completes; this only makes
            # sure the session learns of it even if that never happens.
            self.server.io_loop.add_callback(self.on_close)
            return
        future.add_done_callback(_retrieve)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.pending:
            self.flush_pending()
        super().close(code, reason)


class WebSocketTransport(_WebSocketMixin, _transports.WebSocketTransport):
    frames = SOCKJS_FRAMES

    def on_message(self, message: str | bytes) -> None:
        if not message or not self.session:
            return
        messages = sockjs_messages(message)
        if messages is None:
            self.abort_connection()
            return
        self.session.on_messages(messages)


class RawWebSocketTransport(_WebSocketMixin, _transports.RawWebSocketTransport):
    frames = RAW_FRAMES

    @property
    def ping_interval(self) -> float:
        # No SockJS heartbeat here: pings keep proxies from cutting idle sockets.
        return self.server.settings["heartbeat_delay"]

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.server.stats.on_conn_opened()
        if self.server.settings["disable_nagle"]:
            self.set_nodelay(True)
        self.session = RawSession(self.server.get_connection_class(), self.server)
        self.session.set_handler(self)
        self.session.verify_state()

    def session_closed(self) -> None:
        code, reason = self.session.get_close_reason()
        try:
            self.close(raw_websocket_close_code(code), reason)
        finally:
            self._detach()


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
    _transports.RawWebSocketTransport: RawWebSocketTransport,
    _static.InfoHandler: InfoHandler,
}


class SockJSRouter(_router.SockJSRouter):
    """``sockjs.tornado.SockJSRouter`` with the corrected transports.

    ``live_sessions`` holds every open session on every transport, and
    ``close_all`` closes them, e.g. on shutdown.
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
        self._bound_loop: IOLoop | None = None
        merged = {**DEFAULT_SETTINGS, **(user_settings or {})}
        super().__init__(connection, prefix, merged, io_loop, session_kls or Session)
        self._transport_urls = [
            (pattern, _CORRECTED.get(handler, handler), kwargs)
            for pattern, handler, kwargs in self._transport_urls
        ]

    def _bind_to_running_loop(self) -> None:
        """Move the router's timers onto the loop that serves its sessions."""
        loop = IOLoop.current()
        if loop is self._bound_loop:
            return
        self._bound_loop = self.io_loop = loop
        self.outbox = Outbox(loop.asyncio_loop)
        for timer in (self._sessions_cleanup, self.stats._callback):
            timer.stop()
            timer.start()

    def create_session(self, session_id: str, register: bool = True) -> Any:
        self._bind_to_running_loop()
        session = super().create_session(session_id, register)
        self.live_sessions.add(session)
        return session

    def close_all(self, code: int, reason: str) -> None:
        """Close every open session with ``code`` and ``reason``."""
        for session in list(self.live_sessions):
            session.close(code, reason)
