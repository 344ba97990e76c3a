"""Nodes on a real Redis Cluster (``--redis-cluster``): the cluster's behaviour
tests run again there, then what only a Redis Cluster does.

``nodes`` here starts in-process servers whose ``--redis-url``s are the seeds
of ``fresh_redis_cluster`` (``tests/support/cluster.py``: three masters, no
replicas), so the tests imported below (delivery, listings, presence of both
dialects, history and recovery, webhooks) run on it unchanged.  Channels in
the tests of this module are chosen so that their slots lie on each of the
three masters.  Guarantees on a Redis Cluster are per channel and per user
(per slot), never across slots: the order test checks exactly that.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Awaitable

import pytest

from thunderpush.auth import channel_token
from thunderpush.cluster import keys
from thunderpush.cluster.slots import key_slot
from thunderpush.core.protocol import MISSED

from .support import KEY, SECRET
from .support.api import call_api
from .support.clients import WebSocketClient
from .support.cluster import RedisCluster
from .support.processes import ServerProcess, bad_log_lines, start_server_process
from .support.served import LiveServer, eventually, nodes_on
from .test_cluster import (
    body,
    closed_after_messages,
    count_users,
    json_of,
    listed,
    test_a_node_that_shuts_down_leaves_presence_at_once,
    test_a_publish_on_one_node_reaches_subscribers_on_every_node_in_order,
    test_a_user_gets_a_send_on_every_node_it_is_connected_to,
    test_delete_closes_a_users_connections_on_every_node,
    test_presence_members_and_events_span_the_nodes_each_user_once,
    test_users_and_channels_are_listed_and_counted_for_the_whole_cluster,
)
from .test_cluster_history import (
    test_a_client_back_on_another_node_gets_exactly_what_it_missed_then_live,
    test_a_gap_longer_than_the_history_is_told_incomplete,
    test_recoveries_racing_a_stream_of_publishes_get_each_message_once_in_order,
    test_the_history_reads_the_same_on_every_node,
)
from .test_pusher_cache import (
    test_a_cache_channel_that_keeps_history_too_is_kept_both_ways_and_counted_once,
    test_a_last_event_published_on_one_node_reaches_a_subscriber_of_the_other,
)
from .test_pusher_cluster import (
    test_presence_members_on_two_nodes_see_each_other_with_user_info_each_user_once,
    test_pusher_and_thunderpush_publishes_on_either_node_arrive_in_order,
)
from .test_subscription_counts import (
    test_the_cluster_wide_count_reaches_pusher_js_on_both_nodes_webhooks_once,
)
from .test_watchlist import auth_url, test_the_watchlist_follows_users_on_the_other_node
from .test_webhooks import (
    test_a_channel_on_two_nodes_is_occupied_and_vacated_once,
    test_a_node_that_leaves_vacates_what_only_it_had,
)
from .test_webhooks_pusher import test_members_and_client_events_are_told_once_across_two_nodes

pytestmark = pytest.mark.slow

__all__ = [
    "test_a_cache_channel_that_keeps_history_too_is_kept_both_ways_and_counted_once",
    "auth_url",
    "test_the_cluster_wide_count_reaches_pusher_js_on_both_nodes_webhooks_once",
    "test_the_watchlist_follows_users_on_the_other_node",
    "test_a_channel_on_two_nodes_is_occupied_and_vacated_once",
    "test_a_client_back_on_another_node_gets_exactly_what_it_missed_then_live",
    "test_a_gap_longer_than_the_history_is_told_incomplete",
    "test_a_last_event_published_on_one_node_reaches_a_subscriber_of_the_other",
    "test_a_node_that_leaves_vacates_what_only_it_had",
    "test_a_node_that_shuts_down_leaves_presence_at_once",
    "test_a_publish_on_one_node_reaches_subscribers_on_every_node_in_order",
    "test_a_user_gets_a_send_on_every_node_it_is_connected_to",
    "test_delete_closes_a_users_connections_on_every_node",
    "test_members_and_client_events_are_told_once_across_two_nodes",
    "test_presence_members_and_events_span_the_nodes_each_user_once",
    "test_presence_members_on_two_nodes_see_each_other_with_user_info_each_user_once",
    "test_pusher_and_thunderpush_publishes_on_either_node_arrive_in_order",
    "test_recoveries_racing_a_stream_of_publishes_get_each_message_once_in_order",
    "test_the_history_reads_the_same_on_every_node",
    "test_users_and_channels_are_listed_and_counted_for_the_whole_cluster",
]


@pytest.fixture
async def nodes(fresh_redis_cluster):
    """``await nodes(n, **config)``: n servers in this loop on ``fresh_redis_cluster``,
    every master's URL a seed."""
    seeds = tuple(fresh_redis_cluster.urls)
    async with nodes_on(redis_url=seeds, redis_cluster=True) as start:
        yield start


def seed_args(cluster: RedisCluster) -> list[str]:
    """The command line of a node on ``cluster``: two of its masters as seeds."""
    return ["--redis-cluster", "--redis-url", cluster.urls[0], "--redis-url", cluster.urls[1]]


def route_of(channel: str) -> bytes:
    return keys.route(KEY, "c", channel)


def channels_on(cluster: RedisCluster, each: int = 1) -> list[list[str]]:
    """``each`` channel names per master, whose routes (and keys) it serves."""
    found: list[list[str]] = [[] for _ in cluster.servers]
    ports = [server.port for server in cluster.servers]
    n = 0
    while any(len(names) < each for names in found):
        name = f"room-{n}"
        at = ports.index(cluster.server_of(key_slot(route_of(name))).port)
        if len(found[at]) < each:
            found[at].append(name)
        n += 1
    return found


async def _sorted(names: Awaitable[list[str]]) -> list[str]:
    return sorted(await names)


async def subscribers(cluster: RedisCluster, route: bytes) -> int:
    """How many connections subscribe ``route`` on its master (sharded pub/sub)."""
    with cluster.server_of(key_slot(route)).client() as client:
        return client.execute_command("PUBSUB", "SHARDNUMSUB", route)[1]


# -- what only a Redis Cluster does --------------------------------------------------


async def test_channels_on_every_master_are_published_listed_and_counted(
    nodes, fresh_redis_cluster
):
    a, b = await nodes(2)
    spread = [name for names in channels_on(fresh_redis_cluster, 2) for name in names]
    ann = await a.client(WebSocketClient, "ann", *spread)
    bob = await b.client(WebSocketClient, "bob", *spread[::2])
    listing = {channel: 2 if index % 2 == 0 else 1 for index, channel in enumerate(spread)}
    for channel, count in listing.items():
        await eventually(lambda c=channel: subscribers(fresh_redis_cluster, route_of(c)), count)
    for server in (a, b):
        assert json_of(await server.api("GET", "channels/"))["channels"] == listing
        assert await count_users(server) == 2
    for index, channel in enumerate(spread):
        response = await (a, b)[index % 2].api("POST", f"channels/{channel}/", str(index))
        assert json_of(response) == {"count": listing[channel]}
        assert await ann.message() == {"payload": str(index), "channel": channel}
        if listing[channel] == 2:
            assert await bob.message() == {"payload": str(index), "channel": channel}
    # The keys of each name are on its route's master: every master holds some.
    for server in fresh_redis_cluster.servers:
        with server.client() as client:
            assert client.dbsize() > 0


async def test_each_channel_arrives_in_publish_order_on_every_node_across_masters(
    nodes, fresh_redis_cluster
):
    """Publishers race through two nodes on a channel of each master, each waiting
    for its answers: every subscriber gets each channel's messages in publish
    order.  Nothing is promised across channels of different slots."""
    servers = await nodes(2)
    channels = [names[0] for names in channels_on(fresh_redis_cluster)]
    clients = [await server.client(WebSocketClient, "w", *channels) for server in servers]
    for channel in channels:
        await eventually(lambda c=channel: subscribers(fresh_redis_cluster, route_of(c)), 2)
    count = 30

    async def publisher(channel: str) -> None:
        for number in range(count):
            response = await servers[number % 2].api("POST", f"channels/{channel}/", str(number))
            assert json_of(response) == {"count": 2}

    await asyncio.gather(*map(publisher, channels))
    for client in clients:
        received = [await client.message() for _ in range(count * len(channels))]
        for channel in channels:
            mine = [int(m["payload"]) for m in received if m["channel"] == channel]
            assert mine == list(range(count))


async def test_a_slot_moved_under_a_channel_closes_its_clients_who_are_served_again(
    nodes, fresh_redis_cluster
):
    a, b = await nodes(2)
    moved, stays = (names[0] for names in channels_on(fresh_redis_cluster)[:2])
    ann = await a.client(WebSocketClient, "ann", moved)
    bob = await b.client(WebSocketClient, "bob", moved)
    sam = await a.client(WebSocketClient, "sam", stays)
    route = route_of(moved)
    await eventually(lambda: subscribers(fresh_redis_cluster, route), 2)
    slot = key_slot(route)
    source = fresh_redis_cluster.server_of(slot)
    target = next(server for server in fresh_redis_cluster.servers if server is not source)
    fresh_redis_cluster.begin_move(slot, target)
    fresh_redis_cluster.end_move(slot, target)
    # Both nodes lost the channel's messages for a moment: its clients are told to
    # reconnect and recover; a channel on another slot keeps its clients.
    for client in (ann, bob):
        assert await closed_after_messages(client, timeout=5) == MISSED.code
    ann = await a.client(WebSocketClient, "ann", moved)
    bob = await b.client(WebSocketClient, "bob", moved)
    await eventually(lambda: subscribers(fresh_redis_cluster, route), 2)
    with target.client() as client:
        assert client.execute_command("PUBSUB", "SHARDNUMSUB", route)[1] == 2
    # Each node writes its subscribers apart from its route (a pipeline a loop
    # turn, sent again after the move): the count follows, not with the route.
    await eventually(lambda: _sorted(listed(b, moved)), ["ann", "bob"])
    assert body(await b.api("POST", f"channels/{moved}/", "1")) == (200, '{"count": 2}\n')
    assert (await ann.message())["payload"] == "1"
    assert (await bob.message())["payload"] == "1"
    assert body(await b.api("POST", f"channels/{stays}/", "2")) == (200, '{"count": 1}\n')
    assert (await sam.message())["payload"] == "2"


async def test_a_killed_master_is_503_within_a_second_then_served_again(nodes, fresh_redis_cluster):
    a, b = await nodes(2)
    channels = [names[0] for names in channels_on(fresh_redis_cluster)]
    ann = await a.client(WebSocketClient, "ann", *channels)
    await eventually(lambda: listed(b, channels[2]), ["ann"])
    fresh_redis_cluster.servers[2].stop(signal.SIGKILL)

    async def status(server: LiveServer, channel: str) -> int:
        started = time.monotonic()
        response = await server.api("POST", f"channels/{channel}/", "1")
        assert time.monotonic() - started < 1.5, "a call that needs Redis must not hang"
        return response.code

    killed = time.monotonic()
    await eventually(lambda: status(b, channels[2]), 503, timeout=2)
    assert time.monotonic() - killed < 1.5
    # One backend: a name on a master still up is 503 too, until the node is back.
    assert await status(b, channels[0]) == 503
    fresh_redis_cluster.servers[2].start()
    fresh_redis_cluster.wait_ok()
    assert await closed_after_messages(ann, timeout=15) == MISSED.code
    ann = await a.client(WebSocketClient, "ann", *channels)
    for channel in channels:
        await eventually(lambda c=channel: listed(b, c), ["ann"], timeout=10)
        assert body(await b.api("POST", f"channels/{channel}/", "2")) == (200, '{"count": 1}\n')
        assert await ann.message() == {"payload": "2", "channel": channel}


def test_a_killed_node_is_forgotten_and_its_members_removed(fresh_redis_cluster, tmp_path):
    args = (*seed_args(fresh_redis_cluster), "--presence-ttl", "2")
    survivor = start_server_process(tmp_path, *args)
    doomed = start_server_process(tmp_path, *args)
    try:
        asyncio.run(_kill_and_watch(survivor.url, doomed, fresh_redis_cluster))
    finally:
        for process in (survivor, doomed):
            process.stop()
    assert not bad_log_lines(survivor), survivor.log()


async def _kill_and_watch(survivor: str, doomed: ServerProcess, cluster: RedisCluster) -> None:
    watcher = await WebSocketClient(survivor).open()
    victim = await WebSocketClient(doomed.url).open()
    try:
        channel = "presence-room"
        for client, user in ((watcher, "watcher"), (victim, "victim")):
            await client.send(f"CONNECT {user}:{KEY}")
            await client.send(f"SUBSCRIBE {channel} {channel_token(KEY, SECRET, user, channel)}")
            assert (await client.message())["event"] == "subscription_succeeded"
            await client.send(f"SUBSCRIBE news-{user}")
        assert (await watcher.message())["user"] == "victim"

        async def users() -> list[str]:
            response = await call_api(survivor, "GET", f"channels/{channel}/")
            return json_of(response)["users"]

        async def online_victim() -> bool:
            return json_of(await call_api(survivor, "GET", "users/victim/"))["online"]

        await eventually(users, ["watcher", "victim"])
        await eventually(lambda: subscribers(cluster, route_of(channel)), 2)
        doomed.stop(signal.SIGKILL)
        killed = time.monotonic()
        await eventually(lambda: subscribers(cluster, route_of(channel)), 1, timeout=1)
        await eventually(users, ["watcher"], timeout=4)
        assert await watcher.message(timeout=4) == {
            "event": "member_removed",
            "channel": channel,
            "user": "victim",
        }
        assert time.monotonic() - killed < 2 + 2 / 3 + 1
        assert not await online_victim()
        listing = json_of(await call_api(survivor, "GET", "channels/"))["channels"]
        assert listing == {channel: 1, "news-watcher": 1}
        # Forgotten: no key of its own is left on any master.
        dead = re.search(r"as node (\w+)", doomed.log()).group(1)
        for server in cluster.servers:
            with server.client() as client:
                assert client.keys(f"tp:{{N:{dead}}}*") == []
    finally:
        await watcher.close()
        await victim.close()
