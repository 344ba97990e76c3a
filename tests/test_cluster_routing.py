"""Per-channel routing on real Redis and real nodes: a node hears only the channels
and users it holds (``thunderpush.cluster.bus``), and a count never includes a
subscriber that the message cannot reach."""

from __future__ import annotations

import asyncio
import time

import pytest

from thunderpush.cluster import keys
from thunderpush.core.protocol import MISSED
from thunderpush.pusher.signatures import channel_auth

from .support import KEY, SECRET
from .support.clients import Closed, WebSocketClient
from .support.served import LiveServer, eventually
from .test_cluster import in_presence, json_of
from .test_pusher_ws import established, opened, receive, subscribed, thunder_in

pytestmark = pytest.mark.slow


def subscribers(backend, kind: str, name: str) -> int:
    """How many pub/sub connections Redis has on the route of ``name``."""
    with backend.client() as redis:
        return redis.pubsub_numsub(keys.route(KEY, kind, name))[0][1]


def heard(server: LiveServer) -> list[bytes]:
    """The routes of the messages ``server``'s node hears from now on."""
    node = server.parts.node
    routes: list[bytes] = []
    bus = node.links[0]._subscriber
    on_message = bus.on_message

    def counted(channel: bytes, data: bytes) -> None:
        routes.append(channel)
        on_message(channel, data)

    bus.on_message = counted
    return routes


async def test_a_node_hears_a_channel_from_its_first_subscriber_to_its_last(nodes, fresh_redis):
    a, b = await nodes(2)
    on_b = heard(b)
    assert subscribers(fresh_redis, "c", "news") == 0
    ann = await a.client(WebSocketClient, "ann", "news")

    async def routed(kind: str, name: str) -> int:
        return subscribers(fresh_redis, kind, name)

    await eventually(lambda: routed("c", "news"), 1)
    await eventually(lambda: routed("u", "ann"), 1)
    for number in range(20):
        server = (a, b)[number % 2]
        response = await server.api("POST", "channels/news/", str(number))
        assert json_of(response) == {"count": 1}
        assert await ann.message() == {"payload": str(number), "channel": "news"}
    response = await b.api("POST", "users/ann/", "7")
    assert json_of(response) == {"count": 1}
    assert (await ann.message())["payload"] == "7"
    # B holds neither the channel nor the user: it heard none of it.
    assert on_b == []
    # A second subscriber costs no subscription; the last one out ends it.
    amy = await a.client(WebSocketClient, "amy", "news")
    assert subscribers(fresh_redis, "c", "news") == 1
    # DELETE users/ann/ through B reaches A on ann's route.
    assert (await b.api("DELETE", "users/ann/")).code == 204
    assert (await ann.closed())[0] == 9002
    await a.settled(lambda: a.hub.channel_connection_count("news") == 1)
    assert subscribers(fresh_redis, "c", "news") == 1
    await amy.send("UNSUBSCRIBE news")
    await eventually(lambda: routed("c", "news"), 0)
    await eventually(lambda: routed("u", "ann"), 0)
    assert subscribers(fresh_redis, "u", "amy") == 1
    # Now B holds the channel, A none: A hears nothing of it.
    on_a = heard(a)
    bob = await b.client(WebSocketClient, "bob", "news")
    await eventually(lambda: routed("c", "news"), 1)
    assert json_of(await a.api("POST", "channels/news/", "8")) == {"count": 1}
    assert await bob.message() == {"payload": "8", "channel": "news"}
    assert keys.route(KEY, "c", "news") not in on_a
    assert on_b == [keys.route(KEY, "c", "news")]


async def test_a_node_without_a_presence_subscriber_hears_none_of_its_events(nodes):
    """Presence events go on the channel's route: B, holding other channels but no
    subscriber of the room, hears none of them; once it holds one, it hears them."""
    a, b = await nodes(2)
    on_b = heard(b)
    await b.client(WebSocketClient, "carl", "news")
    alice, _ = await in_presence(a, "alice")
    bob, members = await in_presence(a, "bob")
    assert members == ["alice", "bob"]
    assert (await alice.message())["event"] == "member_added"
    await bob.send("UNSUBSCRIBE presence-room")
    assert await alice.message() == {
        "event": "member_removed",
        "channel": "presence-room",
        "user": "bob",
    }
    room = keys.route(KEY, "c", "presence-room")
    assert room not in on_b
    dave, members = await in_presence(b, "dave")
    assert members == ["alice", "dave"]
    assert (await alice.message())["user"] == "dave"
    await in_presence(a, "eve")
    assert await dave.message() == {
        "event": "member_added",
        "channel": "presence-room",
        "user": "eve",
    }
    assert room in on_b


async def test_a_message_counted_for_a_new_subscriber_reaches_it(nodes):
    """Publishes race a SUBSCRIBE on either node: each answered with a count of 1
    reaches the subscriber (the count waits for Redis's confirmation)."""
    a, b = await nodes(2)
    for number in range(8):
        channel = f"race{number}"
        client = await (a, b)[number % 2].client(WebSocketClient, f"u{number}")
        await client.send(f"SUBSCRIBE {channel}")
        counted: set[str] = set()
        deadline = time.monotonic() + 5
        while len(counted) < 4:
            assert time.monotonic() < deadline, "the subscriber was never counted"
            sent = [f"{number + 1}{attempt}" for attempt in range(4)]
            answers = await asyncio.gather(
                *(
                    (a, b)[attempt % 2].api("POST", f"channels/{channel}/", payload)
                    for attempt, payload in enumerate(sent)
                )
            )
            counted |= {
                payload
                for payload, answer in zip(sent, answers, strict=True)
                if json_of(answer)["count"]
            }
        received: set[str] = set()
        while not counted <= received:
            received.add((await client.message())["payload"])


def cut(backend, server: LiveServer) -> None:
    """Redis drops ``server``'s node's connections (both), as a network cut would."""
    node = server.parts.node
    with backend.client() as redis:
        for wire in (node.links[0]._client, node.links[0]._subscriber):
            host, port = wire._transport.get_extra_info("sockname")[:2]
            redis.client_kill(f"{host}:{port}")


async def test_what_a_node_back_first_counts_reaches_or_the_subscriber_reconnects(
    nodes, fresh_redis
):
    """B loses Redis while A keeps it and answers publishes counting B's subscriber
    (its records are still there): each such message reaches it, or it is closed
    with ``MISSED`` once B is back, to reconnect and recover."""
    a, b = await nodes(2)
    sam = await b.client(WebSocketClient, "sam", "news")
    await eventually(lambda: json_of_count(a, "news"), 1)
    cut(fresh_redis, b)
    counted: list[str] = []
    deadline = time.monotonic() + 10
    number = 0
    # Publish through A until B is back and closed sam, and a little after.
    while sam.close_code is None or number % 50:
        assert time.monotonic() < deadline, "B never came back"
        number += 1
        if json_of(await a.api("POST", "channels/news/", str(number)))["count"]:
            counted.append(str(number))
        await asyncio.sleep(0.005)
    received = []
    code = None
    while code is None:
        try:
            received.append((await sam.message())["payload"])
        except Closed as closed:
            code = closed.code
    # Those published while B was cut are lost to sam: it is told to reconnect.
    assert code == MISSED.code
    assert received == sorted(received, key=int) and set(received) <= set(counted)
    # Reconnected, it gets what is published next, counted once.
    sam = await b.client(WebSocketClient, "sam", "news")
    await eventually(lambda: json_of_count(a, "news"), 1)
    assert json_of(await a.api("POST", "channels/news/", "0")) == {"count": 1}
    assert (await sam.message())["payload"] == "0"


async def json_of_count(server: LiveServer, channel: str) -> int:
    return len(json_of(await server.api("GET", f"channels/{channel}/"))["users"])


async def test_each_channel_arrives_in_publish_order_on_every_node(nodes):
    """Publishers race through three nodes on three channels, each waiting for its
    answers: every subscriber gets each publisher's messages in order, and, on one
    Redis, every subscriber gets the same sequence, across channels too."""
    servers = await nodes(3)
    channels = ["one", "two", "three"]
    clients = [
        await server.client(WebSocketClient, f"w{index}", *channels)
        for index, server in enumerate(servers)
    ]
    for channel in channels:
        await eventually(lambda channel=channel: json_of_count(servers[0], channel), 3)
    per_publisher = 25

    async def publisher(channel_index: int, publisher_index: int) -> None:
        channel = channels[channel_index]
        for number in range(per_publisher):
            server = servers[(publisher_index + number) % len(servers)]
            payload = str(100000 + channel_index * 10000 + publisher_index * 1000 + number)
            response = await server.api("POST", f"channels/{channel}/", payload)
            assert json_of(response) == {"count": len(servers)}

    await asyncio.gather(*(publisher(c, p) for c in range(3) for p in range(3)))
    sequences = []
    for client in clients:
        sequence = [await client.message() for _ in range(3 * 3 * per_publisher)]
        for channel_index, channel in enumerate(channels):
            for publisher_index in range(3):
                base = 100000 + channel_index * 10000 + publisher_index * 1000
                mine = [
                    int(message["payload"]) - base
                    for message in sequence
                    if message["channel"] == channel
                    and base <= int(message["payload"]) < base + 1000
                ]
                assert mine == list(range(per_publisher))
        sequences.append(sequence)
    assert sequences[1] == sequences[0] and sequences[2] == sequences[0]


def slow_bus(server: LiveServer, delay: float) -> None:
    """What ``server``'s node writes on its bus connection reaches Redis ``delay``
    seconds late, in order: a slow link, so its route subscriptions are late."""
    transport = server.parts.node.links[0]._subscriber._transport
    write = transport.write
    queued: list[bytes] = []
    loop = asyncio.get_running_loop()

    def flush() -> None:
        write(queued.pop(0))

    def late(data: bytes) -> None:
        queued.append(bytes(data))
        loop.call_later(delay, flush)

    transport.write = late


async def test_a_subscription_is_answered_once_its_route_is_subscribed(nodes):
    """B's route subscriptions reach Redis late: a Thunderpush private channel's and
    a Pusher channel's answer come only once they did, so a message published
    through A the moment the client is told reaches it."""
    a, b = await nodes(2)
    slow_bus(b, 0.3)
    channel = "private-late"
    started = time.monotonic()
    client = await thunder_in(b, "ann", channel)
    assert time.monotonic() - started >= 0.3
    assert json_of(await a.api("POST", f"channels/{channel}/", "1")) == {"count": 1}
    assert (await client.message())["payload"] == "1"
    async with opened(b) as ws:
        socket_id = await established(ws)
        started = time.monotonic()
        await subscribed(ws, "late", auth=channel_auth(KEY, SECRET, socket_id, "late"))
        assert time.monotonic() - started >= 0.3
        assert json_of(await a.api("POST", "channels/late/", "2")) == {"count": 1}
        assert (await receive(ws))["data"] == "2"
