"""pusher-js 8 and Laravel Echo in Chromium: what a real page adds over the Node tests.

The page (``pusher.html``) loads pusher-js, Laravel Echo and
``tests/pusher_reports.js`` from client/node_modules and tests/, served by the
page's own origin, which is also the app's backend: it answers the auth
endpoint pusher-js and Echo call (``tests/support/pusher_auth.py``), same-origin as
on a Laravel site.  Thunderpush runs in the test's process on another port.
Events are published through Thunderpush's API and, as Laravel does, through
Pusher's HTTP API with the ``pusher`` server library.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pusher
import pytest
import pytest_asyncio
import tornado.netutil
import tornado.web
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from tornado.httpserver import HTTPServer

from ..support import KEY, SECRET
from ..support.browser import CLIENT_DIR, PAGES, WAIT_MS, Tab, Tabs
from ..support.pusher_auth import AUTH_ROUTE, AuthHandler, encrypting_backend
from ..support.served import LiveServer, serving

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.config(app_id="1")]

NODE_MODULES = CLIENT_DIR / "node_modules"
PUSHER_DIR = NODE_MODULES / "pusher-js" / "dist" / "web"
ECHO_DIR = NODE_MODULES / "laravel-echo" / "dist"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site():
    """``http://localhost:<port>``: the page, pusher-js, Echo, and the auth endpoint."""
    for needed in (PUSHER_DIR / "pusher.min.js", ECHO_DIR / "echo.iife.js"):
        if not needed.is_file():
            pytest.fail(f"{needed.name} is missing: run `npm ci` in client/")
    application = tornado.web.Application(
        [
            (
                r"/()",
                tornado.web.StaticFileHandler,
                {"path": PAGES, "default_filename": "pusher.html"},
            ),
            (
                r"/(pusher\.min\.js|pusher-with-encryption\.min\.js)",
                tornado.web.StaticFileHandler,
                {"path": PUSHER_DIR},
            ),
            (r"/(echo\.iife\.js)", tornado.web.StaticFileHandler, {"path": ECHO_DIR}),
            (r"/(pusher_reports\.js)", tornado.web.StaticFileHandler, {"path": PAGES.parent}),
            (AUTH_ROUTE, AuthHandler),
        ]
    )
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http = HTTPServer(application)
    http.add_sockets(sockets)
    yield f"http://localhost:{sockets[0].getsockname()[1]}"
    http.stop()
    await http.close_all_connections()


@pytest_asyncio.fixture(loop_scope="module")
async def server(request):
    """``@pytest.mark.config(**fields)`` sets its Config fields, as for tests/conftest.py's."""
    marker = request.node.get_closest_marker("config")
    async with serving(marker.kwargs) as running:
        yield running


async def reports(tab: Tab, condition: str = "true") -> list[dict[str, Any]]:
    """The page's reports but state changes, once ``condition`` (on ``reports``) holds."""
    try:
        await tab.page.wait_for_function(condition, timeout=WAIT_MS)
    except PlaywrightTimeoutError:
        seen = await tab.run("() => reports")
        pytest.fail(f"timed out waiting for {condition!r}; page saw {seen}")
    return [r for r in await tab.run("() => reports") if r["on"] != "state"]


def count(on: str, n: int = 1) -> str:
    return f"reports.filter(r => r.on === {on!r}).length >= {n}"


async def open_pusher(tabs: Tabs, server: LiveServer, user: str, key: str = KEY) -> Tab:
    tab = await tabs.open()
    await tab.run("([key, port, user]) => connectPusher(key, port, user)", [key, server.port, user])
    return tab


async def subscribe(tab: Tab, channel: str) -> None:
    await tab.run("(channel) => pusherReports.subscribe(pusher, channel, out)", channel)


async def trigger(server: LiveServer, channel: str, event: str, data: Any) -> None:
    """An event through Pusher's HTTP API, as Laravel's broadcasting sends it."""
    client = pusher.Pusher(
        app_id="1", key=KEY, secret=SECRET, host="127.0.0.1", port=server.port, ssl=False
    )
    await asyncio.to_thread(client.trigger, channel, event, data)


@pytest.mark.config(app_id="1", client_events=True)
async def test_pusher_js_channels_presence_and_client_events_in_a_page(server, tabs):
    ann = await open_pusher(tabs, server, "ann")
    for channel in ("news", "private-forged", "presence-room"):
        await subscribe(ann, channel)
    await reports(ann, count("subscribed", 2) + " && " + count("subscription_error"))
    bob = await open_pusher(tabs, server, "bob")
    await subscribe(bob, "presence-room")
    seen = await reports(bob, count("subscribed"))
    assert seen[0]["members"]["hash"] == {"ann": {"name": "ANN"}, "bob": {"name": "BOB"}}

    for n in range(5):
        await server.api("POST", "channels/news/", str(n))
    await bob.run("() => pusher.channel('presence-room').trigger('client-typing', {who: 'bob'})")
    seen = await reports(ann, count("event", 6))
    assert {"on": "subscription_error", "channel": "private-forged", "status": 401} in seen
    assert {
        "on": "member_added",
        "channel": "presence-room",
        "id": "bob",
        "info": {"name": "BOB"},
    } in seen
    events = [(r["channel"], r["event"], r["data"]) for r in seen if r["on"] == "event"]
    assert events[:5] == [("news", "message", n) for n in range(5)]
    assert events[5] == ("presence-room", "client-typing", {"who": "bob"})

    # Closing the tab closes its websocket: the other member sees it leave.
    await bob.page.close()
    seen = await reports(ann, count("member_removed"))
    assert seen[-1] == {"on": "member_removed", "channel": "presence-room", "id": "bob"}


async def test_a_wrong_key_gets_pusher_error_4001_in_a_page(server, tabs):
    tab = await open_pusher(tabs, server, "ann", key="wrong")
    seen = await reports(tab, count("error"))
    assert seen[0] == {"on": "error", "code": 4001, "message": "Application does not exist"}
    # 4000-4099: pusher-js gives up rather than reconnecting.
    await reports(tab, "pusher.connection.state === 'disconnected'")


@pytest.mark.parametrize("broadcaster", ["pusher", "reverb"])
async def test_laravel_echo_listens_and_joins(broadcaster, server, tabs):
    async def echo(user: str) -> Tab:
        tab = await tabs.open()
        await tab.run(
            "([broadcaster, key, port, user]) => connectEcho(broadcaster, key, port, user)",
            [broadcaster, KEY, server.port, user],
        )
        return tab

    ann = await echo("ann")
    # Echo names a listener App\Events\<name>, as Laravel names an event by its
    # class; a leading "." takes the name as it is (an event's broadcastAs).
    await ann.run("() => echoListen('orders', ['OrderShipped', '.order.shipped', '.message'])")
    await ann.run("() => echoJoin('chat.1')")
    await reports(ann, count("subscribed") + " && " + count("here"))
    await trigger(server, "orders", "App\\Events\\OrderShipped", {"order": {"id": 1}})
    await trigger(server, "orders", "order.shipped", {"order": {"id": 2}})
    await trigger(server, "orders", "OrderShipped", {"order": {"id": 3}})  # no listener
    await server.api("POST", "channels/orders/", '{"order": {"id": 4}}')  # event "message"

    bob = await echo("bob")
    await bob.run("() => echoJoin('chat.1')")
    here = (await reports(bob, count("here")))[0]
    assert sorted(here["users"], key=lambda user: user["name"]) == [
        {"name": "ANN"},
        {"name": "BOB"},
    ]
    await bob.page.close()
    seen = await reports(ann, count("leaving"))
    assert seen == [
        {"on": "subscribed", "channel": "orders"},
        {"on": "here", "room": "chat.1", "users": [{"name": "ANN"}]},
        {
            "on": "listen",
            "channel": "orders",
            "event": "OrderShipped",
            "data": {"order": {"id": 1}},
        },
        {
            "on": "listen",
            "channel": "orders",
            "event": ".order.shipped",
            "data": {"order": {"id": 2}},
        },
        {"on": "listen", "channel": "orders", "event": ".message", "data": {"order": {"id": 4}}},
        {"on": "joining", "room": "chat.1", "user": {"name": "BOB"}},
        {"on": "leaving", "room": "chat.1", "user": {"name": "BOB"}},
    ]


async def test_pusher_js_with_encryption_decrypts_the_pusher_librarys_trigger(server, tabs):
    """Part L of issue 20: pusher-js's with-encryption build in a page (what
    ``import Pusher from "pusher-js/with-encryption"`` bundles), its channel key
    from the backend's ``shared_secret``, alone and under Laravel Echo's
    ``encryptedPrivate``; the server passes the sealed data on."""
    plain, echo = await tabs.open(), await tabs.open()
    for tab in (plain, echo):
        await tab.page.add_script_tag(url="/pusher-with-encryption.min.js")
    await plain.run("([key, port]) => connectPusher(key, port, 'ann')", [KEY, server.port])
    await subscribe(plain, "private-encrypted-orders")
    await echo.run("([key, port]) => connectEcho('pusher', key, port, 'bob')", [KEY, server.port])
    await echo.run(
        """() => echo.encryptedPrivate("orders")
            .subscribed(() => out({on: "subscribed"}))
            .listen(".shipped", (data) => out({on: "listen", data: data}))"""
    )
    for tab in (plain, echo):
        await reports(tab, count("subscribed"))
    backend = encrypting_backend(server.port)
    await asyncio.to_thread(backend.trigger, "private-encrypted-orders", "shipped", {"order": 7})
    event = (await reports(plain, count("event")))[-1]
    assert (event["channel"], event["event"], event["data"]) == (
        "private-encrypted-orders",
        "shipped",
        {"order": 7},
    )
    assert (await reports(echo, count("listen")))[-1] == {"on": "listen", "data": {"order": 7}}


@pytest.mark.config(app_id="1", subscription_count=True)
async def test_subscription_counts_and_the_watchlist_in_a_page(server, tabs):
    """Part S: ``pusher:subscription_count`` on a channel, and ``pusher.user.watchlist``
    after a sign-in whose user_data has a watchlist."""
    ann = await open_pusher(tabs, server, "ann;bob,cat")
    await ann.run("() => signinWatching()")
    await subscribe(ann, "news")
    seen = await reports(ann, count("subscription_count"))
    assert {"on": "subscription_count", "channel": "news", "count": 1} in seen
    bob = await open_pusher(tabs, server, "bob")
    await bob.run("() => signinWatching()")
    await subscribe(bob, "news")
    seen = await reports(ann, count("watchlist") + " && " + count("subscription_count", 2))
    assert {"on": "watchlist", "name": "online", "user_ids": ["bob"]} in seen
    assert {"on": "subscription_count", "channel": "news", "count": 2} in seen
    await bob.page.close()
    seen = await reports(ann, count("watchlist", 2) + " && " + count("subscription_count", 3))
    assert {"on": "watchlist", "name": "offline", "user_ids": ["bob"]} in seen
    assert [r["count"] for r in seen if r["on"] == "subscription_count"] == [1, 2, 1]
