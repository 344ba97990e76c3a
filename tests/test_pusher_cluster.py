"""Pusher connections in a cluster: presence with ``user_info``, events, recovery.

Two in-process nodes on a real Redis (``tests/test_cluster.py``'s ``nodes``);
Pusher clients are raw websockets (``tests/test_pusher_ws.py``'s helpers),
Thunderpush clients real SockJS sessions, Pusher publishes the real ``pusher``
library (``tests/test_pusher_api.py``'s helpers).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from thunderpush.auth import channel_token
from thunderpush.cluster import keys, scripts
from thunderpush.cluster.bus import deliver, field
from thunderpush.core.broker import PublishOptions
from thunderpush.pusher.signatures import channel_auth

from .support import KEY, SECRET
from .support.clients import WebSocketClient
from .support.served import eventually
from .test_cluster import in_presence, listed, status_and
from .test_cluster_history import KEPT, connection_of, delivered, kept
from .test_history import history, recovered
from .test_pusher_api import APP_ID, call, client_of
from .test_pusher_ws import (
    established,
    opened,
    presence_data,
    receive,
    send,
    subscribed,
    thunder_in,
)

pytestmark = pytest.mark.slow

ROOM = "presence-room"


def presence_of(*members: tuple[str, Any]) -> dict[str, Any]:
    """The ``data`` of a presence ``subscription_succeeded`` listing ``members``."""
    return {
        "presence": {
            "ids": [user for user, _ in members],
            "hash": dict(members),
            "count": len(members),
        }
    }


async def frame(ws: ClientConnection) -> tuple[str, Any]:
    """The next frame's event and its data, parsed from the JSON string it is."""
    received = await receive(ws)
    assert received.get("channel") == ROOM, received
    return received["event"], json.loads(received["data"])


async def member(server: Any, ws: ClientConnection, user: str, info: Any) -> dict[str, Any]:
    """``ws`` joins the room as ``user`` with ``info``; answers the member list it was told."""
    socket_id = await established(ws)
    return await subscribed(ws, ROOM, **presence_data(socket_id, ROOM, user, info))


async def pong(ws: ClientConnection) -> None:
    """A ping answered: every frame sent to ``ws`` before it was read already."""
    await send(ws, "pusher:ping")
    assert (await receive(ws))["event"] == "pusher:pong"


def announced(kind: str, user: str, seq: int, info: str | None = None) -> bytes:
    """A presence event on a route, as the scripts publish it (``cluster/bus.py``)."""
    fields = [ROOM, user, str(seq)] + ([] if info is None else [info])
    return kind.encode() + b"".join(map(field, fields))


def test_the_scripts_keep_a_members_info_announce_it_and_forget_it_with_its_node(fresh_redis):
    tag = keys.tag("app", "c", ROOM)
    route = keys.route_of(tag)
    counts = keys.key(tag, keys.COUNTS)
    member_keys = [keys.key(tag, part) for part in (keys.MEMBERS, keys.INFOS, keys.SEQ)]
    nodes = ("n1", "n2")
    with fresh_redis.client() as redis, redis.pubsub() as bus:
        bus.subscribe(route)
        assert bus.get_message(timeout=1)["type"] == "subscribe"

        def member(node: str, user: str, here: bool, info: str) -> None:
            score = "1" if here else ""
            others = [other for other in nodes if other != node]
            args = (node, user, score, "1", info, 0, ROOM, route, *others)
            redis.eval(scripts.MEMBER.text, 3, *member_keys, *args)

        def published() -> bytes:
            return bus.get_message(timeout=1)["data"]

        def users(infos: str = "1") -> list:
            return redis.eval(scripts.CHANNEL_USERS.text, 3, *member_keys, infos, *nodes)[1:]

        member("n1", "1", True, '{"name": "Ann"}')
        assert published() == announced("a", "1", 1, '{"name": "Ann"}')
        member("n2", "t", True, "")  # a Thunderpush member: as before
        assert published() == announced("a", "t", 2, "")
        member("n2", "1", True, '{"name": "Ann"}')  # user 1 elsewhere too: not announced
        assert users() == [b"1", b'{"name": "Ann"}', b"t", None]
        assert users("") == [b"1", b"t"]
        # The info of user 1's record on n1 goes with it; n2's stays (equal scores:
        # the records are in the order of their names).
        member("n1", "1", False, "-")
        assert users() == [b"1", b'{"name": "Ann"}', b"t", None]
        assert redis.hkeys(member_keys[1]) == [b"n2 1"]
        # n2 is forgotten (its count of the channel is written beside, as a node does):
        # the last node that held the channel, with its users 1 and t.
        redis.hset(counts, "n2", 2)
        forget = (counts, *member_keys, "n2", route, ROOM, 1, "n1", "1", "t")
        # Vacated, and users 1 and t announced gone (the webhooks' member_removed).
        assert redis.eval(scripts.FORGET.text, 4, *forget) == [1, b"1", b"t"]
        assert published() == announced("r", "1", 3)
        assert published() == announced("r", "t", 4)
        assert users() == [] and redis.keys("tp:*:i") == []
        # Nothing is left but the event counter, which goes a day later.
        assert redis.keys("tp:*") == [member_keys[2]]
        assert 0 < redis.ttl(member_keys[2]) <= 86400


async def test_presence_members_on_two_nodes_see_each_other_with_user_info_each_user_once(
    nodes, fresh_redis
):
    a, b = await nodes(2)
    async with opened(a) as one, opened(b) as two, opened(b) as again:
        assert await member(a, one, "1", {"name": "Ann"}) == presence_of(("1", {"name": "Ann"}))
        assert await member(b, two, "2", ["Bob"]) == presence_of(
            ("1", {"name": "Ann"}), ("2", ["Bob"])
        )
        assert await frame(one) == (
            "pusher_internal:member_added",
            {"user_id": "2", "user_info": ["Bob"]},
        )
        # A Thunderpush member on node a: both kinds see each other, it with no info.
        thunder, members = await in_presence(a, "t")
        assert members == ["1", "2", "t"]
        for ws in (one, two):
            assert await frame(ws) == (
                "pusher_internal:member_added",
                {"user_id": "t", "user_info": None},
            )
        # User 1's second connection, on the other node: told the members each once, with
        # the info of its first; announced to nobody.
        assert await member(b, again, "1", {"name": "Ann"}) == presence_of(
            ("1", {"name": "Ann"}), ("2", ["Bob"]), ("t", None)
        )
        await eventually(lambda: listed(b, ROOM), ["1", "2", "t"])
        await send(one, "pusher:unsubscribe", {"channel": ROOM})
        await eventually(lambda: listed(b, ROOM), ["2", "t", "1"])
        # Its last connection leaves: the others hear it once (and nothing before it).
        await again.close()
        assert await frame(two) == ("pusher_internal:member_removed", {"user_id": "1"})
        assert await thunder.message() == {"event": "member_removed", "channel": ROOM, "user": "1"}
        await thunder.send(f"UNSUBSCRIBE {ROOM}")
        assert await frame(two) == ("pusher_internal:member_removed", {"user_id": "t"})
        await pong(one)
    await eventually(lambda: listed(a, ROOM), [])
    # No user_info is left behind in Redis.
    with fresh_redis.client() as redis:
        assert redis.keys("tp:*:i") == []


async def test_a_presence_client_event_names_its_sender_on_the_other_node(nodes):
    a, b = await nodes(2, client_events=True)
    async with opened(a) as one, opened(b) as two:
        await member(a, one, "1", None)
        await member(b, two, "2", None)
        assert (await frame(one))[0] == "pusher_internal:member_added"
        await send(two, "client-typing", {"on": True}, channel=ROOM)
        assert await receive(one) == {
            "event": "client-typing",
            "channel": ROOM,
            "data": '{"on":true}',
            "user_id": "2",
        }
        await pong(two)  # and nothing came back to the sender


async def test_a_client_event_crosses_the_cluster_to_pusher_clients_only_and_is_never_kept(
    nodes,
):
    a, b = await nodes(2, client_events=True, **KEPT)
    channel = "private-c"
    thunders = [await thunder_in(server, user, channel) for server, user in ((a, "t"), (b, "u"))]
    async with opened(a) as one, opened(b) as two:
        for ws in (one, two):
            socket_id = await established(ws)
            await subscribed(ws, channel, auth=channel_auth(KEY, SECRET, socket_id, channel))
        await send(one, "client-typing", {"on": True}, channel=channel)
        assert await receive(two) == {
            "event": "client-typing",
            "channel": channel,
            "data": '{"on":true}',
        }
        await pong(one)  # nothing came back to the sender
        # The Thunderpush clients' next message, on either node, is the backend's
        # publish, at the stream's first position: the client event took none.
        assert (await a.api("POST", f"channels/{channel}/", "[1]")).code == 200
        ((epoch, offset, payload),) = await delivered(thunders[0], 1)
        assert (offset, payload) == (1, "[1]")
        assert await delivered(thunders[1], 1) == [(epoch, 1, "[1]")]
    status, kept = await history(b, channel)
    assert (status, kept["messages"]) == (200, [{"offset": 1, "payload": "[1]"}])
    token = channel_token(KEY, SECRET, "v", channel)
    again = await b.client(WebSocketClient, "v")
    await again.send(f"SUBSCRIBE {channel} {token} since={epoch}/0")
    assert (await again.message())["event"] == "subscription_succeeded"
    assert await delivered(again, 1) == [(epoch, 1, "[1]")]
    assert await again.message() == recovered(True, epoch, 1, channel)


async def test_pusher_clients_are_told_to_reconnect_when_their_node_rejoins_redis(
    nodes, fresh_redis
):
    a, b = await nodes(2)
    async with opened(a) as one, opened(b) as two:
        await member(a, one, "1", {"name": "Ann"})
        await member(b, two, "2", None)
        await frame(one)
        fresh_redis.stop()
        fresh_redis.start()
        # Messages may have been missed meanwhile: 4200, reconnect at once.
        for ws in (one, two):
            while (received := await receive(ws))["event"] != "pusher:error":
                pass
            assert received["data"]["code"] == 4200
    await eventually(lambda: status_and(a, "GET", f"channels/{ROOM}/"), (200, []), timeout=10)
    async with opened(a) as one, opened(b) as two:
        await member(a, one, "1", {"name": "Ann"})
        welcome = await member(b, two, "2", None)
        assert welcome["presence"]["hash"] == {"1": {"name": "Ann"}, "2": None}


async def test_pusher_and_thunderpush_publishes_on_either_node_arrive_in_order(nodes):
    a, b = await nodes(2, app_id=APP_ID)
    thunder = await b.client(WebSocketClient, "t", "news")
    async with opened(b) as ws:
        await established(ws)
        await subscribed(ws, "news")
        client = client_of(a)
        for number in range(20):
            if number % 2:
                assert (await b.api("POST", "channels/news/", str(number))).code == 200
            else:
                assert await call(client.trigger, "news", "update", str(number)) == {}
        for number in range(20):
            event = "message" if number % 2 else "update"
            assert await receive(ws) == {"event": event, "channel": "news", "data": str(number)}
            assert await thunder.message() == {"payload": str(number), "channel": "news"}


async def test_a_recovery_under_way_keeps_a_pusher_events_name_and_exclusion(nodes):
    """Both states of a recovery that guard a channel: the read's answer awaited
    (deliveries held), then sent (the bus's older deliveries dropped)."""
    a, b = await nodes(2, app_id=APP_ID, **KEPT)
    watcher = await b.client(WebSocketClient, "watcher", "news")
    async with opened(b) as ws, opened(b) as excluded:
        await established(ws)
        excluded_id = await established(excluded)
        await subscribed(ws, "news")
        await subscribed(excluded, "news")
        client = client_of(a)
        await call(client.trigger, "news", "update", "1")
        ((epoch, _, _),) = await delivered(watcher, 1)
        for socket in (ws, excluded):
            assert (await receive(socket))["data"] == "1"
        # ann recovers, and is sent what the read had: the channel is guarded until
        # the bus brings a later message.
        ann = await b.client(WebSocketClient, "ann")
        await ann.send(f"SUBSCRIBE news since={epoch}/1")
        assert await ann.message() == recovered(True, epoch, 1)
        assert b.hub.gates.guards("news")
        await call(client.trigger, "news", "update", "2", socket_id=excluded_id)
        assert await receive(ws) == {"event": "update", "channel": "news", "data": "2"}
        for thunder in (ann, watcher):
            assert await delivered(thunder, 1) == [(epoch, 2, "2")]
        # bob's recovery is under way when the next message comes (one loop turn).
        bob = await b.client(WebSocketClient, "bob")
        connection_of(b, "bob").handle(f"SUBSCRIBE news since={epoch}/2")
        deliver(b.hub, kept(epoch, 3, "3", PublishOptions("late", excluded_id)))
        assert await receive(ws) == {"event": "late", "channel": "news", "data": "3"}
        assert await bob.message() == recovered(True, epoch, 2)
        for thunder in (bob, watcher):
            assert await delivered(thunder, 1) == [(epoch, 3, "3")]
        await pong(excluded)
