"""Pusher's cache channels in Chromium: pusher-js's ``pusher:cache_miss`` binding and a
late subscriber's last event, and Laravel Echo's listener getting the kept event.

The page and its backend are ``tests/browser/test_pusher.py``'s (its ``site``
and ``server`` fixtures, taken here by name); the events come through Pusher's
HTTP API with the ``pusher`` library, as Laravel sends them.
"""

from __future__ import annotations

import pytest

from ..support import KEY
from . import test_pusher
from .test_pusher import count, open_pusher, reports, trigger

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.config(app_id="1")]

# The page's site and the server, as test_pusher.py serves them.
site = test_pusher.site
server = test_pusher.server

CACHED = "cache-score"


async def subscribe_cache(tab, channel: str) -> None:
    """Subscribes as the page's other tests do, and reports ``pusher:cache_miss``."""
    await tab.run(
        """(channel) => pusherReports.subscribe(pusher, channel, out)
            .bind("pusher:cache_miss", () => out({on: "cache_miss", channel}))""",
        channel,
    )


async def test_pusher_js_gets_a_miss_then_a_late_page_the_last_trigger(server, tabs):
    first = await open_pusher(tabs, server, "ann")
    for channel in (CACHED, "private-cache-a"):
        await subscribe_cache(first, channel)
    seen = await reports(first, count("cache_miss", 2))
    assert [r for r in seen if r["on"] == "cache_miss"] == [
        {"on": "cache_miss", "channel": CACHED},
        {"on": "cache_miss", "channel": "private-cache-a"},
    ]
    await trigger(server, CACHED, "goal", {"home": 1})
    await trigger(server, "private-cache-a", "secret", "s")
    await reports(first, count("event", 2))

    late = await open_pusher(tabs, server, "bob")
    for channel in (CACHED, "private-cache-a"):
        await subscribe_cache(late, channel)
    seen = await reports(late, count("event", 2))
    events = [(r["channel"], r["event"], r["data"]) for r in seen if r["on"] != "subscribed"]
    assert events == [(CACHED, "goal", {"home": 1}), ("private-cache-a", "secret", "s")]


@pytest.mark.parametrize("broadcaster", ["pusher", "reverb"])
async def test_laravel_echo_hears_the_kept_event_when_it_listens(broadcaster, server, tabs):
    await trigger(server, "cache-orders", "order.shipped", {"order": {"id": 1}})
    tab = await tabs.open()
    await tab.run(
        "([broadcaster, key, port, user]) => connectEcho(broadcaster, key, port, user)",
        [broadcaster, KEY, server.port, "ann"],
    )
    await tab.run("() => echoListen('cache-orders', ['.order.shipped'])")
    seen = await reports(tab, count("listen"))
    assert seen == [
        {"on": "subscribed", "channel": "cache-orders"},
        {
            "on": "listen",
            "channel": "cache-orders",
            "event": ".order.shipped",
            "data": {"order": {"id": 1}},
        },
    ]
