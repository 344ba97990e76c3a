"""The Pusher Channels protocol: the hub's publish seam, then the websocket at ``/app/<key>``.

The seam's tests use plain objects implementing the hub's connection contract
(as ``tests/test_core.py`` does); the websocket's tests speak raw frames to a
real server with the ``websockets`` client library.
"""

from __future__ import annotations

import json
from typing import Any

from thunderpush.core.apps import Apps
from thunderpush.core.hub import Hub
from thunderpush.pusher import protocol as pusher


class Thunder:
    """A Thunderpush connection as the hub sees one."""

    socket_id = None

    def __init__(self, userid: str) -> None:
        self.userid = userid
        self.received: list[str] = []

    def send_delivery(self, element: str) -> None:
        self.received.append(element)

    def force_disconnect(self) -> None:  # pragma: no cover - not asked here
        raise AssertionError


class Pusher(Thunder):
    """A Pusher connection as the hub sees one: a socket id, user info per presence channel."""

    def __init__(self, userid: str, socket_id: str, info: Any = None) -> None:
        super().__init__(userid)
        self.socket_id = socket_id
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
    assert hub.send_to_channel("news", '{"a":1}', event="update") == 3
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
    assert app.broker.send_to_channel(app, "news", "again", "client-x", exclude="1.1") == 2
    assert len(sender.received) == 1
    assert json.loads(other.received[-1]) == {
        "event": "client-x",
        "channel": "news",
        "data": "again",
    }
    # Thunderpush connections are never excluded, whatever the socket id.
    assert app.broker.send_to_channel(app, "news", "3", exclude="None") == 3
    assert len(thunder.received) == 3


def test_a_channel_without_pusher_connections_is_served_as_before():
    hub = Hub()
    pusher_in_other = joined(hub, Pusher("p", "1.1"), "other")
    thunder = joined(hub, Thunder("t"), "news")
    assert hub.send_to_channel("news", "x", event="ignored", exclude="1.1") == 1
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
