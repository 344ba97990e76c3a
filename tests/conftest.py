"""Shared fixtures: a running server (in-process or as a real process) and clients.

Every test also checks the log: nothing a client sends may produce a
traceback or an ERROR line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from thunderpush.config import Config
from thunderpush.core.apps import Apps
from thunderpush.core.hub import Hub
from thunderpush.server.application import build
from thunderpush.transports.door.frontdoor import FrontDoor
from thunderpush.transports.sockjs.router import SockJSRouter

from .cluster import (
    fresh_redis,
    fresh_redis_cluster,
    fresh_shards,
    redis_cluster,
    redis_server,
    second_redis,
)
from .processes import KEY, SECRET, free_port, start_server_process
from .sockjs_client import CLIENTS, SOCKJS_CLIENTS, SockJSClient
from .wire import RawClient

__all__ = [
    "KEY",
    "SECRET",
    "call_api",
    "free_port",
    "fresh_redis",
    "fresh_redis_cluster",
    "fresh_shards",
    "redis_cluster",
    "redis_server",
    "second_redis",
    "start_server_process",
]


async def call_api(
    base_url: str,
    method: str,
    path: str,
    body: bytes | str | None = None,
    secret: str | None = SECRET,
    key: str = KEY,
    headers: dict[str, str] | None = None,
) -> HTTPResponse:
    """One API request, returning the response whatever its status."""
    all_headers = {} if secret is None else {"X-Thunder-Secret-Key": secret}
    all_headers.update(headers or {})
    if body is None and method == "POST":
        body = b""
    return await AsyncHTTPClient().fetch(
        f"{base_url}/api/1.0.0/{key}/{path}",
        method=method,
        body=body,
        headers=all_headers,
        raise_error=False,
        allow_nonstandard_methods=True,
    )


def client_in(hub: Hub, channel: str, user: str) -> bool:
    return user in hub.channel_users(channel)


@dataclass
class Server:
    """A Thunderpush app served in the test's own event loop."""

    port: int
    router: SockJSRouter
    hub: Hub
    door: FrontDoor
    clients: list[SockJSClient] = field(default_factory=list)
    # Every part, as ``build`` made them (the snapshot and the drain take this).
    parts: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def api(self, method: str, path: str, body: Any = None, **kwargs: Any) -> HTTPResponse:
        return await call_api(self.url, method, path, body, **kwargs)

    async def client(self, kind: type[SockJSClient], user: str | None = None, *channels: str):
        """An open session of transport ``kind``, CONNECTed and SUBSCRIBEd if asked."""
        client = await kind(self.url).open()
        self.clients.append(client)
        if user is None:
            return client
        before = self.hub.connection_count()
        await client.send(f"CONNECT {user}:{KEY}")
        if channels:
            await client.send("SUBSCRIBE " + ":".join(channels))
        await self.settled(
            lambda: (
                self.hub.connection_count() > before
                and all(client_in(self.hub, channel, user) for channel in channels)
            )
        )
        return client

    async def settled(self, condition, timeout: float = 5.0) -> None:
        """Waits (bounded) until the server's state satisfies ``condition``."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "server state did not settle"
            await asyncio.sleep(0.01)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "config(**settings): Config fields of the test's ``server`` (e.g. timeouts)"
    )


@pytest.fixture
def apps() -> Apps | None:
    """The apps the ``server`` fixture serves; None: ``KEY``/``SECRET`` on the in-memory backend.

    A test module overrides this fixture to run the server on another backend.
    """
    return None


@asynccontextmanager
async def serving(settings: dict[str, Any], apps: Apps | None = None) -> AsyncIterator[Server]:
    """A server on a free port, built from the same parts as the command line's
    (so tests exercise what users run), with the Config fields ``settings``."""
    config = Config(apikey=KEY, apisecret=SECRET, sockjs_url="http://127.0.0.1/sockjs.js")
    built = build(replace(config, **settings), apps)
    door, router = built.door, built.router
    await door.listen(0, "127.0.0.1")
    running = Server(door.port, router, built.apps.get(KEY).hub, door, parts=built)
    yield running
    await stopped(running)


async def stopped(server: Server) -> None:
    """Stops a server that ``build`` made and its clients, as a test ends."""
    built = server.parts
    # Closing the sessions first ends every pending poll and stream, so the
    # clients' requests finish instead of being cut off.
    built.router.close_all(3000, "Test over.")
    for client in server.clients:
        await client.close()
    # Raw clients too (every test's), or the door would wait for their sockets.
    RawClient.close_all()
    built.door.stop()
    await asyncio.wait_for(built.door.close_all_connections(), 5)
    built.apps.disconnect_all()
    await built.stop()


@pytest.fixture
async def server(request, apps):
    # ``@pytest.mark.config(head_timeout=0.2)`` changes the settings it is built with.
    marker = request.node.get_closest_marker("config")
    async with serving(marker.kwargs if marker is not None else {}, apps) as running:
        yield running


@pytest.fixture(params=CLIENTS, ids=lambda kind: kind.transport)
def transport(request) -> type[SockJSClient]:
    """Every transport a Python client can drive: websocket, raw, xhr, xhr_streaming."""
    return request.param


@pytest.fixture(params=SOCKJS_CLIENTS, ids=lambda kind: kind.transport)
def sockjs_transport(request) -> type[SockJSClient]:
    """The SockJS-framed transports (not the raw websocket)."""
    return request.param


@pytest.fixture(autouse=True)
def no_tracebacks(caplog):
    """Fails a test whose server logged an error or a traceback."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    bad = [
        record
        for record in caplog.get_records("call") + caplog.get_records("teardown")
        if record.exc_info or record.levelno >= logging.ERROR
    ]
    assert not bad, [record.getMessage() for record in bad]


@pytest.fixture
def server_process(tmp_path):
    running = start_server_process(tmp_path)
    yield running
    if running.proc.poll() is None:
        running.stop()
