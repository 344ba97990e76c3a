"""``GET channels/`` (connections per channel) and ``GET users/<u>/channels/``.

One process: the in-process server with real SockJS clients.  Cluster: two
in-process nodes on a real Redis (``tests/test_cluster.py``'s ``nodes``), and
a third node's records written into Redis by hand, live and then dead.
"""

from __future__ import annotations

import json
import time

from thunderpush.auth import channel_token
from thunderpush.cluster import keys
from thunderpush.core.protocol import MISSED

from .support import KEY, SECRET
from .support.clients import RawWebSocketClient, WebSocketClient, XhrPollingClient
from .support.served import eventually


async def channels(server, query: str = "") -> dict[str, int]:
    response = await server.api("GET", "channels/" + query)
    assert response.code == 200, response.body
    return json.loads(response.body)["channels"]


async def user_channels(server, user: str) -> list[str]:
    response = await server.api("GET", f"users/{user}/channels/")
    assert response.code == 200, response.body
    return json.loads(response.body)["channels"]


async def test_connections_are_counted_per_channel_sorted_by_name(server):
    assert (await server.api("GET", "channels/")).body == b'{"channels": {}}\n'
    ann = await server.client(WebSocketClient, "ann", "sport", "news")
    await server.client(XhrPollingClient, "bob", "news")
    await server.client(RawWebSocketClient, "ann", "news", "a=b")
    await server.client(WebSocketClient, "cid")  # in no channel
    response = await server.api("GET", "channels/")
    assert response.body == b'{"channels": {"a=b": 1, "news": 3, "sport": 1}}\n'
    await ann.send("UNSUBSCRIBE sport")
    await server.settled(lambda: "sport" not in server.hub.channels)
    assert await channels(server) == {"a=b": 1, "news": 3}
    ann.ws.close()
    await server.settled(lambda: len(server.hub.channels["news"]) == 2)
    assert await channels(server) == {"a=b": 1, "news": 2}


async def test_a_prefix_filters_by_name(server):
    await server.client(WebSocketClient, "ann", "news", "news-eu", "newsroom", "sport", "a=b")
    assert await channels(server, "?prefix=news") == {"news": 1, "news-eu": 1, "newsroom": 1}
    assert await channels(server, "?prefix=news-") == {"news-eu": 1}
    assert await channels(server, "?prefix=a%3D") == {"a=b": 1}
    assert await channels(server, "?prefix=News") == {}
    assert await channels(server, "?prefix=nothing%20here") == {}
    everything = {"a=b": 1, "news": 1, "news-eu": 1, "newsroom": 1, "sport": 1}
    assert await channels(server, "?prefix=") == everything
    assert await channels(server, "?other=news") == everything


async def test_a_users_channels_over_all_its_connections(server):
    first = await server.client(WebSocketClient, "ann", "sport", "news")
    second = await server.client(XhrPollingClient, "ann", "news")
    token = channel_token(KEY, SECRET, "ann", "private-ann")
    await second.send(f"SUBSCRIBE private-ann {token}")
    await server.client(WebSocketClient, "bob", "weather")
    await server.settled(lambda: "private-ann" in server.hub.channels)
    response = await server.api("GET", "users/ann/channels/")
    assert response.body == b'{"channels": ["news", "private-ann", "sport"]}\n'
    assert await user_channels(server, "bob") == ["weather"]
    assert await user_channels(server, "nobody") == []
    first.ws.close()
    await server.settled(lambda: "sport" not in server.hub.channels)
    assert await user_channels(server, "ann") == ["news", "private-ann"]
    # A user id is one path segment, percent-decoded.
    await server.client(WebSocketClient, "d/é", "news")
    assert await user_channels(server, "d%2F%C3%A9") == ["news"]


# -- the cluster -------------------------------------------------------------------


async def test_the_cluster_sums_the_live_nodes_and_ignores_a_dead_ones(nodes, fresh_redis):
    # A long presence TTL: no heartbeat forgets the hand-written node during the test.
    a, b = await nodes(2, presence_ttl=30.0)
    await a.client(WebSocketClient, "ann", "news", "sport")
    await b.client(WebSocketClient, "bob", "news")
    await b.client(XhrPollingClient, "ann", "news", "news-eu")
    expected = {"news": 3, "news-eu": 1, "sport": 1}
    for server in (a, b):
        await eventually(lambda s=server: channels(s), expected)
        assert await channels(server, "?prefix=news") == {"news": 3, "news-eu": 1}
        assert await user_channels(server, "ann") == ["news", "news-eu", "sport"]
        assert await user_channels(server, "bob") == ["news"]

    # A third node's own records, as a node writes them: counted while it beats.
    redis = fresh_redis.client()
    seconds, micros = redis.time()
    now = seconds + micros / 1e6
    redis.zadd(keys.NODES, {"third": now})
    redis.hset(keys.node_key("third", KEY, keys.CHANNELS), mapping={"news": 2, "ghost": 1})
    redis.hset(keys.node_key("third", KEY, keys.USERS), mapping={"ann": 1, "zoe": 1})
    memberships = [("ann", "news"), ("zoe", "news"), ("zoe", "ghost")]
    redis.zadd(
        keys.node_key("third", KEY, keys.MEMBERSHIPS),
        {keys.membership(user, channel): 0 for user, channel in memberships},
    )
    assert await channels(a) == {"ghost": 1, "news": 5, "news-eu": 1, "sport": 1}
    assert await user_channels(b, "zoe") == ["ghost", "news"]
    # Its last heartbeat older than the TTL: dead, its records still there but not counted.
    redis.zadd(keys.NODES, {"third": now - 31})
    assert await channels(a) == expected
    assert await channels(b, "?prefix=gh") == {}
    assert await user_channels(b, "zoe") == []
    assert await user_channels(a, "ann") == ["news", "news-eu", "sport"]
    assert redis.hlen(keys.node_key("third", KEY, keys.CHANNELS)) == 2
    redis.close()


async def test_introspection_and_batches_answer_503_while_redis_is_down(nodes, fresh_redis):
    (a,) = await nodes(1)
    ann = await a.client(WebSocketClient, "ann", "news")
    with fresh_redis.outage():

        async def status() -> int:
            return (await a.api("GET", "channels/")).code

        await eventually(status, 503)
        started = time.monotonic()
        for method, path, body in [
            ("GET", "users/ann/channels/", None),
            ("POST", "batch/", '[{"channel": "news", "message": 1}]'),
        ]:
            response = await a.api(method, path, body)
            assert (response.code, response.body) == (
                503,
                b'{"message": "Cluster backend unavailable.", "status": 503}\n',
            )
        assert time.monotonic() - started < 1.5, "a call that needs Redis must not hang"
    # Nothing of the refused batch: only the close that asks ann to reconnect and recover.
    assert (await ann.closed(timeout=10))[0] == MISSED.code
