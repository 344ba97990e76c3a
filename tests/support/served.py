"""A Thunderpush app served in the test's own event loop.

``serving(settings)`` builds a server from the same parts as the command line's
(so tests exercise what users run) on a free port and stops it, with its
clients, at the end; the ``server`` fixture (tests/conftest.py) is one.  A test
drives it through the server itself (``server.hub``, ``server.router``), its
API (``server.api``) and clients (``server.client``)::

    async with serving({"history_size": 10}) as server:
        ws = await server.client(WebSocketClient, "ann", "news")
        await server.api("POST", "channels/news/", "1")

``nodes_on(redis_url=...)`` starts several, joined through that Redis (a
cluster); the ``nodes`` fixture (registered in conftest) is ``nodes_on`` on
``fresh_redis`` (``support.cluster``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse

from thunderpush.config import Config
from thunderpush.core.apps import Apps
from thunderpush.core.hub import Hub
from thunderpush.server.application import Server, build
from thunderpush.transports.door.frontdoor import FrontDoor
from thunderpush.transports.sockjs.router import SockJSRouter

from . import KEY, SECRET
from .api import call_api
from .clients import SockJSClient
from .wire import RawClient


def client_in(hub: Hub, channel: str, user: str) -> bool:
    """Whether ``user`` is subscribed to ``channel`` on ``hub``."""
    return user in hub.channel_users(channel)


@dataclass
class LiveServer:
    """A Thunderpush app served in the test's own event loop: the real ``Server``
    (``parts``, as ``build`` made it) and the handles tests reach for."""

    port: int
    router: SockJSRouter
    hub: Hub
    door: FrontDoor
    parts: Server
    clients: list[SockJSClient] = field(default_factory=list)

    @classmethod
    def of(cls, built: Server) -> LiveServer:
        """``built``, whose door listens already, with ``KEY``'s hub at hand."""
        return cls(built.door.port, built.router, built.apps.get(KEY).hub, built.door, built)

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

    async def settled(self, condition: Callable[[], Any], timeout: float = 5.0) -> None:
        """Waits (bounded) until the server's state satisfies ``condition``."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "server state did not settle"
            await asyncio.sleep(0.01)


async def eventually(probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 5) -> Any:
    """Polls ``probe`` (bounded) until it answers ``expected``: for what a server
    reaches through others (Redis, another node), which ``settled`` cannot see."""
    deadline = time.monotonic() + timeout
    while (answer := await probe()) != expected:
        assert time.monotonic() < deadline, f"still {answer!r}, not {expected!r}"
        await asyncio.sleep(0.02)
    return answer


@asynccontextmanager
async def serving(settings: dict[str, Any], apps: Apps | None = None) -> AsyncIterator[LiveServer]:
    """A server on a free port, built from the same parts as the command line's
    (so tests exercise what users run), with the Config fields ``settings``."""
    config = Config(apikey=KEY, apisecret=SECRET, sockjs_url="http://127.0.0.1/sockjs.js")
    built = build(replace(config, **settings), apps)
    # As the command line does: join the cluster and send webhooks, if configured, then listen.
    await built.start()
    await built.door.listen(0, "127.0.0.1")
    running = LiveServer.of(built)
    try:
        yield running
    finally:
        await stopped(running)


async def stopped(server: LiveServer) -> None:
    """Stops ``server`` and its clients, as a test ends."""
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


@asynccontextmanager
async def nodes_on(**backend: Any) -> AsyncIterator[Callable[..., Awaitable[list[LiveServer]]]]:
    """``await start(n, **config)``: n servers in this loop, joined through the Redis
    that ``backend`` names (``Config``'s settings); stopped at the end."""
    async with AsyncExitStack() as stack:

        async def start(count: int = 2, **settings: Any) -> list[LiveServer]:
            return [
                await stack.enter_async_context(serving({**backend, **settings}))
                for _ in range(count)
            ]

        yield start


@pytest.fixture
async def nodes(fresh_redis: Any):
    """``await nodes(n, **config)``: n servers in this loop, joined through ``fresh_redis``."""
    async with nodes_on(redis_url=fresh_redis.url) as start:
        yield start
