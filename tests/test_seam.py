"""The seams a backend plugs in, run through the same tests on every implementation.

``thunderpush.core`` names four seams: ``Broker`` (publish, send to a user,
disconnect), ``Presence`` (counts and listings), ``History`` (a channel's kept
stream, read) and the hubs' ``Listener`` (the facts a hub states: here, the
channels' and users' first in and last out, which become webhook events).
Each has two implementations: in memory (``memory``: one process, answers at
once) and the cluster's on Redis (``redis``: a real ``redis-server``, answers
that come later, through awaitables).  Everything else is real: the server, its
front door, Tornado for the requests handed to it, SockJS clients on the other
end, a webhook receiver.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from thunderpush.api import Answer, Api
from thunderpush.api.actions import routes
from thunderpush.config import HistoryRule
from thunderpush.core.apps import Apps

from .support import KEY, SECRET
from .support.clients import WebSocketClient, XhrStreamingClient
from .support.served import LiveServer, eventually, serving
from .support.webhooks import Receiver
from .support.wire import API, AUTH, exchange, request, statuses

KEPT = HistoryRule("kept-", 10)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.slow)])
async def server(request, receiver: Receiver):
    """A server on each backend, with webhooks, keeping 10 messages of ``kept-`` channels."""
    settings: dict[str, Any] = {"history": (KEPT,), "webhook_url": receiver.url}
    if request.param == "redis":
        settings["redis_url"] = request.getfixturevalue("fresh_redis").url
    async with serving(settings) as running:
        yield running


async def body(server: LiveServer, method: str, path: str, data: str | None = None) -> bytes:
    return (await server.api(method, path, data)).body


async def listed(server: LiveServer, channel: str, *users: str) -> None:
    """Waits until the backend lists ``users`` in ``channel``: on Redis, a
    subscription is there a loop turn or two after the hub has it."""
    users_json = json.dumps({"users": list(users)}).encode() + b"\n"
    await eventually(lambda: body(server, "GET", f"channels/{channel}/"), users_json)


# -- Broker and Presence ----------------------------------------------------------


async def test_every_endpoint_answers_through_the_backend(server):
    ws = await server.client(WebSocketClient, "ann", "news")
    await server.client(XhrStreamingClient, "bob", "news")
    await listed(server, "news", "ann", "bob")
    assert await body(server, "GET", "users/") == b'{"count": 2}\n'
    assert await body(server, "GET", "users/ann/") == b'{"online": true}\n'
    assert await body(server, "POST", "channels/news/", "1") == b'{"count": 2}\n'
    assert await ws.message() == {"payload": "1", "channel": "news"}
    assert await body(server, "POST", "users/ann/", "2") == b'{"count": 1}\n'
    assert await ws.message() == {"payload": "2"}
    assert (await server.api("DELETE", "users/ann/")).code == 204
    await server.settled(lambda: not server.hub.is_online("ann"))
    await eventually(lambda: body(server, "GET", "users/ann/"), b'{"online": false}\n')
    # Errors found before the backend is asked are answered as ever.
    response = await server.api("POST", "channels/news/", "{nope")
    assert (response.code, response.body) == (
        400,
        b'{"message": "Request body is not valid JSON.", "status": 400}\n',
    )


async def test_batches_and_listings_answer_through_the_backend(server):
    ws = await server.client(WebSocketClient, "ann", "news", "sport")
    await server.client(XhrStreamingClient, "bob", "news")
    await listed(server, "news", "ann", "bob")
    await listed(server, "sport", "ann")
    batch = '[{"channel": "news", "message": 1}, {"user": "ann", "message": 2}, '
    batch += '{"channel": "sport", "message": 3}]'
    assert await body(server, "POST", "batch/", batch) == b'{"counts": [2, 1, 1]}\n'
    assert [await ws.message() for _ in range(3)] == [
        {"payload": "1", "channel": "news"},
        {"payload": "2"},
        {"payload": "3", "channel": "sport"},
    ]
    response = await server.api("GET", "channels/?prefix=n")
    assert response.body == b'{"channels": {"news": 2}}\n'
    response = await server.api("GET", "users/ann/channels/")
    assert response.body == b'{"channels": ["news", "sport"]}\n'


# -- History ---------------------------------------------------------------------


async def test_history_is_read_and_recovered_through_the_backend(server):
    ws = await server.client(WebSocketClient, "ann", "kept-news")
    await listed(server, "kept-news", "ann")
    for number in ("1", "2", "3"):
        assert await body(server, "POST", "channels/kept-news/", number) == b'{"count": 1}\n'
    first = await ws.message()
    epoch = first["epoch"]
    assert first == {"payload": "1", "channel": "kept-news", "epoch": epoch, "offset": 1}
    assert json.loads(await body(server, "GET", "channels/kept-news/history/?since=1")) == {
        "epoch": epoch,
        "offset": 3,
        "messages": [{"offset": 2, "payload": "2"}, {"offset": 3, "payload": "3"}],
    }
    # A client that saw 1 is sent 2 and 3, then told it missed nothing.
    back = await server.client(WebSocketClient, "bob")
    await back.send(f"SUBSCRIBE kept-news since={epoch}/1")
    assert [await back.message() for _ in range(3)] == [
        {"payload": "2", "channel": "kept-news", "epoch": epoch, "offset": 2},
        {"payload": "3", "channel": "kept-news", "epoch": epoch, "offset": 3},
        {
            "event": "recovered",
            "channel": "kept-news",
            "complete": True,
            "epoch": epoch,
            "offset": 3,
        },
    ]


# -- Listener --------------------------------------------------------------------


async def test_first_in_and_last_out_are_told_once_through_the_backend(server, receiver):
    await server.client(WebSocketClient, "ann", "news")
    await server.client(XhrStreamingClient, "ann", "news")
    await receiver.until(("user_online", "ann"), ("channel_occupied", "news"))
    assert (await server.api("DELETE", "users/ann/")).code == 204
    await receiver.until(("channel_vacated", "news"), ("user_offline", "ann"))
    assert sorted(receiver.events()) == [
        ("channel_occupied", "news"),
        ("channel_vacated", "news"),
        ("user_offline", "ann"),
        ("user_online", "ann"),
    ]


# -- the wire, whatever the backend ----------------------------------------------


async def test_pipelined_answers_keep_their_order(server):
    await server.client(WebSocketClient, "ann", "news")
    await listed(server, "news", "ann")
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
    await listed(server, "news", "ann")
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
