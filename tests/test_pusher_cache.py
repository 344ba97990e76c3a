"""Pusher's cache channels: the last event kept per channel, sent to a new subscriber.

The core's store with a clock the test moves (no sleeping through a TTL), the
broker's writes (a backend's publish counts, a client's never), then raw
protocol-7 websockets on one server and on two nodes of a real Redis, the
webhook hook (``hub.on_transition``) of a miss, and bad input; then pusher-js 8
in Node on one server and on two nodes.  A read answered later (the cluster's
order) is ``tests/test_pusher_cache_reads.py``, Chromium and Laravel Echo
``tests/browser/test_pusher_cache.py``.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from thunderpush.cluster import keys
from thunderpush.cluster.history import last_of
from thunderpush.core.apps import Apps
from thunderpush.core.broker import PublishOptions
from thunderpush.core.lasts import Last, Lasts, marker_of
from thunderpush.core.listener import CACHE_MISS
from thunderpush.pusher import protocol as pusher
from thunderpush.pusher.signatures import channel_auth

from . import test_pusher_js
from .support import KEY, SECRET
from .support.clients import WebSocketClient
from .support.clock import ManualClock
from .support.served import serving
from .test_cluster_history import KEPT, delivered
from .test_history import history
from .test_pusher_api import APP_ID, call, client_of
from .test_pusher_js import NODE_MODULES, pusher_js
from .test_pusher_ws import established, opened, presence_data, receive, send, subscribed

CACHED = "cache-score"
SUCCEEDED = "pusher_internal:subscription_succeeded"
# The fixture of pusher-js's auth endpoints, found by its name here too.
auth_url = test_pusher_js.auth_url
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_MODULES / "pusher-js").is_dir(),
    reason="needs node and `npm ci` in client/",
)


def test_a_channel_keeps_one_last_publication_for_its_ttl():
    clock = ManualClock()
    lasts = Lasts(clock)
    lasts.keep(CACHED, Last("goal", "1"), 60)
    lasts.keep(CACHED, Last(None, "2"), 60)
    assert lasts.get(CACHED) == Last(None, "2") and len(lasts) == 1
    clock.advance(59.9)
    assert lasts.get(CACHED) == Last(None, "2")
    clock.advance(0.1)
    assert lasts.get(CACHED) is None
    assert lasts.get("cache-other") is None


def test_what_is_kept_is_one_publication_per_channel_published_to_within_the_ttl():
    """The bound: each write drops the publications whose ttl ran out, so a stream
    of publishes to ever new channels keeps only those of the last ttl."""
    clock = ManualClock()
    lasts = Lasts(clock)
    for number in range(1000):
        lasts.keep(f"cache-{number}", Last(None, "x"), 10)
        clock.advance(1)
    assert len(lasts) == 10
    for _ in range(3):
        lasts.keep("cache-same", Last(None, "x"), 10)
    # The one written 10 s ago is gone; the same channel again replaces its own.
    assert len(lasts) == 10 and lasts.get("cache-990") is None


def apps_keeping(ttl: float = 1800) -> tuple[Apps, Any]:
    apps = Apps()
    apps.keep_last(pusher.CACHE_PREFIXES)
    app = apps.add(KEY, SECRET, cache_ttl=ttl)
    return apps, app


@pytest.mark.parametrize("prefix", pusher.CACHE_PREFIXES)
def test_the_broker_keeps_a_backend_publish_to_each_kind_of_cache_channel(prefix):
    apps, app = apps_keeping()
    channel = prefix + "x"
    apps.broker.send_to_channel(app, channel, '{"a":1}', PublishOptions("update", "1.2"))
    assert app.recall.last(app, channel) == Last("update", '{"a":1}')
    apps.broker.send_to_channel(app, channel, "2")  # Thunderpush's publish: the default event
    assert app.recall.last(app, channel) == Last(None, "2")


def test_a_client_event_and_a_channel_of_no_cache_prefix_are_never_kept():
    apps, app = apps_keeping()
    channel = "private-cache-x"
    apps.broker.send_to_channel(app, channel, "1")
    apps.broker.send_to_channel(app, channel, "2", PublishOptions("client-a", from_client=True))
    assert app.recall.last(app, channel) == Last(None, "1")
    for other in ("news", "private-news", "cachex", "xcache-a"):
        apps.broker.send_to_channel(app, other, "1")
        assert app.recall.last(app, other) is None
    assert len(app.hub.lasts) == 1


def test_an_app_keeps_nothing_until_the_server_names_its_cache_channels():
    apps = Apps()
    app = apps.add(KEY, SECRET)
    apps.broker.send_to_channel(app, CACHED, "1")
    assert app.recall.last(app, CACHED) is None
    apps.keep_last(pusher.CACHE_PREFIXES)  # the apps already there too
    assert app.last_ttl(CACHED) == 1800 and app.last_ttl("news") is None


def test_a_publish_tells_the_channels_that_keep_none_apart_with_one_substring_test():
    assert marker_of(pusher.CACHE_PREFIXES) == "cache-"
    assert marker_of(("a-", "b-")) == "" and marker_of(()) is None
    app = Apps().add(KEY, SECRET, cache_ttl=5)
    app.keep_last(("a-", "b-"))  # no common marker: every name is asked
    assert (app.last_ttl("b-x"), app.last_ttl("c-x"), app.last_ttl("xa-")) == (5, None, None)
    app.keep_last(pusher.CACHE_PREFIXES)
    assert (app.last_ttl("x-cache-a"), app.last_ttl("presence-cache-a")) == (None, 5)


def test_a_redis_value_is_the_event_as_a_bus_field_then_the_payload():
    assert last_of(b"6:update" + '{"é":1}'.encode()) == Last("update", '{"é":1}')
    assert last_of(b"0:[1]") == Last(None, "[1]")


# -- the websocket, one server ----------------------------------------------


async def cache_frames(ws: Any, channel: str, **data: Any) -> dict[str, Any]:
    """Subscribes ``ws`` to ``channel``: the frame after ``subscription_succeeded``."""
    await subscribed(ws, channel, **data)
    return await receive(ws)


async def newcomers_frame(server: Any, channel: str) -> dict[str, Any]:
    """What a new connection to ``server`` gets after subscribing to public ``channel``."""
    async with opened(server) as ws:
        await established(ws)
        return await cache_frames(ws, channel)


def recorded(server: Any) -> list[tuple]:
    """The cache misses the server's hub tells its webhooks from now on."""
    told: list[tuple] = []
    server.hub.on_transition = lambda *event: event[0] == CACHE_MISS and told.append(event)
    return told


@pytest.mark.config(app_id=APP_ID)
async def test_a_late_subscriber_gets_the_last_trigger_as_it_was_and_an_empty_one_a_miss(server):
    told = recorded(server)
    async with opened(server) as ws:
        await established(ws)
        assert await cache_frames(ws, CACHED) == {"event": "pusher:cache_miss", "channel": CACHED}
        assert told == [(CACHE_MISS, CACHED, None)]
        await call(client_of(server).trigger, CACHED, "goal", {"home": 1})
        assert await receive(ws) == {"event": "goal", "channel": CACHED, "data": '{"home": 1}'}
    goal = {"event": "goal", "channel": CACHED, "data": '{"home": 1}'}
    assert await newcomers_frame(server, CACHED) == goal
    # A Thunderpush publish is kept too, as the default event.
    assert (await server.api("POST", f"channels/{CACHED}/", "[2]")).code == 200
    message = {"event": "message", "channel": CACHED, "data": "[2]"}
    assert await newcomers_frame(server, CACHED) == message
    assert told == [(CACHE_MISS, CACHED, None)]


@pytest.mark.config(client_events=True)
async def test_private_and_presence_cache_channels_keep_no_client_event(server):
    private, presence = "private-cache-a", "presence-cache-room"
    async with opened(server) as ws:
        socket_id = await established(ws)
        auth = channel_auth(KEY, SECRET, socket_id, private)
        miss = await cache_frames(ws, private, auth=auth)
        assert miss == {"event": "pusher:cache_miss", "channel": private}
        await send(ws, "client-move", {"x": 1}, channel=private)
        await server.api("POST", f"channels/{presence}/", '"kept"')
        data = presence_data(socket_id, presence, "ann")
        welcome = await subscribed(ws, presence, **data)
        assert welcome["presence"]["ids"] == ["ann"]
        assert await receive(ws) == {"event": "message", "channel": presence, "data": '"kept"'}
    async with opened(server) as again:
        socket_id = await established(again)
        auth = channel_auth(KEY, SECRET, socket_id, private)
        # The client event was not kept.
        assert await cache_frames(again, private, auth=auth) == miss


@pytest.mark.config(cache_ttl=60)
async def test_the_apps_ttl_is_how_long_a_last_event_is_sent(server):
    clock = server.hub.lasts.clock = ManualClock()
    await server.api("POST", f"channels/{CACHED}/", "1")
    clock.advance(59.9)
    assert (await newcomers_frame(server, CACHED))["data"] == "1"
    clock.advance(0.1)
    assert (await newcomers_frame(server, CACHED))["event"] == "pusher:cache_miss"


@pytest.mark.config(max_presence_members=1)
async def test_bad_cache_subscriptions_are_refused_as_any_other_and_leave_nothing(server):
    room = "presence-cache-r"
    async with opened(server) as ws, opened(server) as other:
        socket_id = await established(ws)
        await send(ws, "pusher:subscribe", {"channel": "private-cache-a", "auth": "1:2"})
        refused = await receive(ws)
        assert refused["event"] == "pusher:subscription_error"
        await send(ws, "pusher:subscribe", {"channel": "cache-" + "x" * 300})
        assert (await receive(ws))["event"] == "pusher:subscription_error"
        await send(ws, "pusher:subscribe", {"channel": room, "channel_data": "{}"})
        assert (await receive(ws))["event"] == "pusher:subscription_error"
        # A full presence cache channel: refused by the hub, no last event, no miss.
        await subscribed(ws, room, **presence_data(socket_id, room, "ann"))
        assert (await receive(ws))["event"] == "pusher:cache_miss"
        other_id = await established(other)
        full = {"channel": room, **presence_data(other_id, room, "b")}
        await send(other, "pusher:subscribe", full)
        assert (await receive(other))["event"] == "pusher:subscription_error"
        await send(other, "pusher:ping")
        assert (await receive(other))["event"] == "pusher:pong"
        for user in ("ann", "b"):
            (connection,) = server.hub.users[user]
            assert connection.cache is None  # nothing left waiting
    assert len(server.hub.lasts) == 0


async def test_with_a_webhook_url_a_miss_reaches_the_apps_webhooks(receiver):
    """Thunderpush's own webhook format carries its four events and leaves the miss
    (Pusher's format sends it: docs/webhooks.rst); the hook is called all the same."""
    async with serving({"webhook_url": receiver.url}) as server:
        told = []
        record = server.hub.on_transition
        assert record is not None
        server.hub.on_transition = lambda *event: (told.append(event), record(*event))
        async with opened(server) as ws:
            await established(ws)
            assert (await cache_frames(ws, CACHED))["event"] == "pusher:cache_miss"
            await receiver.until(("channel_occupied", CACHED))
    assert (CACHE_MISS, CACHED, None) in told
    assert "cache_miss" not in [name for name, _ in receiver.events()]


# -- two nodes on Redis -----------------------------------------------------


async def test_a_last_event_published_on_one_node_reaches_a_subscriber_of_the_other(nodes):
    a, b = await nodes(2, app_id=APP_ID, cache_ttl=600)
    told_a, told_b = recorded(a), recorded(b)
    async with opened(b) as ws:
        await established(ws)
        assert await cache_frames(ws, CACHED) == {"event": "pusher:cache_miss", "channel": CACHED}
        assert await call(client_of(a).trigger, CACHED, "goal", [1]) == {}
        assert await receive(ws) == {"event": "goal", "channel": CACHED, "data": "[1]"}
    # Only the node that served the subscription told its webhooks.
    assert told_b == [(CACHE_MISS, CACHED, None)] and told_a == []
    for server in (a, b):
        async with opened(server) as late:
            socket_id = await established(late)
            assert await cache_frames(late, CACHED) == {
                "event": "goal",
                "channel": CACHED,
                "data": "[1]",
            }
            # A presence cache channel: its member list first, then the last event.
            room = "presence-cache-room"
            await server.api("POST", f"channels/{room}/", "[2]")
            await subscribed(late, room, **presence_data(socket_id, room, "ann"))
            assert await receive(late) == {"event": "message", "channel": room, "data": "[2]"}
    assert told_a == []


async def test_the_last_event_is_a_redis_key_that_expires_with_the_apps_ttl(nodes, fresh_redis):
    (a,) = await nodes(1, cache_ttl=600)
    await a.api("POST", f"channels/{CACHED}/", "[1]")
    with fresh_redis.client() as redis:
        key = keys.key(keys.tag(KEY, "c", CACHED), keys.LAST)
        assert last_of(redis.get(key)) == Last(None, "[1]")
        assert 590_000 < redis.pttl(key) <= 600_000
        await a.api("POST", "channels/news/", "[1]")
        assert redis.keys("*:l") == [key]  # no other channel keeps one


async def test_a_cache_channel_that_keeps_history_too_is_kept_both_ways_and_counted_once(nodes):
    a, b = await nodes(2, cache_ttl=600, **KEPT)
    thunder = await a.client(WebSocketClient, "t", CACHED)
    async with opened(b) as ws:
        await established(ws)
        assert (await cache_frames(ws, CACHED))["event"] == "pusher:cache_miss"
        response = await a.api("POST", f"channels/{CACHED}/", "[1]")
        assert json.loads(response.body) == {"count": 2}
        ((epoch, offset, payload),) = await delivered(thunder, 1)
        assert (offset, payload) == (1, "[1]")
        assert await receive(ws) == {"event": "message", "channel": CACHED, "data": "[1]"}
    assert await newcomers_frame(a, CACHED) == {
        "event": "message",
        "channel": CACHED,
        "data": "[1]",
    }
    status, kept = await history(b, CACHED)
    assert (status, kept["messages"]) == (200, [{"offset": 1, "payload": "[1]"}])


# -- pusher-js 8 in Node --------------------------------------------------------


async def pusher_js_cache(publisher: Any, subscribers: Any, auth_url: str) -> None:
    """pusher-js on ``subscribers``: an empty cache channel's ``pusher:cache_miss``
    binding fires; a late subscriber's binding gets what ``publisher`` published,
    on a public and on a presence cache channel (after its member list)."""
    room = "presence-cache-room"
    async with pusher_js(subscribers, auth_url, "1") as first:
        await first.connected()
        for channel in (CACHED, room):
            await first.do("subscribe_cache", channel=channel)
            assert (await first.next())["on"] == "subscribed"
            assert await first.next() == {"on": "cache_miss", "channel": channel}
        for channel in (CACHED, room):
            assert (await publisher.api("POST", f"channels/{channel}/", '{"home": 1}')).code == 200
            report = await first.next()
            assert (report["channel"], report["data"]) == (channel, {"home": 1})
    async with pusher_js(subscribers, auth_url, "2") as late:
        await late.connected()
        for channel in (CACHED, room):
            await late.do("subscribe_cache", channel=channel)
            subscribed = await late.next()
            assert subscribed["on"] == "subscribed", subscribed
            assert await late.next() == {
                "on": "event",
                "channel": channel,
                "event": "message",
                "data": {"home": 1},
            }


@needs_node
async def test_pusher_js_gets_a_miss_then_a_late_subscriber_the_last_event(server, auth_url):
    await pusher_js_cache(server, server, auth_url)


@needs_node
async def test_pusher_js_gets_the_last_event_published_on_the_other_node(nodes, auth_url):
    a, b = await nodes(2)
    await pusher_js_cache(a, b, auth_url)
