"""Pusher's limits on Pusher traffic, and encrypted channels, frame by frame and
through the real ``pusher`` library (``tests/test_pusher_api.py``'s helpers),
on one node and on two nodes on Redis; pusher-js meets them in
``tests/test_pusher_js_limits.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import nacl.secret
import pusher
import pytest
from pusher.http import Request

from thunderpush.config import AppConfig, Config, PusherLimits, declared_apps
from thunderpush.core.apps import options_of
from thunderpush.pusher.signatures import channel_auth
from thunderpush.server.cli import load
from thunderpush.server.reload import reload_settings

from .support import KEY, SECRET
from .support.clients import WebSocketClient
from .support.pusher_auth import MASTER_KEY, encrypting_backend
from .test_pusher_api import APP_ID, call, client_of, library
from .test_pusher_api import send as send_request
from .test_pusher_ws import (
    closed_with,
    established,
    opened,
    presence_data,
    receive,
    send,
)
from .test_pusher_ws import subscribed as joined

pytestmark = pytest.mark.config(app_id=APP_ID)


def config(**settings: Any) -> pytest.MarkDecorator:
    """The server's settings, with the app id the ``pusher`` library needs."""
    return pytest.mark.config(app_id=APP_ID, **settings)


LONGEST = "c" * 164  # Pusher's longest channel name


def decrypted(channel: str, data: str) -> str:
    """What pusher-js does with an encrypted event's ``data`` (tweetnacl's secretbox
    under SHA-256 of the channel and the master key)."""
    sealed = json.loads(data)
    shared = hashlib.sha256(channel.encode() + base64.b64decode(MASTER_KEY)).digest()
    box = nacl.secret.SecretBox(shared)
    return box.decrypt(
        base64.b64decode(sealed["ciphertext"]), base64.b64decode(sealed["nonce"])
    ).decode()


async def private(ws: Any, channel: str) -> str:
    """``ws`` connected and in the private ``channel``; its socket id."""
    socket_id = await established(ws)
    await joined(ws, channel, auth=channel_auth(KEY, SECRET, socket_id, channel))
    return socket_id


async def error_of(ws: Any) -> dict[str, Any]:
    frame = await receive(ws)
    assert frame["event"] == "pusher:error", frame
    return frame["data"]


async def refused(ws: Any, channel: str, **data: Any) -> dict[str, Any]:
    """The ``pusher:subscription_error`` that subscribing ``ws`` to ``channel`` gets."""
    await send(ws, "pusher:subscribe", {"channel": channel, **data})
    frame = await receive(ws)
    assert (frame["event"], frame["channel"]) == ("pusher:subscription_error", channel), frame
    return json.loads(frame["data"])


async def members_of(stack: AsyncExitStack, server: Any, room: str, count: int) -> list[Any]:
    """``count`` raw Pusher members of presence ``room`` on ``server``, open until
    ``stack`` closes (``cut_off`` first)."""
    members = []
    for n in range(count):
        ws = await stack.enter_async_context(opened(server))
        members.append(ws)
        socket_id = await established(ws)
        await joined(ws, room, **presence_data(socket_id, room, str(n)))
    return members


def cut_off(members: list[Any]) -> None:
    """Unread, each member's notices of the others' departures would hold up its close."""
    for ws in members:
        ws.transport.abort()


async def pong(ws: Any) -> None:
    """Every frame sent to ``ws`` before a ping's pong has been read."""
    await send(ws, "pusher:ping")
    assert (await receive(ws))["event"] == "pusher:pong"


# -- the settings ------------------------------------------------------------------


def test_pushers_numbers_by_default_per_app_and_from_the_file(tmp_path):
    assert PusherLimits() == PusherLimits(10240, 100, 10, 164, 10, 1024, 0)
    config = Config(apikey=KEY, apisecret=SECRET, max_event_bytes=5, apps=(AppConfig("a", "s"),))
    assert [options_of(app)["pusher_limits"].max_event_bytes for app in declared_apps(config)] == [
        5,
        5,
    ]
    path = tmp_path / "thunderpush.toml"
    path.write_text(
        'max_app_connections = 7\n[[apps]]\nkey = "a"\nsecret = "s"\n'
        "max_client_events_per_second = 3\n"
    )
    loaded, _ = load(["--config", str(path), "--max-channel-name-length", "200", KEY, SECRET], {})
    limits = [app.pusher_limits() for app in declared_apps(loaded)]
    assert [(one.max_app_connections, one.max_channel_name_length) for one in limits] == [
        (7, 200),
        (7, 200),
    ]
    assert [one.max_client_events_per_second for one in limits] == [10, 3]
    for wrong in (["--max-channel-name-length", "257"], ["--max-event-bytes", "-1"]):
        with pytest.raises(ValueError, match="not"):
            load([*wrong, KEY, SECRET], {})


async def test_a_reload_changes_an_apps_limits_for_the_next_trigger(server, caplog):
    running = server.parts.config
    caplog.set_level(logging.INFO, logger="thunderpush")
    reload_settings(server.parts, lambda: replace(running, max_event_bytes=5))
    assert f"Reloaded: app {KEY}: pusher_limits max_event_bytes 10240, " in caplog.text
    assert "-> max_event_bytes 5, max_trigger_channels 100, " in caplog.text
    with pytest.raises(pusher.errors.PusherBadStatus, match="at most 5"):
        await call(client_of(server).trigger, "news", "e", "123456")


# -- the HTTP API -------------------------------------------------------------------


async def test_a_trigger_over_10_kb_is_413_and_delivered_to_nobody(server):
    thunder = await server.client(WebSocketClient, "t", "news")
    client = client_of(server)
    with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
        await call(client.trigger, "news", "big", "x" * 10241)
    # Counted in UTF-8 bytes, as Pusher counts them: 5,121 "é" are 10,242 bytes.
    with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
        await call(client.trigger_batch, [{"channel": "news", "name": "e", "data": "é" * 5121}])
    await call(client.trigger, "news", "fits", "x" * 10240)
    assert (await thunder.message())["payload"] == "x" * 10240


@config(max_event_bytes=20000, max_trigger_channels=2, max_batch_events=2)
async def test_the_limits_are_the_apps_settings(server):
    thunder = await server.client(WebSocketClient, "t", "news")
    client = client_of(server)
    await call(client.trigger, "news", "e", "x" * 11000)
    assert len((await thunder.message())["payload"]) == 11000
    with pytest.raises(pusher.errors.PusherBadRequest, match="1-2 channel names"):
        await call(client.trigger, ["a", "b", "c"], "e", "x")
    three = [{"channel": "news", "name": "e", "data": str(n)} for n in range(3)]
    with pytest.raises(pusher.errors.PusherBadRequest, match="1-2 events"):
        await call(client.trigger_batch, three)
    await call(client.trigger_batch, three[:2])
    assert [(await thunder.message())["payload"] for _ in range(2)] == ["0", "1"]


@config(max_trigger_channels=0, max_batch_events=0, max_event_bytes=0)
async def test_0_turns_a_limit_off(server):
    thunder = await server.client(WebSocketClient, "t", "c0")
    channels = {"name": "e", "data": "x" * 20000, "channels": [f"c{n}" for n in range(150)]}
    await send_request(server, Request(library(server), "POST", f"/apps/{APP_ID}/events", channels))
    assert (await thunder.message())["payload"] == "x" * 20000
    batch = {"batch": [{"channel": "c0", "name": "e", "data": str(n)} for n in range(20)]}
    await send_request(
        server, Request(library(server), "POST", f"/apps/{APP_ID}/batch_events", batch)
    )
    assert [(await thunder.message())["payload"] for _ in range(20)] == [str(n) for n in range(20)]
    with pytest.raises(pusher.errors.PusherBadRequest, match="one or more events"):
        await call(client_of(server).trigger_batch, [])


async def test_channel_names_of_164_characters_on_pushers_side_only(server):
    async with opened(server) as ws:
        await established(ws)
        await joined(ws, LONGEST)
        await call(client_of(server).trigger, LONGEST, "e", "long")
        assert (await receive(ws))["data"] == "long"
        assert (await refused(ws, LONGEST + "c"))["status"] == 400
    request = Request(
        library(server),
        "POST",
        f"/apps/{APP_ID}/events",
        {"name": "e", "data": "x", "channel": LONGEST + "c"},
    )
    with pytest.raises(pusher.errors.PusherBadRequest, match="1-164"):
        await send_request(server, request)
    # Thunderpush's own API keeps its 64.
    response = await server.api("POST", f"channels/{'c' * 65}/", "1")
    assert response.code == 400


# -- client events ---------------------------------------------------------------------


@config(client_events=True)
async def test_client_events_past_10_a_second_are_4301_and_the_connection_stays(server):
    async with opened(server) as one, opened(server) as two:
        await private(one, "private-chat")
        await private(two, "private-chat")
        for n in range(30):
            await send(one, "client-typing", {"n": n}, channel="private-chat")
        for n in range(10):
            assert (await receive(two))["data"] == json.dumps({"n": n}, separators=(",", ":"))
        for _ in range(20):
            error = await error_of(one)
            assert error["code"] == 4301 and "rate limit" in error["message"]
        await pong(two)  # and nothing more came
        await asyncio.sleep(0.25)  # a token back, at 10 a second
        await send(one, "client-typing", {"n": "later"}, channel="private-chat")
        assert json.loads((await receive(two))["data"]) == {"n": "later"}


@config(client_events=True)
async def test_a_client_event_over_10_kb_is_4301(server):
    async with opened(server) as one, opened(server) as two:
        await private(one, "private-chat")
        await private(two, "private-chat")
        await send(one, "client-big", "x" * 10241, channel="private-chat")
        error = await error_of(one)
        assert error["code"] == 4301 and "too large" in error["message"]
        await send(one, "client-small", "x" * 10240, channel="private-chat")
        assert (await receive(two))["event"] == "client-small"


# -- encrypted channels ------------------------------------------------------------------


@config(client_events=True)
async def test_an_encrypted_channel_is_private_and_refuses_client_events(server):
    channel = "private-encrypted-chat"
    thunder = await server.client(WebSocketClient, "t", "news")
    async with opened(server) as one, opened(server) as two:
        socket_id = await established(one)
        assert (await refused(one, channel, auth="key:forged"))["status"] == 401
        await joined(one, channel, auth=channel_auth(KEY, SECRET, socket_id, channel))
        await private(two, channel)
        await send(one, "client-x", {"in": "clear"}, channel=channel)
        error = await error_of(one)
        assert error["code"] == 4301 and "encrypted" in error["message"]
        await pong(two)  # it got nothing
        # The library encrypts a trigger's data; it reaches both untouched.
        await call(encrypting_backend(server.port).trigger, channel, "e", {"secret": "plans"})
        for ws in (one, two):
            frame = await receive(ws)
            assert (frame["event"], frame["channel"]) == ("e", channel)
            assert json.loads(decrypted(channel, frame["data"])) == {"secret": "plans"}
    await thunder.no_message()


# -- connections per app --------------------------------------------------------------------


@config(max_app_connections=2)
async def test_past_max_app_connections_a_pusher_connection_is_closed_with_4004(server):
    await server.client(WebSocketClient, "t")  # Thunderpush's count too
    async with opened(server) as first:
        await established(first)
        async with opened(server) as over:
            error = await error_of(over)
            assert error == {"code": 4004, "message": "Application is over connection quota"}
            assert await closed_with(over) == 4004
    await server.settled(lambda: server.hub.connection_count() == 1)
    async with opened(server) as again:
        await established(again)


# -- presence ------------------------------------------------------------------------------


@config(max_user_info_bytes=20)
async def test_user_info_is_bounded_by_the_apps_setting(server):
    async with opened(server) as ws:
        socket_id = await established(ws)
        big = presence_data(socket_id, "presence-a", "ann", {"name": "x" * 20})
        error = await refused(ws, "presence-a", **big)
        assert error["error"] == "user_info too large: at most 20 bytes as JSON."
        small = presence_data(socket_id, "presence-a", "ann", {"n": "x"})
        await joined(ws, "presence-a", **small)


# -- two nodes on Redis -------------------------------------------------------------------


async def test_max_app_connections_counts_the_clusters_connections(nodes):
    a, b = await nodes(2, max_app_connections=2, app_id=APP_ID)
    async with opened(a) as one, opened(b) as two:
        await established(one)
        await established(two)
        for server in (a, b):
            await server.settled(lambda hub=server.hub: hub.connection_count() == 1)
        await asyncio.sleep(0.1)  # both recorded in Redis (once per loop turn)
        for server in (a, b):
            async with opened(server) as over:
                assert (await error_of(over))["code"] == 4004
                assert await closed_with(over) == 4004


async def test_the_101st_member_and_an_11_kb_trigger_are_refused_on_the_other_node(nodes):
    a, b = await nodes(2, app_id=APP_ID, max_presence_members=100)
    # 100 members on node a, the 101st refused on node b (Pusher's 100).
    async with AsyncExitStack() as stack:
        members = await members_of(stack, a, "presence-big", 100)
        async with opened(b) as late:
            socket_id = await established(late)
            data = presence_data(socket_id, "presence-big", "101st")
            assert (await refused(late, "presence-big", **data))["status"] == 403
        with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
            await call(client_of(b).trigger, "presence-big", "e", "x" * 10241)
        cut_off(members)


async def test_a_client_gone_while_the_cluster_counts_leaves_nothing_behind(nodes, monkeypatch):
    (node,) = await nodes(1, max_app_connections=5, app_id=APP_ID)
    parts = node.parts
    presence = parts.apps.get(KEY).presence
    counting, counted = asyncio.Event(), asyncio.Event()
    real = presence.connection_count

    async def slow(app: Any) -> int:
        counting.set()
        await counted.wait()
        return await real(app)

    monkeypatch.setattr(presence, "connection_count", slow)
    active = parts.websockets.stats.conn_active
    async with opened(node) as ws:
        await counting.wait()
        await send(ws, "pusher:ping")  # no session yet: dropped
    await node.settled(lambda: not parts.websockets.sockets)
    counted.set()
    await node.settled(lambda: parts.websockets.stats.conn_active == active)
    assert not parts.websockets.live_sessions and node.hub.connection_count() == 0
    async with opened(node) as ws:  # and the next one is let in
        await established(ws)
