"""The real pusher-js 8 (npm, in Node) against a real server: nobody here wrote that client.

``tests/pusher_driver.js`` runs pusher-js and takes commands on stdin, printing
what pusher-js reports (``tests/pusher_reports.js``); the test serves the auth
endpoints pusher-js calls (``channelAuthorization`` and ``userAuthentication``,
``tests/support/pusher_auth.py``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from .support import KEY
from .support.api import call_api
from .support.clients import WebSocketClient
from .support.processes import ServerProcess, bad_log_lines, start_server_process
from .support.pusher_auth import AUTH_ROUTE, AuthHandler

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).with_name("pusher_driver.js")
NODE_MODULES = ROOT / "client" / "node_modules"
WAIT = 10.0
# pusher-js's first reconnection attempt to a server that is down waits out its
# websocket strategy's 15 s timeout before the next one (default_strategy.ts).
RECONNECT_WAIT = 30.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("node") is None or not (NODE_MODULES / "pusher-js").is_dir(),
        reason="needs node and `npm ci` in client/",
    ),
]


@pytest.fixture
async def auth_url():
    sockets = bind_sockets(0, "127.0.0.1")
    http = HTTPServer(tornado.web.Application([(AUTH_ROUTE, AuthHandler)]))
    http.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    http.stop()
    await http.close_all_connections()


class PusherJs:
    """One pusher-js client in a Node process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.socket_id = ""

    async def do(self, command: str, **fields: Any) -> None:
        self.process.stdin.write(json.dumps({"do": command, **fields}).encode() + b"\n")
        await self.process.stdin.drain()

    async def next(self, *ignored: str, wait: float = WAIT) -> dict[str, Any]:
        """The next report but those whose ``on`` is ``ignored`` (by default: state changes)."""
        ignored = ignored or ("state", "triggered")
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), wait)
            assert line, "pusher-js ended"
            report = json.loads(line)
            if report["on"] not in ignored:
                return report

    async def connected(self) -> str:
        while (report := await self.next("triggered"))["current"] != "connected":
            assert report["on"] == "state", report
        self.socket_id = report["socket_id"]
        return self.socket_id

    async def subscribed(self, channel: str) -> dict[str, Any]:
        await self.do("subscribe", channel=channel)
        report = await self.next()
        assert report["on"] == "subscribed" and report["channel"] == channel, report
        return report


@asynccontextmanager
async def pusher_js(
    server, auth_url: str, user: str = "anon", key: str = KEY
) -> AsyncIterator[PusherJs]:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(DRIVER),
        "127.0.0.1",
        str(server.port),
        key,
        f"{auth_url}/u/{user}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    try:
        yield PusherJs(process)
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), WAIT)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


async def test_public_channel_events_arrive_in_order_from_either_api(server, auth_url):
    thunder = await server.client(WebSocketClient, "t", "news")
    async with pusher_js(server, auth_url) as client:
        await client.connected()
        await client.subscribed("news")
        for n in range(5):
            await server.api("POST", "channels/news/", json.dumps({"n": n}))
        for n in range(5):
            report = await client.next()
            assert report == {
                "on": "event",
                "channel": "news",
                "event": "message",
                "data": {"n": n},
            }
            assert (await thunder.message())["payload"] == json.dumps({"n": n})


async def test_a_wrong_key_is_pusher_error_4001(server, auth_url):
    async with pusher_js(server, auth_url, key="wrong") as client:
        report = await client.next()
        assert report["on"] == "error" and report["code"] == 4001


async def test_private_and_presence_through_the_auth_endpoint(server, auth_url):
    async with pusher_js(server, auth_url, "1") as one, pusher_js(server, auth_url, "2") as two:
        await one.connected()
        await two.connected()
        await one.subscribed("private-a")
        await one.do("subscribe", channel="private-forged")
        refused = await one.next()
        assert refused == {"on": "subscription_error", "channel": "private-forged", "status": 401}
        first = await one.subscribed("presence-room")
        assert first["members"]["count"] == 1 and first["members"]["me"]["id"] == "1"
        second = await two.subscribed("presence-room")
        assert second["members"]["ids"] == ["1", "2"]
        assert second["members"]["hash"] == {"1": {"name": "1"}, "2": {"name": "2"}}
        added = await one.next()
        assert added == {
            "on": "member_added",
            "channel": "presence-room",
            "id": "2",
            "info": {"name": "2"},
        }
        await two.do("unsubscribe", channel="presence-room")
        assert await one.next() == {"on": "member_removed", "channel": "presence-room", "id": "2"}
        await server.api("POST", "channels/private-a/", '"private"')
        report = await one.next()
        assert (report["channel"], report["data"]) == ("private-a", "private")


@pytest.mark.config(client_events=True)
async def test_client_events_reach_the_other_client(server, auth_url):
    async with pusher_js(server, auth_url, "1") as one, pusher_js(server, auth_url, "2") as two:
        for client in (one, two):
            await client.connected()
            await client.subscribed("private-chat")
        await one.do("trigger", channel="private-chat", event="client-typing", data={"who": 1})
        report = await two.next()
        assert (report["event"], report["data"]) == ("client-typing", {"who": 1})
        await server.api("POST", "channels/private-chat/", "1")
        assert (await one.next())["event"] == "message"  # the sender did not get its own


async def test_signin_then_terminate_the_users_connections(server, auth_url):
    async with pusher_js(server, auth_url, "ann") as client:
        await client.connected()
        await client.do("signin")
        assert (await client.next())["on"] == "signed_in"
        await server.settled(lambda: server.hub.is_online("ann"))
        await server.api("POST", "users/ann/", '"hello"')
        assert await client.next() == {"on": "user_event", "event": "message", "data": "hello"}
        await server.api("DELETE", "users/ann/")
        report = await client.next()
        assert report["on"] == "error" and report["code"] == 4009


async def publish(running: ServerProcess, channel: str, body: str) -> None:
    response = await call_api(running.url, "POST", f"channels/{channel}/", body)
    assert response.code == 200, response.body


async def test_reconnects_after_a_server_restart_and_gets_events_again(tmp_path, auth_url):
    """The server process stops (its drain closes the socket with 4200) and starts
    again on the same port: pusher-js reconnects by itself, with a new socket id,
    and subscribes again."""
    start = functools.partial(start_server_process, tmp_path, "--drain-seconds", "0.1")
    running = await asyncio.to_thread(start)
    try:
        async with pusher_js(running, auth_url) as client:
            first_id = await client.connected()
            await client.subscribed("news")
            await publish(running, "news", '"before"')
            assert (await client.next())["data"] == "before"

            assert await asyncio.to_thread(running.stop) == 0
            assert not bad_log_lines(running)
            running = await asyncio.to_thread(start, port=running.port)
            # pusher-js reports the drain's pusher:error (and the close code), then
            # its states ("connecting", "unavailable") until it is back.
            codes = set()
            while (report := await client.next("triggered", wait=RECONNECT_WAIT)).get(
                "current"
            ) != "connected":
                codes.add(report.get("code"))
            assert codes == {4200, None}, codes
            assert report["socket_id"] != first_id
            report = await client.next()
            assert report["on"] == "subscribed" and report["channel"] == "news", report
            await publish(running, "news", '"after"')
            assert (await client.next())["data"] == "after"
    finally:
        await asyncio.to_thread(running.stop)
    assert not bad_log_lines(running)
