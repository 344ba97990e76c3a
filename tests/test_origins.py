"""Allowed origins: one rule on the websocket handshake, the SockJS transports' CORS and /info.

With ``allowed_origins`` set, a page of any other origin gets 403 everywhere
and is never named in ``Access-Control-Allow-Origin``; a request without an
``Origin`` (not a browser page) is served.  An ``Origin`` naming the ``Host``
is no exception (DNS rebinding lets any page send both): the server's own
origin is served when listed, which the SockJS iframe transports need.
Without it, every origin is served and reflected, as before.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from thunderpush.transports.sockjs.origins import AllowedOrigins

from .support.clients import XhrPollingClient
from .support.clock import ManualClock
from .support.processes import refused_start
from .support.wire import RawClient, exchange, request

ALLOWED = ("https://example.com", "https://*.example.org", "http://localhost:8000")
restricted = pytest.mark.config(allowed_origins=ALLOWED)
EVIL = "https://evil.example"
WEBSOCKETS = ["/connect/websocket", "/connect/0/s1/websocket"]


@pytest.mark.parametrize(
    "origin, allowed",
    [
        ("https://example.com", True),
        ("https://EXAMPLE.com:443", True),  # the default port, written out
        ("http://example.com", False),  # another scheme
        ("https://example.com:8443", False),  # another port
        ("https://www.example.com", False),  # no wildcard for example.com
        ("https://app.example.org", True),
        ("https://a.b.example.org", True),
        ("https://example.org", False),  # a wildcard is for subdomains only
        ("https://evilexample.org", False),
        ("https://example.org.evil.example", False),
        ("http://localhost:8000", True),
        ("http://localhost", False),
        ("null", False),  # sandboxed pages, file:// pages
        ("https://*.example.org", False),
        ("https://example.com/path", False),
        ("", False),
        (None, True),  # no Origin: not a browser page
    ],
)
def test_the_rule(origin, allowed):
    assert AllowedOrigins(ALLOWED).allows(origin, "push.example.net") is allowed
    assert AllowedOrigins().allows(origin, "push.example.net")  # none configured: any


def test_an_origin_naming_the_host_is_allowed_only_when_listed():
    """DNS rebinding: a page of any site can send its own name as both ``Origin`` and ``Host``."""
    assert not AllowedOrigins(ALLOWED).allows("https://push.example.net", "push.example.net")
    assert not AllowedOrigins(ALLOWED).allows("http://127.0.0.1:8080", "127.0.0.1:8080")
    listed = AllowedOrigins((*ALLOWED, "http://127.0.0.1:8080"))
    assert listed.allows("http://127.0.0.1:8080", "127.0.0.1:8080")


def test_sockjs_tornado_hosts_alone_keep_tornados_same_origin_rule():
    """``websocket_allow_origin`` without ``allowed_origins``: as sockjs-tornado allowed."""
    origins = AllowedOrigins((), ("good.example:8000",))
    assert origins.allows("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert origins.allows("https://good.example:8000", "127.0.0.1:8080")
    assert not origins.allows("http://127.0.0.1:8080", "127.0.0.1:8081")


@pytest.mark.parametrize(
    "entry", ["example.com", "https://example.com/app", "*.example.com", "https://a.*.com", "*"]
)
def test_an_entry_that_is_no_origin_is_refused(entry):
    with pytest.raises(ValueError, match="not an origin"):
        AllowedOrigins(("https://example.com", entry))


@pytest.mark.slow
def test_a_bad_allowed_origin_stops_the_server_with_one_clear_line(tmp_path):
    status, output = refused_start(tmp_path, "--allowed-origins", "https://ok.example,example.com")
    assert status == 2
    assert "Traceback" not in output
    assert output.startswith("Thunderpush cannot start: --allowed-origins: not an origin: "), output


# -- websocket handshakes -------------------------------------------------------


@restricted
@pytest.mark.parametrize("path", WEBSOCKETS)
@pytest.mark.parametrize("origin", ["https://example.com", "https://app.example.org", None])
async def test_allowed_pages_open_websockets(server, path, origin):
    await RawClient.open(server.port, path, f"Origin: {origin}\r\n" if origin else "")  # 101
    await server.settled(lambda: len(server.router.live_sessions) == 1)


@restricted
@pytest.mark.parametrize("path", WEBSOCKETS)
@pytest.mark.parametrize("served_by", ["front door", "Tornado"])
async def test_other_pages_get_403_on_the_handshake(server, path, served_by):
    # A body before the frames: the front door leaves the handshake to Tornado.
    extra = "Content-Length: 0\r\n" if served_by == "Tornado" else ""
    # The last one names the Host the handshake is sent to (127.0.0.1): no exception.
    for header in (
        f"Origin: {EVIL}\r\n",
        f"Sec-WebSocket-Origin: {EVIL}\r\n",
        "Origin: http://127.0.0.1\r\n",
    ):
        refused = await exchange(server.port, RawClient.handshake(path, header + extra))
        assert refused.startswith(b"HTTP/1.1 403 "), refused
        assert refused.endswith(b"\r\n\r\nCross origin websockets not allowed")
    assert not server.router.live_sessions


# -- the SockJS transports' CORS --------------------------------------------------


async def fetch(server, method: str, path: str, origin: str | None, **kwargs) -> HTTPResponse:
    headers = {"Origin": origin} if origin else {}
    return await AsyncHTTPClient().fetch(
        f"{server.url}{path}",
        method=method,
        headers=headers,
        body=b"" if method == "POST" else None,
        raise_error=False,
        allow_nonstandard_methods=True,
        **kwargs,
    )


@restricted
@pytest.mark.parametrize("method", ["OPTIONS", "POST"])
async def test_xhr_answers_an_allowed_page_and_names_it(server, method):
    origin = "https://app.example.org"
    response = await fetch(server, method, "/connect/0/s1/xhr", origin)
    assert response.code == (204 if method == "OPTIONS" else 200)
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers["Vary"]


@restricted
@pytest.mark.parametrize("method", ["OPTIONS", "POST"])
@pytest.mark.parametrize("transport", ["xhr", "xhr_streaming", "xhr_send"])
async def test_sockjs_transports_refuse_another_page_without_naming_it(server, method, transport):
    response = await fetch(server, method, f"/connect/0/s1/{transport}", EVIL)
    assert response.code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert EVIL not in response.body.decode()
    assert not server.router.live_sessions  # no session was opened


@restricted
async def test_a_refused_page_cannot_send_into_an_open_session(server):
    client = await server.client(XhrPollingClient)  # no Origin: served
    response = await AsyncHTTPClient().fetch(
        client.session_url + "/xhr_send",
        method="POST",
        headers={"Origin": EVIL},
        body=json.dumps(["CONNECT mallory:key"]),
        raise_error=False,
    )
    assert response.code == 403
    await client.send("CONNECT alice:key")  # the session still works, for its own page
    await server.settled(lambda: server.hub.is_online("alice"))
    assert not server.hub.is_online("mallory")


@restricted
async def test_xhr_streaming_names_an_allowed_page(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request("POST", "/connect/0/s1/xhr_streaming", "Origin: https://example.com\r\n"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nAccess-Control-Allow-Origin: https://example.com\r\n" in head


async def test_without_allowed_origins_every_page_is_served_and_named(server):
    for transport in ("xhr", "xhr_send"):
        response = await fetch(server, "OPTIONS", f"/connect/0/s1/{transport}", EVIL)
        assert response.code == 204
        assert response.headers["Access-Control-Allow-Origin"] == EVIL
        assert "Vary" not in response.headers
    await RawClient.open(server.port, WEBSOCKETS[0], f"Origin: {EVIL}\r\n")  # answered 101


# -- /connect/info -----------------------------------------------------------------


async def test_info_says_any_origin_when_none_is_configured(server):
    response = await fetch(server, "GET", "/connect/info", EVIL)
    assert json.loads(response.body)["origins"] == ["*:*"]
    assert response.headers["Access-Control-Allow-Origin"] == EVIL


@restricted
async def test_info_reports_the_allowed_origins(server):
    for origin in ("https://example.com", None):
        response = await fetch(server, "GET", "/connect/info", origin)
        assert response.code == 200
        info = json.loads(response.body)
        assert info["origins"] == list(ALLOWED)
        assert info["websocket"] is True


async def test_any_page_may_embed_the_iframe_when_no_origin_is_configured(server):
    response = await fetch(server, "GET", "/connect/iframe.html", None)
    assert response.code == 200
    assert "Content-Security-Policy" not in response.headers


@restricted
async def test_only_allowed_pages_may_embed_the_iframe(server):
    """Inside the iframe, requests come from the server's own origin: framing must be limited."""
    response = await fetch(server, "GET", "/connect/iframe.html", None)
    assert response.code == 200
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'self' " + " ".join(
        ALLOWED
    )


@restricted
async def test_the_iframe_transports_work_once_the_servers_own_origin_is_listed(server):
    """Inside ``/connect/iframe.html`` every request comes from the server's own origin."""
    own = server.url  # what the iframe's requests name; their Host names the same
    page = await fetch(server, "GET", "/connect/iframe.html", None)
    assert page.code == 200
    refused = await fetch(server, "POST", "/connect/0/s1/xhr", own)
    assert refused.code == 403
    server.router.settings["allowed_origins"] = (*ALLOWED, own)
    page = await fetch(server, "GET", "/connect/iframe.html", None)
    assert page.headers["Content-Security-Policy"].endswith(" " + own)
    response = await fetch(server, "POST", "/connect/0/s1/xhr", own)
    assert response.code == 200 and response.body == b"o\n"
    assert response.headers["Access-Control-Allow-Origin"] == own
    await RawClient.open(server.port, WEBSOCKETS[1].replace("s1", "s2"), f"Origin: {own}\r\n")
    await server.settled(lambda: len(server.router.live_sessions) == 2)


@restricted
@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
async def test_info_refuses_another_page(server, method):
    response = await fetch(server, method, "/connect/info", EVIL)
    assert response.code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


# -- the log ---------------------------------------------------------------------


@restricted
async def test_a_refused_origin_is_logged_with_the_origin_once_per_minute(server, caplog):
    clock = ManualClock()
    server.router.refused_origins.clock = clock
    caplog.set_level(logging.INFO, logger="thunderpush")

    def refusals() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Origin ")]

    for _ in range(3):  # a hostile page's requests: one line
        assert (await fetch(server, "GET", "/connect/info", EVIL)).code == 403
    refused = await exchange(server.port, RawClient.handshake(WEBSOCKETS[0], f"Origin: {EVIL}\r\n"))
    assert refused.startswith(b"HTTP/1.1 403 ")
    assert refusals() == [
        f"Origin refused: '{EVIL}' is not an allowed origin (--allowed-origins);"
        " its next refusals go unlogged for 60 s."
    ]
    assert (await fetch(server, "GET", "/connect/info", "https://other.example")).code == 403
    assert len(refusals()) == 2  # another origin has its own minute
    clock.advance(59)
    await fetch(server, "GET", "/connect/info", EVIL)
    assert len(refusals()) == 2
    clock.advance(1)
    await fetch(server, "GET", "/connect/info", EVIL)
    assert len(refusals()) == 3
    assert (await fetch(server, "GET", "/connect/info", "https://example.com")).code == 200
    assert len(refusals()) == 3  # an allowed page is not logged
