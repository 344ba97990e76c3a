"""The real pusher-js 8 (Node) meets Pusher's limits and an encrypted channel, on
one node and on two nodes on Redis (``tests/test_pusher_js.py``'s driver and
auth endpoints; the encrypted channel's ``shared_secret`` comes from the
``pusher`` library's ``authenticate``, its events from the library's
``trigger``, both with ``encryption_master_key_base64``)."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import pytest

from thunderpush.auth import channel_token

from .support import KEY, SECRET
from .support.clients import WebSocketClient
from .support.pusher_auth import APP_ID, encrypting_backend
from .test_pusher_api import call
from .test_pusher_js import auth_url, pusher_js
from .test_pusher_js import pytestmark as node_marks
from .test_pusher_limits import cut_off, members_of

__all__ = ["auth_url"]  # the fixture

# Slow, and skipped without Node, as tests/test_pusher_js.py's.
pytestmark = [*node_marks, pytest.mark.config(app_id=APP_ID, client_events=True)]

ENCRYPTED = "private-encrypted-orders"


async def test_encrypted_channel_and_presence_cap_on_one_node(server, auth_url):
    await encrypted_round_trip(server, server, auth_url)
    await hundred_then_pusher_js(server, server, auth_url)


async def test_encrypted_channel_and_presence_cap_across_two_nodes(nodes, auth_url):
    a, b = await nodes(2, app_id=APP_ID)
    await encrypted_round_trip(a, b, auth_url)
    await hundred_then_pusher_js(a, b, auth_url)


async def encrypted_round_trip(sender: Any, receiver: Any, auth_url: str) -> None:
    """pusher-js on ``receiver`` decrypts what the library triggers through ``sender``;
    a Thunderpush client of the channel gets the sealed data, as sent."""
    thunder = await receiver.client(WebSocketClient, "t")
    await thunder.send(f"SUBSCRIBE {ENCRYPTED} {channel_token(KEY, SECRET, 't', ENCRYPTED)}")
    assert (await thunder.message())["event"] == "subscription_succeeded"
    async with pusher_js(receiver, auth_url, "ann") as client:
        await client.connected()
        await client.subscribed(ENCRYPTED)
        backend = encrypting_backend(sender.port)
        await call(backend.trigger, ENCRYPTED, "shipped", {"order": 7})
        report = await client.next()
        assert report == {
            "on": "event",
            "channel": ENCRYPTED,
            "event": "shipped",
            "data": {"order": 7},
        }
        sealed = json.loads((await thunder.message())["payload"])
        assert set(sealed) == {"nonce", "ciphertext"}


async def hundred_then_pusher_js(full: Any, other: Any, auth_url: str) -> None:
    """100 members (Pusher's cap) on ``full``; pusher-js on ``other`` is refused,
    then a user_info over 1 KB is refused in another channel."""
    room = "presence-room"
    async with AsyncExitStack() as stack:
        members = await members_of(stack, full, room, 100)
        async with pusher_js(other, auth_url, "late") as client:
            await client.connected()
            await client.do("subscribe", channel=room)
            assert await client.next() == {
                "on": "subscription_error",
                "channel": room,
                "status": 403,
            }
        cut_off(members)
    async with pusher_js(other, auth_url, "big") as client:
        await client.connected()
        await client.do("subscribe", channel="presence-other")
        report = await client.next()
        assert report == {"on": "subscription_error", "channel": "presence-other", "status": 400}


async def test_a_burst_of_30_client_events_relays_10_and_says_4301(server, auth_url):
    async with pusher_js(server, auth_url, "1") as one, pusher_js(server, auth_url, "2") as two:
        for client in (one, two):
            await client.connected()
            await client.subscribed("private-chat")
        for n in range(30):
            await one.do("trigger", channel="private-chat", event="client-typing", data={"n": n})
        for n in range(10):
            report = await two.next()
            assert (report["event"], report["data"]) == ("client-typing", {"n": n})
        for _ in range(20):
            report = await one.next()
            assert (report["on"], report["code"]) == ("error", 4301), report
        await server.api("POST", "channels/private-chat/", '"after"')
        assert (await two.next())["data"] == "after"  # nothing else came between


@pytest.mark.config(app_id=APP_ID, max_app_connections=1)
async def test_past_max_app_connections_pusher_js_is_told_4004(server, auth_url):
    async with pusher_js(server, auth_url, "1") as first:
        await first.connected()
        async with pusher_js(server, auth_url, "2") as second:
            report = await second.next()
            assert (report["on"], report["code"]) == ("error", 4004)
