"""Nodes leaving the cluster (``thunderpush.cluster.departures``), on a real Redis.

Three in-process nodes find the same dead node at once: one of them forgets
it, so what it held is told gone once, to the webhooks and in presence
channels, and nothing of it is left in Redis.  Nodes hear each other arrive
and leave at once, not at their next heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections import Counter

import pytest

from thunderpush.auth import channel_token
from thunderpush.cluster import departures, keys
from thunderpush.server.process import shut_down

from .support import KEY, SECRET
from .support.clients import WebSocketClient
from .support.processes import start_server_process
from .support.served import eventually
from .test_cluster import in_presence, listed
from .test_webhooks import ONLY_ANN_GONE

pytestmark = pytest.mark.slow


async def test_a_dead_node_is_forgotten_by_one_claimer_and_vacated_once(
    nodes, receiver, fresh_redis, tmp_path, caplog
):
    caplog.set_level(logging.INFO, "thunderpush.cluster.departures")
    # A long TTL: no heartbeat finds the dead node before the three look at once.
    live = await nodes(3, webhook_url=receiver.url, presence_ttl=30.0)
    watchers = [(await in_presence(server, f"w{index}"))[0] for index, server in enumerate(live)]
    args = ("--redis-url", fresh_redis.url, "--presence-ttl", "30", "--webhook-url", receiver.url)
    doomed = await asyncio.to_thread(start_server_process, tmp_path, *args)
    try:
        victim = await WebSocketClient(doomed.url).open()
        token = channel_token(KEY, SECRET, "ann", "presence-room")
        await victim.send(f"CONNECT ann:{KEY}", "SUBSCRIBE news:sport")
        await victim.send(f"SUBSCRIBE presence-room {token}")
        for watcher in watchers:  # each told of the watchers after it, then of ann
            while (await watcher.message())["user"] != "ann":
                pass
        await live[0].client(WebSocketClient, "bob", "news")
        await receiver.until(("channel_occupied", "sport"), ("user_online", "bob"))
        await asyncio.to_thread(doomed.stop, signal.SIGKILL)
        await victim.close()
    finally:
        doomed.stop()
    with fresh_redis.client() as redis:
        ids = {node.decode() for node in redis.zrange(keys.NODES, 0, -1)}
    (dead,) = ids - {server.parts.node.id for server in live}

    await asyncio.gather(
        *(departures.forget(server.parts.node, server.parts.node.links[0], dead) for server in live)
    )

    for watcher in watchers:
        assert await watcher.message() == {
            "event": "member_removed",
            "channel": "presence-room",
            "user": "ann",
        }
        await watcher.no_message()
    assert await listed(live[2], "presence-room") == ["w0", "w1", "w2"]
    await receiver.until(("channel_vacated", "sport"), ("user_offline", "ann"))
    # A marker from each node, made last: whichever forgot, nothing came twice before it.
    markers = [("user_online", f"zed{index}") for index in range(3)]
    for server, (_, user) in zip(live, markers, strict=True):
        await server.client(WebSocketClient, user)
    await receiver.until(*markers)
    watching = [("user_online", f"w{index}") for index in range(3)]
    watching.append(("channel_occupied", "presence-room"))
    expected = [event for event in ONLY_ANN_GONE if event != ("user_online", "zed")]
    assert Counter(receiver.events()) == Counter(expected + watching + markers)
    forgot = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Forgot")]
    assert forgot == [f"Forgot node {dead}: no heartbeat for 30 s."]
    with fresh_redis.client() as redis:
        assert redis.keys(b"tp:{N:" + dead.encode() + b"}*") == []
        assert dead.encode() not in redis.zrange(keys.NODES, 0, -1)
        assert redis.zscore(keys.GONE, dead) is not None


async def test_nodes_learn_at_once_that_a_node_arrived_or_left(nodes):
    """With a long TTL no heartbeat comes during the test: each node learns of the
    others from what they say on ``tp/{nodes}`` as they join and leave."""
    (a,) = await nodes(1, presence_ttl=30.0)
    b, c = await nodes(2, presence_ttl=30.0)
    ids = sorted(server.parts.node.id for server in (a, b, c))

    async def known(server) -> list[str]:
        return list(server.parts.node.nodes)

    await eventually(lambda: known(a), ids, timeout=1)
    assert await known(b) == ids and await known(c) == ids
    await shut_down(b.parts)
    left = [node for node in ids if node != b.parts.node.id]
    for server in (a, c):
        await eventually(lambda server=server: known(server), left, timeout=1)
    # What a publish counts follows: c's subscriber is counted through a.
    await c.client(WebSocketClient, "ann", "news")
    await eventually(lambda: count_through(a), 1)


async def count_through(server) -> int:
    response = await server.api("POST", "channels/news/", "1")
    assert response.code == 200, response.body
    return json.loads(response.body)["count"]


async def test_a_node_forgotten_while_it_runs_writes_its_records_again_at_its_next_beat(
    nodes, caplog
):
    """B forgets A while A still runs (as after A's heartbeat stalled past the TTL):
    A's member is announced gone and its records deleted.  At its next heartbeat A
    writes them again and announces its member: it does not wait for a reconnect."""
    a, b = await nodes(2, presence_ttl=1.5)
    alice, _ = await in_presence(a, "alice")
    bob, members = await in_presence(b, "bob")
    assert members == ["alice", "bob"]
    await a.client(WebSocketClient, "ann", "news")
    await eventually(lambda: listed(b, "news"), ["ann"])
    node_b = b.parts.node
    await departures.forget(node_b, node_b.links[0], a.parts.node.id)
    assert await bob.message() == {
        "event": "member_removed",
        "channel": "presence-room",
        "user": "alice",
    }
    # Within a heartbeat (0.5 s), A is counted and listed again, its member announced.
    assert await bob.message() == {
        "event": "member_added",
        "channel": "presence-room",
        "user": "alice",
    }
    await eventually(lambda: listed(b, "news"), ["ann"], timeout=2)
    await eventually(lambda: count_through(b), 1, timeout=2)
    assert any("had forgotten this node" in r.getMessage() for r in caplog.records)
    # A's clients kept their connections and missed nothing.
    assert alice.close_code is None
