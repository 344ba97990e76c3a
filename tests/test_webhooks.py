"""Webhooks, received by a real HTTP server in the test's loop.

The receiver is a Tornado app on a free port that keeps every POST; "down"
is its port closed (refused) or held by a socket that accepts and never
answers.  Each node's events arrive in the order it recorded them, so a
marker transition made last proves that nothing came twice before it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import signal
import socket
import ssl
import statistics
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
import trustme

from thunderpush.server.reload import reload_settings
from thunderpush.webhooks import sender

from .support import KEY, SECRET
from .support.clients import WebSocketClient, XhrStreamingClient
from .support.processes import start_server_process
from .support.served import LiveServer, eventually, serving
from .support.webhooks import Receiver
from .test_cluster import listed
from .test_metrics import scrape, value


@pytest.fixture
async def hooked(receiver):
    """``await hooked(**config)``: a server whose app POSTs its webhooks to ``receiver``,
    started (its webhooks sending) and stopped as the command line does."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**settings: Any) -> LiveServer:
            return await stack.enter_async_context(
                serving({"webhook_url": receiver.url, **settings})
            )

        yield start


async def leave(client: WebSocketClient) -> None:
    """The client closes its websocket."""
    client.ws.close()
    await client.close()


# What the cluster tests see when ann (news and sport, on the node that goes)
# and bob (news, on the other) were online, ann's node went and zed came: each
# transition once.
ONLY_ANN_GONE = [
    ("user_online", "ann"),
    ("user_online", "bob"),
    ("channel_occupied", "news"),
    ("channel_occupied", "sport"),
    ("channel_vacated", "sport"),
    ("user_offline", "ann"),
    ("user_online", "zed"),
]


# -- one process -----------------------------------------------------------------


async def test_a_post_is_json_signed_with_the_app_secret(hooked, receiver):
    server = await hooked()
    before = int(time.time() * 1000)
    await server.client(WebSocketClient, "ann", "news")
    await receiver.until(("user_online", "ann"), ("channel_occupied", "news"))
    post = receiver.posts[0]
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["X-Thunder-Key"] == KEY
    expected = hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(post.headers["X-Thunder-Signature"], expected)
    assert not hmac.compare_digest(
        post.headers["X-Thunder-Signature"],
        hmac.new(b"another secret", post.body, hashlib.sha256).hexdigest(),
    )
    document = json.loads(post.body)
    assert before <= document["time_ms"] <= int(time.time() * 1000)
    assert document["events"] == [
        {"name": "user_online", "user": "ann"},
        {"name": "channel_occupied", "channel": "news"},
    ]


@pytest.mark.slow
async def test_each_transition_once_however_many_connections(hooked, receiver):
    server = await hooked()
    first = await server.client(WebSocketClient, "ann", "news")
    second = await server.client(XhrStreamingClient, "ann", "news")
    bob = await server.client(WebSocketClient, "bob", "news")
    # Each step's events arrive before the next step: none is taken back by a later one.
    steps = [{("user_online", "ann"), ("user_online", "bob"), ("channel_occupied", "news")}]
    await receiver.until(*steps[-1])
    # One of ann's connections leaves news, then closes: she is still online and in it.
    await first.send("UNSUBSCRIBE news")
    await server.settled(lambda: len(server.hub.channel_connections("news")) == 2)
    await leave(first)
    await server.settled(lambda: server.hub.connection_count() == 2)
    assert (await server.api("DELETE", "users/ann/")).code == 204
    assert (await second.closed())[0] == 9002
    steps.append({("user_offline", "ann")})
    await receiver.until(*steps[-1])
    await leave(bob)
    steps.append({("channel_vacated", "news"), ("user_offline", "bob")})
    await receiver.until(*steps[-1])
    await server.client(WebSocketClient, "zed")  # the marker: everything before it has come
    steps.append({("user_online", "zed")})
    await receiver.until(*steps[-1])
    events = receiver.events()
    assert [set(events[:3]), set(events[3:4]), set(events[4:6]), set(events[6:])] == steps
    assert len(events) == 7


@pytest.mark.slow
async def test_events_are_batched_at_most_a_hundred_a_post(hooked, receiver):
    server = await hooked()
    channels = [f"c{number:03}" for number in range(250)]
    await server.client(WebSocketClient, "ann", *channels)
    await receiver.until(*[("channel_occupied", channel) for channel in channels])
    # 251 events made at once: three POSTs, in order.
    assert [len(post.events) for post in receiver.posts] == [100, 100, 51]
    assert receiver.events() == [("user_online", "ann")] + [
        ("channel_occupied", channel) for channel in channels
    ]
    # A few events close together: one POST.
    client = await server.client(WebSocketClient, "bob")
    await client.send("SUBSCRIBE x:y:z")
    await receiver.until(("channel_occupied", "z"))
    assert receiver.posts[-1].events == [
        ("user_online", "bob"),
        ("channel_occupied", "x"),
        ("channel_occupied", "y"),
        ("channel_occupied", "z"),
    ]


async def publish_times(
    server: LiveServer, client: WebSocketClient, count: int = 20
) -> list[float]:
    """How long each of ``count`` publishes to ``client``'s channel takes to answer."""
    times = []
    for number in range(count):
        started = time.monotonic()
        response = await server.api("POST", "channels/news/", str(number))
        times.append(time.monotonic() - started)
        assert response.code == 200
        assert (await client.message())["payload"] == str(number)
    return times


@pytest.mark.slow
async def test_a_receiver_that_is_down_slows_nothing_and_gets_the_events_when_back(
    hooked, receiver
):
    server = await hooked()
    ann = await server.client(WebSocketClient, "ann", "news")
    await receiver.until(("channel_occupied", "news"))
    before = await publish_times(server, ann)
    webhooks = server.parts.webhooks
    # Down: nothing listens (refused), and the sender has found out.
    await receiver.close()
    await server.client(WebSocketClient, "bob", "sport")
    await server.settled(lambda: webhooks.failures == 1)
    refused = await publish_times(server, ann)
    # Down: the port accepts, the receiver never answers (each POST waits its 5 s).
    hole = socket.create_server(("127.0.0.1", receiver.port))
    hole.setblocking(False)
    await server.client(WebSocketClient, "carol", "weather")
    accepted, _ = await asyncio.wait_for(asyncio.get_running_loop().sock_accept(hole), 10)
    silent = await publish_times(server, ann)
    for times in (refused, silent):
        assert max(times) < 1.0, times
        assert statistics.median(times) < statistics.median(before) + 0.1, (before, times)
    accepted.close()
    hole.close()
    receiver.listen()
    await receiver.until(("user_online", "carol"), timeout=20)
    assert receiver.events() == [
        ("user_online", "ann"),
        ("channel_occupied", "news"),
        ("user_online", "bob"),
        ("channel_occupied", "sport"),
        ("user_online", "carol"),
        ("channel_occupied", "weather"),
    ]
    assert webhooks.failures >= 2
    # Counted once its answer is read.
    await server.settled(lambda: webhooks.sent == {"channel": 3, "user": 3})


@pytest.mark.slow
async def test_a_full_channel_queue_drops_the_oldest_channels_and_never_a_user(
    hooked, receiver, monkeypatch, no_tracebacks
):
    monkeypatch.setattr(sender, "LIMIT", 100)  # the queues' size, per kind and app
    # A burst of 1,300 subscriptions: within the item budget (docs/security.rst),
    # which derives from max_commands_per_second, whether or not it applies.
    server = await hooked(max_commands_per_second=10_000)
    await receiver.close()
    await server.client(WebSocketClient, "ann", *[f"a{number:03}" for number in range(300)])
    await server.client(WebSocketClient, "bob")
    # Channel churn while the receiver is down: a thousand more channels come.
    churn = await server.client(WebSocketClient, "churn")
    channels = [f"c{number:04}" for number in range(1000)]
    for start in range(0, len(channels), 250):
        await churn.send("SUBSCRIBE " + ":".join(channels[start : start + 250]))
    await server.settled(lambda: len(server.hub.channels) == 1300)
    webhooks = server.parts.webhooks
    await server.settled(lambda: webhooks.failures >= 1)
    assert "dropping the oldest" in no_tracebacks.text
    receiver.listen()
    await receiver.until(("channel_occupied", channels[-1]), timeout=30)
    events = receiver.events()
    users = [event for event in events if event[0] == "user_online"]
    occupied = [event for event in events if event[0] == "channel_occupied"]
    # Every user, and the newest channels; the oldest channels, past the batch that
    # was on its way when the receiver went down, were pushed out.
    assert Counter(users) == Counter({("user_online", u): 1 for u in ("ann", "bob", "churn")})
    assert occupied[-100:] == [("channel_occupied", channel) for channel in channels[-100:]]
    assert webhooks.dropped == {"channel": 1300 - len(occupied), "user": 0}
    assert webhooks.dropped["channel"] >= 1100
    samples = await scrape(server.url)
    for kind in ("channel", "user"):
        dropped = value(samples, "thunderpush_webhook_events_total", result="dropped", kind=kind)
        assert dropped == webhooks.dropped[kind]
    await server.settled(lambda: webhooks.sent == {"channel": len(occupied), "user": 3})
    assert value(samples, "thunderpush_webhook_failures_total") == webhooks.failures


@pytest.mark.slow
async def test_what_is_taken_back_within_the_window_says_nothing(hooked, receiver):
    server = await hooked()
    started = time.monotonic()
    ann = await server.client(WebSocketClient, "ann", "news", "sport")
    await ann.send("UNSUBSCRIBE news")
    await server.settled(lambda: "news" not in server.hub.channels)
    await leave(await server.client(WebSocketClient, "bob", "sport"))
    await server.settled(lambda: not server.hub.is_online("bob"))
    assert time.monotonic() - started < sender.LINGER  # all within the first window
    await receiver.until(("channel_occupied", "sport"))
    # What the receiver was told, then taken back and said again: nothing new.
    await ann.send("UNSUBSCRIBE sport", "SUBSCRIBE sport")
    await server.settled(lambda: server.parts.webhooks.coalesced["channel"] == 4)
    await server.client(WebSocketClient, "zed")  # the marker
    await receiver.until(("user_online", "zed"))
    assert receiver.events() == [
        ("user_online", "ann"),
        ("channel_occupied", "sport"),
        ("user_online", "zed"),
    ]
    assert server.parts.webhooks.coalesced == {"channel": 4, "user": 2}
    samples = await scrape(server.url)
    coalesced = {
        kind: value(samples, "thunderpush_webhook_events_total", result="coalesced", kind=kind)
        for kind in ("channel", "user")
    }
    assert coalesced == {"channel": 4, "user": 2}


def picture(events: list[tuple[str, str]]) -> tuple[set[str], set[str]]:
    """The users online and the channels occupied, as a backend that applied ``events``
    in order believes."""
    users: set[str] = set()
    channels: set[str] = set()
    for name, subject in events:
        held = users if name.startswith("user_") else channels
        if name in ("user_online", "channel_occupied"):
            held.add(subject)
        else:
            held.discard(subject)
    return users, channels


# The issue's churn: 1,000 channels subscribed and unsubscribed over and over,
# here by four sockets of 250 channels each, 15 commands a second each.
CHURNERS, CHURNED, CHURN_RATE = 4, 250, 15
VISITORS = 8


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.02])
async def test_channel_churn_neither_floods_the_receiver_nor_loses_a_user(hooked, receiver, delay):
    receiver.delay = delay  # 0.02: a receiver that answers in 20 ms
    # The item budget (docs/security.rst) derives from max_commands_per_second:
    # set high, it lets this churn through, and the webhook queues alone bound it.
    server = await hooked(max_commands_per_second=10_000)
    started = time.monotonic()
    churners = [await server.client(WebSocketClient, f"churner-{n}") for n in range(CHURNERS)]
    done = asyncio.Event()
    commands = 0

    async def churn(client: WebSocketClient, number: int) -> None:
        nonlocal commands
        items = ":".join(f"c{number}-{item:03}" for item in range(CHURNED))
        while not done.is_set():
            await client.send(f"SUBSCRIBE {items}")
            await asyncio.sleep(1 / CHURN_RATE)
            await client.send(f"UNSUBSCRIBE {items}")
            await asyncio.sleep(1 / CHURN_RATE)
            commands += 2

    tasks = [asyncio.create_task(churn(client, n)) for n, client in enumerate(churners)]
    # Meanwhile real users come, a quarter second apart, each to a room of their
    # own, and half of them leave again a second or more later.
    visitors = []
    for number in range(VISITORS):
        await asyncio.sleep(0.25)
        visitors.append(await server.client(WebSocketClient, f"user-{number}", f"room-{number}"))
    await asyncio.sleep(1.0)
    for visitor in visitors[::2]:
        await leave(visitor)
        await asyncio.sleep(0.25)
    done.set()
    await asyncio.gather(*tasks)
    for client in churners:
        await leave(client)
    await server.settled(lambda: server.hub.connection_count() == VISITORS // 2)
    truth = (set(server.hub.users), set(server.hub.channels))
    assert truth == (
        {f"user-{n}" for n in range(1, VISITORS, 2)},
        {f"room-{n}" for n in range(1, VISITORS, 2)},
    )
    # The backend ends with the right picture of who is online and where.
    deadline = time.monotonic() + 15
    while picture(receiver.events()) != truth:
        assert time.monotonic() < deadline, picture(receiver.events())
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    webhooks = server.parts.webhooks
    assert webhooks.dropped == {"channel": 0, "user": 0}
    # Every user's coming and going arrived, once.
    users = Counter(event for event in receiver.events() if event[0].startswith("user_"))
    everyone = [*(f"user-{n}" for n in range(VISITORS)), *(f"churner-{n}" for n in range(CHURNERS))]
    gone = [
        *(f"user-{n}" for n in range(0, VISITORS, 2)),
        *(f"churner-{n}" for n in range(CHURNERS)),
    ]
    assert users == Counter(
        [*(("user_online", u) for u in everyone), *(("user_offline", u) for u in gone)]
    )
    # The POSTs: a round at most every LINGER seconds, each at most one event per
    # name that changed (1,000 churned channels, the rooms and users): 11 POSTs.
    names = CHURNERS * CHURNED + 2 * VISITORS + CHURNERS
    rounds = elapsed / sender.LINGER + 1
    assert len(receiver.posts) <= rounds * -(-names // sender.BATCH), (len(receiver.posts), elapsed)
    assert len(receiver.events()) <= rounds * names
    # Every channel transition (each command's 250, and the rooms' 8 + 4) was
    # sent or coalesced: none lost, and most never needed saying.
    transitions = commands * CHURNED + VISITORS + VISITORS // 2
    await server.settled(
        lambda: webhooks.sent["channel"] + webhooks.coalesced["channel"] == transitions
    )
    assert webhooks.sent["channel"] < transitions / 2, (webhooks.sent, transitions)


@pytest.mark.slow
async def test_posts_keep_their_connection(hooked, receiver):
    server = await hooked()
    for user in ("ann", "bob", "carol"):
        await server.client(WebSocketClient, user)
        await receiver.until(("user_online", user))
    assert len(receiver.posts) == 3
    assert receiver.connections == 1


async def test_credentials_in_the_url_are_sent_as_basic_authentication(hooked, receiver):
    url = receiver.url.replace("://", "://hook%20user:p%40ss:word@")
    server = await hooked(webhook_url=url)
    await server.client(WebSocketClient, "ann")
    await receiver.until(("user_online", "ann"))
    expected = base64.b64encode(b"hook user:p@ss:word").decode()
    assert receiver.posts[0].headers["Authorization"] == f"Basic {expected}"


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_receiver(authority):
    """A receiver over TLS, with a certificate from ``authority`` for 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    receiver = Receiver(tls=context)
    receiver.listen()
    yield receiver
    await receiver.close()


@pytest.mark.slow
async def test_https_checks_the_certificate_against_the_system_cas(
    hooked, tls_receiver, authority, monkeypatch, tmp_path
):
    # SSL_CERT_FILE names the CAs trusted, as for any OpenSSL program: the test's own.
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    server = await hooked(webhook_url=tls_receiver.url)
    for user in ("ann", "bob"):
        await server.client(WebSocketClient, user)
        await tls_receiver.until(("user_online", user))
    assert (len(tls_receiver.posts), tls_receiver.connections) == (2, 1)


async def test_https_with_a_certificate_no_ca_vouches_for_fails_and_says_why(
    hooked, tls_receiver, caplog
):
    server = await hooked(webhook_url=tls_receiver.url)
    await server.client(WebSocketClient, "ann")
    await server.settled(lambda: server.parts.webhooks.failures >= 1)
    assert tls_receiver.posts == []
    assert "certificate verify failed" in caplog.text
    assert server.parts.webhooks.sent == {"channel": 0, "user": 0}


@pytest.mark.slow
async def test_a_post_answered_otherwise_than_2xx_is_sent_again(hooked, receiver):
    server = await hooked()
    receiver.statuses = [503, 302]
    await server.client(WebSocketClient, "ann", "news")
    await server.settled(lambda: len(receiver.posts) == 3)
    assert [post.events for post in receiver.posts] == [
        [("user_online", "ann"), ("channel_occupied", "news")]
    ] * 3
    webhooks = server.parts.webhooks
    await server.settled(lambda: webhooks.sent == {"channel": 1, "user": 1})
    assert webhooks.failures == 2


@pytest.mark.slow
async def test_a_reload_starts_and_stops_an_apps_webhooks(hooked, receiver):
    server = await hooked(webhook_url=None)
    built = server.parts
    await server.client(WebSocketClient, "ann", "news")
    reload_settings(built, lambda: replace(built.config, webhook_url=receiver.url))
    await server.client(WebSocketClient, "bob")
    await receiver.until(("user_online", "bob"))
    reload_settings(built, lambda: replace(built.config, webhook_url=None))
    await server.client(WebSocketClient, "carol", "sport")
    reload_settings(built, lambda: replace(built.config, webhook_url=receiver.url))
    await server.client(WebSocketClient, "dan")
    await receiver.until(("user_online", "dan"))
    # Only what happened while the app had a URL.
    assert receiver.events() == [("user_online", "bob"), ("user_online", "dan")]


async def test_stopping_sends_what_is_queued_within_the_last_try(hooked, receiver):
    server = await hooked()
    await server.client(WebSocketClient, "ann", "news")
    # At once, before the batch is due: the stop sends it.
    started = time.monotonic()
    await server.parts.stop()
    assert time.monotonic() - started < sender.LAST_TRY + 0.5
    assert ("channel_occupied", "news") in receiver.events()


@pytest.mark.slow
async def test_stopping_with_the_receiver_down_gives_up_within_the_last_try(hooked, receiver):
    server = await hooked()
    await receiver.close()
    hole = socket.create_server(("127.0.0.1", receiver.port))  # accepts, never answers
    try:
        await server.client(WebSocketClient, "ann", "news")
        started = time.monotonic()
        await server.parts.stop()
        assert time.monotonic() - started < sender.LAST_TRY + 0.5
    finally:
        hole.close()
    assert server.parts.webhooks.dropped == {"channel": 1, "user": 1}
    assert server.parts.webhooks.sent == {"channel": 0, "user": 0}


async def test_an_app_without_a_webhook_records_nothing(hooked, receiver):
    server = await hooked(webhook_url=None)
    await server.client(WebSocketClient, "ann", "news")
    assert server.hub.on_transition is None
    await server.parts.stop()
    assert receiver.posts == []
    nothing = {"channel": 0, "user": 0}
    assert (server.parts.webhooks.sent, server.parts.webhooks.dropped) == (nothing, nothing)


# -- a cluster -----------------------------------------------------------------------


@pytest.mark.slow
async def test_a_channel_on_two_nodes_is_occupied_and_vacated_once(nodes, receiver):  # noqa: F811
    a, b = await nodes(2, webhook_url=receiver.url)
    await a.client(WebSocketClient, "ann", "news")
    await b.client(WebSocketClient, "bob", "news")
    await b.client(XhrStreamingClient, "ann", "news")
    await a.client(WebSocketClient, "bob", "news", "sport")
    await eventually(lambda: listed(a, "news"), ["ann", "bob"])
    # Told before they go: each node coalesces what comes and goes within its window.
    await receiver.until(
        ("user_online", "ann"),
        ("user_online", "bob"),
        ("channel_occupied", "news"),
        ("channel_occupied", "sport"),
    )
    for user in ("ann", "bob"):
        assert (await b.api("DELETE", f"users/{user}/")).code == 204
    await eventually(lambda: listed(b, "news"), [])
    await eventually(lambda: listed(b, "sport"), [])
    # Markers, one from each node: each node's events come in order.
    await a.client(WebSocketClient, "zed-a")
    await b.client(WebSocketClient, "zed-b")
    await receiver.until(("user_online", "zed-a"), ("user_online", "zed-b"))
    assert all(post.headers["X-Thunder-Key"] == KEY for post in receiver.posts)
    assert Counter(receiver.events()) == Counter(
        [
            ("user_online", "ann"),
            ("user_online", "bob"),
            ("channel_occupied", "news"),
            ("channel_occupied", "sport"),
            ("channel_vacated", "news"),
            ("channel_vacated", "sport"),
            ("user_offline", "ann"),
            ("user_offline", "bob"),
            ("user_online", "zed-a"),
            ("user_online", "zed-b"),
        ]
    )
    events = receiver.events()
    assert events.index(("channel_occupied", "news")) < events.index(("channel_vacated", "news"))


@pytest.mark.slow
async def test_a_dead_node_is_vacated_once_by_the_node_that_forgets_it(
    nodes,  # noqa: F811
    receiver,
    fresh_redis,
    tmp_path,
):
    (a,) = await nodes(1, webhook_url=receiver.url, presence_ttl=2.0)
    doomed = await asyncio.to_thread(
        start_server_process,
        tmp_path,
        *("--redis-url", fresh_redis.url, "--presence-ttl", "2", "--webhook-url", receiver.url),
    )
    try:
        victim = await WebSocketClient(doomed.url).open()
        await victim.send(f"CONNECT ann:{KEY}", "SUBSCRIBE news:sport")
        await a.client(WebSocketClient, "bob", "news")
        await receiver.until(("channel_occupied", "sport"), ("user_online", "bob"))
        await asyncio.to_thread(doomed.stop, signal.SIGKILL)
        await victim.close()
        # Forgotten within the TTL and a beat; a says so for it.
        await receiver.until(("channel_vacated", "sport"), ("user_offline", "ann"), timeout=6)
    finally:
        doomed.stop()
    await a.client(WebSocketClient, "zed")
    await receiver.until(("user_online", "zed"))
    assert Counter(receiver.events()) == Counter(ONLY_ANN_GONE)
    assert "Traceback" not in doomed.log()


@pytest.mark.slow
async def test_a_node_that_leaves_vacates_what_only_it_had(nodes, receiver):  # noqa: F811
    a, b = await nodes(2, webhook_url=receiver.url)
    await a.client(WebSocketClient, "ann", "news", "sport")
    await b.client(WebSocketClient, "bob", "news")
    await eventually(lambda: listed(b, "news"), ["ann", "bob"])
    await receiver.until(("channel_occupied", "sport"), ("user_online", "bob"))
    # a leaves with its connections still open: its goodbye vacates what only it had.
    await a.parts.stop()
    await receiver.until(("channel_vacated", "sport"), ("user_offline", "ann"))
    await b.client(WebSocketClient, "zed")
    await receiver.until(("user_online", "zed"))
    assert Counter(receiver.events()) == Counter(ONLY_ANN_GONE)
