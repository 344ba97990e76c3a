"""Subscription counts (``--subscription-count``): the coalescing, the hub's frames, and
pusher-js hearing them, on one process (the cluster's are in tests/test_pusher_cluster.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest

from thunderpush.config import declared_apps
from thunderpush.core.apps import Apps, options_of
from thunderpush.core.counts import Counts
from thunderpush.core.listener import SUBSCRIPTION_COUNT
from thunderpush.server.cli import load

from .support.clients import WebSocketClient
from .test_pusher_api import APP_ID, call, client_of
from .test_pusher_js import NODE_MODULES, auth_url, pusher_js
from .test_pusher_ws import Pusher, Thunder

__all__ = ["auth_url"]  # the fixture

HAS_NODE = shutil.which("node") is not None and (NODE_MODULES / "pusher-js").is_dir()
# A coalesced count comes within a second of the first.
COUNT_WAIT = 3.0


class Scheduler:
    """``later`` for ``Counts``, run by hand: the test is the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[tuple[float, Any, tuple[Any, ...]]] = []

    def later(self, delay: float, callback: Any, *args: Any) -> None:
        self.calls.append((self.now + delay, callback, args))

    def advance(self, seconds: float) -> None:
        """Runs what is due within ``seconds``, in time order."""
        until = self.now + seconds
        while due := sorted((c for c in self.calls if c[0] <= until), key=lambda c: c[0]):
            call = due[0]
            self.calls.remove(call)
            self.now = call[0]
            call[1](*call[2])
        self.now = until


def test_a_burst_is_told_once_then_at_most_once_a_second():
    scheduler, told = Scheduler(), []
    counts = Counts(told.append, later=scheduler.later)
    for _ in range(3):
        counts.changed("news")  # one turn's changes: told once, at its end
    scheduler.advance(0)
    assert told == ["news"]
    for _ in range(5):
        scheduler.advance(0.1)
        counts.changed("news")
    scheduler.advance(0.49)
    assert told == ["news"]  # not within the second
    scheduler.advance(0.01)
    assert told == ["news", "news"]  # the second's changes, together
    scheduler.advance(5)
    assert told == ["news", "news"] and len(counts) == 0  # quiet: nothing held
    counts.changed("news")
    counts.changed("sport")
    scheduler.advance(0)
    assert told == ["news", "news", "news", "sport"]


def test_waiting_for_another_node_tells_again_after_the_interval():
    scheduler, told = Scheduler(), []
    counts = Counts(told.append, later=scheduler.later)
    counts.changed("news")
    scheduler.advance(0)
    counts.again("news")
    scheduler.advance(0.99)
    assert told == ["news"]
    scheduler.advance(0.01)
    assert told == ["news", "news"]


def _app(**options: Any) -> Any:
    apps = Apps()
    app = apps.add("key", "secret", **options)
    scheduler = Scheduler()
    if app.hub.counts is not None:
        app.hub.counts = Counts(app.hub.listener.count, later=scheduler.later)
    return app, scheduler


def test_pusher_subscribers_of_non_presence_channels_hear_the_count_and_webhooks_too():
    app, scheduler = _app(subscription_count=True)
    hub, heard = app.hub, []
    hub.on_transition = lambda *event: heard.append(event)
    thunder, one, two = Thunder("t"), Pusher("p1", "1.1"), Pusher("p2", "2.2")
    for connection in (thunder, one, two):
        hub.add(connection)
        hub.subscribe(connection, "news")
        hub.subscribe(connection, "presence-room")
    scheduler.advance(0)
    frame = {
        "event": "pusher_internal:subscription_count",
        "channel": "news",
        "data": json.dumps({"subscription_count": 3}, separators=(",", ":")),
    }
    assert [json.loads(f) for f in one.received if "subscription_count" in f] == [frame]
    assert [json.loads(f) for f in two.received if "subscription_count" in f] == [frame]
    assert not any("count" in f for f in thunder.received)  # Thunderpush clients: nothing
    counted = [event for event in heard if event[0] == SUBSCRIPTION_COUNT]
    assert counted == [(SUBSCRIPTION_COUNT, "news", {"subscription_count": 3})]
    hub.unsubscribe(two, "news")
    hub.subscribe(two, "news")  # back to 3 within the second: nothing to tell
    scheduler.advance(1)
    hub.remove(one)
    scheduler.advance(1)
    counted = [event[2] for event in heard if event[0] == SUBSCRIPTION_COUNT]
    assert counted == [{"subscription_count": 3}, {"subscription_count": 2}]
    assert json.loads(two.received[-1])["data"] == '{"subscription_count":2}'


def test_an_app_without_the_option_tells_nothing():
    app, _ = _app()
    assert app.hub.counts is None and not app.subscription_count
    app.subscription_count = True
    assert app.hub.counts is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_NODE, reason="needs node and `npm ci` in client/")
@pytest.mark.config(subscription_count=True, app_id=APP_ID)
async def test_pusher_js_hears_the_count_change_coalesced(server, auth_url):
    """pusher-js's ``channel.bind("pusher:subscription_count")``: the first
    subscriber hears 1; three more within a second are heard together, once."""
    thunder = await server.client(WebSocketClient, "t", "other")
    async with pusher_js(server, auth_url) as first:
        await first.connected()
        await first.subscribed("news")
        assert await first.next() == {"on": "subscription_count", "channel": "news", "count": 1}
        async with pusher_js(server, auth_url) as two, pusher_js(server, auth_url) as three:
            for client in (two, three):
                await client.connected()
                await client.subscribed("news")
            await thunder.send("SUBSCRIBE news")  # Thunderpush clients count too
            report = await first.next(wait=COUNT_WAIT)
            assert report == {"on": "subscription_count", "channel": "news", "count": 4}
            # Nothing more: the second's four changes were told once.
            with pytest.raises(asyncio.TimeoutError):
                await first.next(wait=1.5)
        # The two leave in two turns: told at once (3), or together (2), then 2.
        counts = [(await first.next(wait=COUNT_WAIT))["count"]]
        if counts[0] != 2:
            counts.append((await first.next(wait=COUNT_WAIT))["count"])
        assert counts in ([2], [3, 2]), counts
        # Pusher's HTTP API says the same, through the `pusher` library.
        info = await call(client_of(server).channel_info, "news", ["subscription_count"])
        assert info == {"occupied": True, "subscription_count": 2}


# -- the cluster ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not HAS_NODE, reason="needs node and `npm ci` in client/")
async def test_the_cluster_wide_count_reaches_pusher_js_on_both_nodes_webhooks_once(
    nodes, auth_url
):
    """Two nodes on Redis: each pusher-js hears the count of the whole cluster, and
    each count is one ``subscription_count`` webhook, on one node."""
    one, two = await nodes(2, subscription_count=True, app_id=APP_ID)
    heard: list[tuple[str, Any]] = []
    for node in (one, two):
        node.hub.on_transition = lambda *event, at=node.port: heard.append((at, event))
    async with pusher_js(one, auth_url) as first, pusher_js(two, auth_url) as second:
        await first.connected()
        await first.subscribed("news")
        assert (await first.next(wait=COUNT_WAIT))["count"] == 1
        await second.connected()
        await second.subscribed("news")
        thunder = await two.client(WebSocketClient, "t", "news")
        for client in (first, second):
            counts = [(await client.next(wait=COUNT_WAIT))["count"]]
            while counts[-1] != 3:
                counts.append((await client.next(wait=COUNT_WAIT))["count"])
            assert counts in ([3], [2, 3]), counts
        info = await call(client_of(two).channel_info, "news", ["subscription_count"])
        assert info == {"occupied": True, "subscription_count": 3}
        await thunder.send("UNSUBSCRIBE news")
        assert (await first.next(wait=COUNT_WAIT))["count"] == 2
        assert (await second.next(wait=COUNT_WAIT))["count"] == 2
    told = [event[2]["subscription_count"] for _, event in heard if event[0] == SUBSCRIPTION_COUNT]
    assert told[0] == 1 and told[-2:] == [3, 2] and len(told) == len(set(told)), heard


def test_the_option_is_the_servers_unless_an_app_says_otherwise(tmp_path):
    path = tmp_path / "thunderpush.toml"
    path.write_text(
        "subscription_count = true\n"
        "[[apps]]\nkey = 'a'\nsecret = 'sa'\n"
        "[[apps]]\nkey = 'b'\nsecret = 'sb'\nsubscription_count = false\n"
    )
    config = load(["--config", str(path)], {})[0]
    apps = Apps()
    for declared in declared_apps(config):
        apps.add(declared.key, declared.secret, **options_of(declared))
    assert [(app.key, app.subscription_count) for app in apps] == [("a", True), ("b", False)]
    assert not load(["k", "s"], {})[0].subscription_count
    assert load(["k", "s", "--subscription-count"], {})[0].subscription_count
