"""The Pusher Channels protocol: the hub's publish seam, then the websocket at ``/app/<key>``.

The seam's tests use plain objects implementing the hub's connection contract
(as ``tests/test_core.py`` does); the websocket's tests speak raw frames to a
real server with the ``websockets`` client library.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from thunderpush.auth import channel_token
from thunderpush.core.apps import Apps
from thunderpush.core.broker import PublishOptions
from thunderpush.core.hub import Hub
from thunderpush.core.retention import HistoryPolicy, Keep
from thunderpush.pusher import protocol as pusher
from thunderpush.pusher.dialect import PUSHER
from thunderpush.pusher.signatures import channel_auth, signin_auth

from .support import KEY, SECRET
from .support.clients import WebSocketClient
from .support.wire import RawClient, exchange

WAIT = 5.0
QUERY = "protocol=7&client=js&version=8.4.0&flash=false"
EVIL = "https://evil.example"


class Thunder:
    """A Thunderpush connection as the hub sees one (no dialect: Thunderpush's)."""

    def __init__(self, userid: str) -> None:
        self.userid = userid
        self.received: list[str] = []

    def send_delivery(self, element: str) -> None:
        self.received.append(element)

    def force_disconnect(self) -> None:  # pragma: no cover - not asked here
        raise AssertionError


class Pusher(Thunder):
    """A Pusher connection as the hub sees one: its dialect, its socket id as its
    ``id``, user info per presence channel."""

    dialect = PUSHER

    def __init__(self, userid: str, socket_id: str, info: Any = None) -> None:
        super().__init__(userid)
        self.id = socket_id
        self.info = info

    def member_info(self, channel: str) -> Any:
        return self.info


def joined(hub: Hub, connection: Thunder, *channels: str) -> Thunder:
    hub.add(connection)
    for channel in channels:
        hub.subscribe(connection, channel)
    return connection


def test_a_publish_reaches_each_kind_in_its_own_frame_built_once():
    hub = Hub()
    thunder = joined(hub, Thunder("t"), "news")
    one, two = joined(hub, Pusher("p1", "1.1"), "news"), joined(hub, Pusher("p2", "2.2"), "news")
    assert hub.send_to_channel("news", '{"a":1}', options=PublishOptions("update")) == 3
    assert thunder.received == ['{"payload":"{\\"a\\":1}","channel":"news"}']
    assert json.loads(one.received[0]) == {"event": "update", "channel": "news", "data": '{"a":1}'}
    assert one.received[0] is two.received[0]


def test_a_thunderpush_publish_is_the_default_event_and_exclude_skips_one_socket():
    apps = Apps()
    app = apps.add("key", "secret")
    thunder = joined(app.hub, Thunder("t"), "news")
    sender, other = (joined(app.hub, Pusher(u, s), "news") for u, s in (("a", "1.1"), ("b", "2.2")))
    assert app.broker.send_to_channel(app, "news", "hi") == 3
    assert json.loads(other.received[-1])["event"] == pusher.DEFAULT_EVENT == "message"
    assert app.broker.send_to_channel(app, "news", "again", PublishOptions("client-x", "1.1")) == 2
    assert len(sender.received) == 1
    assert json.loads(other.received[-1]) == {
        "event": "client-x",
        "channel": "news",
        "data": "again",
    }
    # Thunderpush connections are never excluded, whatever the socket id.
    assert app.broker.send_to_channel(app, "news", "3", PublishOptions(skip="None")) == 3
    assert len(thunder.received) == 3


def test_a_channel_without_pusher_connections_is_served_as_before():
    hub = Hub()
    pusher_in_other = joined(hub, Pusher("p", "1.1"), "other")
    thunder = joined(hub, Thunder("t"), "news")
    assert hub.send_to_channel("news", "x", options=PublishOptions("ignored", "1.1")) == 1
    assert thunder.received == ['{"payload":"x","channel":"news"}']
    assert pusher_in_other.received == []
    hub.unsubscribe(pusher_in_other, "other")
    assert hub.send_to_channel("other", "x") == 0


def test_presence_members_carry_user_info_and_both_kinds_see_each_other():
    hub = Hub()
    thunder = joined(hub, Thunder("t"), "presence-room")
    member = joined(hub, Pusher("42", "1.1", {"name": "Ann"}), "presence-room")
    hub.welcome(member, "presence-room")
    assert json.loads(thunder.received[-1]) == {
        "event": "member_added",
        "channel": "presence-room",
        "user": "42",
    }
    welcome = json.loads(member.received[-1])
    assert welcome["event"] == "pusher_internal:subscription_succeeded"
    assert json.loads(welcome["data"]) == {
        "presence": {"ids": ["t", "42"], "hash": {"t": None, "42": {"name": "Ann"}}, "count": 2}
    }
    late = joined(hub, Thunder("u"), "presence-room")
    added = json.loads(member.received[-1])
    assert json.loads(added["data"]) == {"user_id": "u", "user_info": None}
    hub.remove(late)
    assert json.loads(member.received[-1]) == {
        "event": "pusher_internal:member_removed",
        "channel": "presence-room",
        "data": '{"user_id":"u"}',
    }
    hub.remove(member)
    assert json.loads(thunder.received[-1])["event"] == "member_removed"
    assert hub.members.with_info("presence-room") == [("t", None)]


# -- the websocket, frame by frame ----------------------------------------


@asynccontextmanager
async def opened(server, key: str = KEY, query: str = QUERY) -> AsyncIterator[ClientConnection]:
    async with connect(f"ws://127.0.0.1:{server.port}/app/{key}?{query}") as ws:
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def send(ws: ClientConnection, event: str, data: Any = None, **fields: Any) -> None:
    await ws.send(json.dumps({"event": event, "data": data if data is not None else {}, **fields}))


async def established(ws: ClientConnection) -> str:
    """The socket id of ``connection_established``, checked."""
    frame = await receive(ws)
    assert frame["event"] == "pusher:connection_established"
    data = json.loads(frame["data"])  # a JSON string, as Pusher sends it
    assert pusher.is_socket_id(data["socket_id"]), data
    return data["socket_id"]


async def subscribed(ws: ClientConnection, channel: str, **data: Any) -> dict[str, Any]:
    await send(ws, "pusher:subscribe", {"channel": channel, **data})
    frame = await receive(ws)
    assert frame["event"] == "pusher_internal:subscription_succeeded", frame
    assert frame["channel"] == channel
    return json.loads(frame["data"])


async def thunder_in(server, user: str, channel: str) -> WebSocketClient:
    """A Thunderpush client of ``user`` in the token-bearing ``channel``."""
    client = await server.client(WebSocketClient, user)
    await client.send(f"SUBSCRIBE {channel} {channel_token(KEY, SECRET, user, channel)}")
    assert (await client.message())["event"] == "subscription_succeeded"
    return client


async def closed_with(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), WAIT)
    return ws.close_code


def presence_data(socket_id: str, channel: str, user: Any, info: Any = None) -> dict[str, str]:
    channel_data = json.dumps({"user_id": user, "user_info": info})
    auth = channel_auth(KEY, SECRET, socket_id, channel, channel_data)
    return {"auth": auth, "channel_data": channel_data}


async def test_connection_established_then_ping_pong(server):
    async with opened(server) as ws:
        frame = await receive(ws)
        assert frame["event"] == "pusher:connection_established"
        assert json.loads(frame["data"])["activity_timeout"] == 120
        await send(ws, "pusher:ping")
        assert await receive(ws) == {"event": "pusher:pong", "data": {}}
        assert server.hub.connection_count() == 1
    await server.settled(lambda: server.hub.connection_count() == 0)


@pytest.mark.parametrize(
    ("key", "query", "code"),
    [("nokey", QUERY, 4001), (KEY, "client=js", 4006), (KEY, "protocol=8", 4007)],
)
async def test_a_wrong_key_or_protocol_is_an_error_then_a_close_with_its_code(
    server, key, query, code
):
    async with opened(server, key, query) as ws:
        frame = await receive(ws)
        assert frame["event"] == "pusher:error" and frame["data"]["code"] == code
        assert await closed_with(ws) == code


async def test_public_channels_get_both_apis_publishes_and_count_beside_thunderpush(server):
    thunder = await server.client(WebSocketClient, "t", "news")
    async with opened(server) as ws:
        socket_id = await established(ws)
        assert await subscribed(ws, "news") == {}
        response = await server.api("POST", "channels/news/", '{"n": 1}')
        assert json.loads(response.body) == {"count": 2}
        assert await receive(ws) == {"event": "message", "channel": "news", "data": '{"n": 1}'}
        assert await thunder.message() == {"payload": '{"n": 1}', "channel": "news"}
        assert sorted(server.hub.channel_users("news")) == sorted(["t", socket_id])
        await send(ws, "pusher:unsubscribe", {"channel": "news"})
        await server.settled(lambda: server.hub.channel_users("news") == ["t"])
        await server.api("POST", "channels/news/", "2")
        await send(ws, "pusher:ping")
        assert (await receive(ws))["event"] == "pusher:pong"  # and no delivery before it


async def test_private_channels_need_the_pusher_signature(server):
    async with opened(server) as ws:
        socket_id = await established(ws)
        wrong = channel_auth(KEY, "not the secret", socket_id, "private-a")
        await send(ws, "pusher:subscribe", {"channel": "private-a", "auth": wrong})
        frame = await receive(ws)
        assert frame["event"] == "pusher:subscription_error"
        assert frame["channel"] == "private-a"
        error = json.loads(frame["data"])
        assert (error["type"], error["status"]) == ("AuthError", 401) and error["error"]
        assert not server.hub.channel_users("private-a")
        auth = channel_auth(KEY, SECRET, socket_id, "private-a")
        assert await subscribed(ws, "private-a", auth=auth) == {}
        await server.api("POST", "channels/private-a/", "[1]")
        assert (await receive(ws))["data"] == "[1]"


async def test_presence_members_of_both_kinds_see_each_other(server):
    channel = "presence-room"
    thunder = await thunder_in(server, "t", channel)
    async with opened(server) as one, opened(server) as two:
        first = await established(one)
        welcome = await subscribed(one, channel, **presence_data(first, channel, 42, {"n": "A"}))
        assert welcome == {
            "presence": {"ids": ["t", "42"], "hash": {"t": None, "42": {"n": "A"}}, "count": 2}
        }
        assert await thunder.message() == {
            "event": "member_added",
            "channel": channel,
            "user": "42",
        }
        second = await established(two)
        await subscribed(two, channel, **presence_data(second, channel, "7", ["B"]))
        added = await receive(one)
        assert added["event"] == "pusher_internal:member_added"
        assert json.loads(added["data"]) == {"user_id": "7", "user_info": ["B"]}
        assert (await thunder.message())["user"] == "7"
        assert sorted(server.hub.channel_members(channel)) == ["42", "7", "t"]
        # The connection is user 42 now: the API sees it so, and it cannot be another.
        assert server.hub.is_online("42")
        other = presence_data(first, "presence-other", "43")
        await send(one, "pusher:subscribe", {"channel": "presence-other", **other})
        refused = await receive(one)
        assert refused["event"] == "pusher:subscription_error"
        assert json.loads(refused["data"])["status"] == 403
        await server.api("DELETE", "users/t/")
        removed = await receive(one)
        assert removed["event"] == "pusher_internal:member_removed"
        assert json.loads(removed["data"]) == {"user_id": "t"}
    await server.settled(lambda: not server.hub.channel_members(channel))


async def test_a_presence_subscription_needs_signed_channel_data(server):
    async with opened(server) as ws:
        socket_id = await established(ws)
        signed = presence_data(socket_id, "presence-a", "1")
        for data in (
            {"auth": signed["auth"]},
            {**signed, "channel_data": '{"user_id": "2"}'},
            presence_data(socket_id, "presence-a", None),
            presence_data(socket_id, "presence-a", "has space"),
        ):
            await send(ws, "pusher:subscribe", {"channel": "presence-a", **data})
            assert (await receive(ws))["event"] == "pusher:subscription_error"
        assert not server.hub.channel_members("presence-a")


async def test_a_user_info_over_1024_bytes_of_compact_json_is_refused_with_400(server):
    channel = "presence-room"
    thunder = await thunder_in(server, "t", channel)
    async with opened(server) as ws:
        socket_id = await established(ws)
        # 1024 bytes as the members are sent it: '"' + 1022 x + '"'; a non-ASCII
        # character counts as its escape (\u00e9: 6 bytes).
        too_large = ("x" * 1023, {"name": "\u00e9" * 169}, "y" * 60_000)
        for info in too_large:
            await send(
                ws,
                "pusher:subscribe",
                {"channel": channel, **presence_data(socket_id, channel, "ann", info)},
            )
            refused = await receive(ws)
            assert refused["event"] == "pusher:subscription_error"
            assert json.loads(refused["data"]) == {
                "type": "AuthError",
                "error": "user_info too large: at most 1024 bytes as JSON.",
                "status": 400,
            }
        assert server.hub.channel_members(channel) == ["t"]
        # Refused before it made the connection anybody: it may still be another user.
        largest = "x" * 1022
        data = presence_data(socket_id, channel, "bob", largest)
        assert (await subscribed(ws, channel, **data))["presence"]["hash"]["bob"] == largest
    # The one announcement the others got is the accepted member's.
    assert (await thunder.message())["user"] == "bob"


@pytest.mark.config(client_events=True)
async def test_client_events_reach_the_others_but_not_the_sender(server):
    thunder = await thunder_in(server, "t", "private-c")
    async with opened(server) as one, opened(server) as two:
        for ws in (one, two):
            socket_id = await established(ws)
            await subscribed(
                ws, "private-c", auth=channel_auth(KEY, SECRET, socket_id, "private-c")
            )
        await send(one, "client-typing", {"who": "one"}, channel="private-c")
        frame = await receive(two)
        assert frame["event"] == "client-typing" and frame["channel"] == "private-c"
        assert json.loads(frame["data"]) == {"who": "one"}
        await send(one, "pusher:ping")
        assert (await receive(one))["event"] == "pusher:pong"  # nothing came back to the sender
        # Never to a Thunderpush client: its next message is the backend's publish.
        assert (await server.api("POST", "channels/private-c/", "[1]")).code == 200
        assert await thunder.message() == {"payload": "[1]", "channel": "private-c"}
        assert (await receive(one))["event"] == pusher.DEFAULT_EVENT
        await subscribed(one, "public")
        await send(one, "client-x", {}, channel="public")
        assert (await receive(one))["data"]["code"] == 4301


@pytest.mark.config(client_events=True)
async def test_a_presence_client_event_names_its_sender(server):
    channel = "presence-room"
    async with opened(server) as one, opened(server) as two:
        for ws, user in ((one, "ann"), (two, "bob")):
            socket_id = await established(ws)
            await subscribed(ws, channel, **presence_data(socket_id, channel, user))
        assert (await receive(one))["event"] == "pusher_internal:member_added"
        await send(two, "client-typing", {"on": True}, channel=channel)
        frame = await receive(one)
        assert frame == {
            "event": "client-typing",
            "channel": channel,
            "data": '{"on":true}',
            "user_id": "bob",
        }


@pytest.mark.config(client_events=True)
async def test_a_client_event_name_must_be_printable_and_at_most_200_characters(server):
    async with opened(server) as one, opened(server) as two:
        for ws in (one, two):
            socket_id = await established(ws)
            await subscribed(
                ws, "private-c", auth=channel_auth(KEY, SECRET, socket_id, "private-c")
            )
        longest = "client-" + "x" * 193
        for name in (
            "client-ctl\u0000\u2028\n",
            "client-tab\t",
            "client-\u200b",  # a zero-width space: a format character
            "client-\x7f",
            longest + "x",
        ):
            await send(one, name, {}, channel="private-c")
            assert await receive(one) == {
                "event": "pusher:error",
                "data": {"code": 4301, "message": "Client event rejected"},
            }
        await send(one, longest, {}, channel="private-c")
        await send(one, "client-été ☃", {}, channel="private-c")
        # The first frame the other client gets is the 200-character event.
        assert (len(longest), (await receive(two))["event"]) == (200, longest)
        assert (await receive(two))["event"] == "client-été ☃"


def test_a_client_event_reaches_only_pusher_connections_and_is_never_kept():
    apps = Apps()
    app = apps.add("key", "secret", history=HistoryPolicy(Keep(10, 60)))
    thunder = joined(app.hub, Thunder("t"), "private-c")
    sender, other = (
        joined(app.hub, Pusher(u, s), "private-c") for u, s in (("a", "1.1"), ("b", "2.2"))
    )
    event = PublishOptions("client-x", "1.1", from_client=True)
    assert app.broker.send_to_channel(app, "private-c", "hi", event) == 1
    assert (thunder.received, sender.received) == ([], [])
    assert json.loads(other.received[0]) == {
        "event": "client-x",
        "channel": "private-c",
        "data": "hi",
    }
    assert app.hub.streams.read("private-c", Keep(10, 60)).offset == 0
    # A channel with Thunderpush connections only: nothing to build, nobody to reach.
    joined(app.hub, Thunder("u"), "private-d")
    assert app.broker.send_to_channel(app, "private-d", "hi", event) == 0


async def test_client_events_are_refused_unless_the_app_enables_them(server):
    async with opened(server) as ws:
        socket_id = await established(ws)
        await subscribed(ws, "private-c", auth=channel_auth(KEY, SECRET, socket_id, "private-c"))
        await send(ws, "client-typing", {}, channel="private-c")
        error = await receive(ws)
        assert error["event"] == "pusher:error" and error["data"]["code"] == 4301
        await send(ws, "pusher:ping")
        assert (await receive(ws))["event"] == "pusher:pong"  # the connection stays


async def test_signin_makes_the_connection_its_user_for_the_api(server):
    async with opened(server) as ws:
        socket_id = await established(ws)
        user_data = json.dumps({"id": "alice", "name": "Alice"})
        await send(
            ws,
            "pusher:signin",
            {"user_data": user_data, "auth": signin_auth(KEY, SECRET, socket_id, user_data)},
        )
        frame = await receive(ws)
        assert frame["event"] == "pusher:signin_success"
        assert json.loads(frame["data"]) == {"user_data": user_data}
        assert server.hub.is_online("alice") and not server.hub.is_online(socket_id)
        await subscribed(ws, "#server-to-user-alice")
        await server.api("POST", "users/alice/", '"hi"')
        assert await receive(ws) == {
            "event": "message",
            "channel": "#server-to-user-alice",
            "data": '"hi"',
        }
        await server.api("DELETE", "users/alice/")
        frame = await receive(ws)
        assert frame["event"] == "pusher:error" and frame["data"]["code"] == 4009
        assert await closed_with(ws) == 4009
        assert not server.hub.is_online("alice")


async def test_a_wrong_signin_signature_closes_with_4009(server):
    async with opened(server) as ws:
        await established(ws)
        await send(ws, "pusher:signin", {"user_data": '{"id":"a"}', "auth": f"{KEY}:00"})
        assert (await receive(ws))["data"]["code"] == 4009
        assert await closed_with(ws) == 4009


async def test_bad_messages_get_an_error_and_the_connection_stays(server):
    async with opened(server) as ws:
        await established(ws)
        for bad in ("not json", "[]", '{"event": 1}', '{"event":"pusher:subscribe","data":"x"}'):
            await ws.send(bad)
            frame = await receive(ws)
            assert frame["event"] == "pusher:error" and frame["data"]["code"] == 4300
        await send(ws, "pusher:subscribe", {"channel": "bad name"})
        assert json.loads((await receive(ws))["data"])["status"] == 400
        await send(ws, "pusher:ping")
        assert (await receive(ws))["event"] == "pusher:pong"


@pytest.mark.config(max_commands_per_second=5)
async def test_a_flood_closes_with_4100(server):
    async with opened(server) as ws:
        await established(ws)
        for _ in range(10):
            await send(ws, "pusher:ping")
        frames = []
        with pytest.raises(ConnectionClosed):
            while True:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT)))
        assert frames[-1]["data"]["code"] == 4100 and ws.close_code == 4100


async def test_a_silent_client_is_pinged_then_closed_with_4201(server):
    server.router.service.settings.heartbeat_delay = 0.05
    server.parts.pusher.activity_timeout, server.parts.pusher.pong_timeout = 0.1, 0.3
    async with opened(server) as ws:
        await established(ws)
        assert await receive(ws) == {"event": "pusher:ping", "data": {}}
        await send(ws, "pusher:pong")
        assert await receive(ws) == {"event": "pusher:ping", "data": {}}  # answered: pinged again
        frame = await receive(ws)  # not answered
        assert frame["event"] == "pusher:error" and frame["data"]["code"] == 4201
        assert await closed_with(ws) == 4201


async def test_shutdown_closes_pusher_connections_with_4200(server):
    async with opened(server) as ws:
        await established(ws)
        server.router.close_all(9010, "Server shutting down.")
        assert (await receive(ws))["data"]["code"] == 4200
        assert await closed_with(ws) == 4200


@pytest.mark.config(allowed_origins=("https://ok.example",))
@pytest.mark.parametrize("key", [KEY, "nokey"])
async def test_a_refused_origin_gets_403_with_a_json_body_whatever_the_key(server, key):
    """As every websocket handshake of another page (it was Tornado's 404)."""
    path = f"/app/{key}?{QUERY}"
    refused = await exchange(server.port, RawClient.handshake(path, f"Origin: {EVIL}\r\n"))
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n"), refused
    assert b"\r\nContent-Type: application/json; charset=UTF-8\r\n" in head
    assert head.endswith(b"\r\nConnection: close")
    assert json.loads(body) == {"message": "Cross origin websockets not allowed", "status": 403}
    assert not server.door.sockets
    await RawClient.open(server.port, path, "Origin: https://ok.example\r\n")  # 101


async def test_a_handshake_that_is_no_get_gets_405_with_a_json_body(server):
    refused = await exchange(
        server.port, RawClient.handshake(f"/app/{KEY}").replace(b"GET ", b"PUT ", 1)
    )
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"), refused
    assert b"\r\nAllow: GET\r\n" in head
    assert json.loads(body)["status"] == 405
