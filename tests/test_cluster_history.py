"""History in a cluster: channel streams in Redis, recovery on whichever node a
client reconnects to, and the API's read of a channel's history.

The scripts are run on a real Redis first (``fresh_redis``, tests/support/cluster.py),
then two in-process nodes on it serve real SockJS clients.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import time
from typing import Any

import pytest

from thunderpush.auth import channel_token
from thunderpush.cluster import keys, scripts
from thunderpush.cluster.bus import deliver, field, publication_head
from thunderpush.config import HistoryRule
from thunderpush.core.broker import PLAIN, PublishOptions

from .support import KEY, SECRET
from .support.api import call_api
from .support.clients import SockJSClient, WebSocketClient, XhrPollingClient
from .support.cluster import cluster_nodes
from .support.served import LiveServer, eventually
from .test_history import recovered

pytestmark = pytest.mark.slow

APP = "key"
EPOCH = re.compile(r"[0-9a-f]{16}")


def stream_keys(channel: str, app: str = APP) -> tuple[bytes, bytes]:
    """A channel's kept messages and its stream's position, as Redis names them."""
    tag = keys.tag(app, "c", channel)
    return keys.key(tag, keys.KEPT), keys.key(tag, keys.STREAM)


class Scripts:
    """The stream scripts, run with EVAL on a real Redis, as a node passes them."""

    def __init__(self, backend) -> None:
        self.redis = backend.client()
        self.bus = self.redis.pubsub()
        # Every channel's route: "*" is the pattern's wildcard.
        self.bus.psubscribe(keys.route(APP, "c", "*"))
        assert self.bus.get_message(timeout=1)["type"] == "psubscribe"

    def keep(self, channel: str, payload: str, size: int = 3, ttl: float = 60, others=()) -> int:
        tag = keys.tag(APP, "c", channel)
        head = publication_head(channel, PLAIN)
        digits = f"{random.getrandbits(12):03x}"
        args = (keys.route_of(tag), head, payload, size, ttl, digits, *others)
        names = (keys.key(tag, keys.COUNTS), *stream_keys(channel))
        return self.redis.eval(scripts.SEND_KEPT.text, 3, *names, *args)

    def read(self, channel: str, since: int | str = "", ttl: float = 60) -> list:
        answer = self.redis.eval(scripts.HISTORY.text, 2, *stream_keys(channel), ttl, since)
        epoch, offset, *messages = answer
        pairs = list(zip(messages[::2], [m.decode() for m in messages[1::2]], strict=True))
        return [epoch.decode(), offset, pairs]

    def published(self) -> bytes:
        message = self.bus.get_message(timeout=1)
        assert message is not None and message["type"] == "pmessage"
        return message["data"]


@pytest.fixture
def lua(fresh_redis):
    kept = Scripts(fresh_redis)
    yield kept
    kept.bus.close()
    kept.redis.close()


def test_a_kept_publish_gets_the_next_offset_and_goes_on_the_bus_with_it(lua):
    assert lua.read("news") == ["", 0, []]
    assert lua.keep("news", 'line one\nline "two"') == 0
    epoch, offset, messages = lua.read("news")
    assert EPOCH.fullmatch(epoch) and offset == 1
    assert messages == [(1, 'line one\nline "two"')]
    assert lua.published() == kept(epoch, 1, 'line one\nline "two"')
    lua.keep("news", "second")
    assert lua.published() == kept(epoch, 2, "second")
    assert lua.read("news", since=1) == [epoch, 2, [(2, "second")]]
    assert lua.read("news", since=2) == [epoch, 2, []]
    # Channels have their own streams.
    lua.keep("sport", "x")
    assert lua.read("sport")[0] not in ("", epoch)


def test_a_stream_keeps_its_last_size_messages(lua):
    for number in range(1, 6):
        lua.keep("news", str(number), size=3)
    assert lua.read("news")[1:] == [5, [(3, "3"), (4, "4"), (5, "5")]]
    assert lua.read("news", since=4)[1:] == [5, [(5, "5")]]
    assert lua.redis.llen(stream_keys("news")[0]) == 3


def test_messages_older_than_the_ttl_are_skipped_and_an_idle_stream_goes_whole(lua):
    # Redis's clock decides, so the margins are wide enough for a loaded machine:
    # "old" is at least 1 s old when read, "new" well under 0.5 s, the stream 2 s.
    lua.keep("news", "old", ttl=2)
    epoch = lua.read("news")[0]
    for key in stream_keys("news"):
        assert 0 < lua.redis.pttl(key) <= 2000
    time.sleep(1)
    lua.keep("news", "new", ttl=2)
    # The reader's ttl decides what is too old.
    assert lua.read("news", ttl=0.5) == [epoch, 2, [(2, "new")]]
    assert lua.read("news", ttl=2) == [epoch, 2, [(1, "old"), (2, "new")]]
    deadline = time.monotonic() + 4
    while lua.redis.exists(*stream_keys("news")):
        assert time.monotonic() < deadline, "the stream did not expire"
        time.sleep(0.02)
    # Gone whole: the next publish starts a new epoch at offset 1.
    lua.keep("news", "again")
    fresh, offset, messages = lua.read("news")
    assert fresh != epoch and EPOCH.fullmatch(fresh)
    assert (offset, messages) == (1, [(1, "again")])


def test_a_stream_whose_messages_all_expired_still_says_its_position(lua):
    lua.keep("news", "a", ttl=60)
    time.sleep(0.05)
    epoch = lua.read("news")[0]
    assert lua.read("news", ttl=0.01) == [epoch, 1, []]


def test_epochs_are_unique_even_when_started_in_the_same_instant(lua):
    epochs = set()
    for number in range(200):
        lua.keep(f"c{number}", "x")
        epochs.add(lua.read(f"c{number}")[0])
    assert len(epochs) == 200


def test_a_kept_publish_counts_the_connections_of_the_nodes_it_is_given(lua):
    counts = keys.key(keys.tag(APP, "c", "news"), keys.COUNTS)
    lua.redis.hset(counts, mapping={"other": 4, "me": 7, "dead": 2})
    assert lua.keep("news", "x", others=("other",)) == 4
    assert lua.keep("news", "y", others=("other", "dead", "unknown")) == 6


# -- two nodes ------------------------------------------------------------------

KEPT = {"history_size": 10, "history_ttl": 60.0}


def connection_of(server: LiveServer, user: str) -> Any:
    """The server side of ``user``'s only connection on ``server``."""
    (connection,) = server.hub.users[user]
    return connection


async def cut(server: LiveServer, client: SockJSClient, user: str) -> None:
    """The server closes ``user``'s connection with a code a client reconnects after."""
    connection_of(server, user).close(3000, "Cut.")
    assert (await client.closed())[0] == 3000
    await server.settled(lambda: user not in server.hub.users)


async def publish(server: LiveServer, channel: str, *payloads: str) -> None:
    await publish_to(server.url, channel, *payloads)


async def publish_to(url: str, channel: str, *payloads: str) -> None:
    for payload in payloads:
        assert (await call_api(url, "POST", f"channels/{channel}/", payload)).code == 200


def kept(
    epoch: str, offset: int, payload: str, options: PublishOptions = PLAIN, channel: str = "news"
) -> bytes:
    """A bus message as ``SEND_KEPT`` publishes it: a publish at (epoch, offset)."""
    position = b"h" + field(epoch) + field(str(offset))
    return position + publication_head(channel, options) + payload.encode()


async def delivered(client: SockJSClient, count: int) -> list[tuple[str, int, str]]:
    """The next ``count`` deliveries as (epoch, offset, payload)."""
    out = []
    for _ in range(count):
        message = await client.message()
        out.append((message["epoch"], message["offset"], message["payload"]))
    return out


async def away_then_back(nodes, kind: type[SockJSClient], **settings: Any):
    """ann reads news on node a, is cut after two messages, misses three published on a,
    and comes back on node b (CONNECTed only); answers (a, b, her new client, the epoch)."""
    a, b = await nodes(2, **{**KEPT, **settings})
    ann = await a.client(kind, "ann", "news")
    await publish(a, "news", "1", "2")
    (epoch, _, _), (_, offset, _) = await delivered(ann, 2)
    assert EPOCH.fullmatch(epoch) and offset == 2
    await cut(a, ann, "ann")
    await publish(a, "news", "3", "4", "5")
    back = await b.client(kind, "ann")
    return a, b, back, epoch


@pytest.mark.parametrize("kind", [WebSocketClient, XhrPollingClient])
async def test_a_client_back_on_another_node_gets_exactly_what_it_missed_then_live(nodes, kind):
    a, b, ann, epoch = await away_then_back(nodes, kind)
    await ann.send(f"SUBSCRIBE news since={epoch}/2")
    assert await delivered(ann, 3) == [(epoch, 3, "3"), (epoch, 4, "4"), (epoch, 5, "5")]
    assert await ann.message() == recovered(True, epoch, 5)
    await publish(a, "news", "6")
    await publish(b, "news", "7")
    assert await delivered(ann, 2) == [(epoch, 6, "6"), (epoch, 7, "7")]
    await ann.no_message()


async def test_a_gap_longer_than_the_history_is_told_incomplete(nodes):
    a, b, ann, epoch = await away_then_back(nodes, WebSocketClient, history_size=2)
    # Messages 3 to 5 were missed; only 4 and 5 are kept.
    await ann.send(f"SUBSCRIBE news since={epoch}/2")
    assert await ann.message() == recovered(False, epoch, 5)
    await publish(a, "news", "6")
    assert await delivered(ann, 1) == [(epoch, 6, "6")]
    # 5 and 6 are kept now: one who saw 4 has missed nothing that is gone.
    again = await b.client(WebSocketClient, "bob")
    await again.send(f"SUBSCRIBE news since={epoch}/4")
    assert await delivered(again, 2) == [(epoch, 5, "5"), (epoch, 6, "6")]
    assert await again.message() == recovered(True, epoch, 6)


async def test_a_position_of_another_epoch_or_ahead_of_the_stream_is_told_incomplete(nodes):
    a, b, ann, epoch = await away_then_back(nodes, WebSocketClient)
    await ann.send(f"SUBSCRIBE news since={'0' * 16}/2:sport since={epoch}/1")
    assert await ann.message() == recovered(False, epoch, 5)
    # sport has no stream at all.
    assert await ann.message() == recovered(False, "", 0, channel="sport")
    bob = await b.client(WebSocketClient, "bob")
    await bob.send(f"SUBSCRIBE news since={epoch}/9")
    assert await bob.message() == recovered(False, epoch, 5)


async def test_a_stream_that_expired_starts_a_new_epoch_and_the_old_one_is_told_incomplete(
    fresh_redis, nodes
):
    a, b = await nodes(2, history_size=10, history_ttl=0.5)
    ann = await a.client(WebSocketClient, "ann", "news")
    await publish(a, "news", "1")
    ((epoch, _, _),) = await delivered(ann, 1)
    await cut(a, ann, "ann")
    with fresh_redis.client() as redis:
        deadline = time.monotonic() + 3
        while redis.exists(stream_keys("news")[1]):
            assert time.monotonic() < deadline, "the stream did not expire"
            await asyncio.sleep(0.05)
    await publish(a, "news", "2")
    back = await b.client(WebSocketClient, "ann")
    await back.send(f"SUBSCRIBE news since={epoch}/1")
    event = await back.message()
    assert event["complete"] is False and event["offset"] == 1
    assert EPOCH.fullmatch(event["epoch"]) and event["epoch"] != epoch
    await publish(b, "news", "3")
    assert await delivered(back, 1) == [(event["epoch"], 2, "3")]


async def test_channels_without_history_stay_as_they_were(nodes):
    a, b = await nodes(2, history_size=10, history=(HistoryRule("quiet-", 0, 60.0),))
    ann = await b.client(WebSocketClient, "ann", "quiet-room")
    await publish(a, "quiet-room", "[1]")
    assert await ann.message() == {"payload": "[1]", "channel": "quiet-room"}
    await ann.send(f"SUBSCRIBE quiet-room since={'1' * 16}/3")
    assert await ann.message() == recovered(False, "", 0, channel="quiet-room")


# -- publishes racing the recovery's read ------------------------------------------
#
# Redis answers the read on one connection and sends the bus on another, so a
# node may get a message from the bus before the read's answer (published
# after the read, or before it and still on its way) or after it.  The first
# two tests put bus messages in those places, which real timing cannot force;
# the third races real publishes against real recoveries.


async def test_messages_from_the_bus_while_the_read_is_under_way_are_held_not_doubled(nodes):
    a, b, ann, epoch = await away_then_back(nodes, WebSocketClient)
    # In one loop turn, so the read cannot have answered in between.
    connection_of(b, "ann").handle(f"SUBSCRIBE news since={epoch}/2")
    deliver(b.hub, kept(epoch, 4, "4"))  # published before the read
    deliver(b.hub, kept(epoch, 6, "6"))  # published after it
    assert await delivered(ann, 3) == [(epoch, 3, "3"), (epoch, 4, "4"), (epoch, 5, "5")]
    assert await ann.message() == recovered(True, epoch, 5)
    assert await delivered(ann, 1) == [(epoch, 6, "6")]
    await ann.no_message()


async def test_messages_still_on_the_bus_after_the_read_answered_are_not_sent_twice(nodes):
    a, b, ann, epoch = await away_then_back(nodes, WebSocketClient)
    await ann.send(f"SUBSCRIBE news since={epoch}/2")
    assert len(await delivered(ann, 3)) == 3
    assert await ann.message() == recovered(True, epoch, 5)
    deliver(b.hub, kept(epoch, 5, "5"))  # the read had it
    deliver(b.hub, kept(epoch, 6, "6"))
    assert await delivered(ann, 1) == [(epoch, 6, "6")]
    # Past the read's position, the bus alone decides: nothing is filtered any more.
    assert not b.hub.gates.guards("news")


async def test_recoveries_racing_a_stream_of_publishes_get_each_message_once_in_order(nodes):
    a, b = await nodes(2, history_size=200, history_ttl=60.0)
    watcher = await a.client(WebSocketClient, "watcher", "news")
    await publish(a, "news", "1")
    ((epoch, _, _),) = await delivered(watcher, 1)
    last = 80

    async def publishing() -> None:
        await publish(a, "news", *(str(number) for number in range(2, last + 1)))

    publisher = asyncio.ensure_future(publishing())
    clients = []
    for number in range(8):
        client = await b.client(WebSocketClient, f"u{number}")
        await client.send(f"SUBSCRIBE news since={epoch}/1")
        clients.append(client)
        await asyncio.sleep(0.005 * number)
    await publisher
    for client in clients:
        offsets, events = [], []
        # A read answered after the last publish sends the event after the last message.
        while not offsets or offsets[-1] < last or not events:
            message = await client.message()
            if "event" in message:
                events.append(message)
            else:
                assert (message["epoch"], message["payload"]) == (epoch, str(message["offset"]))
                offsets.append(message["offset"])
        assert offsets == list(range(2, last + 1))
        (event,) = events
        assert event["complete"] is True and 1 <= event["offset"] <= last
        await client.no_message(0.1)


# -- presence channels, and Redis away ---------------------------------------------


async def test_in_a_presence_channel_the_member_list_comes_before_the_missed_messages(
    nodes, fresh_redis
):
    a, b = await nodes(2, **KEPT)
    channel = "presence-room"
    await publish(a, channel, "1", "2")
    with fresh_redis.client() as redis:
        epoch = redis.hget(stream_keys(channel, KEY)[1], "epoch").decode()
    bob = await b.client(WebSocketClient, "bob")
    token = channel_token(KEY, SECRET, "bob", channel)
    await bob.send(f"SUBSCRIBE {channel} {token} since={epoch}/1")
    assert await bob.message() == {
        "event": "subscription_succeeded",
        "channel": channel,
        "members": ["bob"],
    }
    assert await delivered(bob, 1) == [(epoch, 2, "2")]
    assert await bob.message() == recovered(True, epoch, 2, channel=channel)


async def test_while_redis_is_down_a_recovery_is_told_incomplete_at_once(nodes, fresh_redis):
    a, b, ann, epoch = await away_then_back(nodes, WebSocketClient)
    with fresh_redis.outage():
        await b.settled(lambda: not b.parts.node.up)
        await ann.send(f"SUBSCRIBE news since={epoch}/2")
        assert await ann.message() == recovered(False, "", 0)


# -- the API's read ---------------------------------------------------------------


async def history(server: LiveServer, channel: str, query: str = "") -> tuple[int, Any]:
    response = await server.api("GET", f"channels/{channel}/history/{query}")
    return response.code, json.loads(response.body)


async def test_the_history_reads_the_same_on_every_node(nodes):
    a, b = await nodes(2, history_size=3, history_ttl=60.0)
    assert await history(b, "news") == (200, {"epoch": "", "offset": 0, "messages": []})
    await publish(a, "news", '{"n": 1}', "2")
    await publish(b, "news", '"three"', "4")
    code, answer = await history(a, "news")
    assert code == 200 and EPOCH.fullmatch(answer["epoch"])
    assert answer == {
        "epoch": answer["epoch"],
        "offset": 4,
        "messages": [
            {"offset": 2, "payload": "2"},
            {"offset": 3, "payload": '"three"'},
            {"offset": 4, "payload": "4"},
        ],
    }
    assert await history(b, "news") == (200, answer)
    assert await history(b, "news", "?since=3") == (
        200,
        {**answer, "messages": [answer["messages"][-1]]},
    )
    assert await history(a, "news", "?since=4") == (200, {**answer, "messages": []})
    assert (await history(b, "news", "?since=-1"))[0] == 400


async def test_the_history_answers_503_while_redis_is_down(nodes, fresh_redis):
    a, b = await nodes(2, **KEPT)
    await publish(a, "news", "1")
    with fresh_redis.outage():
        await b.settled(lambda: not b.parts.node.up)
        started = time.monotonic()
        assert await history(b, "news") == (
            503,
            {"message": "Cluster backend unavailable.", "status": 503},
        )
        assert time.monotonic() - started < 1.5, "a call that needs Redis must not hang"


# -- a node that dies ----------------------------------------------------------------


async def test_a_client_of_a_killed_node_recovers_on_another(fresh_redis, tmp_path):
    with cluster_nodes(tmp_path, fresh_redis, 2, "--history-size", "10") as (doomed, survivor):
        ann = await WebSocketClient(doomed.url).open()
        back = None
        try:
            await ann.send(f"CONNECT ann:{KEY}")
            await ann.send("SUBSCRIBE news")

            async def listed() -> list[str]:
                response = await call_api(survivor.url, "GET", "channels/news/")
                return json.loads(response.body)["users"]

            await eventually(listed, ["ann"])
            await publish_to(survivor.url, "news", "1")
            ((epoch, _, _),) = await delivered(ann, 1)
            doomed.stop(signal.SIGKILL)
            assert (await ann.closed())[0] == 1006
            await publish_to(survivor.url, "news", "2", "3")
            back = await WebSocketClient(survivor.url).open()
            await back.send(f"CONNECT ann:{KEY}")
            await back.send(f"SUBSCRIBE news since={epoch}/1")
            assert await delivered(back, 2) == [(epoch, 2, "2"), (epoch, 3, "3")]
            assert await back.message() == recovered(True, epoch, 3)
        finally:
            for client in (ann, back):
                if client is not None:
                    await client.close()
