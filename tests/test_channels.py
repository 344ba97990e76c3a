"""Signed users, private and presence channels, and per-connection limits, over real sessions.

Each test drives real SockJS (or raw websocket) sessions against the
in-process server, with tokens made by ``thunderpush.auth`` as a backend would.
"""

from __future__ import annotations

import logging

import pytest
from tornado.websocket import WebSocketClosedError

from thunderpush.auth import channel_token, user_token
from thunderpush.core.protocol import raw_websocket_close_code

from .support import KEY, SECRET
from .support.clients import RawWebSocketClient, SockJSClient, WebSocketClient


def code_on(kind: type[SockJSClient], code: int) -> int:
    return raw_websocket_close_code(code) if kind is RawWebSocketClient else code


def token_for(user: str, channel: str, **kwargs) -> str:
    return channel_token(KEY, SECRET, user, channel, **kwargs)


async def signed_in(server, kind, user: str, token: str | None = None) -> SockJSClient:
    """A session that sent ``CONNECT user:KEY[:token]`` and is online."""
    client = await server.client(kind)
    before = server.hub.connection_count()
    await client.send(f"CONNECT {user}:{KEY}" + ("" if token is None else f":{token}"))
    await server.settled(lambda: server.hub.connection_count() > before)
    return client


async def presence(server, kind, user: str, channel: str = "presence-room"):
    """A connection of ``user`` in ``channel``, and the members it was told of."""
    client = await signed_in(server, kind, user)
    await client.send(f"SUBSCRIBE {channel} {token_for(user, channel)}")
    event = await client.message()
    assert event["event"] == "subscription_succeeded", event
    return client, event["members"]


# -- signed CONNECT ------------------------------------------------------


@pytest.mark.config(require_signature=True)
async def test_a_signed_connect_goes_online_where_signatures_are_required(server, transport):
    client = await signed_in(server, transport, "alice", user_token(KEY, SECRET, "alice"))
    await client.send("SUBSCRIBE news")
    await server.settled(lambda: server.hub.channel_users("news") == ["alice"])
    await server.api("POST", "channels/news/", "1")
    assert await client.message() == {"payload": "1", "channel": "news"}


BAD_USER_TOKENS = {
    "missing": None,
    "empty": "",
    "garbage": "abc",
    "another-user": user_token(KEY, SECRET, "bob"),
    "another-key": user_token("otherkey", SECRET, "alice"),
    "another-secret": user_token(KEY, "not-the-secret", "alice"),
    "expired": user_token(KEY, SECRET, "alice", ttl=-1),
    "a-channel-token": channel_token(KEY, SECRET, "alice", "private-a"),
}


@pytest.mark.config(require_signature=True)
@pytest.mark.parametrize("token", BAD_USER_TOKENS.values(), ids=BAD_USER_TOKENS.keys())
async def test_a_connect_without_a_valid_token_closes_9003(server, transport, token):
    client = await server.client(transport)
    suffix = "" if token is None else f":{token}"
    await client.send(f"CONNECT alice:{KEY}{suffix}")
    assert await client.closed() == (code_on(transport, 9003), "Invalid signature.")
    assert not server.hub.is_online("alice")


async def test_without_required_signatures_old_connects_work_and_a_given_token_is_checked(server):
    assert (await server.client(WebSocketClient, "alice", "news")) is not None
    signed = await signed_in(server, WebSocketClient, "bob", user_token(KEY, SECRET, "bob"))
    assert server.hub.is_online("bob") and signed.close_code is None
    forged = await server.client(WebSocketClient)
    await forged.send(f"CONNECT carol:{KEY}:{user_token(KEY, SECRET, 'alice')}")
    assert await forged.closed() == (9003, "Invalid signature.")
    assert not server.hub.is_online("carol")


async def test_the_wrong_key_is_told_before_the_signature(server):
    client = await server.client(WebSocketClient)
    await client.send(f"CONNECT alice:nokey:{user_token('nokey', SECRET, 'alice')}")
    assert await client.closed() == (9000, "Invalid API key.")


@pytest.mark.parametrize(
    "userid",
    [" alice", "alice ", "al ice", "a\tb", "a\u00a0b", "a\u0000b", "a\u200bb", "x" * 129, ""],
    ids=["lead", "trail", "inner", "tab", "nbsp", "nul", "zero-width", "129", "empty"],
)
async def test_invalid_user_ids_are_ignored_and_the_connection_stays(server, transport, userid):
    client = await server.client(transport)
    await client.send(f"CONNECT {userid}:{KEY}")
    await client.send(f"CONNECT alice:{KEY}", "SUBSCRIBE news")
    await server.settled(lambda: server.hub.channel_users("news") == ["alice"])
    assert server.hub.user_count() == 1


async def test_the_longest_user_id_and_any_printable_one_are_valid(server):
    for userid in ["x" * 128, "caf\u00e9-\u65e5\u672c-\U0001f600", "a@b.c/d"]:
        await server.client(WebSocketClient, userid)
        assert server.hub.is_online(userid)


# -- private channels ----------------------------------------------------


async def test_private_channels_need_their_own_token_and_refusals_touch_nothing_else(
    server, transport
):
    client = await signed_in(server, transport, "alice")
    items = [
        "news",
        f"private-a {token_for('alice', 'private-a')}",
        f"private-b {token_for('alice', 'private-a')}",  # private-a's token
        f"private-c {token_for('bob', 'private-c')}",  # another user's
        f"private-d {user_token(KEY, SECRET, 'alice')}",  # a user token
        f"private-e {token_for('alice', 'private-e', ttl=-1)}",  # expired
        "private-f",
        "sport",
    ]
    await client.send("SUBSCRIBE " + ":".join(items))
    assert await client.message() == {"event": "subscription_succeeded", "channel": "private-a"}
    for channel in "bcdef":
        assert await client.message() == {
            "event": "subscription_error",
            "channel": f"private-{channel}",
            "message": "Invalid channel token.",
        }
    assert set(server.hub.channels) == {"news", "private-a", "sport"}
    for channel in ("news", "private-a", "sport"):
        await server.api("POST", f"channels/{channel}/", '"x"')
        assert await client.message() == {"payload": '"x"', "channel": channel}
    if transport is RawWebSocketClient:  # an event's exact bytes
        assert client.frames[0] == '{"event":"subscription_succeeded","channel":"private-a"}'
        assert client.frames[5] == (
            '{"event":"subscription_error","channel":"private-f",'
            '"message":"Invalid channel token."}'
        )


async def test_a_private_channel_token_is_bound_to_the_connected_user(server):
    bob = await signed_in(server, WebSocketClient, "bob")
    await bob.send(f"SUBSCRIBE private-a {token_for('alice', 'private-a')}")
    assert (await bob.message())["event"] == "subscription_error"
    assert "private-a" not in server.hub.channels


async def test_a_space_makes_a_public_item_invalid_as_before(server):
    client = await signed_in(server, WebSocketClient, "alice")
    await client.send(f"SUBSCRIBE news {token_for('alice', 'news')}:sport")
    await server.settled(lambda: "sport" in server.hub.channels)
    assert set(server.hub.channels) == {"sport"}
    await client.no_message()


async def test_unsubscribe_takes_the_name_of_an_item_with_a_token(server):
    client = await signed_in(server, WebSocketClient, "alice")
    token = token_for("alice", "private-a")
    await client.send(f"SUBSCRIBE private-a {token}:news")
    assert (await client.message())["event"] == "subscription_succeeded"
    await client.send(f"UNSUBSCRIBE private-a {token}")
    await server.settled(lambda: "private-a" not in server.hub.channels)
    assert set(server.hub.channels) == {"news"}


# -- presence channels ---------------------------------------------------


async def test_presence_members_and_join_leave_events_each_user_once(server):
    alice1, members = await presence(server, WebSocketClient, "alice")
    assert members == ["alice"]
    bob, members = await presence(server, WebSocketClient, "bob")
    assert members == ["alice", "bob"]
    added_bob = {"event": "member_added", "channel": "presence-room", "user": "bob"}
    assert await alice1.message() == added_bob

    # alice's second connection: told the members, announced to nobody.
    alice2, members = await presence(server, WebSocketClient, "alice")
    assert members == ["alice", "bob"]
    response = await server.api("GET", "channels/presence-room/")
    assert response.body == b'{"users": ["alice", "bob"]}\n'

    # alice's first connection leaves: she is still there.
    await alice1.send("UNSUBSCRIBE presence-room")
    await server.settled(lambda: len(server.hub.channel_connections("presence-room")) == 2)
    await bob.no_message()

    # Her last one closes: bob is told, once.
    alice2.ws.close()
    removed_alice = {"event": "member_removed", "channel": "presence-room", "user": "alice"}
    assert await bob.message() == removed_alice
    await bob.no_message()
    assert server.hub.channel_members("presence-room") == ["bob"]


async def test_presence_events_reach_only_the_channel_and_not_the_joiner(server, transport):
    watcher, _ = await presence(server, transport, "watcher")
    elsewhere, _ = await presence(server, transport, "elsewhere", "presence-other")
    carol, members = await presence(server, transport, "carol")
    assert members == ["watcher", "carol"]
    assert await watcher.message() == {
        "event": "member_added",
        "channel": "presence-room",
        "user": "carol",
    }
    await server.api("POST", "channels/presence-room/", '"hi"')
    assert await carol.message() == {"payload": '"hi"', "channel": "presence-room"}
    assert await watcher.message() == {"payload": '"hi"', "channel": "presence-room"}
    await elsewhere.no_message(0.1)


async def test_a_forced_disconnect_removes_the_user_from_presence(server):
    bob, _ = await presence(server, WebSocketClient, "bob")
    carol1, _ = await presence(server, WebSocketClient, "carol")
    carol2, _ = await presence(server, WebSocketClient, "carol")
    assert await bob.message() == {
        "event": "member_added",
        "channel": "presence-room",
        "user": "carol",
    }
    assert (await server.api("DELETE", "users/carol/")).code == 204
    assert await bob.message() == {
        "event": "member_removed",
        "channel": "presence-room",
        "user": "carol",
    }
    await bob.no_message()
    assert server.hub.channel_members("presence-room") == ["bob"]
    for carol in (carol1, carol2):
        assert (await carol.closed())[0] == 9002


async def test_presence_needs_a_channel_token(server):
    client = await signed_in(server, WebSocketClient, "alice")
    await client.send("SUBSCRIBE presence-room")
    assert await client.message() == {
        "event": "subscription_error",
        "channel": "presence-room",
        "message": "Invalid channel token.",
    }
    assert server.hub.channel_members("presence-room") == []


# -- channel limit ---------------------------------------------------------


@pytest.mark.config(max_channels_per_connection=3)
async def test_subscriptions_past_the_channel_limit_are_refused(server, transport):
    client = await signed_in(server, transport, "alice")
    await client.send("SUBSCRIBE a:b:c:d:a:" + f"private-x {token_for('alice', 'private-x')}")
    # Answered once per command, naming the first channel refused (private-x is refused too).
    assert await client.message() == {
        "event": "subscription_error",
        "channel": "d",
        "message": "Too many channels.",
    }
    assert set(server.hub.channels) == {"a", "b", "c"}
    other = await server.client(transport, "bob", "d")  # a limit per connection
    await client.send("UNSUBSCRIBE a", "SUBSCRIBE d")
    await server.settled(lambda: server.hub.channel_users("d") == ["bob", "alice"])
    await server.api("POST", "channels/d/", "1")
    assert await client.message() == {"payload": "1", "channel": "d"}
    assert await other.message() == {"payload": "1", "channel": "d"}


# -- command rate and log lines ------------------------------------------


def warnings(caplog, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and text in r.getMessage()
    ]


@pytest.mark.config(max_commands_per_second=20)
async def test_a_command_flood_closes_9012_with_one_log_line(server, transport, no_tracebacks):
    bystander = await server.client(WebSocketClient, "bob", "news")
    flooder = await signed_in(server, transport, "alice")
    try:
        await flooder.send(*["SUBSCRIBE news"] * 200)
    except WebSocketClosedError:
        pass  # a raw websocket sends one frame per command: closed before the last
    assert await flooder.closed() == (code_on(transport, 9012), "Too many commands.")
    await server.settled(lambda: not server.hub.is_online("alice"))
    (line,) = warnings(no_tracebacks, "commands per second")
    assert "alice" in line
    await server.api("POST", "channels/news/", "1")
    assert await bystander.message() == {"payload": "1", "channel": "news"}


@pytest.mark.config(max_commands_per_second=20)
async def test_a_burst_up_to_the_rate_is_allowed(server):
    client = await server.client(WebSocketClient)
    await client.send(f"CONNECT alice:{KEY}", *[f"SUBSCRIBE c{n}" for n in range(18)])
    await server.settled(lambda: server.hub.channel_users("c17") == ["alice"])
    assert client.close_code is None
    await server.api("POST", "channels/c0/", "1")
    assert await client.message() == {"payload": "1", "channel": "c0"}


async def test_ignored_commands_log_one_warning_per_connection(server, no_tracebacks):
    first = await server.client(WebSocketClient)
    second = await server.client(WebSocketClient)
    garbage = ["HELLO", "CONNECT", "CONNECT x", 5, "SUBSCRIBE", "CONNECT a:b:c:d"] * 8
    await first.send(*garbage)
    await second.send(*garbage)
    await first.send(f"CONNECT alice:{KEY}", "SUBSCRIBE bad name:news")
    await second.send(f"CONNECT bob:{KEY}", "SUBSCRIBE news")
    await server.settled(lambda: set(server.hub.channel_users("news")) == {"alice", "bob"})
    ignored = [
        r.levelno
        for r in no_tracebacks.records
        if r.getMessage().startswith(("Ignored", "Received invalid", "Skipped"))
    ]
    # Every ignored input is logged, but only each connection's first as a warning.
    assert len(ignored) == 2 * len(garbage) + 1
    assert ignored.count(logging.WARNING) == 2
    assert ignored.count(logging.DEBUG) == len(ignored) - 2
