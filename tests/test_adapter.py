"""What ``thunderpush.transports.adapter`` relies on in Tornado and sockjs-tornado.

One test each: a release that renames, stops calling or changes any of these
fails here, not in production.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from sockjs.tornado import SockJSConnection, SockJSRouter
from sockjs.tornado.transports.pollingbase import PollingTransportBase
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders, HTTPServerRequest, ResponseStartLine
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.web import Application, RequestHandler

from thunderpush.transports.adapter import (
    OwnAccessLog,
    PrefilledIOStream,
    attach_session,
    keep_request_open,
    request_summary,
    restart_router_timers,
    serve,
)

pytestmark = pytest.mark.timeout(30)


async def test_every_read_of_an_iostream_goes_through_read_from_fd():
    ours, theirs = socket.socketpair()
    # A large prefix, in small chunks: the stream calls read_from_fd again and again.
    stream = PrefilledIOStream(ours, b"x" * 10_000 + b"|", read_chunk_size=1024)
    theirs.sendall(b"and then the socket")
    theirs.shutdown(socket.SHUT_WR)
    assert await asyncio.wait_for(stream.read_until_close(), 5) == (
        b"x" * 10_000 + b"|and then the socket"
    )
    stream.close()
    theirs.close()


def test_http_server_keeps_its_stream_settings_where_the_adapter_reads_them():
    server = HTTPServer(lambda request: None, max_buffer_size=12345, chunk_size=678)
    assert (server.max_buffer_size, server.read_chunk_size) == (12345, 678)


async def test_a_server_given_a_socket_and_its_first_bytes_serves_them():
    def answer(request: HTTPServerRequest) -> None:
        start_line = ResponseStartLine("HTTP/1.1", 200, "OK")
        headers = HTTPHeaders({"Content-Length": "2"})
        request.connection.write_headers(start_line, headers, request.method.encode()[:2])
        request.connection.finish()

    server = HTTPServer(answer)
    ours, theirs = socket.socketpair()
    # The whole request is already read: nothing more comes from the socket.
    serve(server, ours, ("127.0.0.1", 1), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    response = await asyncio.wait_for(loop.sock_recv(theirs, 65536), 5)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"\r\n\r\nGE")
    theirs.close()
    await server.close_all_connections()


async def answer_to(application: Application, request: bytes) -> bytes:
    """The whole response of ``application`` to ``request`` on a new connection."""
    server = HTTPServer(application)
    ours, theirs = socket.socketpair()
    serve(server, ours, ("127.0.0.1", 1), request)
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    response = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(theirs, 65536), 5):
        response += chunk
    theirs.close()
    await server.close_all_connections()
    return response


GET = b"GET /x?y=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def test_a_handler_that_logs_its_request_replaces_tornados_line(caplog):
    logged = []

    class Quiet(OwnAccessLog, RequestHandler):
        def get(self) -> None:
            self.finish("ok")

        def log_access(self) -> bool:
            request = self.request
            logged.append((request_summary(self), request.method, request.uri, request.remote_ip))
            return True

    class Loud(OwnAccessLog, RequestHandler):
        def get(self) -> None:
            self.finish("ok")

    with caplog.at_level(logging.INFO, logger="tornado.access"):
        await answer_to(Application([("/x", Quiet)]), GET)
        [(summary, method, uri, client)] = logged
        assert summary == f"{method} {uri} ({client})" and uri == "/x?y=1"
        assert not caplog.records
        await answer_to(Application([("/x", Loud)]), GET)
    [record] = caplog.records
    assert record.getMessage().startswith(f"200 {summary} ")


async def test_a_request_kept_open_outlives_its_get():
    class Later(RequestHandler):
        def get(self) -> None:
            keep_request_open(self)
            IOLoop.current().call_later(0.01, self.finish, "later")

    response = await answer_to(Application([("/x", Later)]), GET)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"\r\n\r\nlater")


class FakeSession:
    """What ``_attach_session`` uses of a session: ``set_handler`` and ``verify_state``."""

    def __init__(self, takes_handler: bool) -> None:
        self.takes_handler = takes_handler
        self.handlers: list[object] = []
        self.verified = False

    def set_handler(self, handler: object, start_heartbeat: bool = True) -> bool:
        self.handlers.append(handler)
        return self.takes_handler

    def verify_state(self) -> None:
        self.verified = True


class FakeRouter:
    """What ``_attach_session`` uses of a router: ``get_session`` and ``create_session``."""

    def __init__(self, session: FakeSession) -> None:
        self.session = session
        self.created: list[str] = []

    def get_session(self, session_id: str) -> None:
        return None

    def create_session(self, session_id: str) -> FakeSession:
        self.created.append(session_id)
        return self.session


@pytest.mark.parametrize("takes_handler", [True, False])
def test_a_polling_handler_attaches_to_a_session_by_id(takes_handler):
    session = FakeSession(takes_handler)
    router = FakeRouter(session)
    # No request: only what _attach_session reads is set.
    handler = PollingTransportBase.__new__(PollingTransportBase)
    handler.server = router
    handler.session = None
    assert attach_session(handler, "abc") is takes_handler
    assert router.created == ["abc"] and session.handlers == [handler]
    assert (handler.session is session, session.verified) == (takes_handler, takes_handler)


async def test_a_routers_timers_restart_on_the_current_loop():
    router = SockJSRouter(SockJSConnection, "/x")
    timers = (router._sessions_cleanup, router.stats._callback)
    try:
        assert all(isinstance(timer, PeriodicCallback) for timer in timers)
        for timer in timers:
            timer.stop()
        restart_router_timers(router)
        assert all(timer.is_running() for timer in timers)
        assert all(timer.io_loop is IOLoop.current() for timer in timers)
    finally:
        for timer in timers:
            timer.stop()
