"""Shards: nodes given two ``--redis-url``, each channel and user on one Redis.

Two real ``redis-server`` (``fresh_shards``, ``tests/support/cluster.py``) and two
in-process nodes given both URLs.  The names each test uses are picked by
``on_shard`` so that one lives on each shard, as ``shard_of`` places them.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from thunderpush.cluster import keys
from thunderpush.cluster.shards import shard_of
from thunderpush.core.protocol import MISSED

from .support import KEY
from .support.clients import WebSocketClient, XhrStreamingClient
from .support.served import LiveServer, eventually, nodes_on, stopped
from .test_cluster import (
    closed_after_messages,
    in_presence,
    json_of,
    listed,
)
from .test_cluster_history import KEPT, cut, delivered
from .test_history import history, recovered
from .test_pusher_api import APP_ID, call, client_of
from .test_pusher_cluster import presence_of
from .test_pusher_ws import established, opened, presence_data, receive, subscribed

pytestmark = pytest.mark.slow

UNAVAILABLE = (503, {"message": "Cluster backend unavailable.", "status": 503})


def on_shard(kind: str, index: int, stem: str) -> str:
    """The first of ``stem-0``, ``stem-1``... whose channel (``kind`` "c") or user
    ("u") lives on shard ``index`` of two."""
    for number in itertools.count():
        name = f"{stem}-{number}"
        if shard_of(keys.tag(KEY, kind, name), 2) == index:
            return name
    raise AssertionError  # itertools.count never ends


def both(kind: str, stem: str) -> tuple[str, str]:
    """A name of ``kind`` on shard 0, and one on shard 1."""
    return on_shard(kind, 0, stem), on_shard(kind, 1, stem)


@pytest.fixture
async def sharded(fresh_shards):
    """``await sharded(n, **config)``: n servers in this loop on both shards."""
    async with nodes_on(redis_url=tuple(server.url for server in fresh_shards)) as start:
        yield start


async def answer(server: LiveServer, method: str, path: str, body: str | None = None) -> tuple:
    response = await server.api(method, path, body)
    return response.code, json_of(response) if response.body else None


def routed(backend, kind: str, name: str) -> int:
    """How many nodes subscribe the route of ``name`` on ``backend``."""
    with backend.client() as redis:
        return redis.pubsub_numsub(keys.route(KEY, kind, name))[0][1]


async def counted(backend, kind: str, name: str) -> set[str]:
    """The nodes that ``backend`` holds a count of ``name`` for."""
    with backend.client() as redis:
        return {node.decode() for node in redis.hkeys(keys.key(keys.tag(KEY, kind, name), b"n"))}


def owned(backend, node: str, part: bytes) -> set[str]:
    """The names ``backend`` holds in ``node``'s own key ``part`` (``keys.CHANNELS``...)."""
    with backend.client() as redis:
        return {name.decode() for name in redis.hkeys(keys.node_key(node, KEY, part))}


async def test_two_nodes_agree_where_each_name_lives(sharded, fresh_shards):
    a, b = await sharded(2)
    news, users = both("c", "news"), both("u", "ann")
    ann = [await a.client(WebSocketClient, users[index], news[index]) for index in (0, 1)]
    bob = await b.client(WebSocketClient, on_shard("u", 0, "bob"), *news)
    ids = {a.parts.node.id, b.parts.node.id}
    for index, backend in enumerate(fresh_shards):
        other = fresh_shards[1 - index]
        # A name's route, counts and the nodes' own records of it: on its shard only.
        await eventually(lambda b=backend, n=news[index]: counted(b, "c", n), ids)
        assert routed(backend, "c", news[index]) == 2 and routed(other, "c", news[index]) == 0
        assert await counted(other, "c", news[index]) == set()
        assert await counted(backend, "u", users[index]) == {a.parts.node.id}
        assert owned(backend, a.parts.node.id, keys.CHANNELS) == {news[index]}
        assert owned(backend, a.parts.node.id, keys.USERS) == {users[index]}
        # Every node beats on every shard.
        with backend.client() as redis:
            assert {node.decode() for node in redis.zrange(keys.NODES, 0, -1)} == ids
    for index, channel in enumerate(news):
        for server in (a, b):
            assert await answer(server, "POST", f"channels/{channel}/", str(server.port)) == (
                200,
                {"count": 2},
            )
            assert (await ann[index].message())["payload"] == str(server.port)
            assert (await bob.message()) == {"payload": str(server.port), "channel": channel}
        assert await answer(b, "POST", f"users/{users[index]}/", "2") == (200, {"count": 1})
        assert await ann[index].message() == {"payload": "2"}


async def test_presence_counts_listings_history_and_recovery_span_the_shards(sharded):
    a, b = await sharded(2, **KEPT)
    rooms, news, users = both("c", "presence-room"), both("c", "news"), both("u", "ann")
    for room in rooms:
        first, members = await in_presence(a, users[0], channel=room)
        assert members == [users[0]]
        second, members = await in_presence(b, users[1], XhrStreamingClient, channel=room)
        assert members == [users[0], users[1]]
        assert await first.message() == {
            "event": "member_added",
            "channel": room,
            "user": users[1],
        }
        assert await listed(a, room) == [users[0], users[1]]
    dan = on_shard("u", 1, "dan")
    reader = await a.client(WebSocketClient, dan, *news)
    await eventually(lambda: answer(b, "GET", "users/"), (200, {"count": 3}))
    code, counts = await answer(b, "GET", "channels/")
    assert code == 200 and counts["channels"] == {rooms[0]: 2, rooms[1]: 2, news[0]: 1, news[1]: 1}
    code, counts = await answer(a, "GET", "channels/?prefix=news")
    assert code == 200 and counts["channels"] == {news[0]: 1, news[1]: 1}
    channels_of = await answer(b, "GET", f"users/{users[0]}/channels/")
    assert channels_of == (200, {"channels": sorted(rooms)})
    assert await answer(a, "GET", f"users/{dan}/channels/") == (200, {"channels": sorted(news)})
    assert await answer(a, "GET", f"users/{users[1]}/") == (200, {"online": True})

    # History on each shard, and a recovery of both channels on the other node.
    epochs = []
    for channel in news:
        assert (await b.api("POST", f"channels/{channel}/", "1")).code == 200
        ((epoch, offset, payload),) = await delivered(reader, 1)
        assert (offset, payload) == (1, "1")
        epochs.append(epoch)
    await cut(a, reader, dan)
    for channel in news:
        assert (await a.api("POST", f"channels/{channel}/", "2")).code == 200
        code, kept = await history(b, channel)
        assert code == 200 and [m["payload"] for m in kept["messages"]] == ["1", "2"]
    back = await b.client(WebSocketClient, dan)
    for channel, epoch in zip(news, epochs, strict=True):
        await back.send(f"SUBSCRIBE {channel} since={epoch}/1")
        assert await delivered(back, 1) == [(epoch, 2, "2")]
        assert await back.message() == recovered(True, epoch, 2, channel)


async def test_webhooks_tell_each_shards_transitions_once(sharded, receiver):
    a, b = await sharded(2, webhook_url=receiver.url)
    news, users = both("c", "news"), both("u", "ann")
    await a.client(WebSocketClient, users[0], *news)
    await b.client(WebSocketClient, users[1], *news)
    await b.client(WebSocketClient, users[0], news[1])
    came = [("user_online", user) for user in users]
    came += [("channel_occupied", channel) for channel in news]
    await receiver.until(*came)
    for user in users:
        assert (await a.api("DELETE", f"users/{user}/")).code == 204
    went = [("user_offline", user) for user in users]
    went += [("channel_vacated", channel) for channel in news]
    await receiver.until(*went)
    # A marker from each node, after which nothing more is owed.
    await a.client(WebSocketClient, "zed-a")
    await b.client(WebSocketClient, "zed-b")
    await receiver.until(("user_online", "zed-a"), ("user_online", "zed-b"))
    assert Counter(receiver.events()) == Counter(
        [*came, *went, ("user_online", "zed-a"), ("user_online", "zed-b")]
    )


async def test_the_pusher_dialect_spans_the_shards(sharded):
    one, two = await sharded(2, app_id=APP_ID)
    rooms, news = both("c", "presence-room"), both("c", "news")
    client = client_of(one)
    for room in rooms:
        async with opened(one) as first, opened(two) as second:
            socket_id = await established(first)
            await subscribed(first, room, **presence_data(socket_id, room, "1", {"name": "Ann"}))
            socket_id = await established(second)
            welcome = await subscribed(second, room, **presence_data(socket_id, room, "2"))
            assert welcome == presence_of(("1", {"name": "Ann"}), ("2", None))
            added = await receive(first)
            assert added["event"] == "pusher_internal:member_added"
            assert await call(client.users_info, room) == {"users": [{"id": "1"}, {"id": "2"}]}
    async with opened(two) as ws:
        await established(ws)
        for channel in news:
            await subscribed(ws, channel)
        for channel in news:
            assert await call(client.trigger, [channel], "e", channel) == {}
            assert await receive(ws) == {"event": "e", "channel": channel, "data": channel}
        info = await call(client.channels_info, "news", ["subscription_count"])
        assert info == {"channels": {channel: {"subscription_count": 1} for channel in news}}


async def ready(server: LiveServer) -> tuple[int, Any]:
    response = await AsyncHTTPClient().fetch(server.url + "/ready", raise_error=False)
    return response.code, json_of(response)


async def timed(server: LiveServer, method: str, path: str, body: str | None = None) -> tuple:
    """``answer``, checked to come within about a second (never a hang)."""
    started = time.monotonic()
    answered = await answer(server, method, path, body)
    assert time.monotonic() - started < 1.5, (path, "a call for a down shard must not hang")
    return answered


async def test_a_down_shard_answers_503_for_its_names_only_and_rejoins_by_itself(
    sharded, fresh_shards, caplog
):
    caplog.set_level(logging.INFO, "thunderpush.cluster.node")
    a, b = await sharded(2, **KEPT)
    news, users, rooms = both("c", "news"), both("u", "ann"), both("c", "presence-room")
    carol = on_shard("u", 0, "carol")
    # Only shard 0's names (kept), a shard-1 channel, a shard-1 user, a Pusher
    # connection in a shard-1 channel.
    kept = await a.client(WebSocketClient, users[0], news[0])
    in_channel = await a.client(WebSocketClient, on_shard("u", 0, "bob"), news[1])
    as_user = await b.client(WebSocketClient, users[1], news[0])
    await in_presence(b, carol, channel=rooms[0])
    async with opened(a) as pusher_ws:
        await established(pusher_ws)
        await subscribed(pusher_ws, news[1])
        for channel in news:
            await eventually(
                lambda c=channel: answer(a, "POST", f"channels/{c}/", "0"), (200, {"count": 2})
            )
        down = fresh_shards[1]
        down.stop()
        await eventually(lambda: timed(a, "POST", f"channels/{news[1]}/", "1"), UNAVAILABLE)
        for server in (a, b):
            for path in (
                f"users/{users[1]}/",
                f"channels/{rooms[1]}/",
                f"channels/{news[1]}/history/",
            ):
                assert await timed(server, "GET", path) == UNAVAILABLE
            assert await timed(server, "POST", f"users/{users[1]}/", "1") == UNAVAILABLE
            # Shard 0's names are served: publish, presence, history.
            published = await timed(server, "POST", f"channels/{news[0]}/", str(server.port))
            assert published == (200, {"count": 2})
            while (await kept.message())["payload"] != str(server.port):
                pass
            assert await timed(server, "GET", f"channels/{rooms[0]}/") == (200, {"users": [carol]})
            code, stream = await history(server, news[0])
            assert code == 200 and stream["messages"][-1]["payload"] == str(server.port)
            # What spans names needs every shard.
            assert await timed(server, "GET", "users/") == UNAVAILABLE
            down_now = (503, {"ready": False, "draining": False, "cluster": "down"})
            assert await ready(server) == down_now

        down.start()
        # Those that hold a name of shard 1 are told to reconnect and recover; the others stay.
        assert await closed_after_messages(in_channel) == MISSED.code
        assert await closed_after_messages(as_user) == MISSED.code
        while (frame := await receive(pusher_ws))["event"] != "pusher:error":
            pass
        assert frame["data"]["code"] == 4200
    up = (200, {"ready": True, "draining": False, "cluster": "up"})
    await eventually(lambda: ready(a), up)
    again = await a.client(WebSocketClient, users[1], news[1])
    back = (200, {"count": 1})
    await eventually(lambda: answer(b, "POST", f"channels/{news[1]}/", "88"), back)
    while (await again.message())["payload"] != "88":
        pass
    assert await answer(b, "POST", f"channels/{news[0]}/", "99") == (200, {"count": 1})
    while (await kept.message())["payload"] != "99":
        pass
    assert (await answer(a, "GET", "users/"))[0] == 200
    # One WARNING and one INFO per node, naming the shard's URL.
    lines = [r.getMessage() for r in caplog.records if r.name == "thunderpush.cluster.node"]
    warned = [line for line in lines if line.startswith("Redis at") and " is unavailable (" in line]
    assert len(warned) == 2 and all(down.url in line for line in warned), lines
    assert sum(line == f"Back in the cluster on {down.url}." for line in lines) == 2, lines


async def test_a_node_that_leaves_is_removed_from_every_shard(sharded, fresh_shards):
    a, b = await sharded(2)
    rooms, users = both("c", "presence-room"), both("u", "ann")
    watchers = [(await in_presence(a, on_shard("u", 0, "w"), channel=room))[0] for room in rooms]
    for room in rooms:
        await in_presence(b, users[1], channel=room)
    for watcher in watchers:
        assert (await watcher.message())["event"] == "member_added"
    gone = b.parts.node.id
    await stopped(b)
    for watcher, room in zip(watchers, rooms, strict=True):
        assert await watcher.message() == {
            "event": "member_removed",
            "channel": room,
            "user": users[1],
        }
    for backend in fresh_shards:
        with backend.client() as redis:
            assert [node.decode() for node in redis.zrange(keys.NODES, 0, -1)] == [a.parts.node.id]
            assert not redis.keys(b"tp:{N:%b}*" % gone.encode())
