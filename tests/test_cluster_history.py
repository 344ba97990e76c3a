"""History in a cluster: channel streams in Redis, recovery on whichever node a
client reconnects to, and the API's read of a channel's history.

The scripts are run on a real Redis first (``fresh_redis``, tests/cluster.py),
then two in-process nodes on it serve real SockJS clients.
"""

from __future__ import annotations

import re
import time

import pytest

from thunderpush.cluster import scripts

APP = "key"
EPOCH = re.compile(r"[0-9a-f]{16}")


class Scripts:
    """The stream scripts, run with EVAL on a real Redis, as a node passes them."""

    def __init__(self, backend) -> None:
        self.redis = backend.client()
        self.bus = self.redis.pubsub()
        self.bus.subscribe(scripts.bus_channel(APP))
        assert self.bus.get_message(timeout=1)["type"] == "subscribe"

    def keep(self, channel: str, payload: str, size: int = 3, ttl: float = 60) -> int:
        return self.redis.eval(scripts.SEND_KEPT, 0, 30, APP, "me", channel, size, ttl, payload)

    def read(self, channel: str, since: int | str = "", ttl: float = 60) -> list:
        epoch, offset, *messages = self.redis.eval(scripts.HISTORY, 0, APP, channel, ttl, since)
        pairs = list(zip(messages[::2], [m.decode() for m in messages[1::2]], strict=True))
        return [epoch.decode(), offset, pairs]

    def published(self) -> bytes:
        message = self.bus.get_message(timeout=1)
        assert message is not None and message["type"] == "message"
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
    assert lua.published() == f'hnews\n{epoch}\n1\nline one\nline "two"'.encode()
    lua.keep("news", "second")
    assert lua.published() == f"hnews\n{epoch}\n2\nsecond".encode()
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
    assert lua.redis.llen("tp:key:h:news") == 3


def test_messages_older_than_the_ttl_are_skipped_and_an_idle_stream_goes_whole(lua):
    lua.keep("news", "old", ttl=0.3)
    epoch = lua.read("news")[0]
    assert 0 < lua.redis.pttl("tp:key:h:news") <= 300
    assert 0 < lua.redis.pttl("tp:key:hm:news") <= 300
    time.sleep(0.2)
    lua.keep("news", "new", ttl=0.3)
    # The reader's ttl decides what is too old: "old" is 0.2 s old.
    assert lua.read("news", ttl=0.1) == [epoch, 2, [(2, "new")]]
    assert lua.read("news", ttl=0.3) == [epoch, 2, [(1, "old"), (2, "new")]]
    deadline = time.monotonic() + 2
    while lua.redis.exists("tp:key:hm:news", "tp:key:h:news"):
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


def test_a_kept_publish_counts_the_other_live_nodes_connections(lua):
    lua.redis.zadd(scripts.NODES, {"other": time.time() + 100, "me": time.time() + 100})
    lua.redis.hset(scripts.channel_count_key(APP, "other"), "news", 4)
    lua.redis.hset(scripts.channel_count_key(APP, "me"), "news", 7)
    assert lua.keep("news", "x") == 4
