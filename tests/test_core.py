"""The core on its own: the hub, the app registry, the local broker and presence.

Connections here are plain objects implementing the documented connection
contract (``userid``, ``send_delivery``, ``force_disconnect``): that contract
is what a transport provides, so nothing else could stand in.
"""

from __future__ import annotations

import pytest

from thunderpush.core.apps import Apps
from thunderpush.core.hub import Hub


class Connection:
    def __init__(self, hub: Hub, userid: str) -> None:
        self.hub, self.userid = hub, userid
        self.received: list[str] = []

    def send_delivery(self, element: str) -> None:
        self.received.append(element)

    def force_disconnect(self) -> None:
        # What a real connection does when closed: it unregisters itself.
        self.hub.remove(self)


class Broken(Connection):
    def send_delivery(self, element: str) -> None:
        raise OSError("peer gone")


@pytest.fixture
def hub():
    return Hub()


def connect(hub: Hub, userid: str, *channels: str, kind=Connection) -> Connection:
    connection = kind(hub, userid)
    hub.add(connection)
    for channel in channels:
        hub.subscribe(connection, channel)
    return connection


def test_counts_and_presence(hub):
    connect(hub, "a")
    connect(hub, "a")
    connect(hub, "b")
    assert hub.user_count() == 2
    assert hub.connection_count() == 3
    assert hub.is_online("a") and not hub.is_online("c")


def test_send_to_channel_and_user_build_the_element_once(hub):
    one, two = connect(hub, "a", "news"), connect(hub, "b", "news")
    assert hub.send_to_channel("news", b'{"x": "\xc3\xa9"}') == 2
    assert (
        one.received == two.received == ['{"payload":"{\\"x\\": \\"\\u00e9\\"}","channel":"news"}']
    )
    assert one.received[0] is two.received[0]
    assert hub.send_to_user("a", "1") == 1
    assert one.received[-1] == '{"payload":"1"}'


def test_a_failing_receiver_costs_nobody_else_the_message(hub, caplog):
    connect(hub, "x", "news", kind=Broken)
    ok = connect(hub, "y", "news")
    assert hub.send_to_channel("news", "1") == 2
    assert ok.received == ['{"payload":"1","channel":"news"}']
    caplog.clear()  # the failure is logged with its traceback, by design


def test_channel_membership(hub):
    a = connect(hub, "a", "news", "news", "bad name")
    b = connect(hub, "b", "news")
    assert hub.channel_connections("news") == [a, b]
    assert hub.channel_users("news") == ["a", "b"]
    assert "bad name" not in hub.channels
    hub.unsubscribe(a, "news")
    assert hub.channel_connections("news") == [b]
    hub.unsubscribe(b, "news")
    assert hub.channels == {}


def test_unregister_frees_every_index(hub):
    a = connect(hub, "a", "one", "two")
    hub.remove(a)
    assert hub.users == {} and hub.channels == {}


def test_force_disconnect_user_reaches_every_connection(hub):
    connect(hub, "a", "news")
    connect(hub, "a")
    connect(hub, "a")
    hub.disconnect_user("a")
    assert not hub.is_online("a") and hub.channels == {}


def test_apps_find_and_authenticate_by_key():
    apps = Apps()
    app = apps.add("pub", "priv")
    assert apps.get("pub") is app and apps.get("nope") is None
    assert apps.authenticate("pub", "priv") is app
    assert apps.authenticate("pub", "wrong") is None
    assert apps.authenticate("nope", "") is None  # an unknown key has no empty secret
    connect(app.hub, "u")
    apps.disconnect_all()
    assert not app.hub.is_online("u")


def test_local_broker_and_presence_answer_at_once_from_the_hub():
    apps = Apps()
    app = apps.add("pub", "priv")
    a = connect(app.hub, "a", "news")
    connect(app.hub, "b", "news")
    connect(app.hub, "b")
    assert app.broker.send_to_channel(app, "news", "1") == 2
    assert app.broker.send_to_user(app, "b", "2") == 2
    assert a.received == ['{"payload":"1","channel":"news"}']
    assert app.presence.user_count(app) == 2
    assert app.presence.is_online(app, "a") and not app.presence.is_online(app, "c")
    assert app.presence.channel_users(app, "news") == ["a", "b"]
    assert app.broker.disconnect_user(app, "b") is None
    assert not app.presence.is_online(app, "b")
