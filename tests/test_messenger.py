"""The Python names embedding users of the original rely on, with the same meaning.

Connections here are plain objects implementing the documented connection
contract (``userid``, ``send_delivery``, ``force_disconnect``): that contract
is what an embedding application provides, so nothing else could stand in.
"""

from __future__ import annotations

import pytest

from thunderpush import api, handler, runner, settings
from thunderpush.messenger import Messenger
from thunderpush.sortingstation import SortingStation


class Connection:
    def __init__(self, messenger: Messenger, userid: str) -> None:
        self.messenger, self.userid = messenger, userid
        self.received: list[str] = []

    def send_delivery(self, element: str) -> None:
        self.received.append(element)

    def force_disconnect(self) -> None:
        # What a real connection does when closed: it unregisters itself.
        self.messenger.unregister_user(self)


class Broken(Connection):
    def send_delivery(self, element: str) -> None:
        raise OSError("peer gone")


@pytest.fixture
def messenger():
    return Messenger("key", "secret")


def connect(messenger: Messenger, userid: str, *channels: str, kind=Connection) -> Connection:
    connection = kind(messenger, userid)
    messenger.register_user(connection)
    for channel in channels:
        messenger.subscribe_user_to_channel(connection, channel)
    return connection


def test_counts_and_presence(messenger):
    connect(messenger, "a")
    connect(messenger, "a")
    connect(messenger, "b")
    assert messenger.get_user_count() == 2
    assert messenger.get_connections_count() == 3
    assert messenger.is_user_online("a") and not messenger.is_user_online("c")


def test_send_to_channel_and_user_build_the_element_once(messenger):
    one, two = connect(messenger, "a", "news"), connect(messenger, "b", "news")
    assert messenger.send_to_channel("news", b'{"x": "\xc3\xa9"}') == 2
    assert (
        one.received == two.received == ['{"payload":"{\\"x\\": \\"\\u00e9\\"}","channel":"news"}']
    )
    assert one.received[0] is two.received[0]
    assert messenger.send_to_user("a", "1") == 1
    assert one.received[-1] == '{"payload":"1"}'


def test_a_failing_receiver_costs_nobody_else_the_message(messenger, caplog):
    connect(messenger, "x", "news", kind=Broken)
    ok = connect(messenger, "y", "news")
    assert messenger.send_to_channel("news", "1") == 2
    assert ok.received == ['{"payload":"1","channel":"news"}']
    caplog.clear()  # the failure is logged with its traceback, by design


def test_channel_membership(messenger):
    a = connect(messenger, "a", "news", "news", "bad name")
    b = connect(messenger, "b", "news")
    assert messenger.get_users_in_channel("news") == [a, b]
    assert messenger.get_channel_user_count("news") == 2
    assert "bad name" not in messenger.channels
    messenger.unsubscribe_user_from_channel(a, "news")
    assert messenger.get_users_in_channel("news") == [b]
    messenger.unsubscribe_user_from_channel(b, "news")
    assert messenger.channels == {}


def test_unregister_frees_every_index(messenger):
    a = connect(messenger, "a", "one", "two")
    messenger.unregister_user(a)
    assert messenger.users == {} and messenger.channels == {}


def test_force_disconnect_user_reaches_every_connection(messenger):
    connect(messenger, "a", "news")
    connect(messenger, "a")
    connect(messenger, "a")
    messenger.force_disconnect_user("a")
    assert not messenger.is_user_online("a") and messenger.channels == {}


def test_sorting_station():
    station = SortingStation.instance()
    assert SortingStation.instance() is station
    created = station.create_messenger("pub", "priv")
    assert station.get_messenger_by_apikey("pub") is created
    assert (created.apikey, created.apisecret) == ("pub", "priv")
    connect(created, "u")
    station.delete_messenger(created)
    assert station.get_messenger_by_apikey("pub") is None
    assert not created.is_user_online("u")
    station.destroy()
    assert SortingStation.instance() is not station


def test_module_names_of_the_original_exist():
    assert [pattern for pattern, _ in api.urls] and handler.ThunderSocketHandler
    assert callable(runner.main) and callable(runner.parse_args) and callable(runner.run_app)
    assert settings.PORT == 8080 and settings.PIDPATH == "/tmp/thunderpush.pid"
    assert Messenger.is_valid_channel_name("a.b") and not Messenger.is_valid_channel_name("a b")
