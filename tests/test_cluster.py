"""The cluster on a real Redis: nodes that share channels, users and presence.

Two in-process nodes (two ``build(config)`` servers in the test's loop, on the
same Redis) serve what needs nothing more; real processes serve what needs a
process to die (SIGKILL).  ``redis_server`` is a real ``redis-server`` on a
free port, stopped and started again by the outage tests.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from thunderpush.auth import channel_token
from thunderpush.server.application import build
from thunderpush.server.config import Config

from .conftest import KEY, SECRET, Server, call_api, free_port, start_server_process
from .sockjs_client import WebSocketClient, XhrStreamingClient
from .wire import RawClient

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
pytestmark = pytest.mark.skipif(not shutil.which(REDIS), reason="needs redis-server")


class RedisServer:
    """A real ``redis-server`` on a free port, with nothing saved to disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while self.command(b"PING") != b"+PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def command(self, line: bytes) -> bytes | None:
        """One inline command's first answer line, or None if Redis does not answer."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(line + b"\r\n")
                return sock.makefile("rb").readline().rstrip()
        except OSError:
            return None


@pytest.fixture(scope="module")
def redis_server():
    running = RedisServer()
    running.start()
    yield running
    running.stop()


@pytest.fixture
def redis(redis_server) -> RedisServer:
    """The module's Redis, running and empty."""
    if redis_server.proc is None:
        redis_server.start()
    assert redis_server.command(b"FLUSHALL") == b"+OK"
    return redis_server


async def eventually(probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 5) -> Any:
    """Polls ``probe`` (bounded) until it answers ``expected``."""
    deadline = time.monotonic() + timeout
    while (answer := await probe()) != expected:
        assert time.monotonic() < deadline, f"still {answer!r}, not {expected!r}"
        await asyncio.sleep(0.02)
    return answer


def body(response) -> Any:
    return (response.code, response.body.decode())


@pytest.fixture
async def nodes(redis):
    """``await nodes(n, **config)``: n servers in this loop, joined through ``redis``."""
    running = []

    async def start(count: int = 2, **settings: Any) -> list[Server]:
        config = Config(apikey=KEY, apisecret=SECRET, sockjs_url="http://127.0.0.1/sockjs.js")
        config = replace(config, redis_url=redis.url, **settings)
        for _ in range(count):
            built = build(config)
            await built.start()
            await built.door.listen(0, "127.0.0.1")
            running.append((built, Server(built.door.port, built.router, built.apps.get(KEY).hub, built.door)))
        return [server for _, server in running[-count:]]

    yield start
    for built, server in running:
        built.router.close_all(3000, "Test over.")
        for client in server.clients:
            await client.close()
        built.door.stop()
        await asyncio.wait_for(built.door.close_all_connections(), 5)
        built.apps.disconnect_all()
        await built.stop()
    RawClient.close_all()


async def listed(server: Server, channel: str) -> list[str]:
    response = await server.api("GET", f"channels/{channel}/")
    return json_of(response)["users"]


def json_of(response) -> Any:
    import json

    return json.loads(response.body)


# -- delivery -----------------------------------------------------------------


async def test_a_publish_on_one_node_reaches_subscribers_on_every_node_in_order(nodes):
    a, b = await nodes(2)
    ann = await a.client(WebSocketClient, "ann", "news")
    bob = await b.client(XhrStreamingClient, "bob", "news")
    await eventually(lambda: listed(a, "news"), ["ann", "bob"])
    assert body(await b.api("POST", "channels/news/", "0")) == (200, '{"count": 2}\n')
    assert await ann.message() == {"payload": "0", "channel": "news"}
    assert await bob.message() == {"payload": "0", "channel": "news"}
    # Sequential publishes alternating between the nodes arrive in publish order on both.
    for number in range(1, 30):
        await (a if number % 2 else b).api("POST", "channels/news/", str(number))
    for client in (ann, bob):
        assert [(await client.message())["payload"] for _ in range(29)] == [
            str(number) for number in range(1, 30)
        ]


async def test_a_user_gets_a_send_on_every_node_it_is_connected_to(nodes):
    a, b = await nodes(2)
    here = await a.client(WebSocketClient, "ann")
    there = await b.client(WebSocketClient, "ann")
    await eventually(lambda: online(b, "ann"), True)
    assert body(await b.api("POST", "users/ann/", '{"x": 1}')) == (200, '{"count": 2}\n')
    assert await here.message() == {"payload": '{"x": 1}'}
    assert await there.message() == {"payload": '{"x": 1}'}
    assert body(await a.api("POST", "users/nobody/", "1")) == (200, '{"count": 0}\n')


async def count_users(server: Server) -> int:
    return json_of(await server.api("GET", "users/"))["count"]


async def online(server: Server, user: str) -> bool:
    return json_of(await server.api("GET", f"users/{user}/"))["online"]
