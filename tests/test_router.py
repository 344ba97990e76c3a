"""The corrections to sockjs-tornado 1.0.7 in ``thunderpush.router``.

Each test mounts the corrected router on its own, with a tiny echo-style
connection class, as any Tornado application would, and fails against the
uncorrected ``sockjs.tornado.SockJSRouter``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.websocket import websocket_connect

from thunderpush.config import Config
from thunderpush.transports.sockjs.router import SockJSConnection, SockJSRouter

from .support.processes import free_port
from .support.wire import RawClient, answer_of


class Echo(SockJSConnection):
    """Echoes every message; remembers its instances so tests can reach them."""

    opened: list[Echo] = []
    closed: list[Echo] = []

    def on_open(self, info):
        Echo.opened.append(self)

    def on_message(self, message):
        self.send(message)

    def on_close(self):
        Echo.closed.append(self)


class CloseOnOpen(SockJSConnection):
    def on_open(self, info):
        self.close()

    def on_message(self, message):
        pass


@pytest.fixture
async def echo():
    """An echo service on the corrected router; yields (base URL, router)."""
    Echo.opened, Echo.closed = [], []
    router = SockJSRouter(Echo, "/echo", {"heartbeat_delay": 25})
    server = tornado.web.Application(router.urls).listen(free_port(), "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    yield f"http://127.0.0.1:{port}/echo", router
    router.close_all(3000, "Test over.")
    server.stop()
    await asyncio.wait_for(server.close_all_connections(), 5)


async def open_websockets(base: str, count: int):
    sockets = []
    for n in range(count):
        ws = await websocket_connect(base.replace("http", "ws") + f"/0/s{n}/websocket")
        assert await ws.read_message() == "o"
        sockets.append(ws)
    return sockets


async def test_echo_service_works_on_the_corrected_router(echo):
    base, _ = echo
    (ws,) = await open_websockets(base, 1)
    await ws.write_message('["hello"]')
    assert await asyncio.wait_for(ws.read_message(), 5) == 'a["hello"]'


async def test_broadcast_reaches_everyone_after_a_closing_receiver(echo, no_tracebacks):
    base, router = echo
    sockets = await open_websockets(base, 4)
    closing = Echo.opened[1]
    # Server-side close begun, not finished: the session still looks open.
    closing.session.handler.close()
    router.broadcast(Echo.opened, {"n": 1})
    for n, ws in enumerate(sockets):
        if n != 1:
            assert await asyncio.wait_for(ws.read_message(), 5) == 'a[{"n":1}]'


async def test_heartbeat_to_a_closing_websocket_logs_nothing(echo, no_tracebacks):
    base, _ = echo
    await open_websockets(base, 1)
    session = Echo.opened[0].session
    session.handler.close()
    session._heartbeat()  # what the heartbeat timer runs
    await asyncio.sleep(0)  # let the dropped write's future settle
    assert not [r for r in no_tracebacks.records if r.levelno >= 30]


@pytest.mark.parametrize("transport", ["xhr", "jsonp?c=cb"])
async def test_close_in_on_open_waits_for_the_next_poll(transport):
    router = SockJSRouter(CloseOnOpen, "/c")
    server = tornado.web.Application(router.urls).listen(port := free_port(), "127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port}/c/0/abc/{transport}"
        method = "POST" if transport == "xhr" else "GET"
        fetch = AsyncHTTPClient().fetch
        first = await asyncio.wait_for(
            fetch(url, method=method, body=b"" if method == "POST" else None), 5
        )
        second = await asyncio.wait_for(
            fetch(url, method=method, body=b"" if method == "POST" else None), 5
        )
    finally:
        server.stop()
    if transport == "xhr":
        assert (first.body, second.body) == (b"o\n", b'c[3000,"Go away!"]\n')
    else:
        assert first.body == b'/**/cb("o");\r\n'
        assert second.body == b'/**/cb("c[3000,\\"Go away!\\"]");\r\n'
    assert int(first.headers["Content-Length"]) == len(first.body)


@pytest.mark.parametrize("transport", ["jsonp", "htmlfile"])
@pytest.mark.parametrize(
    "callback", ["alert(1)", "a%3Cb", "x;y", "a%20b", "%E2%98%83", "cb%0A"], ids=str
)
async def test_unsafe_callbacks_are_refused(echo, transport, callback):
    base, _ = echo
    response = await AsyncHTTPClient().fetch(
        f"{base}/0/cb/{transport}?c={callback}", raise_error=False
    )
    assert response.code == 500
    assert b'invalid "callback" parameter' in response.body
    assert not Echo.opened, "no session may start"


@pytest.mark.parametrize("transport", ["jsonp", "htmlfile"])
async def test_missing_callback_is_refused(echo, transport):
    base, _ = echo
    response = await AsyncHTTPClient().fetch(f"{base}/0/cb/{transport}", raise_error=False)
    assert response.code == 500
    assert b'"callback" parameter required' in response.body


async def test_safe_callbacks_are_accepted_and_jsonp_starts_with_a_comment(echo):
    base, _ = echo
    response = await AsyncHTTPClient().fetch(f"{base}/0/cb/jsonp?c=jQuery_1.2-3")
    assert response.body == b'/**/jQuery_1.2-3("o");\r\n'


async def test_htmlfile_uses_the_callback_as_given(echo):
    base, router = echo
    chunks = []

    def collect(chunk: bytes) -> None:
        chunks.append(chunk)
        if b'p("o")' in b"".join(chunks):
            router.close_all(3000, "done")

    await AsyncHTTPClient().fetch(
        f"{base}/0/hf/htmlfile?c=my_callback.x-1", streaming_callback=collect, request_timeout=10
    )
    assert b"var c = parent.my_callback.x-1;" in b"".join(chunks)


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/0/cc/xhr"),
        ("POST", "/0/cc/xhr_send"),
        ("GET", "/0/cc2/jsonp?c=cb"),
        ("GET", "/info"),
    ],
)
async def test_cache_control_forbids_transforming(echo, method, path):
    base, _ = echo
    response = await AsyncHTTPClient().fetch(
        base + path, method=method, body=b'["x"]' if method == "POST" else None, raise_error=False
    )
    assert "no-transform" in response.headers["Cache-Control"], response.headers


@pytest.mark.parametrize("transport", ["xhr_streaming", "eventsource", "htmlfile?c=cb"])
async def test_streams_forbid_transforming(echo, transport):
    base, router = echo
    headers = {}

    def header(line: str) -> None:
        if line.lower().startswith("cache-control:"):
            headers["cache-control"] = line
            router.close_all(3000, "done")

    await AsyncHTTPClient().fetch(
        f"{base}/0/st/{transport}",
        method="POST" if transport == "xhr_streaming" else "GET",
        body=b"" if transport == "xhr_streaming" else None,
        header_callback=header,
        streaming_callback=lambda chunk: None,
        request_timeout=10,
    )
    assert "no-transform" in headers["cache-control"]


def test_router_built_outside_the_loop_still_expires_sessions():
    """Built before asyncio.run, as scripts do: expiry must still run in the loop."""
    closed = []

    class Remember(SockJSConnection):
        def on_message(self, message):
            pass

        def on_close(self):
            closed.append(self)

    settings_ = {"disconnect_delay": 0.2, "session_check_interval": 0.05}
    router = SockJSRouter(Remember, "/e", settings_)

    async def main():
        server = tornado.web.Application(router.urls).listen(port := free_port(), "127.0.0.1")
        try:
            url = f"http://127.0.0.1:{port}/e/0/gone/xhr"
            assert (await AsyncHTTPClient().fetch(url, method="POST", body=b"")).body == b"o\n"
            # Nobody polls again: the session must expire on its own.
            for _ in range(500):
                if closed:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("session never expired")
        finally:
            server.stop()

    asyncio.run(main())


def test_import_survives_deprecation_warnings_as_errors():
    code = (
        "import warnings, thunderpush.transports.sockjs.router, thunderpush.server.cli\n"
        "try:\n"
        "    warnings.warn('something else', DeprecationWarning)\n"
        "except DeprecationWarning:\n"
        "    print('narrow')\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "narrow", "only the one sockjs warning may be filtered"


async def test_iframe_page_loads_the_tested_sockjs_client(echo):
    base, _ = echo
    response = await AsyncHTTPClient().fetch(base + "/iframe.html")
    assert f'<script src="{Config.sockjs_url}"></script>'.encode() in response.body
    assert "sockjs-client@1.6.1" in Config.sockjs_url
    package = json.loads(open("client/package.json").read())
    assert package["devDependencies"]["sockjs-client"] == "1.6.1"


async def test_iframe_page_loads_a_configured_sockjs_client():
    router = SockJSRouter(Echo, "/x", {"sockjs_url": "/static/sockjs.js"})
    server = tornado.web.Application(router.urls).listen(port := free_port(), "127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port}/x/iframe.html"
        response = await AsyncHTTPClient().fetch(url)
    finally:
        server.stop()
    assert b'<script src="/static/sockjs.js"></script>' in response.body


async def test_raw_websocket_close_carries_the_session_code(echo):
    base, _ = echo
    ws = await websocket_connect(base.replace("http", "ws") + "/websocket")
    await ws.write_message("hi")
    assert await asyncio.wait_for(ws.read_message(), 5) == "hi"
    Echo.opened[0].session.close(9002, "Bye.")
    assert await asyncio.wait_for(ws.read_message(), 5) is None
    assert (ws.close_code, ws.close_reason) == (4002, "Bye.")


async def test_close_all_reaches_every_transport(echo):
    base, router = echo
    (ws,) = await open_websockets(base, 1)
    raw = await websocket_connect(base.replace("http", "ws") + "/websocket")
    await raw.write_message("hi")
    await asyncio.wait_for(raw.read_message(), 5)
    poll = await AsyncHTTPClient().fetch(f"{base}/0/p/xhr", method="POST", body=b"")
    assert poll.body == b"o\n"
    router.close_all(9010, "Server shutting down.")
    assert await asyncio.wait_for(ws.read_message(), 5) == 'c[9010,"Server shutting down."]'
    assert await asyncio.wait_for(raw.read_message(), 5) is None
    assert raw.close_code == 4010
    again = await AsyncHTTPClient().fetch(f"{base}/0/p/xhr", method="POST", body=b"")
    assert again.body == b'c[9010,"Server shutting down."]\n'
    assert not router.live_sessions


async def test_frames_right_behind_the_handshake_reach_the_session(echo):
    """Tornado reads them with the request; the hand-over must pass them on."""
    base, _ = echo
    port = int(base.split(":")[2].split("/")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(RawClient.handshake("/echo/0/s1/websocket") + RawClient.frame(0x1, b'["hi"]'))
    ws = RawClient(reader, writer)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert await ws.read() == (0x1, b"o")
    assert await ws.read() == (0x1, b'a["hi"]')
    writer.close()


async def test_allowed_origins_are_enforced_when_mounted_in_tornado():
    router = SockJSRouter(Echo, "/o", {"websocket_allow_origin": ["good.example"]})
    server = tornado.web.Application(router.urls).listen(port := free_port(), "127.0.0.1")
    try:
        good = await RawClient.open(port, "/o/websocket", "Origin: https://good.example\r\n")
        refused = await answer_of(
            port, RawClient.handshake("/o/websocket", "Origin: https://evil.example\r\n")
        )
        assert refused.startswith(b"HTTP/1.1 403 ")
        assert refused.endswith(b"Cross origin websockets not allowed")
        good.writer.close()
    finally:
        server.stop()
        router.close_all(3000, "Test over.")


@pytest.mark.parametrize(
    "handshake, answer",
    [
        (b"POST /echo/websocket HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /echo/websocket HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /echo/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", 400),
    ],
    ids=["POST", "no Upgrade", "no Connection: Upgrade"],
)
async def test_requests_that_are_no_handshake_get_sockjs_tornados_answers(echo, handshake, answer):
    base, _ = echo
    port = int(base.split(":")[2].split("/")[0])
    reply = await answer_of(port, handshake)
    assert reply.startswith(f"HTTP/1.1 {answer} ".encode())
    texts = {
        405: b"WebSocket only supports GET requests.",
        400: b'Can "Upgrade" only to "WebSocket".',
    }
    if b"Upgrade: websocket" in handshake:
        texts[400] = b'"Connection" must be "Upgrade".'
    assert reply.endswith(texts[answer])


async def test_a_handshake_over_http_1_0_is_refused(echo):
    base, _ = echo
    port = int(base.split(":")[2].split("/")[0])
    handshake = RawClient.handshake("/echo/websocket").replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    reply = await answer_of(port, handshake)
    assert reply.startswith(b"HTTP/1.1 505 ")  # RFC 6455 section 4.1: HTTP/1.1 or later


@pytest.mark.parametrize(
    "immediate_flush, polls", [(True, [b'a["x"]\n', b'a["y"]\n']), (False, [b'a["x","y"]\n'])]
)
async def test_the_session_queue_flushes_as_sockjs_tornado_says(echo, immediate_flush, polls):
    """``immediate_flush`` on: a waiting poll takes the first message at once, the
    next one queues; off: both wait for the end of the loop turn, one frame."""
    base, router = echo
    router.settings["immediate_flush"] = immediate_flush
    client = AsyncHTTPClient()
    assert (await client.fetch(f"{base}/0/q/xhr", method="POST", body=b"")).body == b"o\n"
    waiting = asyncio.ensure_future(client.fetch(f"{base}/0/q/xhr", method="POST", body=b""))
    (session,) = router.live_sessions
    for _ in range(500):  # until the poll waits
        if session.handler is not None:
            break
        await asyncio.sleep(0.01)
    await client.fetch(f"{base}/0/q/xhr_send", method="POST", body=b'["x","y"]')
    received = [(await waiting).body]
    if len(polls) > 1:
        received.append((await client.fetch(f"{base}/0/q/xhr", method="POST", body=b"")).body)
    assert received == polls
