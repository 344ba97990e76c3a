"""The broker and presence seam: the server serves the same API when the backend answers later.

A cluster backend moves each request to other nodes, so its broker and
presence answer through awaitables.  No such backend exists yet, so
``LaterBroker`` and ``LaterPresence`` stand in for one: they answer exactly
what the in-memory backend answers, one event-loop turn later.  Everything
else is real: the server, its front door, Tornado for the requests handed to
it, and SockJS clients on the other end.
"""

from __future__ import annotations

import asyncio
import re
from typing import TypeVar

import pytest

from thunderpush.api import Answer, Api
from thunderpush.api.actions import routes
from thunderpush.core.apps import App, Apps
from thunderpush.core.broker import LocalBroker
from thunderpush.core.presence import LocalPresence

from .conftest import KEY, SECRET
from .sockjs_client import WebSocketClient, XhrStreamingClient
from .wire import API, AUTH, exchange, request, statuses

T = TypeVar("T")


async def later(value: T) -> T:
    await asyncio.sleep(0)
    return value


class LaterBroker(LocalBroker):
    def send_to_channel(self, app: App, channel: str, message: str):
        return later(super().send_to_channel(app, channel, message))

    def send_to_user(self, app: App, userid: str, message: str):
        return later(super().send_to_user(app, userid, message))

    def disconnect_user(self, app: App, userid: str):
        return later(super().disconnect_user(app, userid))


class LaterPresence(LocalPresence):
    def user_count(self, app: App):
        return later(super().user_count(app))

    def is_online(self, app: App, userid: str):
        return later(super().is_online(app, userid))

    def channel_users(self, app: App, channel: str):
        return later(super().channel_users(app, channel))

    def channel_counts(self, app: App, prefix: str):
        return later(super().channel_counts(app, prefix))

    def user_channels(self, app: App, userid: str):
        return later(super().user_channels(app, userid))


@pytest.fixture
def apps() -> Apps:
    apps = Apps(LaterBroker(), LaterPresence())
    apps.add(KEY, SECRET)
    return apps


async def test_every_endpoint_answers_through_an_awaiting_backend(server):
    ws = await server.client(WebSocketClient, "ann", "news")
    await server.client(XhrStreamingClient, "bob", "news")
    assert (await server.api("GET", "users/")).body == b'{"count": 2}\n'
    assert (await server.api("GET", "users/ann/")).body == b'{"online": true}\n'
    assert (await server.api("GET", "channels/news/")).body == b'{"users": ["ann", "bob"]}\n'
    assert (await server.api("POST", "channels/news/", "1")).body == b'{"count": 2}\n'
    assert await ws.message() == {"payload": "1", "channel": "news"}
    assert (await server.api("POST", "users/ann/", "2")).body == b'{"count": 1}\n'
    assert await ws.message() == {"payload": "2"}
    assert (await server.api("DELETE", "users/ann/")).code == 204
    await server.settled(lambda: not server.hub.is_online("ann"))
    # Errors found before the backend is asked are answered as ever.
    response = await server.api("POST", "channels/news/", "{nope")
    assert (response.code, response.body) == (
        400,
        b'{"message": "Request body is not valid JSON.", "status": 400}\n',
    )


async def test_batches_and_listings_answer_through_an_awaiting_backend(server):
    ws = await server.client(WebSocketClient, "ann", "news", "sport")
    await server.client(XhrStreamingClient, "bob", "news")
    batch = '[{"channel": "news", "message": 1}, {"user": "ann", "message": 2}, '
    batch += '{"channel": "sport", "message": 3}]'
    assert (await server.api("POST", "batch/", batch)).body == b'{"counts": [2, 1, 1]}\n'
    assert [await ws.message() for _ in range(3)] == [
        {"payload": "1", "channel": "news"},
        {"payload": "2"},
        {"payload": "3", "channel": "sport"},
    ]
    response = await server.api("GET", "channels/?prefix=n")
    assert response.body == b'{"channels": {"news": 2}}\n'
    response = await server.api("GET", "users/ann/channels/")
    assert response.body == b'{"channels": ["news", "sport"]}\n'


async def test_pipelined_answers_keep_their_order(server):
    await server.client(WebSocketClient, "ann", "news")
    pipelined = (
        request("POST", f"{API}/channels/news/", body=b"1")
        + request("GET", f"{API}/users/nobody/")
        + request("GET", f"{API}/users/")
        + request("DELETE", f"{API}/users/ann/", AUTH + "Connection: close\r\n")
    )
    answers = await exchange(server.port, pipelined)
    assert statuses(answers) == [200, 200, 200, 204]
    bodies = [b'{"count": 1}\n', b'{"online": false}\n', b'{"count": 1}\n']
    assert re.findall(rb"\r\n\r\n(\{.*?\}\n)", answers) == bodies


async def test_requests_tornado_serves_await_the_backend_too(server):
    await server.client(WebSocketClient, "ann", "news")
    # A chunked body is handed to Tornado, whose handlers await the answer.
    chunked = request("POST", f"{API}/channels/news/", AUTH + "Transfer-Encoding: chunked\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    # The connection stays open both ways: Tornado drops the answer to a
    # client that has half-closed before it was ready.
    writer.write(chunked + b"1\r\n7\r\n0\r\n\r\n")
    answer = await asyncio.wait_for(reader.readuntil(b"}\n"), 5)
    writer.close()
    assert statuses(answer) == [200] and answer.endswith(b'{"count": 1}\n')


def test_the_in_memory_backend_answers_at_once():
    """No coroutine, task or future on the single-process path: the answer itself."""
    apps = Apps()
    apps.add(KEY, SECRET)
    api = Api(apps, 1024)
    for _, actions in routes.compiled:
        for method in actions:
            args = {"apikey": KEY, "user": "u", "channel": "c"}
            started = api.check(method, actions, args, SECRET, "1")
            # A public route's answer is fixed: it is the Answer itself.
            answer = started if isinstance(started, Answer) else started.finish(b"1")
            assert isinstance(answer, Answer), (method, actions[method])
