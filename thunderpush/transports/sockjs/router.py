"""sockjs-tornado 1.0.7, corrected.

sockjs-tornado is dormant and pinned; its known defects are corrected here by
subclassing and settings, never by forking, so that this module is the whole
difference.  ``SockJSRouter`` takes any ``SockJSConnection`` subclass exactly
as ``sockjs.tornado.SockJSRouter`` does, so any Tornado application can mount
it::

    router = SockJSRouter(EchoConnection, "/echo")
    app = tornado.web.Application(router.urls)

The corrected transports are in ``thunderpush.transports.sockjs.transports``;
the router mounts them in place of sockjs-tornado's.  The corrections, each
tested in ``tests/test_router.py``:

* both websocket transports are served by ``thunderpush.transports.websocket.socket``
  (Tornado hands the connection over after the handshake,
  ``thunderpush.transports.websocket.handshake``): a send to a websocket that is
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
  ``websocket_allow_origin``, ``thunderpush.transports.sockjs.origins``) now serves
  the websocket handshake, the polling and streaming transports and ``/info``:
  any other page gets 403 and is never named in ``Access-Control-Allow-Origin``.
* a session's queue grew without bound while no poll came or a streaming
  response was not read; past ``max_unsent_bytes`` (queue and response in
  flight) the queue is dropped, the response aborted, and the session closed
  as too slow (9011, ``thunderpush.transports.slow``; tested in
  ``tests/test_slow_clients.py``);
* the send queue was one string appended to (``send_queue += msg``), each
  append a copy of all that was queued: quadratic in what an unpolled
  session is sent.  It is a list joined at flush (``Session``), tested in
  ``tests/test_unpolled_sessions.py``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sockjs.tornado import SockJSConnection
from sockjs.tornado import router as _router
from sockjs.tornado import session as _session
from sockjs.tornado import transports as _transports
from sockjs.tornado.session import CLOSING
from sockjs.tornado.util import bytes_to_str
from tornado.ioloop import IOLoop

from thunderpush.config import Config
from thunderpush.core.throttle import Throttle
from thunderpush.transports.slow import close_too_slow, log_too_slow
from thunderpush.transports.sockjs.adapter import (
    restart_router_timers,
)
from thunderpush.transports.sockjs.origins import AllowedOrigins
from thunderpush.transports.sockjs.transports import CORRECTED, InFlightMixin
from thunderpush.transports.websocket.service import WebSocketService, WebSocketSettings
from thunderpush.transports.websocket.socket import WebSocket

__all__ = ["SockJSConnection", "SockJSRouter"]


DEFAULT_SETTINGS = {
    "sockjs_url": Config.sockjs_url,
    # Largest message accepted: xhr_send and jsonp_send bodies, websocket messages.
    "max_message_size": Config.max_client_message_size,
    # How long a websocket waits for the client's end of a close handshake.
    "websocket_close_timeout": 5.0,
    # Origins allowed to open sessions (thunderpush.transports.sockjs.origins); empty: any.
    "allowed_origins": (),
    # Unsent data a session may hold before it is closed as too slow.
    "max_unsent_bytes": Config.max_unsent_bytes,
}


class _TrackedMixin:
    """Sessions tell the router when they end, so it can reach the open ones
    (and count the closes the server decided, by code, for the metrics)."""

    def close(self, code: int = 3000, message: str = "Go away!") -> None:
        server = self.server
        if self in server.live_sessions:
            server.live_sessions.discard(self)
            server.closed_by_code[code] += 1
        super().close(code, message)


class Session(_TrackedMixin, _session.Session):
    """sockjs-tornado's session with a send queue that costs O(bytes).

    sockjs-tornado keeps the queue as one string and appends each message
    to it (``send_queue += msg``): every append copies all that is queued,
    so a session that is never polled costs time quadratic in what it is
    sent.  Here the queue is a list of the messages' JSON texts, joined once
    when it is flushed, and ``queued`` counts its characters as they come.
    ``send_queue`` keeps its name: sockjs-tornado's transports only ask
    whether it is empty.
    """

    def __init__(
        self, conn: type, server: SockJSRouter, session_id: str, expiry: float | None = None
    ):
        super().__init__(conn, server, session_id, expiry)
        # Empty: the shared empty tuple, not a list of its own per idle session.
        self.send_queue: list[str] | tuple[()] = ()
        # Characters in ``send_queue``, a comma counted after each message.
        self.queued = 0
        # sockjs-tornado's setting: write each message at once, or once per loop turn.
        self.flush_at_once = server.settings["immediate_flush"]
        self.flush_due = False

    def send_element(self, element: str) -> None:
        """Sends one message element that is JSON already (no re-encoding)."""
        handler = self.handler
        if isinstance(handler, WebSocket) and not self.send_queue:
            handler.send_element(element)
        else:
            self.send_jsonified(element, False)

    def send_jsonified(self, msg: str, stats: bool = True) -> None:
        """Sends ``msg`` (JSON) now if a response is waiting, else queues it (O(len(msg)))."""
        msg = bytes_to_str(msg)
        handler = self.handler
        if self.flush_at_once and not self.send_queue and handler and handler.active:
            handler.send_pack(f"a[{msg}]")
        else:
            if self.send_queue:
                self.send_queue.append(msg)  # type: ignore[union-attr]
            else:
                self.send_queue = [msg]
            self.queued += len(msg) + 1
            if self.flush_at_once:
                self.flush()
            elif not self.flush_due:
                self.server.io_loop.add_callback(self.flush)
                self.flush_due = True
        if stats:
            self.stats.on_pack_sent(1)
        unsent = self.queued
        if isinstance(handler, InFlightMixin):
            unsent += handler.unsent_bytes
        limit = self.server.service.settings.max_unsent_bytes
        if unsent > limit and self.state != CLOSING:
            self._let_go(handler, limit)

    def flush(self) -> None:
        """Writes the whole queue as one ``a[...]`` frame if a response is waiting."""
        self.flush_due = False
        handler, queue = self.handler, self.send_queue
        if handler is None or not handler.active or not queue:
            return
        self._drop_queue()
        handler.send_pack(f"a[{','.join(queue)}]")

    def _drop_queue(self) -> None:
        self.send_queue = ()
        self.queued = 0

    def _let_go(self, handler: Any, limit: int) -> None:
        """Too slow: free the queue and the response now, close on the next turn.

        Not at once: this may run while the hub sends to a channel, and
        closing removes the connection from the channels.  Until then the
        session is CLOSING, which queues nothing more.
        """
        log_too_slow(self, self.conn_info.ip if self.conn_info else "", limit)
        self._drop_queue()
        self.state = CLOSING
        self.server.io_loop.add_callback(close_too_slow, self)
        if isinstance(handler, InFlightMixin):
            handler.abort()


class RawSession(_TrackedMixin, _transports.rawwebsocket.RawSession):
    def __init__(self, conn: type, server: SockJSRouter) -> None:
        super().__init__(conn, server)
        server.live_sessions.add(self)

    def send_element(self, element: str) -> None:
        self.handler.send_element(element)


class SockJSRouter(_router.SockJSRouter):
    """``sockjs.tornado.SockJSRouter`` with the corrected transports.

    ``service`` is what its websockets share with every other websocket of
    the server (``thunderpush.transports.websocket.service``): made from the
    settings given here, whose ``max_message_size``, ``max_unsent_bytes``,
    ``websocket_close_timeout`` and ``heartbeat_delay`` (for websockets) are
    read once, into ``service.settings``, where they may be changed later.
    ``live_sessions`` (the service's) holds every open session on every
    transport, and ``close_all`` closes them, e.g. on shutdown.
    """

    def __init__(
        self,
        connection: type[SockJSConnection],
        prefix: str = "",
        user_settings: dict[str, Any] | None = None,
        io_loop: IOLoop | None = None,
        session_kls: type | None = None,
    ) -> None:
        # Sessions closed, by close code (a client that leaves closes with 3000).
        self.closed_by_code: Counter[int] = Counter()
        self.prefix = prefix
        merged = {**DEFAULT_SETTINGS, **(user_settings or {})}
        super().__init__(connection, prefix, merged, io_loop, session_kls or Session)
        given = self.settings  # sockjs-tornado's defaults, ours, and the user's
        settings = WebSocketSettings(
            max_message_size=given["max_message_size"],
            max_unsent_bytes=given["max_unsent_bytes"],
            websocket_close_timeout=given["websocket_close_timeout"],
            heartbeat_delay=given["heartbeat_delay"],
        )
        self.service = WebSocketService(settings, _RouterOrigins(self), self.stats)
        self.live_sessions = self.service.live_sessions
        # A bad entry is refused now, not at the first request.
        # Refused origins are logged once per origin per minute, whatever the settings.
        self.refused_origins = Throttle()
        key = self._origins_key()
        self._origins = (key, AllowedOrigins(*key, self.refused_origins))
        self._bound_loop: IOLoop | None = None
        self._corrected_urls = [
            (pattern, CORRECTED.get(handler, handler), kwargs)
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
            self._origins = (key, AllowedOrigins(*key, self.refused_origins))
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
        restart_router_timers(self)

    def create_session(self, session_id: str, register: bool = True) -> Any:
        self._bind_to_running_loop()
        session = super().create_session(session_id, register)
        self.live_sessions.add(session)
        return session

    def create_raw_session(self) -> RawSession:
        """A session for the raw websocket (no SockJS framing, no session id)."""
        self._bind_to_running_loop()  # as ``create_session``, which raw sessions bypass
        return RawSession(self.get_connection_class(), self)

    def close_all(self, code: int, reason: str) -> None:
        """Close every open session with ``code`` and ``reason`` (Pusher's too)."""
        self.service.close_all(code, reason)


class _RouterOrigins:
    """The router's ``origins`` as its settings say when a handshake comes
    (sockjs-tornado lets settings change at run time), for its service."""

    __slots__ = ("_router",)

    def __init__(self, router: SockJSRouter) -> None:
        self._router = router

    def allows(self, origin: str | None, host: str | None) -> bool:
        return self._router.origins.allows(origin, host)
