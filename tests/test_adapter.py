"""What ``thunderpush.transports.sockjs.adapter`` relies on in Tornado and sockjs-tornado.

One test each: a release that renames, stops calling or changes any of these
fails here, not in production.  The last test keeps every other module of the
package off both libraries' private names.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import importlib
import inspect
import logging
import pkgutil
import socket
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import sockjs.tornado
import tornado
from sockjs.tornado import SockJSConnection, SockJSRouter
from sockjs.tornado.transports.pollingbase import PollingTransportBase
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders, HTTPServerRequest, ResponseStartLine
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.web import Application, RequestHandler

import thunderpush
from thunderpush.transports.sockjs import adapter
from thunderpush.transports.sockjs.adapter import (
    OwnAccessLog,
    PrefilledIOStream,
    abort_response,
    attach_session,
    close_at_end,
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


@pytest.mark.parametrize("how", ["peer", "close"])
async def test_a_stream_tells_once_that_it_closed_however_it_closes(how):
    ours, theirs = socket.socketpair()
    closed = []
    stream = PrefilledIOStream(ours, b"", lambda: closed.append(True))
    if how == "peer":
        reading = asyncio.ensure_future(stream.read_until_close())
        theirs.close()  # close_fd is called when the stream sees the end
        await asyncio.wait_for(reading, 5)
    else:
        stream.close()
        theirs.close()
    stream.close()
    assert closed == [True] and stream.closed()


async def test_aborting_a_response_drops_what_it_had_to_write():
    sent = asyncio.get_running_loop().create_future()

    class Big(RequestHandler):
        async def get(self) -> None:
            self.write(b"x" * (8 << 20))  # more than the kernel's buffers take
            self.flush()
            await asyncio.sleep(0.05)
            abort_response(self)
            sent.set_result(self.request.connection.stream)

    server = HTTPServer(Application([("/x", Big)]))
    ours, theirs = socket.socketpair()
    serve(server, ours, ("127.0.0.1", 1), b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    stream = await asyncio.wait_for(sent, 5)
    assert stream is None or stream.closed()
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    received = 0
    while chunk := await asyncio.wait_for(loop.sock_recv(theirs, 1 << 20), 5):
        received += len(chunk)
    assert received < 8 << 20
    theirs.close()
    await server.close_all_connections()


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


class _Slow(RequestHandler):
    """Answers a few loop turns after the request, or notes that its client left."""

    left: list[bool]

    async def get(self) -> None:
        if self.get_argument("close_at_end", None):
            close_at_end(self)
        keep_request_open(self)
        for _ in range(5):
            await asyncio.sleep(0.01)
        if not self.left:
            self.finish(b"late")

    def on_connection_close(self) -> None:
        self.left.append(True)


@pytest.mark.asyncio(loop_factories=["asyncio", "uvloop"])
@pytest.mark.parametrize("at_end", ["answer", "close"])
async def test_a_request_followed_by_the_clients_end_is_answered_unless_close_at_end(at_end):
    _Slow.left = []
    server = HTTPServer(Application([("/x", _Slow)]))
    ours, theirs = socket.socketpair()
    query = "?close_at_end=1" if at_end == "close" else ""
    theirs.sendall(f"GET /x{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    theirs.shutdown(socket.SHUT_WR)
    serve(server, ours, ("127.0.0.1", 1), b"")
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    response = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(theirs, 65536), 5):
        response += chunk
    if at_end == "answer":
        assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"late")
        assert _Slow.left == []
    else:
        assert response == b"" and _Slow.left == [True]
        await asyncio.sleep(0.1)  # the handler's turns end before the loop does
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


# -- no private name of either library outside the adapter ---------------------

LIBRARIES = {"tornado": tornado, "sockjs": sockjs.tornado}
ADAPTER = adapter.__name__


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def on_self(node: ast.Attribute) -> bool:
    """``self._x``, ``cls._x`` or ``super()._x``: a name of the object's own class."""
    value = node.value
    if isinstance(value, ast.Name):
        return value.id in ("self", "cls")
    return isinstance(value, ast.Call) and getattr(value.func, "id", None) == "super"


def private_names(tree: ast.AST) -> Iterator[tuple[ast.AST, str, bool]]:
    """Each private name ``tree`` defines or uses, and whether it is on ``self``.

    Definitions (functions, classes, assignments) count as on ``self``: in a
    class body they are the class's own; ``getattr``-like calls with a
    constant name count as on another object.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            yield node, node.attr, on_self(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if is_private(node.name):
                yield node, node.name, True
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            if is_private(node.id):
                yield node, node.id, True
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
            "getattr",
            "setattr",
            "hasattr",
            "delattr",
        ):
            name = node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and is_private(str(name.value)):
                yield node, str(name.value), False


@functools.cache
def names_of_library_class(cls: type) -> frozenset[str]:
    """A library class's private names: its attributes and every ``self._x`` in its source."""
    names = {name for name in vars(cls) if is_private(name)}
    # getsource parses the whole module; the libraries' old regular
    # expressions warn of invalid escapes when parsed.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError):  # no source: its attributes must do
            return frozenset(names)
    names.update(name for _, name, own in private_names(tree) if own)
    return frozenset(names)


@functools.cache
def names_of_either_library() -> frozenset[str]:
    """Every private name defined or used on ``self`` in either library's source."""
    names: set[str] = set()
    for package in LIBRARIES.values():
        for path in Path(package.__file__).parent.rglob("*.py"):
            with warnings.catch_warnings():  # their old regular expressions
                warnings.simplefilter("ignore")
                tree = ast.parse(path.read_text(encoding="utf-8"))
            names.update(name for _, name, own in private_names(tree) if own)
    return frozenset(names)


def is_library(cls: type) -> bool:
    return cls.__module__.partition(".")[0] in LIBRARIES


def is_ours(cls: type) -> bool:
    return cls.__module__.startswith("thunderpush.") and cls.__module__ != ADAPTER


def our_modules() -> Iterator[ModuleType]:
    for info in pkgutil.walk_packages(thunderpush.__path__, "thunderpush."):
        if info.name != ADAPTER and not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


@pytest.mark.slow
def test_no_module_but_the_adapter_uses_a_private_name_of_tornado_or_sockjs():
    """Nothing outside the adapter overrides, calls or reads a library's private name.

    Our own ``_x`` names are fine, so each use is judged by whose name it can be:

    * on ``self`` (or ``cls``, ``super()``) in a class of ours that derives from
      a Tornado or sockjs-tornado class, or in a mixin of ours mixed into one,
      a name must not be one of the library classes' private names in that
      class's MRO: their attributes and every ``self._x`` in their source, so
      instance attributes set in ``__init__`` count too;
    * on any other object the type is unknown, so the name must not be a
      private name defined or used on ``self`` anywhere in either library's
      source (``getattr`` with a constant name counts).

    The second rule would flag our own classes' names on ``self`` (``_state``
    is common), hence the first.  Both read the installed libraries, so a
    release that starts using one of our names is caught as well.
    """
    found = []
    for module in our_modules():
        source = Path(module.__file__).read_text(encoding="utf-8")
        for node, name, own in private_names(ast.parse(source)):
            if not own and name in names_of_either_library():
                found.append(f"{module.__name__}:{node.lineno}: {ast.unparse(node)}")
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and cls.__module__ == module.__name__):
                continue
            library = set()
            for base in cls.__mro__:
                if is_library(base):
                    library |= names_of_library_class(base)
            for base in filter(is_ours, cls.__mro__):
                tree = ast.parse(textwrap.dedent(inspect.getsource(base)))
                for _, name, own in private_names(tree):
                    if own and name in library:
                        found.append(f"{module.__name__}.{cls.__name__} ({base.__name__}): {name}")
    assert not found, "private names of Tornado or sockjs-tornado outside the adapter:\n" + (
        "\n".join(sorted(set(found)))
    )
