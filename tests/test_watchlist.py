"""The watchlist: a Pusher sign-in's ``watchlist`` and the online / offline events it
brings (``thunderpush.core.watchlist``), on the hub, frame by frame, with pusher-js
in Node, on one process and across two nodes on Redis."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest

from thunderpush.cluster import departures, keys
from thunderpush.cluster.bus import deliver, field
from thunderpush.core.hub import Hub
from thunderpush.core.watchlist import MAX_WATCHED, Watchlist
from thunderpush.pusher.signatures import signin_auth

from .support import KEY, SECRET
from .support.clients import WebSocketClient
from .support.processes import start_server_process
from .support.served import eventually, nodes_on
from .test_cluster_shards import on_shard
from .test_pusher_js import auth_url, pusher_js
from .test_pusher_ws import Pusher, Thunder, established, opened, receive, send
from .test_subscription_counts import HAS_NODE

__all__ = ["auth_url"]  # the fixture

WAIT = 5.0


class Watcher(Thunder):
    """A connection that watches: what it is told, as (online, users)."""

    def __init__(self, userid: str) -> None:
        super().__init__(userid)
        self.told: list[tuple[bool, list[str]]] = []

    def watched(self, online: bool, users: list[str]) -> None:
        self.told.append((online, users))


def test_the_online_are_told_first_then_each_first_connection_and_last():
    hub = Hub()
    ann, bob = Thunder("ann"), Thunder("bob")
    hub.add(ann)
    watcher = Watcher("w")
    hub.add(watcher)
    hub.watch(watcher, ["ann", "bob", "cat", "ann"])
    assert watcher.told == [(True, ["ann"])]
    hub.add(bob)
    hub.add(Thunder("bob"))  # not its first: nothing
    hub.remove(ann)
    assert watcher.told == [(True, ["ann"]), (True, ["bob"]), (False, ["ann"])]
    hub.remove(watcher)
    assert not hub.watchlist.watchers  # nothing kept of a connection gone
    hub.add(ann)
    assert len(watcher.told) == 3


def test_changes_heard_before_the_answer_are_told_after_it_as_far_as_they_differ():
    watchlist, watcher = Watchlist(), Watcher("w")
    assert watchlist.add(watcher, ["ann", "bob"]) == ["ann", "bob"]
    watchlist.expect(watcher, 2)  # two shards
    watchlist.changed("ann", False)
    watchlist.changed("bob", True)
    watchlist.changed("bob", False)
    watchlist.answered(watcher, ["ann"])
    assert watcher.told == []
    watchlist.answered(watcher, [])
    # ann was online when read, and left after; bob came and went: nothing to tell.
    assert watcher.told == [(True, ["ann"]), (False, ["ann"])]
    watchlist.changed("ann", False)  # heard twice: told once
    assert len(watcher.told) == 2


def _signin(socket_id: str, **user: Any) -> dict[str, str]:
    user_data = json.dumps({"id": "w", **user})
    return {"user_data": user_data, "auth": signin_auth(KEY, SECRET, socket_id, user_data)}


async def test_a_watchlist_over_100_or_malformed_is_refused_and_the_connection_stays(server):
    async with opened(server) as ws:
        socket_id = await established(ws)
        too_many = [str(n) for n in range(MAX_WATCHED + 1)]
        for watchlist, message in (
            (too_many, "Watchlist too long: 101 user ids, at most 100"),
            ("ann", "Invalid watchlist: it must be a list of user ids"),
            ([["ann"]], "Invalid watchlist: an entry is not a user id"),
        ):
            await send(ws, "pusher:signin", _signin(socket_id, watchlist=watchlist))
            error = await receive(ws)
            assert error == {"event": "pusher:error", "data": {"code": 4300, "message": message}}
        assert not server.hub.is_online("w")  # not signed in
        await send(ws, "pusher:signin", _signin(socket_id, watchlist=[1, "ann"]))
        assert (await receive(ws))["event"] == "pusher:signin_success"
        await server.client(WebSocketClient, "1")  # a number is its JSON text
        frame = await receive(ws)
        assert frame["event"] == "pusher_internal:watchlist_events"
        assert json.loads(frame["data"]) == {"events": [{"name": "online", "user_ids": ["1"]}]}


async def watching(client: Any) -> list[str]:
    """``client`` signs in with its watchlist; answers those it is told are online."""
    await client.connected()
    await client.do("watch")
    await client.do("signin")
    reports = [await client.next(), await client.next()]
    assert sorted(report["on"] for report in reports) == ["signed_in", "watchlist"], reports
    (told,) = [report for report in reports if report["on"] == "watchlist"]
    assert told["name"] == "online", told
    return told["user_ids"]


async def signed_in(client: Any) -> None:
    await client.connected()
    await client.do("signin")
    assert (await client.next())["on"] == "signed_in"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_NODE, reason="needs node and `npm ci` in client/")
async def test_pusher_js_hears_its_watchlist_come_and_go(server, auth_url):
    """``pusher.user.watchlist.bind("online" | "offline")``: those online at the sign-in
    (a Thunderpush client among them), then a pusher-js user signing in and leaving."""
    await server.client(WebSocketClient, "bob")
    async with pusher_js(server, auth_url, "ann;bob,cat,dan") as ann:
        assert await watching(ann) == ["bob"]
        async with pusher_js(server, auth_url, "cat") as cat:
            await signed_in(cat)
            assert await ann.next() == {"on": "watchlist", "name": "online", "user_ids": ["cat"]}
        assert await ann.next() == {"on": "watchlist", "name": "offline", "user_ids": ["cat"]}


# -- the cluster ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not HAS_NODE, reason="needs node and `npm ci` in client/")
async def test_the_watchlist_follows_users_on_the_other_node(nodes, auth_url):
    """Two nodes on Redis: ann on one watches users whose connections are on the
    other; each is told online at its first connection in the cluster and offline
    at its last, once."""
    one, two = await nodes(2)
    bob = await two.client(WebSocketClient, "bob")
    async with pusher_js(one, auth_url, "ann;bob,cat") as ann:
        assert await watching(ann) == ["bob"]
        async with pusher_js(two, auth_url, "cat") as cat, pusher_js(one, auth_url, "cat") as again:
            await signed_in(cat)
            assert await ann.next() == {"on": "watchlist", "name": "online", "user_ids": ["cat"]}
            await signed_in(again)  # cat's second connection, on the other node: nothing
            await again.do("disconnect")
        assert await ann.next() == {"on": "watchlist", "name": "offline", "user_ids": ["cat"]}
        bob.ws.close()  # bob's only connection, on the other node
        assert await ann.next() == {"on": "watchlist", "name": "offline", "user_ids": ["bob"]}


async def test_a_node_that_died_is_forgotten_with_its_users_and_its_subscriptions(
    nodes, fresh_redis, tmp_path
):
    """A user whose only connection was on a node that died is told offline when
    the node is forgotten, and a channel's count without its subscribers."""
    (live,) = await nodes(1, presence_ttl=30.0, subscription_count=True)
    doomed = await asyncio.to_thread(
        start_server_process, tmp_path, "--redis-url", fresh_redis.url, "--presence-ttl", "30"
    )
    watcher, subscriber = Watcher("w"), Pusher("p", "1.1")
    try:
        ann = await WebSocketClient(doomed.url).open()
        await ann.send(f"CONNECT ann:{KEY}", "SUBSCRIBE news")
        live.hub.add(watcher)
        await eventually(lambda: _online(live, "ann"), True)
        await eventually(lambda: _counts(live), {"news": 1})
        live.hub.watch(watcher, ["ann"])
        live.hub.add(subscriber)
        live.hub.subscribe(subscriber, "news")
        await live.settled(lambda: watcher.told == [(True, ["ann"])])
        await live.settled(lambda: _told(subscriber) == [2])  # ann's and its own
        await asyncio.to_thread(doomed.stop, signal.SIGKILL)
        await ann.close()
    finally:
        doomed.stop()
    with fresh_redis.client() as redis:
        (dead,) = {node.decode() for node in redis.zrange(keys.NODES, 0, -1)} - {live.parts.node.id}
    await departures.forget(live.parts.node, live.parts.node.links[0], dead)
    await live.settled(lambda: watcher.told == [(True, ["ann"]), (False, ["ann"])])
    await live.settled(lambda: _told(subscriber) == [2, 1])
    for fake in (watcher, subscriber):  # the teardown could not close them
        live.hub.remove(fake)


def _told(subscriber: Any) -> list[int]:
    """The subscription counts a fake Pusher connection was told."""
    frames = [json.loads(frame) for frame in subscriber.received]
    return [
        json.loads(frame["data"])["subscription_count"]
        for frame in frames
        if frame["event"] == "pusher_internal:subscription_count"
    ]


async def _counts(server: Any) -> dict[str, int]:
    return await server.parts.apps.presence.channel_counts(server.parts.apps.get(KEY), "")


async def _online(server: Any, user: str) -> bool:
    return await server.parts.apps.presence.is_online(server.parts.apps.get(KEY), user)


async def test_a_watchlist_spanning_two_shards_is_told_once_both_answered(fresh_shards):
    """Users on each of two Redis (``--redis-url`` twice): the first states come in
    two reads, told together once both are in."""
    first, second = on_shard("u", 0, "user"), on_shard("u", 1, "user")
    async with nodes_on(redis_url=tuple(server.url for server in fresh_shards)) as start:
        one, two = await start(2)
        clients = [await two.client(WebSocketClient, user) for user in (first, second)]
        await eventually(lambda: _online(one, second), True)
        watcher = Watcher("w")
        one.hub.add(watcher)
        one.hub.watch(watcher, [first, "nobody", second])
        await one.settled(lambda: watcher.told == [(True, [first, second])])
        clients[1].ws.close()
        await one.settled(lambda: watcher.told[1:] == [(False, [second])])
        one.hub.remove(watcher)


def test_the_bus_carries_a_users_transition_and_a_channels_count():
    """``w`` and ``n`` messages (``thunderpush/cluster/bus.py``) reach the hub's
    watchlist and the channel's Pusher subscribers; a malformed one is ignored."""
    hub = Hub()
    watcher, subscriber = Watcher("w"), Pusher("p", "1.1")
    hub.add(watcher)
    hub.watch(watcher, ["ann"])
    hub.add(subscriber)
    hub.subscribe(subscriber, "news")
    deliver(hub, b"w" + field("ann") + field("1"))
    deliver(hub, b"n" + field("news") + field("7"))
    deliver(hub, b"n" + field("news"))  # no count: logged, ignored
    assert watcher.told == [(True, ["ann"])]
    (told,) = [json.loads(frame) for frame in subscriber.received]
    assert told["event"] == "pusher_internal:subscription_count"
    assert json.loads(told["data"]) == {"subscription_count": 7}
