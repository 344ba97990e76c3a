"""Pusher's cache channels, the connection's side: a last event read later, as a
cluster's Redis answers it.

A ``PusherConnection`` on a fake socket, and an app whose ``History.last``
answers when the test resolves its future: the connection's deliveries wait
for the read (at most ``MAX_HELD``), so the kept event comes before any newer
one; a presence channel's read starts once its member list went out; a read
that fails is a miss for the client only.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from thunderpush.core.broker import BackendUnavailable, PublishOptions
from thunderpush.core.commands import Limits
from thunderpush.core.history import LocalHistory
from thunderpush.core.lasts import Last
from thunderpush.core.listener import CACHE_MISS
from thunderpush.pusher.cache import MAX_HELD
from thunderpush.pusher.connection import PusherConnection
from thunderpush.pusher.signatures import channel_auth

from .support import KEY, SECRET
from .test_pusher_cache import CACHED, SUCCEEDED, apps_keeping


class Socket:
    """What a ``PusherConnection`` writes to, in order."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_element(self, element: str) -> None:
        self.sent.append(json.loads(element))

    send_pack = send_element

    def close(self, code: int, reason: str) -> None:  # pragma: no cover - not asked here
        raise AssertionError


class LaterRecall(LocalHistory):
    """Reads of the last event answered when the test says, as Redis's are."""

    def __init__(self) -> None:
        self.reads: list[asyncio.Future[Last | None]] = []

    def last(self, app: Any, channel: str) -> asyncio.Future[Last | None]:
        self.reads.append(asyncio.get_running_loop().create_future())
        return self.reads[-1]


def connected() -> tuple[Any, PusherConnection, Socket, LaterRecall]:
    apps, app = apps_keeping()
    app.recall = recall = LaterRecall()
    socket = Socket()
    connection = PusherConnection(socket, app, Limits(), set())
    connection.open()
    socket.sent.clear()
    return app, connection, socket, recall


def subscribe(connection: PusherConnection, channel: str, **data: Any) -> None:
    connection.on_message(
        json.dumps({"event": "pusher:subscribe", "data": {"channel": channel, **data}})
    )


async def test_deliveries_wait_for_the_read_so_the_kept_event_comes_first():
    app, connection, socket, recall = connected()
    subscribe(connection, CACHED)
    subscribe(connection, "news")
    app.hub.send_to_channel(CACHED, "1", options=PublishOptions("live"))
    app.hub.send_to_channel("news", "2")
    assert [frame["event"] for frame in socket.sent] == [SUCCEEDED] * 2
    recall.reads[0].set_result(Last("goal", "0"))
    await asyncio.sleep(0)
    assert [(frame["event"], frame.get("data")) for frame in socket.sent[2:]] == [
        ("goal", "0"),
        ("live", "1"),
        ("message", "2"),
    ]
    assert connection.cache is None  # nothing waits: deliveries go straight out again


async def test_a_presence_cache_channel_reads_once_its_member_list_went_out():
    app, connection, socket, recall = connected()
    room = "presence-cache-room"
    channel_data = json.dumps({"user_id": "ann"})
    auth = channel_auth(KEY, SECRET, connection.socket_id, room, channel_data)
    subscribe(connection, room, channel_data=channel_data, auth=auth)
    assert [frame["event"] for frame in socket.sent] == [SUCCEEDED]
    assert len(recall.reads) == 1
    app.hub.send_to_channel(room, "1")
    recall.reads[0].set_result(None)
    await asyncio.sleep(0)
    assert socket.sent[1:] == [
        {"event": "pusher:cache_miss", "channel": room},
        {"event": "message", "channel": room, "data": "1"},
    ]


async def test_a_read_that_fails_is_a_miss_for_the_client_not_the_webhooks(caplog):
    app, connection, socket, recall = connected()
    told = []
    app.hub.on_transition = lambda *event: told.append(event)
    subscribe(connection, CACHED)
    recall.reads[0].set_exception(BackendUnavailable("down"))
    await asyncio.sleep(0)
    assert socket.sent[-1] == {"event": "pusher:cache_miss", "channel": CACHED}
    assert [event for event in told if event[0] == CACHE_MISS] == []


async def test_at_most_max_held_deliveries_wait_for_a_read():
    app, connection, socket, recall = connected()
    subscribe(connection, CACHED)
    for number in range(MAX_HELD + 1):
        app.hub.send_to_channel(CACHED, str(number))
    # Past the bound the held ones go out, in order; the kept event comes when read.
    assert [frame.get("data") for frame in socket.sent[1:]] == [str(n) for n in range(MAX_HELD + 1)]
    assert len(connection.cache.held) == 0
    recall.reads[0].set_result(None)
    await asyncio.sleep(0)
    assert socket.sent[-1]["event"] == "pusher:cache_miss" and connection.cache is None


async def test_a_client_gone_before_the_read_answered_is_sent_nothing():
    app, connection, socket, recall = connected()
    subscribe(connection, CACHED)
    app.hub.send_to_channel(CACHED, "1")  # held
    connection.close()
    recall.reads[0].set_result(Last(None, "0"))
    await asyncio.sleep(0)
    assert [frame["event"] for frame in socket.sent] == [SUCCEEDED]
