"""``/health`` and ``/ready``: public, JSON, and ready only while the server takes traffic.

Ready is false while the server drains and while its cluster backend (a real
Redis, stopped for the test) is down; ``--metrics-port`` moves ``/metrics``
off the main port.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import replace

import pytest
from tornado.httpclient import AsyncHTTPClient

from thunderpush.config import Config
from thunderpush.observe.drain import drain
from thunderpush.observe.endpoints import listen_for_metrics
from thunderpush.server.application import build
from thunderpush.server.process import START_EXIT

from .support import KEY, SECRET
from .support.api import call_api
from .support.clients import WebSocketClient
from .support.processes import free_port, refused_start

CONFIG = Config(apikey=KEY, apisecret=SECRET, sockjs_url="http://127.0.0.1/sockjs.js")


async def get(url: str) -> tuple[int, dict]:
    response = await AsyncHTTPClient().fetch(url, raise_error=False)
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert response.headers["Cache-Control"] == "no-store"
    return response.code, json.loads(response.body)


async def until_ready_is(url: str, wanted: bool, timeout: float = 10) -> dict:
    """Asks ``/ready`` until it says ``wanted`` (bounded); returns what it said."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, report = await get(url + "/ready")
        assert status == (200 if report["ready"] else 503)
        if report["ready"] is wanted:
            return report
        assert asyncio.get_running_loop().time() < deadline, report
        await asyncio.sleep(0.05)


async def test_health_and_ready_need_no_secret(server):
    assert await get(server.url + "/health") == (200, {"status": "ok"})
    assert await get(server.url + "/ready") == (
        200,
        {"ready": True, "draining": False, "cluster": None},
    )


async def test_ready_is_false_while_draining(server):
    client = await server.client(WebSocketClient, "ann", "news")
    server.parts.draining = True
    assert await get(server.url + "/ready") == (
        503,
        {"ready": False, "draining": True, "cluster": None},
    )
    assert await get(server.url + "/health") == (200, {"status": "ok"})
    # Draining closes the session with the reconnect code.
    await drain(server.router.service, 0.3)
    assert await client.closed(5) == (9010, "Server shutting down.")


async def test_ready_is_false_while_redis_is_down(fresh_redis):
    server = build(replace(CONFIG, redis_url=fresh_redis.url, presence_ttl=3))
    await server.start()
    await server.door.listen(0, "127.0.0.1")
    url = f"http://127.0.0.1:{server.door.port}"
    try:
        assert await until_ready_is(url, True) == {
            "ready": True,
            "draining": False,
            "cluster": "up",
        }
        metrics = (await AsyncHTTPClient().fetch(url + "/metrics")).body.decode()
        assert "thunderpush_cluster_up 1.0" in metrics
        assert "thunderpush_cluster_nodes 1.0" in metrics
        with fresh_redis.outage():
            report = await until_ready_is(url, False)
            assert report == {"ready": False, "draining": False, "cluster": "down"}
            metrics = (await AsyncHTTPClient().fetch(url + "/metrics")).body.decode()
            assert "thunderpush_cluster_up 0.0" in metrics
            assert await get(url + "/health") == (200, {"status": "ok"})
        await until_ready_is(url, True)
    finally:
        server.door.stop()
        await server.door.close_all_connections()
        await server.stop()


async def test_the_metrics_port_serves_metrics_instead_of_the_main_port():
    server = build(replace(CONFIG, metrics_port=free_port()))
    await server.door.listen(0, "127.0.0.1")
    metrics = listen_for_metrics(
        server.figures, server.metrics, server.config.metrics_port, "127.0.0.1"
    )
    main = f"http://127.0.0.1:{server.door.port}"
    side = f"http://127.0.0.1:{server.config.metrics_port}"
    try:
        fetch = AsyncHTTPClient().fetch
        assert (await fetch(side + "/metrics")).body.startswith(b"# HELP")
        assert (await fetch(main + "/metrics", raise_error=False)).code == 404
        for url in (main, side):
            assert await get(url + "/health") == (200, {"status": "ok"})
            assert (await get(url + "/ready"))[0] == 200
        await assert_head_as_get(side + "/metrics")
    finally:
        metrics.stop()
        server.door.stop()
        await server.door.close_all_connections()


@pytest.mark.parametrize("seconds", [0.0, 1.0])
async def test_drain_spreads_the_closes_over_its_time(server, seconds):
    clients = [await server.client(WebSocketClient, f"u{n}") for n in range(20)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    closes = []

    async def closed(client) -> None:
        assert await client.closed(5) == (9010, "Server shutting down.")
        closes.append(loop.time() - started)

    watching = asyncio.gather(*map(closed, clients))
    await drain(server.router.service, seconds)
    await watching
    assert not server.router.live_sessions
    assert max(closes) < seconds + 0.5
    # In batches: some close in the first half of the time, some in the second.
    assert min(closes) < seconds / 2 + 0.1
    assert max(closes) >= seconds * 0.8


async def test_a_second_signal_closes_the_rest_at_once(server):
    clients = [await server.client(WebSocketClient, f"u{n}") for n in range(10)]
    hurry = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    loop.call_later(0.2, hurry.set)
    await asyncio.wait_for(drain(server.router.service, 30.0, hurry=hurry), 5)
    assert loop.time() - started < 1.0
    for client in clients:
        assert await client.closed(5) == (9010, "Server shutting down.")


@pytest.mark.slow
def test_a_metrics_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stderr = refused_start(tmp_path, "--metrics-port", str(port))
    assert status == START_EXIT  # the host refuses it, like a main port in use
    [line] = stderr.strip().splitlines()
    assert line.startswith(f"Thunderpush cannot start: --metrics-port {port}: "), line
    assert not (tmp_path / "thunderpush.pid").exists()


async def assert_head_as_get(url: str, headers: dict[str, str] | None = None) -> None:
    """HEAD ``url`` answers as GET does (status, type, length), with no body.

    /metrics is read anew for each request and its process figures (CPU
    seconds, memory) change in between, so only there the length may differ.
    """
    fetch = AsyncHTTPClient().fetch
    got = await fetch(url, headers=headers, raise_error=False)
    head = await fetch(url, method="HEAD", headers=headers, raise_error=False)
    assert (head.code, head.body) == (got.code, b""), url
    assert head.headers.get("Content-Type") == got.headers.get("Content-Type"), url
    if not url.endswith("/metrics"):
        assert head.headers.get("Content-Length") == got.headers.get("Content-Length"), url
    else:
        assert int(head.headers["Content-Length"]) > 0, url


HEAD_PATHS = [
    "/thunderpush.js",
    "/health",
    "/ready",
    "/metrics",
    "/connect/info",
    "/connect/iframe.html",
    "/dashboard",
    "/dashboard/dashboard.js",
    "/dashboard/dashboard.css",
]


@pytest.mark.parametrize("path", HEAD_PATHS)
async def test_head_is_answered_wherever_get_is(server, path):
    # Uptime checks and load balancers send HEAD: never a 405 where GET answers.
    if path == "/connect/info":  # its entropy differs each time: the length by a digit
        head = await AsyncHTTPClient().fetch(server.url + path, method="HEAD")
        assert (head.code, head.body, head.headers["Content-Type"]) == (
            200,
            b"",
            "application/json; charset=UTF-8",
        )
        return
    await assert_head_as_get(server.url + path)


async def test_head_on_the_apis_get_routes_is_their_get_without_the_body(server):
    for secret in (SECRET, "wrong"):
        got = await call_api(server.url, "GET", "users/", secret=secret)
        head = await call_api(server.url, "HEAD", "users/", secret=secret)
        assert (head.code, head.body) == (got.code, b"")
        assert head.headers["Content-Length"] == got.headers["Content-Length"]
    refused = await call_api(server.url, "PUT", "users/", b"")
    assert refused.code == 405
    assert refused.headers["Allow"] == "GET, HEAD, OPTIONS"  # HEAD named
