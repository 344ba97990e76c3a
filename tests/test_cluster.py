"""The cluster on a real Redis: nodes that share channels, users and presence.

Two in-process nodes (two ``build(config)`` servers in the test's loop, on the
same Redis) serve what needs nothing more; real processes serve what needs a
process to die (SIGKILL).  ``fresh_redis`` (``tests/support/cluster.py``) is a real
``redis-server`` on a free port, empty for each test, stopped and started
again by the outage tests.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from thunderpush.auth import channel_token
from thunderpush.cluster import keys
from thunderpush.core.protocol import MISSED
from thunderpush.server.process import shut_down

from .support import KEY, SECRET
from .support.api import call_api
from .support.clients import Closed, WebSocketClient, XhrStreamingClient
from .support.processes import start_server_process
from .support.served import LiveServer, eventually

pytestmark = pytest.mark.slow


def body(response) -> Any:
    return (response.code, response.body.decode())


async def listed(server: LiveServer, channel: str) -> list[str]:
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


async def count_users(server: LiveServer) -> int:
    return json_of(await server.api("GET", "users/"))["count"]


async def online(server: LiveServer, user: str) -> bool:
    return json_of(await server.api("GET", f"users/{user}/"))["online"]


# -- listings and counts ----------------------------------------------------------


async def test_users_and_channels_are_listed_and_counted_for_the_whole_cluster(nodes):
    a, b = await nodes(2)
    ann = await a.client(WebSocketClient, "ann", "news", "sport")
    await b.client(WebSocketClient, "bob", "news")
    await b.client(WebSocketClient, "ann", "news")
    for server in (a, b):
        await eventually(lambda s=server: listed(s, "news"), ["ann", "bob"])
        assert await listed(server, "sport") == ["ann"]
        assert await count_users(server) == 2
        assert await online(server, "bob") and not await online(server, "carol")
    # Three connections in news, one of them here on a: counted once each.
    assert body(await a.api("POST", "channels/news/", "1")) == (200, '{"count": 3}\n')
    assert body(await b.api("POST", "channels/sport/", "1")) == (200, '{"count": 1}\n')
    # ann leaves news on a: still listed, through her connection on b (which came after bob's).
    await ann.send("UNSUBSCRIBE news")
    await eventually(lambda: listed(b, "news"), ["bob", "ann"])
    assert body(await b.api("POST", "channels/news/", "2")) == (200, '{"count": 2}\n')


async def test_delete_closes_a_users_connections_on_every_node(nodes):
    a, b = await nodes(2)
    here = await a.client(WebSocketClient, "ann", "news")
    there = await b.client(XhrStreamingClient, "ann")
    await b.client(WebSocketClient, "bob", "news")
    await eventually(lambda: listed(b, "news"), ["ann", "bob"])
    assert (await b.api("DELETE", "users/ann/")).code == 204
    assert (await here.closed())[0] == 9002
    assert (await there.closed())[0] == 9002
    await eventually(lambda: online(a, "ann"), False)
    await eventually(lambda: listed(a, "news"), ["bob"])
    assert await count_users(b) == 1


# -- presence channels ---------------------------------------------------------


async def in_presence(server: LiveServer, user: str, kind=WebSocketClient, channel="presence-room"):
    """A connection of ``user`` in ``channel``, and the members it was told of."""
    client = await server.client(kind, user)
    await client.send(f"SUBSCRIBE {channel} {channel_token(KEY, SECRET, user, channel)}")
    event = await client.message()
    assert event["event"] == "subscription_succeeded", event
    return client, event["members"]


async def test_presence_members_and_events_span_the_nodes_each_user_once(nodes):
    a, b = await nodes(2)
    alice, members = await in_presence(a, "alice")
    assert members == ["alice"]
    bob, members = await in_presence(b, "bob", XhrStreamingClient)
    assert members == ["alice", "bob"]
    assert await alice.message() == {
        "event": "member_added",
        "channel": "presence-room",
        "user": "bob",
    }
    # alice's second connection, on the other node: told the members, announced to nobody.
    alice2, members = await in_presence(b, "alice")
    assert members == ["alice", "bob"]
    await eventually(lambda: listed(a, "presence-room"), ["alice", "bob"])
    # Her first connection leaves: she is still in the room, through the second.
    await alice.send("UNSUBSCRIBE presence-room")
    await eventually(lambda: listed(a, "presence-room"), ["bob", "alice"])
    await bob.no_message()
    # Her last connection leaves: bob hears it, once.
    await alice2.send("UNSUBSCRIBE presence-room")
    assert await bob.message() == {
        "event": "member_removed",
        "channel": "presence-room",
        "user": "alice",
    }
    await eventually(lambda: listed(a, "presence-room"), ["bob"])
    await bob.no_message()
    await alice.no_message()


# -- Redis away and back ----------------------------------------------------------


async def test_nodes_answer_503_while_redis_is_down_and_rejoin_by_themselves(
    nodes, fresh_redis, caplog
):
    a, b = await nodes(2)
    ann = await a.client(WebSocketClient, "ann", "news")
    bob, _ = await in_presence(b, "bob")
    await eventually(lambda: listed(a, "news"), ["ann"])
    fresh_redis.stop()

    async def status() -> int:
        started = time.monotonic()
        response = await a.api("POST", "channels/news/", "1")
        assert time.monotonic() - started < 1.5, "a call that needs Redis must not hang"
        return response.code

    await eventually(status, 503)
    response = await b.api("GET", "users/")
    assert body(response) == (503, '{"message": "Cluster backend unavailable.", "status": 503}\n')
    # Sessions stay and commands work locally: a presence subscription gets this node's members.
    carol, members = await in_presence(b, "carol")
    assert members == ["bob", "carol"]
    await ann.send("SUBSCRIBE sport")
    await a.settled(lambda: a.hub.channel_users("sport") == ["ann"])

    fresh_redis.start()
    # Back by themselves, each node closes every connection it held: messages may
    # have been published to them meanwhile; the clients reconnect and recover.
    for client in (ann, bob, carol):
        assert await closed_after_messages(client) == MISSED.code
    await eventually(lambda: status_and(a, "GET", "channels/sport/"), (200, []), timeout=10)
    await eventually(lambda: status_and(a, "GET", "channels/presence-room/"), (200, []))
    ann = await a.client(WebSocketClient, "ann", "news")
    await eventually(lambda: listed(b, "news"), ["ann"])
    assert body(await b.api("POST", "channels/news/", "2")) == (200, '{"count": 1}\n')
    assert await ann.message() == {"payload": "2", "channel": "news"}
    # Presence events flow again across the nodes.
    bob, members = await in_presence(b, "bob")
    dave, members = await in_presence(a, "dave")
    assert members == ["bob", "dave"]
    assert await bob.message() == {
        "event": "member_added",
        "channel": "presence-room",
        "user": "dave",
    }
    await bob.no_message()
    lines = [r.getMessage() for r in caplog.records if r.name == "thunderpush.cluster.node"]
    assert sum("unavailable" in line for line in lines if "still" not in line) == 2, lines
    assert sum(line.startswith("Back in the cluster") for line in lines) == 2, lines


async def closed_after_messages(client: WebSocketClient, timeout: float = 10) -> int:
    """The code ``client`` is closed with, whatever messages came before."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.message(deadline - time.monotonic())
        except Closed as closed:
            return closed.code


async def status_and(server: LiveServer, method: str, path: str) -> tuple[int, Any]:
    response = await server.api(method, path)
    if response.code != 200:
        return response.code, None
    return 200, json_of(response)["users"]


# -- a node that dies ------------------------------------------------------------


def test_a_killed_node_leaves_presence_within_the_ttl(fresh_redis, tmp_path):
    args = ("--redis-url", fresh_redis.url, "--presence-ttl", "2")
    survivor = start_server_process(tmp_path, *args)
    doomed = start_server_process(tmp_path, *args)
    try:
        asyncio.run(_kill_and_watch(survivor, doomed, fresh_redis))
    finally:
        for process in (survivor, doomed):
            process.stop()
    assert "Traceback" not in survivor.log(), survivor.log()


async def _kill_and_watch(survivor, doomed, backend) -> None:
    async def api(process, method, path):
        return await call_api(process.url, method, path)

    watcher = await WebSocketClient(survivor.url).open()
    victim = await WebSocketClient(doomed.url).open()
    try:
        for client, user in ((watcher, "watcher"), (victim, "victim")):
            await client.send(f"CONNECT {user}:{KEY}")
            token = channel_token(KEY, SECRET, user, "presence-room")
            await client.send(f"SUBSCRIBE presence-room {token}")
            assert (await client.message())["event"] == "subscription_succeeded"
        assert (await watcher.message())["user"] == "victim"

        async def users() -> list[str]:
            return json_of(await api(survivor, "GET", "channels/presence-room/"))["users"]

        await eventually(users, ["watcher", "victim"])
        route = keys.route(KEY, "c", "presence-room")

        async def routed() -> int:
            with backend.client() as redis:
                return redis.pubsub_numsub(route)[0][1]

        assert await routed() == 2
        doomed.stop(signal.SIGKILL)
        killed = time.monotonic()
        # Its subscriptions go with its connection to Redis, at once.
        await eventually(routed, 1, timeout=1)
        # Readers stop counting it after the TTL; a live node then forgets it and says so.
        await eventually(users, ["watcher"], timeout=4)
        assert await watcher.message(timeout=4) == {
            "event": "member_removed",
            "channel": "presence-room",
            "user": "victim",
        }
        assert time.monotonic() - killed < 2 + 2 / 3 + 1
        assert json_of(await api(survivor, "GET", "users/"))["count"] == 1
    finally:
        await watcher.close()
        await victim.close()


def test_a_single_process_never_imports_redis():
    script = (
        "import sys\n"
        "from thunderpush.server.application import build\n"
        "from thunderpush.config import Config\n"
        "build(Config(apikey='key', apisecret='secret'))\n"
        "loaded = [m for m in sys.modules if m.startswith(('redis', 'thunderpush.cluster'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


async def test_a_node_that_shuts_down_leaves_presence_at_once(nodes):
    a, b = await nodes(2, presence_ttl=30.0)
    watcher, _ = await in_presence(a, "watcher")
    await in_presence(b, "leaver")
    assert (await watcher.message())["user"] == "leaver"
    await shut_down(b.parts)
    assert await watcher.message() == {
        "event": "member_removed",
        "channel": "presence-room",
        "user": "leaver",
    }
    assert await listed(a, "presence-room") == ["watcher"]
    assert await count_users(a) == 1
