"""History and recovery on one process: positions, ``since=`` recovery, the API read.

Real sessions are cut (closed from the server's side, or dropped by the
client), messages are published while they are away, and new sessions ask
for what they missed; the API's answers are read over HTTP.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from thunderpush.auth import channel_token
from thunderpush.config import HistoryRule
from thunderpush.core.retention import Keep
from thunderpush.core.streams import NO_STREAM, Streams
from thunderpush.pusher.signatures import channel_auth
from thunderpush.server.reload import reload_settings

from .support import KEY, SECRET
from .support.clients import SockJSClient, WebSocketClient, XhrPollingClient
from .support.clock import ManualClock
from .test_pusher_ws import established, opened, receive, send, subscribed, thunder_in

OTHER_EPOCH = "0123456789abcdef"


def delivery(payload: str, epoch: str, offset: int, channel: str = "news") -> dict:
    return {"payload": payload, "channel": channel, "epoch": epoch, "offset": offset}


def recovered(complete: bool, epoch: str, offset: int, channel: str = "news") -> dict:
    return {
        "event": "recovered",
        "channel": channel,
        "complete": complete,
        "epoch": epoch,
        "offset": offset,
    }


async def publish(server, channel: str, *bodies: str) -> None:
    for body in bodies:
        response = await server.api("POST", f"channels/{channel}/", body)
        assert response.code == 200, response.body


async def messages(client: SockJSClient, count: int) -> list[dict]:
    return [await client.message() for _ in range(count)]


async def history(server, channel: str = "news", query: str = "") -> tuple[int, dict]:
    response = await server.api("GET", f"channels/{channel}/history/{query}")
    assert response.body.endswith(b"\n")
    return response.code, json.loads(response.body)


async def cut(server, client: SockJSClient, how: str) -> None:
    """Ends ``client``'s session: the server closes it, or the client drops its socket."""
    if how == "server":
        for connection in server.hub.channel_connections("news"):
            connection.close(3000, "Go away!")
        assert (await client.closed())[0] == 3000
    else:
        client.ws.close()
    await server.settled(lambda: server.hub.connection_count() == 0)


async def returning(server, kind: type[SockJSClient], subscribe: str) -> SockJSClient:
    """A new session of alice that sends ``SUBSCRIBE <subscribe>``."""
    client = await server.client(kind, "alice")
    await client.send(f"SUBSCRIBE {subscribe}")
    return client


# -- nothing changes without history -----------------------------------------


async def test_deliveries_without_history_are_byte_identical(server):
    await assert_deliveries_as_before(server)


@pytest.mark.config(history=(HistoryRule("chat-", 10),))
async def test_deliveries_on_channels_without_history_are_byte_identical(server):
    await assert_deliveries_as_before(server)
    await publish(server, "chat-1", "1")  # the rule is in force
    assert len(server.hub.streams) == 1


async def assert_deliveries_as_before(server) -> None:
    client = await server.client(WebSocketClient, "alice", "news")
    await publish(server, "news", '{"a": 1}')
    await server.api("POST", "users/alice/", "2")
    assert await messages(client, 2) == [
        {"payload": '{"a": 1}', "channel": "news"},
        {"payload": "2"},
    ]
    assert [frame for frame in client.frames if frame.startswith("a")] == [
        'a[{"payload":"{\\"a\\": 1}","channel":"news"}]',
        'a[{"payload":"2"}]',
    ]
    assert len(server.hub.streams) == 0


async def test_without_history_a_recovery_is_incomplete_and_has_no_position(server):
    client = await returning(server, WebSocketClient, f"news since={OTHER_EPOCH}/3")
    assert await client.message() == recovered(False, "", 0)
    await publish(server, "news", "1")
    assert await client.message() == {"payload": "1", "channel": "news"}


# -- positions ------------------------------------------------------------------


@pytest.mark.config(history_size=10)
async def test_deliveries_carry_their_position_after_the_other_members(server):
    client = await server.client(WebSocketClient, "alice", "news")
    await publish(server, "news", "1", "2")
    first, second = await messages(client, 2)
    epoch = first["epoch"]
    assert re.fullmatch("[0-9a-f]{16}", epoch)
    assert [first, second] == [delivery("1", epoch, 1), delivery("2", epoch, 2)]
    assert (
        client.frames[-1] == f'a[{{"payload":"2","channel":"news","epoch":"{epoch}","offset":2}}]'
    )


@pytest.mark.config(history_size=10)
async def test_sends_to_a_user_keep_nothing(server):
    client = await server.client(WebSocketClient, "alice", "news")
    await server.api("POST", "users/alice/", "1")
    assert await client.message() == {"payload": "1"}
    assert len(server.hub.streams) == 0


# -- recovery -------------------------------------------------------------------


@pytest.mark.config(history_size=10)
@pytest.mark.parametrize(
    "kind, how",
    [(WebSocketClient, "server"), (WebSocketClient, "client"), (XhrPollingClient, "server")],
    ids=["websocket closed by the server", "websocket dropped", "xhr closed by the server"],
)
async def test_a_client_cut_off_gets_exactly_what_it_missed_then_new_ones(server, kind, how):
    client = await server.client(kind, "alice", "news")
    await publish(server, "news", "1", "2")
    epoch = (await messages(client, 2))[-1]["epoch"]
    await cut(server, client, how)
    await publish(server, "news", "3", '{"n": 4}', "5")

    again = await returning(server, kind, f"news since={epoch}/2")
    assert await messages(again, 4) == [
        delivery("3", epoch, 3),
        delivery('{"n": 4}', epoch, 4),
        delivery("5", epoch, 5),
        recovered(True, epoch, 5),
    ]
    await publish(server, "news", "6")
    assert await again.message() == delivery("6", epoch, 6)
    await again.no_message()


@pytest.mark.config(history_size=10)
async def test_nothing_missed_is_a_complete_recovery_alone(server):
    await publish(server, "news", "1")
    epoch = server.hub.streams.read("news", Keep(10, 300)).epoch
    client = await returning(server, WebSocketClient, f"news since={epoch}/1")
    assert await client.message() == recovered(True, epoch, 1)
    await client.no_message()


@pytest.mark.config(history_size=2)
async def test_a_gap_longer_than_the_history_is_an_incomplete_recovery(server):
    await publish(server, "news", "1", "2", "3", "4")
    epoch = server.hub.streams.read("news", Keep(2, 300)).epoch
    # 3 and 4 are kept: a client that saw 2 misses nothing that is gone...
    complete = await returning(server, WebSocketClient, f"news since={epoch}/2")
    assert await messages(complete, 3) == [
        delivery("3", epoch, 3),
        delivery("4", epoch, 4),
        recovered(True, epoch, 4),
    ]
    # ... one that saw 1 misses 2, which is gone: it is told, and sent nothing.
    for since in (f"{epoch}/1", f"{OTHER_EPOCH}/2", f"{epoch}/5"):
        client = await returning(server, WebSocketClient, f"news since={since}")
        assert await client.message() == recovered(False, epoch, 4), since
        await client.no_message(0.1)


@pytest.mark.config(history_size=10, history_ttl=300)
async def test_a_stream_idle_for_its_ttl_is_gone_and_starts_a_new_epoch(server):
    clock = server.hub.streams.clock = ManualClock()
    await publish(server, "news", "1")
    _, before = await history(server)
    clock.advance(299.5)  # not yet
    assert (await history(server))[1] == before
    clock.advance(0.5)  # the ttl: the stream is over
    client = await returning(server, WebSocketClient, f"news since={before['epoch']}/1")
    assert await client.message() == recovered(False, "", 0)
    assert (await history(server))[1] == {"epoch": "", "offset": 0, "messages": []}
    await publish(server, "news", "2")
    message = await client.message()
    assert message["epoch"] != before["epoch"]
    assert message == delivery("2", message["epoch"], 1)


@pytest.mark.config(history_size=10, history_ttl=300)
async def test_expired_streams_do_not_pile_up(server):
    clock = server.hub.streams.clock = ManualClock()
    for number in range(50):
        await publish(server, f"c{number}", "1")
    assert len(server.hub.streams) == 50
    clock.advance(300)  # the ttl
    await publish(server, "news", "1")
    assert len(server.hub.streams) == 1


def test_kept_messages_expire_one_by_one():
    clock = ManualClock()
    keep = Keep(10, 10.0)
    kept = Streams(clock)
    epoch, _ = kept.append("news", "a", keep)
    clock.now = 6.0
    kept.append("news", "b", keep)
    clock.now = 12.0  # "a" is older than the ttl, the stream is not
    stream = kept.read("news", keep)
    assert (stream.epoch, stream.offset, stream.messages) == (epoch, 2, ((2, "b"),))
    assert stream.recoverable(epoch, 1)
    assert not stream.recoverable(epoch, 0)
    clock.now = 16.0  # no publish for the ttl: the stream is gone
    assert kept.read("news", keep) is NO_STREAM
    assert kept.read("news", None) is NO_STREAM


@pytest.mark.config(history=(HistoryRule("chat-", 2),))
async def test_a_prefix_rule_keeps_only_its_channels_and_only_its_size(server):
    client = await server.client(WebSocketClient, "alice", "news", "chat-1")
    await publish(server, "news", "1")
    await publish(server, "chat-1", "1", "2", "3")
    assert await client.message() == {"payload": "1", "channel": "news"}
    epoch = (await client.message())["epoch"]
    await messages(client, 2)
    _, read = await history(server, "chat-1")
    assert read == {
        "epoch": epoch,
        "offset": 3,
        "messages": [{"offset": 2, "payload": "2"}, {"offset": 3, "payload": "3"}],
    }
    assert (await history(server, "news"))[1] == {"epoch": "", "offset": 0, "messages": []}


async def test_a_reload_turns_history_on_and_off_for_the_next_publish(server):
    client = await server.client(WebSocketClient, "alice", "news")
    config = server.parts.config
    reload_settings(server.parts, lambda: replace(config, history_size=5))
    await publish(server, "news", "1")
    message = await client.message()
    assert message == delivery("1", message["epoch"], 1)
    reload_settings(server.parts, lambda: replace(config, history_size=0))
    await publish(server, "news", "2")
    assert await client.message() == {"payload": "2", "channel": "news"}
    assert (await history(server))[1] == {"epoch": "", "offset": 0, "messages": []}


# -- SUBSCRIBE items with since= ---------------------------------------------------


@pytest.mark.config(history_size=10)
@pytest.mark.parametrize(
    "word", ["since=", "since=abc/1", f"since={OTHER_EPOCH}", f"since={OTHER_EPOCH}/-1", "since=x"]
)
async def test_a_malformed_since_makes_the_item_invalid(server, word, caplog):
    client = await returning(server, WebSocketClient, f"news {word}:sport")
    await server.settled(lambda: server.hub.channel_users("sport") == ["alice"])
    assert server.hub.channel_users("news") == []
    await client.no_message(0.1)
    assert any("Skipped invalid channel names" in r.getMessage() for r in caplog.records)


@pytest.mark.config(history_size=10)
async def test_private_and_presence_items_take_since_after_the_token(server):
    await publish(server, "private-a", "1")
    await publish(server, "presence-b", "1")
    epochs = {
        c: server.hub.streams.read(c, Keep(10, 300)).epoch for c in ("private-a", "presence-b")
    }
    token_a = channel_token(KEY, SECRET, "alice", "private-a")
    token_b = channel_token(KEY, SECRET, "alice", "presence-b")
    client = await returning(
        server,
        WebSocketClient,
        f"private-a {token_a} since={epochs['private-a']}/0:"
        f"presence-b {token_b} since={epochs['presence-b']}/1",
    )
    assert await messages(client, 5) == [
        {"event": "subscription_succeeded", "channel": "private-a"},
        delivery("1", epochs["private-a"], 1, "private-a"),
        recovered(True, epochs["private-a"], 1, "private-a"),
        {"event": "subscription_succeeded", "channel": "presence-b", "members": ["alice"]},
        recovered(True, epochs["presence-b"], 1, "presence-b"),
    ]


@pytest.mark.config(history_size=10)
async def test_a_refused_item_gets_its_error_and_nothing_else(server):
    await publish(server, "private-a", "1")
    epoch = server.hub.streams.read("private-a", Keep(10, 300)).epoch
    client = await returning(server, WebSocketClient, f"private-a wrong since={epoch}/0")
    assert await client.message() == {
        "event": "subscription_error",
        "channel": "private-a",
        "message": "Invalid channel token.",
    }
    await client.no_message()


@pytest.mark.config(history_size=10, client_events=True)
async def test_pusher_client_events_are_never_delivered_to_thunderpush_kept_or_replayed(server):
    channel = "private-c"
    alice = await thunder_in(server, "alice", channel)
    async with opened(server) as one, opened(server) as two:
        for ws in (one, two):
            socket_id = await established(ws)
            await subscribed(ws, channel, auth=channel_auth(KEY, SECRET, socket_id, channel))
        await publish(server, channel, "1")
        await send(one, "client-typing", {"on": True}, channel=channel)
        assert [(await receive(two))["event"] for _ in range(2)] == ["message", "client-typing"]
        await publish(server, channel, "2")
        epoch = (await alice.message())["epoch"]
        assert await alice.message() == delivery("2", epoch, 2, channel)
    code, kept = await history(server, channel)
    assert (code, kept["offset"], [m["payload"] for m in kept["messages"]]) == (200, 2, ["1", "2"])
    token = channel_token(KEY, SECRET, "alice", channel)
    again = await returning(server, WebSocketClient, f"{channel} {token} since={epoch}/0")
    assert await messages(again, 4) == [
        {"event": "subscription_succeeded", "channel": channel},
        delivery("1", epoch, 1, channel),
        delivery("2", epoch, 2, channel),
        recovered(True, epoch, 2, channel),
    ]


# -- the API ------------------------------------------------------------------------


@pytest.mark.config(history_size=10)
async def test_the_api_reads_the_history_as_posted(server):
    bodies = [' {"a": "é"} ', "[1, 2]", '"three"']
    await publish(server, "news", *bodies)
    code, read = await history(server)
    assert code == 200
    assert len(read["epoch"]) == 16
    assert read == {
        "epoch": read["epoch"],
        "offset": 3,
        "messages": [{"offset": n, "payload": body} for n, body in enumerate(bodies, 1)],
    }
    code, after = await history(server, query="?since=1")
    assert (code, after["messages"]) == (200, read["messages"][1:])
    assert (after["epoch"], after["offset"]) == (read["epoch"], 3)
    for since in ("3", "99", "123456789012345678901234567890"):
        assert (await history(server, query=f"?since={since}"))[1]["messages"] == []


@pytest.mark.config(history_size=10)
async def test_the_api_reads_nothing_for_a_channel_without_stream(server):
    assert await history(server) == (200, {"epoch": "", "offset": 0, "messages": []})


@pytest.mark.config(history_size=10)
@pytest.mark.parametrize("since", ["", "-1", "1.5", "abc", "%D9%A3", "9" * 5000])
async def test_a_bad_since_is_400(server, since):
    await publish(server, "news", "1")
    assert await history(server, query=f"?since={since}") == (
        400,
        {"message": "Invalid since offset.", "status": 400},
    )


async def test_an_invalid_channel_is_400_and_other_methods_405(server):
    code, answer = await history(server, "bad%20name")
    assert (code, answer["message"]) == (400, "Invalid channel name.")
    response = await server.api("POST", "channels/news/history/", "1")
    assert response.code == 405
