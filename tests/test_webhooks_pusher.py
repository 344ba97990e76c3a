"""Webhooks in Pusher's format (``--webhook-format pusher``), checked by the ``pusher`` library.

The receiver is ``tests/support/webhooks.py``'s; Pusher clients are raw
websockets (``tests/test_pusher_ws.py``'s helpers) and the real pusher-js in
Node (``tests/test_pusher_js.py``'s driver), Thunderpush clients real SockJS
sessions.  Every POST is checked with the PyPI ``pusher`` library's
``validate_webhook``, as a Pusher application's backend checks it.  Here
``cache_miss`` and ``subscription_count`` are told through
``hub.on_transition`` (and a ``cache_miss`` on each node is the marker told
last); real clients make them in ``tests/test_webhooks_pusher_kinds.py``.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from dataclasses import replace
from typing import Any

import pusher
import pytest

from thunderpush.auth import channel_token
from thunderpush.core.apps import Apps
from thunderpush.core.listener import (
    CACHE_MISS,
    CHANNEL_OCCUPIED,
    CLIENT_EVENT,
    MEMBER_ADDED,
    SUBSCRIPTION_COUNT,
    USER_ONLINE,
)
from thunderpush.server.reload import reload_settings
from thunderpush.webhooks import sender
from thunderpush.webhooks.sender import Webhooks

from .support import KEY, SECRET
from .support.clients import WebSocketClient
from .support.processes import start_server_process
from .support.served import LiveServer, eventually
from .support.webhooks import Post, Receiver
from .test_cluster import in_presence, listed
from .test_metrics import scrape, value
from .test_pusher_js import auth_url, pusher_js  # noqa: F401 - auth_url: a fixture
from .test_pusher_js import pytestmark as with_node
from .test_pusher_ws import established, opened, presence_data, receive, send, subscribed
from .test_webhooks import hooked, leave  # noqa: F401 - hooked: a fixture

ROOM = "presence-room"
APP_ID = "1"


def validated(posts: list[Post]) -> list[dict[str, Any]]:
    """Every event of ``posts``, each POST checked as Pusher's Python library checks it."""
    library = pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET)
    events = []
    for post in posts:
        assert "X-Thunder-Signature" not in post.headers
        key, signed = post.headers["X-Pusher-Key"], post.headers["X-Pusher-Signature"]
        assert library.validate_webhook(key, signed, post.body) == json.loads(post.body)
        assert library.validate_webhook(key, signed, post.body + b" ") is None
        events += json.loads(post.body)["events"]
    return events


def member(name: str, user: str, channel: str = ROOM) -> dict[str, str]:
    return {"name": name, "channel": channel, "user_id": user}


def came(bob_id: str, data: str) -> list[dict[str, str]]:
    """What ann and bob joining ``ROOM``, then bob whispering ``data``, make."""
    typed = {"name": "client_event", "channel": ROOM, "event": "client-typing", "data": data}
    return [
        {"name": "channel_occupied", "channel": ROOM},
        member("member_added", "ann"),
        member("member_added", "bob"),
        {**typed, "socket_id": bob_id, "user_id": "bob"},
    ]


# What ann and bob leaving ``ROOM`` makes.
WENT = [
    member("member_removed", "ann"),
    member("member_removed", "bob"),
    {"name": "channel_vacated", "channel": ROOM},
]


async def pusher_member(server: LiveServer, ws: Any, user: str) -> str:
    """``ws`` joins ``ROOM`` as ``user``; its socket id."""
    socket_id = await established(ws)
    await subscribed(ws, ROOM, **presence_data(socket_id, ROOM, user))
    return socket_id


async def told_everywhere(
    receiver: Receiver, *servers: LiveServer, tag: str = "marker"
) -> list[dict[str, str]]:
    """A marker from each node, told last: each node's events before it have come.
    The markers' events."""
    markers = []
    for number, server in enumerate(servers):
        server.hub.on_transition(CACHE_MISS, f"cache-{tag}-{number}")
        markers.append({"name": "cache_miss", "channel": f"cache-{tag}-{number}"})
    await receiver.until_items(*markers)
    return markers


# -- the queues, without a server ----------------------------------------------------


def test_each_format_carries_its_own_events_and_client_events_are_kept_each(monkeypatch):
    monkeypatch.setattr(sender, "LIMIT", 2)
    webhooks, apps = Webhooks(), Apps()
    own = apps.add("own", "s", webhook_url="http://127.0.0.1:9/")
    theirs = apps.add("theirs", "s", webhook_url="http://127.0.0.1:9/", webhook_format="pusher")
    for app in (own, theirs):
        webhooks.watch(app)
        tell = app.hub.on_transition
        tell(USER_ONLINE, "ann")
        tell(MEMBER_ADDED, ROOM, {"user_id": "ann"})
        for number in range(3):
            tell(CLIENT_EVENT, ROOM, {"event": "client-x", "data": str(number), "socket_id": "1.1"})
        tell(SUBSCRIPTION_COUNT, "news", {"subscription_count": 1})
        tell(SUBSCRIPTION_COUNT, "news", {"subscription_count": 2})
    outbox = webhooks._outboxes
    assert outbox["own"]._take(10) == [(USER_ONLINE, "ann", None)]
    assert outbox["theirs"]._take(10) == [
        (MEMBER_ADDED, ROOM, {"user_id": "ann"}),
        # Never coalesced; the oldest dropped beyond the queue's bound.
        (CLIENT_EVENT, ROOM, {"event": "client-x", "data": "1", "socket_id": "1.1"}),
        (CLIENT_EVENT, ROOM, {"event": "client-x", "data": "2", "socket_id": "1.1"}),
        # The latest count replaced the one pending.
        (SUBSCRIPTION_COUNT, "news", {"subscription_count": 2}),
    ]
    assert webhooks.dropped["client_event"] == 1
    assert webhooks.coalesced["subscription_count"] == 1
    # A format changed by a reload drops what the new one does not carry.
    theirs.hub.on_transition(MEMBER_ADDED, ROOM, {"user_id": "bob"})
    theirs.hub.on_transition(CHANNEL_OCCUPIED, ROOM)
    theirs.webhook_format = "thunderpush"
    webhooks.watch(theirs)
    assert webhooks.dropped["member"] == 1
    assert outbox["theirs"]._take(10) == [(CHANNEL_OCCUPIED, ROOM, None)]


# -- one process -----------------------------------------------------------------------


async def test_every_pusher_event_is_signed_as_pusher_signs_and_validated_by_its_library(
    hooked,  # noqa: F811
    receiver,
):
    server = await hooked(webhook_format="pusher", client_events=True)
    # A Thunderpush client is a user online for Thunderpush's format only.
    await server.client(WebSocketClient, "zed", "news")
    async with opened(server) as one, opened(server) as two:
        await pusher_member(server, one, "ann")
        two_id = await pusher_member(server, two, "bob")
        assert (await receive(one))["event"] == "pusher_internal:member_added"
        await send(two, "client-typing", {"on": True}, channel=ROOM)
        assert (await receive(one))["event"] == "client-typing"
        server.hub.on_transition(CACHE_MISS, "cache-news")
        server.hub.on_transition(SUBSCRIPTION_COUNT, "news", {"subscription_count": 1})
        server.hub.on_transition(SUBSCRIPTION_COUNT, "news", {"subscription_count": 2})
        joined = [
            {"name": "channel_occupied", "channel": "news"},
            *came(two_id, '{"on":true}'),
            {"name": "cache_miss", "channel": "cache-news"},
            {"name": "subscription_count", "channel": "news", "subscription_count": 2},
        ]
        await receiver.until_items(*joined)
    await receiver.until_items(*WENT)
    markers = await told_everywhere(receiver, server)
    events = validated(receiver.posts)
    assert Counter(map(json.dumps, events)) == Counter(map(json.dumps, [*joined, *WENT, *markers]))
    webhooks = server.parts.webhooks
    sent = {
        "user": 0,
        "channel": 3,
        "member": 4,
        "client_event": 1,
        "cache_miss": 2,
        "subscription_count": 1,
    }
    await server.settled(lambda: webhooks.sent == sent)
    assert webhooks.coalesced["subscription_count"] == 1
    samples = await scrape(server.url)
    events = "thunderpush_webhook_events_total"
    assert value(samples, events, result="sent", kind="client_event") == 1
    assert value(samples, events, result="coalesced", kind="subscription_count") == 1
    assert value(samples, events, result="dropped", kind="member") == 0


async def test_a_member_with_two_connections_is_added_once_and_removed_with_the_last(
    hooked,  # noqa: F811
    receiver,
):
    server = await hooked(webhook_format="pusher")
    async with opened(server) as first:
        await pusher_member(server, first, "ann")
        thunder, _ = await in_presence(server, "ann")
        await receiver.until_items(member("member_added", "ann"))
        await leave(thunder)
        await server.settled(lambda: len(server.hub.channel_connections(ROOM)) == 1)
        await told_everywhere(receiver, server, tag="early")
        assert member("member_removed", "ann") not in receiver.items()
    await receiver.until_items(member("member_removed", "ann"))
    assert [event["name"] for event in validated(receiver.posts)].count("member_added") == 1


async def test_a_reload_changes_the_format_from_the_next_post(hooked, receiver):  # noqa: F811
    server = await hooked()
    built = server.parts
    await server.client(WebSocketClient, "ann")
    await receiver.until(("user_online", "ann"))
    reload_settings(built, lambda: replace(built.config, webhook_format="pusher"))
    assert server.hub.on_transition is not None
    await server.client(WebSocketClient, "bob", "news")
    await receiver.until(("channel_occupied", "news"))
    # bob is online for Thunderpush's format only, which the app no longer has.
    assert [post.headers.get("X-Pusher-Key") for post in receiver.posts] == [None, KEY]
    assert receiver.events() == [("user_online", "ann"), ("channel_occupied", "news")]
    validated(receiver.posts[1:])


# -- a cluster -----------------------------------------------------------------------


@pytest.mark.slow
async def test_members_and_client_events_are_told_once_across_two_nodes(nodes, receiver):
    a, b = await nodes(2, webhook_url=receiver.url, webhook_format="pusher", client_events=True)
    async with opened(a) as ann_a, opened(b) as ann_b, opened(b) as bob:
        await pusher_member(a, ann_a, "ann")
        await pusher_member(b, ann_b, "ann")
        bob_id = await pusher_member(b, bob, "bob")
        await eventually(lambda: listed(a, ROOM), ["ann", "bob"])
        await send(bob, "client-typing", {"on": 1}, channel=ROOM)
        joined = came(bob_id, '{"on":1}')
        await receiver.until_items(*joined)
        # ann leaves a, and is still on b: nothing to say.
        await ann_a.close()
        await eventually(lambda: listed(b, ROOM), ["ann", "bob"])
        early = await told_everywhere(receiver, a, b, tag="early")
        assert member("member_removed", "ann") not in receiver.items()
    await receiver.until_items(*WENT)
    await eventually(lambda: listed(a, ROOM), [])
    markers = await told_everywhere(receiver, a, b)
    assert Counter(map(json.dumps, validated(receiver.posts))) == Counter(
        map(json.dumps, [*joined, *early, *WENT, *markers])
    )


@pytest.mark.slow
async def test_a_dead_nodes_members_are_removed_once_by_the_node_that_forgets_it(
    nodes,
    receiver,
    fresh_redis,
    tmp_path,
):
    (a,) = await nodes(1, webhook_url=receiver.url, presence_ttl=2.0, webhook_format="pusher")
    doomed = await asyncio.to_thread(
        start_server_process,
        tmp_path,
        *("--redis-url", fresh_redis.url, "--presence-ttl", "2"),
        *("--webhook-url", receiver.url, "--webhook-format", "pusher"),
    )
    try:
        victim = await WebSocketClient(doomed.url).open()
        token = channel_token(KEY, SECRET, "ann", ROOM)
        await victim.send(f"CONNECT ann:{KEY}", f"SUBSCRIBE {ROOM} {token}")
        await in_presence(a, "bob")
        await eventually(lambda: listed(a, ROOM), ["ann", "bob"])
        await receiver.until_items(member("member_added", "ann"), member("member_added", "bob"))
        await asyncio.to_thread(doomed.stop, signal.SIGKILL)
        await victim.close()
        # Forgotten within the TTL and a beat; a says so for it.
        await receiver.until_items(member("member_removed", "ann"), timeout=6)
    finally:
        doomed.stop()
    markers = await told_everywhere(receiver, a)
    assert Counter(map(json.dumps, validated(receiver.posts))) == Counter(
        map(
            json.dumps,
            [
                {"name": "channel_occupied", "channel": ROOM},
                member("member_added", "ann"),
                member("member_added", "bob"),
                member("member_removed", "ann"),
                *markers,
            ],
        )
    )
    assert "Traceback" not in doomed.log()


# -- the real pusher-js, in Node ------------------------------------------------------


async def pusher_js_webhooks(receiver: Receiver, auth: str, ann: Any, bob: Any) -> None:
    """pusher-js clients ann (on server ``ann``) and bob (on ``bob``) join ``ROOM``, bob
    whispers, both leave: each event once, each POST as Pusher's library checks it."""
    async with pusher_js(ann, auth, "ann") as one, pusher_js(bob, auth, "bob") as two:
        await one.connected()
        bob_id = await two.connected()
        await one.subscribed(ROOM)
        await two.subscribed(ROOM)
        assert (await one.next())["on"] == "member_added"
        await two.do("trigger", channel=ROOM, event="client-typing", data={"who": "bob"})
        assert (await one.next())["event"] == "client-typing"
        joined = came(bob_id, '{"who":"bob"}')
        await receiver.until_items(*joined)
    await receiver.until_items(*WENT)
    servers = [ann] if ann is bob else [ann, bob]
    markers = await told_everywhere(receiver, *servers)
    assert Counter(map(json.dumps, validated(receiver.posts))) == Counter(
        map(json.dumps, [*joined, *WENT, *markers])
    )


@with_node[0]
@with_node[1]
async def test_pusher_js_members_and_whispers_are_pusher_webhooks(
    hooked,  # noqa: F811
    receiver,
    auth_url,  # noqa: F811
):
    server = await hooked(webhook_format="pusher", client_events=True)
    await pusher_js_webhooks(receiver, auth_url, server, server)


@with_node[0]
@with_node[1]
async def test_pusher_js_on_two_nodes_makes_each_webhook_once(
    nodes,
    receiver,
    auth_url,  # noqa: F811
):
    a, b = await nodes(2, webhook_url=receiver.url, webhook_format="pusher", client_events=True)
    await pusher_js_webhooks(receiver, auth_url, a, b)
