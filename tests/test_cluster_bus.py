"""The cluster's bus carries every field whole: input that a line-based bus would
split or could not encode is answered on two nodes on Redis as one node answers it.

Each test asks the same of one process (the ``server`` fixture) and of a
two-node cluster, and compares the answers and what the clients got.  The
autouse ``no_tracebacks`` fixture fails a test whose server logged an error.
"""

from __future__ import annotations

import json
import logging

import pytest

from thunderpush.pusher.signatures import channel_auth

from .support import KEY, SECRET
from .support.clients import WebSocketClient
from .support.served import eventually
from .test_cluster import body, online
from .test_cluster_history import KEPT, delivered
from .test_history import history
from .test_pusher_api import APP_ID, call, client_of
from .test_pusher_ws import established, opened, receive, send, subscribed

pytestmark = pytest.mark.slow

# Requests naming users that a bus split on newlines, or encoded as strict
# UTF-8, would mistake for ``bob`` or fail on.
ODD_USERS = [
    ("POST", "users/bob%0Ax/", '{"to": "bob\\nx"}'),
    ("POST", "users/bob%0A/", "1"),
    ("POST", "batch/", json.dumps([{"user": "bob\nX", "message": 1}])),
    ("POST", "batch/", '[{"user": "bob\\n", "message": 2}, {"user": "\\ud800", "message": 3}]'),
    ("GET", "users/bob%0Ax/", None),
    ("DELETE", "users/bob%0Ax/", None),
]


async def answers(server, requests=ODD_USERS) -> list[tuple[int, str]]:
    return [body(await server.api(method, path, data)) for method, path, data in requests]


@pytest.mark.parametrize("request_", ODD_USERS, ids=lambda r: f"{r[0]} {r[1]}")
async def test_a_user_id_with_a_newline_is_answered_as_on_one_node(server, nodes, request_):
    a, b = await nodes(2)
    alone = await server.client(WebSocketClient, "bob")
    here, there = await a.client(WebSocketClient, "bob"), await b.client(WebSocketClient, "bob")
    await eventually(lambda: online(a, "bob"), True)
    assert await answers(a, [request_]) == await answers(server, [request_])
    for client in (alone, here, there):
        await client.no_message()
    # bob is still connected everywhere and the bus still works, in order.
    for target in (server, a):
        assert (await target.api("POST", "users/bob/", '"after"')).code == 200
    for client in (alone, here, there):
        assert await client.message() == {"payload": '"after"'}


def bus_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "thunderpush.cluster.bus"]


async def test_a_lone_surrogate_in_a_client_event_reaches_the_other_node(nodes, caplog):
    a, b = await nodes(2, client_events=True)
    channel = "private-c"
    async with opened(a) as one, opened(b) as two:
        for ws in (one, two):
            socket_id = await established(ws)
            await subscribed(ws, channel, auth=channel_auth(KEY, SECRET, socket_id, channel))
        for data in ("\ud800", "x\udfff\ny"):
            await send(one, "client-typing", data, channel=channel)
            assert await receive(two) == {
                "event": "client-typing",
                "channel": channel,
                "data": data,
            }
    assert bus_warnings(caplog) == []


@pytest.mark.config(app_id=APP_ID, **KEPT)
async def test_a_pusher_trigger_with_a_lone_surrogate_is_answered_as_on_one_node(
    server, nodes, caplog
):
    a, b = await nodes(2, app_id=APP_ID, **KEPT)
    readers = [await s.client(WebSocketClient, "ann", "news") for s in (server, b)]
    async with opened(b) as ws:
        await established(ws)
        await subscribed(ws, "news")
        for target in (server, a):
            assert await call(client_of(target).trigger, "news", "update", "\ud800!") == {}
        assert await receive(ws) == {"event": "update", "channel": "news", "data": "\ud800!"}
    for reader in readers:
        ((_, offset, payload),) = await delivered(reader, 1)
        assert (offset, payload) == (1, "\ud800!")
    # Kept in Redis and read back as one process keeps it.
    kept = [{"offset": 1, "payload": "\ud800!"}]
    for target in (server, b):
        status, read = await history(target, "news")
        assert (status, read["messages"]) == (200, kept)
    assert bus_warnings(caplog) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
