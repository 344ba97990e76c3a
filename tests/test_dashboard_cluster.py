"""The dashboard on a cluster: whichever node answers a poll, the message totals
and the sessions by transport are the cluster's, summed from the counters each
live node writes to Redis with its heartbeat (``thunderpush.cluster.counters``).

The nodes beat every half second here (``presence_ttl=1.5``, the shortest the
cluster tests use), so a total reaches Redis within one.
"""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from thunderpush.cluster import keys

from .support.api import call_api
from .support.clients import WebSocketClient
from .support.processes import start_server_process
from .support.served import eventually
from .test_dashboard import COOKIE, fetch, log_in, session_cookie

pytestmark = pytest.mark.slow

TTL = 1.5
SUMMED = ("messages_published", "messages_delivered", "connections_by_transport", "summed_nodes")


async def figures(node) -> dict:
    cookie = session_cookie(await log_in(node))[COOKIE].value
    data = json.loads((await fetch(node, "/dashboard/data", cookie)).body)
    assert data["cluster"] == "up"
    assert data["counted_every"] == pytest.approx(TTL / 3)
    return {name: data[name] for name in SUMMED}


async def test_both_nodes_answer_the_clusters_message_totals_and_transports(nodes):
    a, b = await nodes(2, presence_ttl=TTL)
    await a.client(WebSocketClient, "alice", "news")
    await b.client(WebSocketClient, "bob", "news")
    for _ in range(3):
        assert (await a.api("POST", "channels/news/", "1")).code == 200
    # Published through A, delivered on both: B's figures hold A's, and A's B's.
    wanted = {
        "messages_published": 3,
        "messages_delivered": 6,
        "connections_by_transport": {"websocket": 2},
        "summed_nodes": 2,
    }
    for node in (b, a):
        assert await eventually(lambda node=node: figures(node), wanted) == wanted


async def test_totals_never_go_down_when_polls_alternate_between_nodes(nodes):
    a, b = await nodes(2, presence_ttl=TTL)
    await a.client(WebSocketClient, "alice", "news")
    await b.client(WebSocketClient, "bob", "news")
    seen: list[tuple[int, int]] = []

    async def publish() -> None:
        for count in range(30):
            await (a if count % 2 else b).api("POST", "channels/news/", "1")
            await asyncio.sleep(0.05)

    publishing = asyncio.ensure_future(publish())
    # Polled in turn while the totals grow, until both nodes' last writes are in.
    deadline = asyncio.get_running_loop().time() + 10
    while not seen or seen[-1] != (30, 60):
        assert asyncio.get_running_loop().time() < deadline, seen[-1]
        shown = await figures(a if len(seen) % 2 else b)
        seen.append((shown["messages_published"], shown["messages_delivered"]))
        await asyncio.sleep(0.03)
    await publishing
    assert len(set(seen)) > 3  # the polls saw the totals grow
    assert seen == sorted(seen)


async def test_a_dead_nodes_counters_leave_the_sums_with_its_record(nodes, fresh_redis, tmp_path):
    (b,) = await nodes(1, presence_ttl=TTL)
    args = ("--redis-url", fresh_redis.url, "--presence-ttl", str(TTL))
    doomed = await asyncio.to_thread(start_server_process, tmp_path, *args)
    try:
        for _ in range(2):
            assert (await call_api(doomed.url, "POST", "channels/news/", "1")).code == 200
        wanted = {"messages_published": 2, "messages_delivered": 0, "summed_nodes": 2}

        async def sums() -> dict:
            shown = await figures(b)
            return {name: shown[name] for name in wanted}

        await eventually(lambda: sums(), wanted)
        with fresh_redis.client() as redis:
            (dead,) = {node.decode() for node in redis.zrange(keys.NODES, 0, -1)} - {
                b.parts.node.id
            }
            # Each write expires with the TTL: nothing outlives a node that stops beating.
            assert 0 < redis.pttl(keys.counters(dead)) <= TTL * 1000
        await asyncio.to_thread(doomed.stop, signal.SIGKILL)
    finally:
        doomed.stop()
    gone = {"messages_published": 0, "messages_delivered": 0, "summed_nodes": 1}
    await eventually(lambda: sums(), gone, timeout=TTL * 3)
    with fresh_redis.client() as redis:
        await eventually(lambda: _exists(redis, keys.counters(dead)), False, timeout=TTL * 2)


async def _exists(redis, key: bytes) -> bool:
    return bool(redis.exists(key))
