"""Pusher's ``cache_miss`` and ``subscription_count`` webhooks, made by real clients.

A server with ``--webhook-format pusher``, a webhook URL (the ``receiver``)
and ``--subscription-count``; raw protocol-7 websockets subscribe to an empty
cache channel (one ``cache_miss``) and join and leave a plain channel (the
counts, coalesced at most once a second), on one process and on two nodes of
a Redis, where a miss is told by the node that served it and each count of
the cluster once.  Every POST is checked with the PyPI ``pusher`` library's
``validate_webhook`` (``tests/test_webhooks_pusher.py``'s ``validated``,
which has the other kinds).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import AsyncExitStack
from itertools import pairwise
from typing import Any

import pytest

from .support.served import LiveServer
from .support.webhooks import Receiver
from .test_pusher_api import APP_ID, call, client_of
from .test_pusher_ws import established, opened, receive, subscribed
from .test_webhooks import hooked  # noqa: F401 - a fixture
from .test_webhooks_pusher import told_everywhere, validated

CACHED = "cache-score"
NEWS = "news"
MISS = {"event": "pusher:cache_miss", "channel": CACHED}
COUNTED = "pusher_internal:subscription_count"
# Counts are told a second apart at least: measured where the test reads them,
# a little late at times.
SECOND = 0.8
# A cache channel is counted as any other: 1, 2 as they came, then 0 (or 1 and 0:
# one turn apart) as they left.
LEFT_TOGETHER = ([1, 2, 0], [1, 2, 1, 0])
PUSHER_HOOKS = {"webhook_format": "pusher", "subscription_count": True, "app_id": APP_ID}


def occupied(channel: str) -> dict[str, str]:
    return {"name": "channel_occupied", "channel": channel}


def vacated(channel: str) -> dict[str, str]:
    return {"name": "channel_vacated", "channel": channel}


def missed(channel: str = CACHED) -> dict[str, str]:
    return {"name": "cache_miss", "channel": channel}


def count(number: int, channel: str = NEWS) -> dict[str, Any]:
    """Pusher's ``subscription_count`` webhook event."""
    return {"name": "subscription_count", "channel": channel, "subscription_count": number}


def counts_of(events: list[dict[str, Any]], channel: str) -> list[int]:
    """The counts of ``channel`` the webhooks told, in order, each in Pusher's fields."""
    told = [event for event in events if event["name"] == "subscription_count"]
    for event in told:
        assert event == count(event["subscription_count"], event["channel"]), event
        assert isinstance(event["subscription_count"], int), event
    return [event["subscription_count"] for event in told if event["channel"] == channel]


def others(events: list[dict[str, Any]]) -> Counter:
    """The events that are no count, each as JSON: to compare as a multiset."""
    return Counter(json.dumps(e) for e in events if e["name"] != "subscription_count")


async def cache_frames(ws: Any, channel: str) -> tuple[dict[str, Any], int]:
    """Subscribes ``ws`` to cache ``channel``: the frame that follows
    ``subscription_succeeded`` (the kept event or a miss) and the first count,
    which may come before it through a cluster."""
    await subscribed(ws, channel)
    frames = [await receive(ws), await receive(ws)]
    (counted,) = [frame for frame in frames if frame["event"] == COUNTED]
    (kept,) = [frame for frame in frames if frame is not counted]
    assert counted["channel"] == channel, counted
    return kept, json.loads(counted["data"])["subscription_count"]


async def heard(ws: Any, channel: str, until: int) -> list[tuple[float, int]]:
    """The counts of ``channel`` that ``ws`` hears until ``until``, with when it read
    each (bounded: each frame within ``receive``'s wait)."""
    counts: list[tuple[float, int]] = []
    while not counts or counts[-1][1] != until:
        frame = await receive(ws)
        assert (frame["event"], frame["channel"]) == (COUNTED, channel), frame
        counts.append((time.monotonic(), json.loads(frame["data"])["subscription_count"]))
    return counts


def each_a_second_apart(counts: list[tuple[float, int]]) -> list[int]:
    """The counts heard, checked to be told at most once a second and never twice running."""
    times, numbers = [at for at, _ in counts], [number for _, number in counts]
    assert all(later - earlier >= SECOND for earlier, later in pairwise(times)), counts
    assert all(one != two for one, two in pairwise(numbers)), counts
    return numbers


def told(server: LiveServer, of_kind: str) -> int:
    """The events of ``of_kind`` the receiver took from ``server`` (its own count)."""
    return server.parts.webhooks.sent[of_kind]


# -- one process -----------------------------------------------------------------------


async def miss_then_kept(receiver: Receiver, subscriber: LiveServer, late: LiveServer) -> None:
    """A client of ``subscriber`` finds ``CACHED`` empty (one ``cache_miss``), a trigger
    through ``late``'s Pusher HTTP API fills it, a client of ``late`` gets it kept (no
    miss); both leave."""
    async with opened(subscriber) as first, opened(late) as second:
        await established(first)
        assert await cache_frames(first, CACHED) == (MISS, 1)
        await receiver.until_items(occupied(CACHED), missed())
        await call(client_of(late).trigger, CACHED, "goal", {"home": 1})
        goal = {"event": "goal", "channel": CACHED, "data": '{"home": 1}'}
        assert await receive(first) == goal
        await established(second)
        assert (await cache_frames(second, CACHED))[0] == goal
    await receiver.until_items(vacated(CACHED), count(0, CACHED))


@pytest.mark.slow
async def test_an_empty_cache_channel_is_one_cache_miss_webhook_the_library_accepts(
    hooked,  # noqa: F811
    receiver,
):
    server = await hooked(**PUSHER_HOOKS)
    await miss_then_kept(receiver, server, server)
    markers = await told_everywhere(receiver, server)
    events = validated(receiver.posts)
    assert others(events) == Counter(
        json.dumps(e) for e in (occupied(CACHED), missed(), vacated(CACHED), *markers)
    )
    assert counts_of(events, CACHED) in LEFT_TOGETHER
    await server.settled(lambda: told(server, "cache_miss") == 1 + len(markers))


async def join_and_leave(first: Any, second: Any, third: Any) -> list[int]:
    """``first`` joins ``NEWS``, then ``second`` and ``third`` together; they leave,
    then ``first`` does: the counts ``first`` heard, checked a second apart."""
    await established(first)
    await subscribed(first, NEWS)
    counts = await heard(first, NEWS, 1)
    for ws in (second, third):
        await established(ws)
        await subscribed(ws, NEWS)
    # Within a second of the first: told together at its end (or 2 apart, if late).
    counts += await heard(first, NEWS, 3)
    assert [number for _, number in counts] in ([1, 3], [1, 2, 3]), counts
    await third.close()
    await second.close()
    counts += await heard(first, NEWS, 1)
    return each_a_second_apart(counts)


@pytest.mark.slow
async def test_counts_are_subscription_count_webhooks_coalesced_as_subscribers_hear_them(
    hooked,  # noqa: F811
    receiver,
):
    server = await hooked(**PUSHER_HOOKS)
    async with opened(server) as one, opened(server) as two, opened(server) as three:
        heard_counts = await join_and_leave(one, two, three)
    # The last one out is told to the webhooks only: there is no one left to hear it.
    await receiver.until_items(vacated(NEWS), count(0))
    markers = await told_everywhere(receiver, server)
    events = validated(receiver.posts)
    assert counts_of(events, NEWS) == [*heard_counts, 0]
    assert others(events) == Counter(
        json.dumps(e) for e in (occupied(NEWS), vacated(NEWS), *markers)
    )
    await server.settled(lambda: told(server, "subscription_count") == len(heard_counts) + 1)


# -- two nodes on Redis ------------------------------------------------------------------


@pytest.mark.slow
async def test_a_miss_served_by_one_node_is_told_once_by_that_node(nodes, receiver):
    a, b = await nodes(2, webhook_url=receiver.url, **PUSHER_HOOKS)
    # b serves the miss; a the trigger, and the late subscriber, which gets it kept.
    await miss_then_kept(receiver, b, a)
    markers = await told_everywhere(receiver, a, b)
    events = validated(receiver.posts)
    assert others(events) == Counter(
        json.dumps(e) for e in (occupied(CACHED), missed(), vacated(CACHED), *markers)
    )
    # One marker each; b's miss, by b.
    await b.settled(lambda: (told(a, "cache_miss"), told(b, "cache_miss")) == (1, 2))
    assert counts_of(events, CACHED) in LEFT_TOGETHER


@pytest.mark.slow
async def test_each_count_of_the_cluster_is_one_webhook_across_two_nodes(nodes, receiver):
    a, b = await nodes(2, webhook_url=receiver.url, **PUSHER_HOOKS)
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(opened(a))
        two, three = [await stack.enter_async_context(opened(b)) for _ in range(2)]
        heard_counts = await join_and_leave(one, two, three)
    await receiver.until_items(vacated(NEWS), count(0))
    markers = await told_everywhere(receiver, a, b)
    events = validated(receiver.posts)
    # Each count once, across both nodes, as the first subscriber heard them; then 0.
    assert counts_of(events, NEWS) == [*heard_counts, 0]
    sent = len(heard_counts) + 1
    await a.settled(lambda: told(a, "subscription_count") + told(b, "subscription_count") == sent)
    assert others(events) == Counter(
        json.dumps(e) for e in (occupied(NEWS), vacated(NEWS), *markers)
    )
