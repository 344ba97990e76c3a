"""Property-based tests of the command language: arbitrary input, never an exception.

The parser runs in ``Client``, whose transport side is the connection
contract (``close``, ``send_delivery``); ``Recorder`` implements it by
recording, as ``tests/test_core.py`` does for the hub.  The hub, the app
registry and the token checks are the real ones.
"""

from __future__ import annotations

import json
import string
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thunderpush.auth import channel_token, user_token
from thunderpush.core import protocol
from thunderpush.core.apps import Apps
from thunderpush.core.commands import Client, Limits
from thunderpush.core.retention import HistoryPolicy, Keep
from thunderpush.core.streams import Streams

pytestmark = pytest.mark.slow

KEY, SECRET = "key", "secret"
MAX_CHANNELS = 8
# What the protocol lets a command do to a connection: nothing else may close it.
ALLOWED_CLOSES = {
    protocol.INVALID_API_KEY,
    protocol.SUBSCRIBE_BEFORE_CONNECT,
    protocol.INVALID_SIGNATURE,
}
COMMAND_WORDS = ("CONNECT", "SUBSCRIBE", "UNSUBSCRIBE")


class Recorder(Client):
    """A connection whose transport records what the server would send."""

    # Rate high enough that generated command lists never reach it.
    limits = Limits(max_channels=MAX_CHANNELS, max_commands_per_second=10**9)

    def __init__(self, apps: Apps) -> None:
        self.apps = apps
        self.closes: list[tuple[int, str]] = []
        self.sent: list[str] = []

    def close(self, code: int, reason: str) -> None:
        self.closes.append(protocol.Close(code, reason))
        self.leave()

    def send_delivery(self, element: str) -> None:
        self.sent.append(element)


any_text = st.text(st.characters(exclude_categories=()), max_size=80)
users = st.sampled_from(["alice", "bob", " alice", "", "a\x00", "x" * 129]) | any_text
channels = st.sampled_from(
    ["news", "private-a", "presence-room", "bad name", "", "x" * 65, "private-"]
) | st.text(string.ascii_letters + "-_: ", max_size=20)


@st.composite
def subscribe_items(draw) -> str:
    channel = draw(channels)
    kind = draw(st.sampled_from(["bare", "valid", "other-user", "user-token", "junk"]))
    if kind == "bare":
        return channel
    if kind == "valid":
        return f"{channel} {channel_token(KEY, SECRET, 'alice', channel)}"
    if kind == "other-user":
        return f"{channel} {channel_token(KEY, SECRET, 'bob', channel)}"
    if kind == "user-token":
        return f"{channel} {user_token(KEY, SECRET, 'alice')}"
    return f"{channel} {draw(any_text)}"


@st.composite
def connects(draw) -> str:
    user = draw(users)
    key = draw(st.sampled_from([KEY, "wrong", ""]))
    tail = draw(
        st.sampled_from(["", ":" + user_token(KEY, SECRET, "alice"), ":junk", "::"])
        | any_text.map(lambda text: ":" + text)
    )
    return f"CONNECT {user}:{key}{tail}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=10,
)
commands = st.one_of(
    connects(),
    st.lists(subscribe_items(), max_size=12).map(lambda items: "SUBSCRIBE " + ":".join(items)),
    st.lists(subscribe_items(), max_size=6).map(lambda items: "UNSUBSCRIBE " + ":".join(items)),
    st.sampled_from(COMMAND_WORDS).map(lambda word: word + " ") | st.sampled_from(COMMAND_WORDS),
    any_text,
    json_values,
)


def run(messages: list, require_signature: bool = False) -> tuple[Recorder, Apps]:
    apps = Apps()
    apps.add(KEY, SECRET, require_signature)
    client = Recorder(apps)
    for message in messages:
        if client.closes:
            break  # as a session: nothing reaches a closed connection
        client.handle(message)
    return client, apps


def check_invariants(client: Recorder, apps: Apps) -> None:
    hub = apps.get(KEY).hub
    assert set(client.closes) <= ALLOWED_CLOSES
    if client.connected:
        assert protocol.is_valid_user_id(client.userid)
        assert hub.is_online(client.userid)
        assert hub.subscription_count(client) <= MAX_CHANNELS
    for channel in hub.channels:
        assert protocol.is_valid_channel_name(channel)
        if protocol.needs_channel_token(channel):
            # Only alice holds tokens here; nobody else may be let in.
            assert hub.channel_users(channel) == ["alice"], channel
    for element in client.sent:
        event = json.loads(element)
        assert next(iter(event)) == "event" and "payload" not in event
        assert element.isascii()


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(commands, max_size=12), st.booleans())
def test_no_command_sequence_raises_or_breaks_the_connection_state(messages, require_signature):
    client, apps = run(messages, require_signature)
    check_invariants(client, apps)
    if client.closes:
        assert not client.connected and apps.get(KEY).hub.channels == {}


@FAST
@given(st.lists(commands, max_size=8))
def test_after_a_valid_connect_only_closing_commands_can_end_the_session(messages):
    client, apps = run([f"CONNECT alice:{KEY}", *messages])
    check_invariants(client, apps)
    # SUBSCRIBE and UNSUBSCRIBE on a connected client, and everything that is
    # not a command, never close it; a second CONNECT is ignored.
    assert client.closes == [] and client.connected and client.userid == "alice"


@FAST
@given(st.lists(any_text | json_values, max_size=8))
def test_what_is_not_a_command_is_ignored_and_changes_nothing(messages):
    messages = [m for m in messages if not (isinstance(m, str) and m.startswith(COMMAND_WORDS))]
    client, apps = run(messages)
    assert client.closes == [] and client.sent == [] and not client.connected
    assert apps.get(KEY).hub.users == {}
    # And the connection still works.
    client.handle(f"CONNECT alice:{KEY}")
    client.handle("SUBSCRIBE news")
    assert apps.get(KEY).hub.channel_users("news") == ["alice"]


@FAST
@given(any_text)
def test_a_connect_argument_connects_only_a_valid_user_or_closes_with_a_documented_code(text):
    client, apps = run([f"CONNECT {text}"], require_signature=True)
    assert set(client.closes) <= {protocol.INVALID_API_KEY, protocol.INVALID_SIGNATURE}
    assert not client.connected  # no token can be guessed


@FAST
@given(st.lists(subscribe_items(), max_size=20))
def test_a_subscribe_answers_each_private_item_once_and_never_more(items):
    client, apps = run([f"CONNECT alice:{KEY}", "SUBSCRIBE " + ":".join(items)])
    check_invariants(client, apps)
    hub = apps.get(KEY).hub
    answered = [json.loads(element)["channel"] for element in client.sent]
    private_items = [
        item.partition(" ")[0]
        for item in items
        if protocol.needs_channel_token(item.partition(" ")[0])
        and protocol.is_valid_channel_name(item.partition(" ")[0])
    ]
    # Each private channel is answered (accepted, or refused for its token), but
    # past the channel limit only the first refused channel is, once a command.
    full = [e for e in client.sent if json.loads(e).get("message") == protocol.TOO_MANY_CHANNELS]
    assert len(full) <= 1
    assert set(private_items) <= set(answered) or full
    assert len(answered) == len(set(answered))  # a repeated item is answered once
    assert hub.subscription_count(client) <= MAX_CHANNELS


# -- what a command may cost -----------------------------------------------------

# The cost budget's constants: a small channel limit and command rate, so that
# generated commands go past both; each channel keeps its last KEPT messages.
BUDGET_CHANNELS, BUDGET_RATE, KEPT = 6, 12, 4
BUDGET = Limits(max_channels=BUDGET_CHANNELS, max_commands_per_second=BUDGET_RATE)
CAPACITY = max(BUDGET_CHANNELS, BUDGET_RATE)
POOL = ["news", "sport", "presence-room", "private-a", "a", "b", "c", "d", "e", "f", "g"]


class Capped(Recorder):
    """A connection whose transport holds at most ``cap`` unsent bytes: past it,
    it is let go at once (``closed``), as ``ThunderConnection`` is."""

    limits = BUDGET

    def __init__(self, apps: Apps, cap: int) -> None:
        super().__init__(apps)
        self.cap = cap

    def send_delivery(self, element: str) -> None:
        if self.closed:
            raise AssertionError("a delivery built for a closed connection")
        if sum(map(len, self.sent)) + len(element) > self.cap:
            self.closed = True
            return
        super().send_delivery(element)


@st.composite
def costly_items(draw, epochs: dict[str, str]) -> str:
    """An item of a hostile SUBSCRIBE: a channel of a small pool (so repeats come
    often) or a fresh one, a token or none, a ``since=`` or none."""
    channel = draw(st.sampled_from(POOL) | st.integers(0, 40).map(lambda n: f"x{n}"))
    item = channel
    if protocol.needs_channel_token(channel):
        item += " " + channel_token(KEY, SECRET, "alice", channel)
    if draw(st.booleans()):
        epoch = epochs.get(channel, "0123456789abcdef")
        item += f" since={epoch}/{draw(st.integers(0, KEPT + 1))}"
    return item


def kept_streams() -> tuple[Streams, dict[str, str]]:
    """The pool's channels with KEPT messages of 100 bytes each, and their epochs."""
    streams, epochs = Streams(), {}
    for channel in POOL:
        for _ in range(KEPT):
            epochs[channel], _ = streams.append(channel, "m" * 100, KEEP)
    return streams, epochs


KEEP = Keep(KEPT, 3600.0)
# Read only, so every example shares them (the items' since= name their epochs).
STREAMS, EPOCHS = kept_streams()


@FAST
@given(
    st.lists(st.lists(costly_items(EPOCHS), max_size=2 * CAPACITY), min_size=1, max_size=4),
    st.integers(200, 20_000),
)
def test_a_subscribe_costs_at_most_its_distinct_channels_within_the_budgets(commands, cap):
    """Random item lists, repeats and ``since=`` included: each command is served per
    distinct channel (one recovery, one welcome, one "Too many channels."), its items
    are taken from the item bucket (9012 past it), and nothing is built for a
    connection past its unsent cap."""
    apps = Apps()
    apps.add(KEY, SECRET, history=HistoryPolicy(KEEP)).hub.streams = STREAMS
    client = Capped(apps, cap)
    started = time.monotonic()
    client.handle(f"CONNECT alice:{KEY}")
    taken = 0
    for items in commands:
        if client.closes or client.closed:
            break
        before = len(client.sent)
        client.handle("SUBSCRIBE " + ":".join(items))
        answers = [json.loads(element) for element in client.sent[before:]]
        distinct = {item.partition(" ")[0] for item in items if item}
        # What the item bucket may have refilled since the example started.
        slack = int((time.monotonic() - started) * BUDGET_RATE) + 1
        over = len(items) > CAPACITY or taken + len(distinct) > CAPACITY + slack
        if over or client.closes:
            assert over or taken + len(distinct) > CAPACITY, (taken, len(distinct))
            # Over the item budget: 9012, and nothing built.
            assert client.closes == [protocol.TOO_MANY_COMMANDS]
            assert answers == []
            break
        taken += len(distinct)
        events = [(a.get("event"), a.get("channel")) for a in answers if "event" in a]
        assert len(events) == len(set(events))  # one recovery, one welcome per channel
        assert [a.get("message") for a in answers].count(protocol.TOO_MANY_CHANNELS) <= 1
        replays = [a for a in answers if "payload" in a]
        assert len(replays) <= KEPT * len(distinct)
        assert {a["channel"] for a in answers} <= distinct
    assert sum(map(len, client.sent)) <= cap
