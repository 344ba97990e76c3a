"""The bundled JavaScript client in a real browser, on every SockJS transport.

Headless Chromium loads a test page (``page.html``) from a small static server
on ``http://localhost:<P1>``, while Thunderpush runs as its own process on
``http://127.0.0.1:<P2>``.  The two origins differ, as on a real site, so
sockjs-client uses its cross-origin code paths and the iframe transports load
``/connect/iframe.html`` from Thunderpush, which in turn loads sockjs-client
from ``--sockjs-url`` (the static server: there is no internet here).

Each page restricts SockJS to one transport with the client's ``transports``
option, and every test checks ``sock.transport`` after the open, so a test
cannot pass on a fallback transport.

One browser and one Thunderpush process are shared by the module; tests that
count users online, or restart the server, get a process of their own.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Error as PlaywrightError
from tornado.httpclient import AsyncHTTPClient

from ..support import KEY
from ..support.api import call_api
from ..support.browser import CLIENT_DIR, WAIT_MS, Tab, Tabs, assert_clean_log
from ..support.processes import ServerProcess, start_server_process

pytestmark = pytest.mark.asyncio(loop_scope="module")

TRANSPORTS = [
    "websocket",
    "xhr-streaming",
    "xhr-polling",
    "eventsource",
    "iframe-eventsource",
    "iframe-htmlfile",
    "iframe-xhr-polling",
    "jsonp-polling",
]
each_transport = pytest.mark.parametrize("transport", TRANSPORTS)

# After a restart the client may find the server still down at its 1 s retry
# and try again 2.5 s later; this leaves room for both and a slow start-up.
RECONNECT_MS = 20_000
# To show that a client does NOT reconnect, wait longer than its first
# reconnect delay (1 s) plus the time a reconnection takes to open.  This is
# the only wait that is expected to run out.
NO_RECONNECT_MS = 3_000


# -- Thunderpush processes -------------------------------------------------------


@dataclass
class Servers:
    """Starts Thunderpush processes for one test, stops them and checks their logs."""

    tmp_path: Path
    sockjs_url: str
    running: list[ServerProcess] = field(default_factory=list)

    async def start(self, *extra: str, port: int | None = None) -> ServerProcess:
        server = await asyncio.to_thread(
            start_server_process, self.tmp_path, "--sockjs-url", self.sockjs_url, *extra, port=port
        )
        self.running.append(server)
        return server

    async def restart(self, server: ServerProcess) -> ServerProcess:
        """SIGTERM, then a new process on the same port (whose log replaces the old)."""
        assert await asyncio.to_thread(server.stop) == 0
        assert_clean_log(server.log())
        return await self.start(port=server.port)

    def stop_all(self) -> None:
        for server in self.running:
            server.stop()
            assert_clean_log(server.log())


@pytest.fixture
def servers(tmp_path, site):
    started = Servers(tmp_path, site + "/sockjs.min.js")
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def shared_process(tmp_path_factory, site):
    tmp_path = tmp_path_factory.mktemp("shared")
    server = start_server_process(tmp_path, "--sockjs-url", site + "/sockjs.min.js")
    yield server
    server.stop()


@pytest.fixture
def shared(shared_process):
    """The module's server; the test fails if its part of the log shows an error."""
    start = len(shared_process.log())
    yield shared_process
    assert_clean_log(shared_process.log()[start:])


async def api(server: ServerProcess, method: str, path: str, body: str | None = None) -> Any:
    """One successful API call's JSON answer (None for 204)."""
    response = await call_api(server.url, method, path, body)
    assert response.code in (200, 204), (method, path, response.code, response.body)
    return json.loads(response.body) if response.body else None


async def eventually(server: ServerProcess, path: str, expected: Any) -> None:
    """Polls ``GET path`` (bounded) until it answers ``expected``.

    Commands travel from the page to the server asynchronously (on polling
    transports as separate requests); the API is how a test sees them land.
    """
    deadline = time.monotonic() + WAIT_MS / 1000
    while (answer := await api(server, "GET", path)) != expected:
        assert time.monotonic() < deadline, f"GET {path} answered {answer}, not {expected}"
        await asyncio.sleep(0.05)


async def publish(server: ServerProcess, path: str, body: str) -> int:
    return (await api(server, "POST", path, body))["count"]


# -- the tests -------------------------------------------------------------------


@each_transport
async def test_deliveries_and_subscriptions(transport, shared, tabs):
    """Listeners get parsed payloads, {channel} for channel messages only."""
    user, news, sport, extra = (f"{kind}-{transport}" for kind in ("dl", "news", "sport", "extra"))
    tab = await tabs.open()
    await tab.connect(shared, user, [news, sport], transport)
    await eventually(shared, f"channels/{sport}/", {"users": [user]})
    await eventually(shared, f"channels/{news}/", {"users": [user]})

    assert await publish(shared, f"channels/{news}/", '{"a": [1, null]}') == 1
    assert await publish(shared, f"users/{user}/", '{"text": "caf\u00e9 \U0001f600"}') == 1
    assert await publish(shared, f"channels/{sport}/", " 42 ") == 1
    assert await tab.messages(3) == [
        {"message": {"a": [1, None]}, "meta": {"channel": news}, "argc": 2},
        {"message": {"text": "caf\u00e9 \U0001f600"}, "meta": None, "argc": 1},
        {"message": 42, "meta": {"channel": sport}, "argc": 2},
    ]

    await tab.run("c => Thunder.subscribe(c)", extra)
    await tab.run("c => Thunder.unsubscribe(c)", sport)
    await eventually(shared, f"channels/{extra}/", {"users": [user]})
    await eventually(shared, f"channels/{sport}/", {"users": []})
    assert await publish(shared, f"channels/{sport}/", '"unsubscribed"') == 0
    assert await publish(shared, f"channels/{extra}/", '"subscribed"') == 1
    # Deliveries on one connection keep their order: had the sport message been
    # sent, it would be the fourth and the extra one the fifth.
    assert (await tab.messages(4))[3] == {
        "message": "subscribed",
        "meta": {"channel": extra},
        "argc": 2,
    }
    assert len((await tab.record())["messages"]) == 4


@each_transport
async def test_counts_while_connected(transport, servers, tabs):
    """Counts on a server of its own: the shared one has other tests' users online."""
    server = await servers.start()
    channel = "counted"
    # Each tab also joins a channel of its own, so that the API shows when that
    # tab's single SUBSCRIBE (and with it `channel`) has landed.
    opened = []
    for index, user in enumerate(["alice", "alice", "bob"]):
        tab = await tabs.open()
        await tab.connect(server, user, [channel, f"tab{index}"], transport)
        await eventually(server, f"channels/tab{index}/", {"users": [user]})
        opened.append(tab)

    assert await api(server, "GET", "users/") == {"count": 2}
    assert await api(server, "GET", f"channels/{channel}/") == {"users": ["alice", "bob"]}
    assert await api(server, "GET", "users/alice/") == {"online": True}
    assert await publish(server, f"channels/{channel}/", "1") == 3
    assert await publish(server, "users/alice/", "2") == 2
    assert await publish(server, "users/carol/", "3") == 0
    alice1, alice2, bob = opened
    for tab in (alice1, alice2):
        assert [m["message"] for m in await tab.messages(2)] == [1, 2]
    assert [m["message"] for m in await bob.messages(1)] == [1]


@each_transport
async def test_delete_user_closes_every_tab_for_good(transport, shared, tabs):
    """A forced logout (9002) reaches every tab of the user, and none comes back."""
    user = f"deleted-{transport}"
    both = [await tabs.open(), await tabs.open()]
    for index, tab in enumerate(both):
        await tab.connect(shared, user, [f"del{index}-{transport}"], transport)
        await eventually(shared, f"channels/del{index}-{transport}/", {"users": [user]})

    assert await api(shared, "DELETE", f"users/{user}/") is None
    assert await api(shared, "GET", f"users/{user}/") == {"online": False}
    for tab in both:
        await tab.wait("record.closes.length >= 1")
        assert (await tab.record())["closes"] == [
            {"code": 9002, "reason": "Server closed the connection (intentionally)."}
        ]

    stayed = await asyncio.gather(
        *(tab.stays_false("record.sockets.length > 1", NO_RECONNECT_MS) for tab in both)
    )
    assert stayed == [True, True], "a tab reconnected after 9002"
    assert await api(shared, "GET", f"users/{user}/") == {"online": False}
    for tab in both:
        sent = (await tab.record())["sent"]
        assert [command for command in sent if command.startswith("CONNECT ")] == [
            f"CONNECT {user}:{KEY}"
        ]


@each_transport
async def test_reconnects_after_server_restart(transport, servers, tabs):
    """A deploy (SIGTERM, new process) must not need the user to reload the page."""
    server = await servers.start()
    user, channel = "restarted", "before-and-after"
    tab = await tabs.open()
    await tab.connect(server, user, [channel], transport)
    await eventually(server, f"channels/{channel}/", {"users": [user]})
    assert await publish(server, f"channels/{channel}/", '"before"') == 1
    await tab.messages(1)

    server = await servers.restart(server)
    await tab.wait("record.opens >= 2", timeout=RECONNECT_MS)
    await eventually(server, f"channels/{channel}/", {"users": [user]})
    assert await publish(server, f"channels/{channel}/", '"after"') == 1
    assert [m["message"] for m in await tab.messages(2)] == ["before", "after"]

    seen = await tab.record()
    assert seen["transports"] == [transport, transport]
    assert seen["closes"][0]["code"] not in (9000, 9001, 9002, 9003)
    # Each open sends CONNECT, then one SUBSCRIBE with every channel held.
    assert seen["sent"][-2:] == [f"CONNECT {user}:{KEY}", f"SUBSCRIBE {channel}"]


async def test_subscriptions_before_open_are_remembered(shared, tabs):
    """The original threw here; now changes wait for the open, and go in one SUBSCRIBE."""
    user = "early"
    tab = await tabs.open()
    before_open = await tab.run(
        """([server, key, user]) => {
            var calls = [];
            // The original client's callback arguments: (Thunder, message).
            function ok(t, message) { calls.push(['success', message, t === Thunder]); }
            function failed(t, message) { calls.push(['error', message, t === Thunder]); }
            Thunder.subscribe('early-before-connect', ok, failed);
            Thunder.connect(server, key, ['early-dropped', 'early-kept'], {user: user});
            var state = record.sockets[0].readyState;
            Thunder.subscribe('early-before-open', ok, failed);
            Thunder.unsubscribe('early-dropped', ok, failed);
            Thunder.subscribe('not valid!', ok, failed);
            Thunder.subscribe('x'.repeat(65), ok, failed);
            return {state: state, calls: calls, sent: record.sent.slice()};
        }""",
        [f"127.0.0.1:{shared.port}", KEY, user],
    )
    assert before_open == {
        "state": 0,  # SockJS.CONNECTING: the socket was not open yet
        "calls": [
            ["success", "Channel subscribed", True],
            ["success", "Channel subscribed", True],
            ["success", "Channel unsubscribed", True],
            ["error", "Invalid channel name.", True],
            ["error", "Invalid channel name.", True],
        ],
        "sent": [],
    }

    await tab.wait("record.opens >= 1")
    assert (await tab.record())["sent"] == [
        f"CONNECT {user}:{KEY}",
        "SUBSCRIBE early-before-connect:early-kept:early-before-open",
    ]
    await eventually(shared, "channels/early-before-open/", {"users": [user]})
    assert await api(shared, "GET", "channels/early-dropped/") == {"users": []}
    assert await publish(shared, "channels/early-before-connect/", '"remembered"') == 1
    assert [m["message"] for m in await tab.messages(1)] == ["remembered"]


async def test_default_user_and_disconnect(shared, tabs):
    """Without a user option the page has one random id, kept across connects."""
    tab = await tabs.open()
    # On websocket the server sees a close at once; a polling session would
    # only expire seconds later.
    await tab.connect(shared, None, ["anonymous"], "websocket")
    user = (await tab.record())["sent"][0].removeprefix("CONNECT ").removesuffix(f":{KEY}")
    assert len(user) >= 16 and ":" not in user
    await eventually(shared, f"users/{user}/", {"online": True})

    await tab.run("() => Thunder.disconnect()")
    await eventually(shared, f"users/{user}/", {"online": False})
    assert await tab.stays_false("record.sockets.length > 1", NO_RECONNECT_MS)

    await tab.run(
        "([server, key]) => Thunder.connect(server, key, [])", [f"127.0.0.1:{shared.port}", KEY]
    )
    await tab.wait("record.opens >= 2")
    assert (await tab.record())["sent"][-2:] == [f"CONNECT {user}:{KEY}", "SUBSCRIBE anonymous"]


async def test_server_serves_this_client(shared):
    """``/thunderpush.js`` is this file (through the symlink in thunderpush/static)."""
    response = await AsyncHTTPClient().fetch(shared.url + "/thunderpush.js")
    assert response.body == (CLIENT_DIR / "thunderpush.js").read_bytes()


async def test_signed_user_private_and_presence_channels(servers, tabs):
    """Signed users on a server that requires them; tokens come from the page's backend.

    A forged channel token is refused to its subscribe() alone; two users on one
    presence channel see the member list and each other come and go; an unsigned
    page is closed with 9003 and stays closed.  (Old pages on a server without
    ``--require-signature`` are every other test in this module.)
    """
    server = await servers.start("--require-signature")
    alice = await alices_page(tabs, server)

    assert await publish(server, "channels/private-news/", '"for subscribers"') == 1
    assert await publish(server, "channels/news/", '"for all"') == 1
    assert [(m["message"], m["meta"]) for m in await alice.messages(2)] == [
        ("for subscribers", {"channel": "private-news"}),
        ("for all", {"channel": "news"}),
    ]

    bob = await tabs.open()
    await bob.connect(server, "bob", ["presence-room"], "websocket", signed=True)
    await bob.wait("record.presence.length >= 1")
    await alice.wait("record.presence.length >= 2")
    room = {"kind": "members", "channel": "presence-room", "user": "bob"}
    assert (await bob.record())["presence"] == [{**room, "members": ["alice", "bob"]}]
    assert (await alice.record())["presence"][1] == {
        **room,
        "kind": "member_added",
        "members": ["alice", "bob"],
    }
    assert await alice.run("() => Thunder.members('presence-room')") == ["alice", "bob"]
    assert await api(server, "GET", "channels/presence-room/") == {"users": ["alice", "bob"]}

    await bob.run("() => Thunder.disconnect()")
    await alice.wait("record.presence.length >= 3")
    assert (await alice.record())["presence"][2] == {
        **room,
        "kind": "member_removed",
        "members": ["alice"],
    }
    assert await alice.run("() => Thunder.members('presence-room')") == ["alice"]
    # Events are not messages: the listeners saw the two publishes only.
    assert len((await alice.record())["messages"]) == 2
    assert (await bob.record())["messages"] == []

    unsigned = await tabs.open()
    await unsigned.connect(server, "mallory", ["news"], "websocket")
    await unsigned.wait("record.closes.length >= 1")
    assert (await unsigned.record())["closes"] == [{"code": 9003, "reason": "Invalid signature."}]
    assert await unsigned.stays_false("record.sockets.length > 1", NO_RECONNECT_MS)


async def alices_page(tabs: Tabs, server: ServerProcess) -> Tab:
    """Alice, signed, on a public, a private and a presence channel, and a forged one."""
    alice = await tabs.open()
    await alice.run(
        """() => {
            forged['private-forged'] = 'private-news';
            ['private-news', 'private-forged', 'presence-room'].forEach(subscribeRecorded);
        }"""
    )
    await alice.connect(server, "alice", ["news"], "websocket", signed=True)
    await alice.wait("record.answers.length >= 3")
    assert sorted((await alice.record())["answers"]) == [
        ["error", "private-forged", "Invalid channel token."],
        ["success", "presence-room", "Channel subscribed"],
        ["success", "private-news", "Channel subscribed"],
    ]
    assert await alice.run("() => Thunder.channels") == ["private-news", "presence-room", "news"]
    assert (await alice.record())["presence"] == [
        {"kind": "members", "channel": "presence-room", "user": "alice", "members": ["alice"]}
    ]
    sent = (await alice.record())["sent"]
    assert sent[0].startswith("CONNECT alice:key:") and len(sent[0].split(":")) == 3
    assert await api(server, "GET", "channels/private-forged/") == {"users": []}
    return alice


# -- reconnection timing, on a fake SockJS and a fake clock ------------------------

# Replaces SockJS after the page has loaded (the client looks it up at each
# connection).  The test opens and closes these sockets itself, and Playwright's
# fake clock runs the client's timers, so the whole schedule takes no real time.
FAKE_SOCKJS = """() => {
    window.fakes = [];
    function FakeSockJS(url, protocols, options) {
        this.url = url;
        this.options = options;
        this.readyState = FakeSockJS.CONNECTING;
        this.sent = [];
        fakes.push(this);
    }
    FakeSockJS.CONNECTING = 0;
    FakeSockJS.OPEN = 1;
    FakeSockJS.CLOSING = 2;
    FakeSockJS.CLOSED = 3;
    FakeSockJS.prototype.send = function (data) { this.sent.push(data); };
    FakeSockJS.prototype.close = function () { this.readyState = FakeSockJS.CLOSED; };
    window.SockJS = FakeSockJS;
    window.openFake = function () {
        var sock = fakes[fakes.length - 1];
        sock.readyState = FakeSockJS.OPEN;
        sock.onopen({type: 'open'});
    };
    window.closeFake = function (code) {
        var sock = fakes[fakes.length - 1];
        sock.readyState = FakeSockJS.CLOSED;
        sock.onclose({type: 'close', code: code, reason: 'test'});
    };
    window.messageFake = function (data) {
        fakes[fakes.length - 1].onmessage({type: 'message', data: data});
    };
    Thunder._hooks = {};
}"""


async def fake_tab(tabs: Tabs) -> Tab:
    page = await tabs.context.new_page()
    page.on("pageerror", lambda error: tabs.errors.append(str(error)))
    await page.clock.install(time=0)
    await page.goto(tabs.site + "/")
    # Installed, the fake clock still follows real time; paused, it moves
    # only when the test says so.
    await page.clock.pause_at(24 * 3600 * 1000)
    await page.evaluate(FAKE_SOCKJS)
    return Tab(page)


async def fake_count(tab: Tab) -> int:
    return await tab.run("() => fakes.length")


async def test_reconnect_schedule(tabs):
    """1, 2.5, 5, 10, 30, then every 60 s: quick at first, gentle on a server that is down."""
    tab = await fake_tab(tabs)
    await tab.run(
        """() => Thunder.connect('example.com:8443', 'pub', ['c1', 'c2'],
                                 {user: 'u', protocol: 'https', transports: ['xhr-polling'],
                                  log: true})"""
    )
    assert await tab.run("() => [fakes[0].url, fakes[0].options]") == [
        "https://example.com:8443/connect",
        {"debug": True, "transports": ["xhr-polling"]},
    ]

    # A server that cannot be reached: the delays grow, then stay at 60 s.
    expected = 1
    for delay in (1000, 2500, 5000, 10000, 30000, 60000, 60000):
        await tab.run("() => closeFake(1006)")
        await tab.page.clock.run_for(delay - 1)
        assert await fake_count(tab) == expected, f"reconnected before {delay} ms"
        await tab.page.clock.run_for(1)
        expected += 1
        assert await fake_count(tab) == expected, f"did not reconnect after {delay} ms"

    # A successful open starts the schedule over.
    await tab.run("() => openFake()")
    assert await tab.run("() => fakes[fakes.length - 1].sent") == [
        "CONNECT u:pub",
        "SUBSCRIBE c1:c2",
    ]
    await tab.run("() => closeFake(9010)")
    await tab.page.clock.run_for(1000)
    assert await fake_count(tab) == expected + 1


@pytest.mark.parametrize(
    ("code", "retry"),
    [(9000, True), (9001, True), (9002, True), (9003, True), (1006, False)],
    ids=["9000", "9001", "9002", "9003", "retry-false"],
)
async def test_no_reconnect_after_final_close_or_without_retry(code, retry, tabs):
    """Retrying cannot succeed after 9000-9003, and retry: false means never."""
    tab = await fake_tab(tabs)
    await tab.run("retry => Thunder.connect('example.com', 'pub', [], {retry: retry})", retry)
    await tab.run("() => openFake()")
    await tab.run(f"() => closeFake({code})")
    # Fake time: two hours pass in an instant, every timer fired.
    await tab.page.clock.run_for(2 * 3600 * 1000)
    assert await fake_count(tab) == 1


async def test_disconnect_cancels_a_pending_reconnect(tabs):
    tab = await fake_tab(tabs)
    await tab.run("() => Thunder.connect('example.com', 'pub', [])")
    await tab.run("() => closeFake(1006)")
    await tab.run("() => Thunder.disconnect()")
    await tab.page.clock.run_for(2 * 3600 * 1000)
    assert await fake_count(tab) == 1


async def test_message_shapes(tabs):
    """sockjs-client 1.x hands over the parsed element; a JSON string works too."""
    tab = await fake_tab(tabs)
    await tab.run("() => Thunder.connect('example.com', 'pub', [])")
    await tab.run("() => openFake()")
    await tab.run(
        """() => {
            messageFake({payload: '{"a": 1}', channel: 'c'});
            messageFake('{"payload": "[1, 2]"}');
            messageFake({payload: 'not JSON'});
            messageFake({no: 'payload'});
            messageFake('not a delivery');
        }"""
    )
    assert (await tab.record())["messages"] == [
        {"message": {"a": 1}, "meta": {"channel": "c"}, "argc": 2},
        {"message": [1, 2], "meta": None, "argc": 1},
        {"message": "not JSON", "meta": None, "argc": 1},
    ]


async def test_a_failing_listener_does_not_starve_the_others(tabs):
    tab = await fake_tab(tabs)
    await tab.run("() => Thunder.connect('example.com', 'pub', [])")
    await tab.run("() => openFake()")
    await tab.run(
        """() => {
            Thunder.listen(function () { throw new Error('listener failed'); });
            Thunder.listen(function (message) { window.afterTheFailure = message; });
        }"""
    )
    await tab.run("() => messageFake({payload: '7'})")
    assert await tab.run("() => [record.messages.length, window.afterTheFailure]") == [1, 7]
    # The error is rethrown from a timer, so it still reaches the console
    # (the fake clock raises what its timers throw).
    with pytest.raises(PlaywrightError, match="listener failed"):
        await tab.page.clock.run_for(1)


# -- tokens and events, on a fake SockJS and a fake clock ---------------------------

# A page whose backend answers the user token 10 ms after it is asked, and
# channel tokens at once, except private-late's, which the test answers.
TOKEN_PAGE = """() => {
    window.asked = {user: 0, channels: []};
    window.late = [];
    Thunder.connect('example.com', 'pub', ['news', 'private-a', 'presence-r', 'private-late'], {
        user: 'u',
        token: function (callback) {
            asked.user += 1;
            setTimeout(function () { callback(null, 'ut' + asked.user); }, 10);
        },
        authorize: function (channel, callback) {
            asked.channels.push(channel);
            if (channel === 'private-late') {
                late.push(callback);
            } else if (channel === 'private-down') {
                throw new Error('backend down');
            } else {
                callback(null, 'ct-' + channel);
            }
        }
    });
}"""


async def sent(tab: Tab) -> list[str]:
    return await tab.run("() => fakes[fakes.length - 1].sent")


async def test_tokens_on_every_connection(tabs):
    """CONNECT waits for the user token; channel tokens ride in SUBSCRIBE; both asked anew."""
    tab = await fake_tab(tabs)
    await tab.run(TOKEN_PAGE)
    await tab.run("() => openFake()")
    # Subscribing before CONNECT would be closed with 9001: it waits for it.
    await tab.run("() => { subscribeRecorded('private-b'); subscribeRecorded('private-down'); }")
    assert await sent(tab) == []
    await tab.page.clock.run_for(10)
    assert await sent(tab) == [
        "CONNECT u:pub:ut1",
        "SUBSCRIBE news:private-a ct-private-a:presence-r ct-presence-r:private-b ct-private-b",
    ]
    assert (await tab.record())["answers"] == [["error", "private-down", "backend down"]]
    await tab.run("() => late[0](null, 'ct-late')")
    assert (await sent(tab))[2:] == ["SUBSCRIBE private-late ct-late"]

    # After a reconnect: a new user token, and a channel token for each channel
    # held (private-down was dropped); the answer meant for the old connection
    # sends nothing.
    await tab.run("() => closeFake(1006)")
    await tab.page.clock.run_for(1000)
    await tab.run("() => openFake()")
    await tab.page.clock.run_for(10)
    await tab.run("() => late[0](null, 'stale')")
    assert await sent(tab) == [
        "CONNECT u:pub:ut2",
        "SUBSCRIBE news:private-a ct-private-a:presence-r ct-presence-r:private-b ct-private-b",
    ]
    assert await tab.run("() => asked") == {
        "user": 2,
        "channels": ["private-a", "presence-r", "private-late", "private-b", "private-down"]
        + ["private-a", "presence-r", "private-late", "private-b"],
    }


async def test_events_drive_callbacks_and_presence(tabs):
    tab = await fake_tab(tabs)
    await tab.run(TOKEN_PAGE)
    await tab.run("() => { subscribeRecorded('private-b'); subscribeRecorded('presence-r'); }")
    await tab.run("() => openFake()")
    await tab.page.clock.run_for(10)
    await tab.run(
        """() => {
            function event(fields) { messageFake(JSON.stringify(fields)); }
            event({event: 'subscription_error', channel: 'private-b',
                   message: 'Invalid channel token.'});
            event({event: 'subscription_succeeded', channel: 'presence-r', members: ['x', 'u']});
            event({event: 'member_added', channel: 'presence-r', user: 'y'});
            event({event: 'member_added', channel: 'presence-r', user: 'y'});
            event({event: 'member_removed', channel: 'presence-r', user: 'x'});
            event({event: 'member_removed', channel: 'presence-r', user: 'nobody'});
            event({event: 'member_added', channel: 'private-a', user: 'z'});
            event({event: 'subscription_error', channel: 'news', message: 'Too many channels.'});
            event({event: 'something_new', channel: 'news'});
        }"""
    )
    seen = await tab.record()
    assert seen["answers"] == [
        ["error", "private-b", "Invalid channel token."],
        ["success", "presence-r", "Channel subscribed"],
    ]
    assert [(p["kind"], p["user"], p["members"]) for p in seen["presence"]] == [
        ("members", "u", ["x", "u"]),
        ("member_added", "y", ["x", "u", "y"]),
        ("member_removed", "x", ["u", "y"]),
    ]
    assert seen["messages"] == [], "events never reach listen handlers"
    assert await tab.run("() => [Thunder.members('presence-r'), Thunder.channels]") == [
        ["u", "y"],
        ["private-a", "presence-r", "private-late"],
    ]
    # A confirmed channel answers at once; the members are the connection's.
    await tab.run("() => subscribeRecorded('presence-r')")
    assert (await tab.record())["answers"][2] == [
        "success",
        "presence-r",
        "Channel already subscribed",
    ]
    await tab.run("() => closeFake(1006)")
    assert await tab.run("() => Thunder.members('presence-r')") == []


async def test_user_token_failure_and_pages_without_authorize(tabs):
    """No user token: no CONNECT, and a retry later; no authorize: the channel is refused."""
    tab = await fake_tab(tabs)
    await tab.run(
        """() => {
            window.attempts = 0;
            subscribeRecorded('private-a');
            Thunder.connect('example.com', 'pub', ['news'], {user: 'u', token: function (cb) {
                attempts += 1;
                cb(attempts === 1 ? new Error('backend down') : null, 'tok');
            }});
        }"""
    )
    await tab.run("() => openFake()")
    assert await tab.run("() => [fakes[0].sent, fakes[0].readyState]") == [[], 3]
    await tab.page.clock.run_for(1000)
    assert await fake_count(tab) == 2
    await tab.run("() => openFake()")
    assert await sent(tab) == ["CONNECT u:pub:tok", "SUBSCRIBE news"]
    assert (await tab.record())["answers"] == [
        ["error", "private-a", "No authorize option for this channel."]
    ]


# -- positions and recovery, on a fake SockJS and a fake clock ---------------------

OLD, NEW, OTHER = "9f2c4e1a7b3d5c60", "77c1d2e3f4a5b6c7", "0123456789abcdef"


async def reconnect_fake(tab: Tab) -> list[str]:
    """Closes the fake socket, lets the 1 s retry run, opens the new one: what it sent."""
    await tab.run("() => closeFake(1006)")
    await tab.page.clock.run_for(1000)
    await tab.run("() => openFake()")
    return await sent(tab)


async def test_positions_ride_in_subscribe_and_seen_messages_are_dropped(tabs):
    """The wire of docs/protocol.rst: ``since=<epoch>/<offset>`` after the token, per channel."""
    tab = await fake_tab(tabs)
    await tab.run(
        """() => Thunder.connect('example.com', 'pub', ['news', 'plain', 'private-a', 'odd'], {
            user: 'u', authorize: function (channel, callback) { callback(null, 'ct'); }})"""
    )
    await tab.run("() => openFake()")
    assert await sent(tab) == ["CONNECT u:pub", "SUBSCRIBE news:plain:private-a ct:odd"]
    await tab.run(
        """([old, other]) => {
            messageFake({payload: '1', channel: 'news', epoch: old, offset: 1});
            messageFake({payload: '2', channel: 'news', epoch: old, offset: 2});
            messageFake({payload: '2', channel: 'news', epoch: old, offset: 2});
            messageFake({payload: '1', channel: 'news', epoch: old, offset: 1});
            messageFake({payload: '"p"', channel: 'plain'});
            messageFake({payload: '7', channel: 'private-a', epoch: other, offset: 7});
            messageFake({payload: '"not hex"', channel: 'odd', epoch: 'x y', offset: 3});
            messageFake({payload: '"not whole"', channel: 'odd', epoch: other, offset: 1.5});
            messageFake({payload: '"to u"', epoch: other, offset: 9});
        }""",
        [OLD, OTHER],
    )
    assert [m["message"] for m in (await tab.record())["messages"]] == [
        1,
        2,
        "p",
        7,
        "not hex",
        "not whole",
        "to u",
    ]
    assert (await tab.record())["messages"][0]["meta"] == {"channel": "news"}

    assert await reconnect_fake(tab) == [
        "CONNECT u:pub",
        f"SUBSCRIBE news since={OLD}/2:plain:private-a ct since={OTHER}/7:odd",
    ]


async def test_recovered_events_reach_recovery_handlers(tabs):
    """Missed messages go to listen handlers, then the report; the stream goes on from it."""
    tab = await fake_tab(tabs)
    await tab.run(
        "() => Thunder.connect('example.com', 'pub', ['news', 'gone', 'left'], {user: 'u'})"
    )
    await tab.run("() => openFake()")
    await tab.run(
        """(old) => {
            for (var c of ['news', 'gone', 'left']) {
                messageFake({payload: '"' + c + '"', channel: c, epoch: old, offset: 4});
            }
        }""",
        OLD,
    )
    assert (await reconnect_fake(tab))[1] == (
        f"SUBSCRIBE news since={OLD}/4:gone since={OLD}/4:left since={OLD}/4"
    )
    await tab.run(
        """([old, other]) => {
            function event(fields) { messageFake(JSON.stringify(fields)); }
            messageFake({payload: '5', channel: 'news', epoch: old, offset: 5});
            event({event: 'recovered', channel: 'news', complete: true, epoch: old, offset: 5});
            event({event: 'recovered', channel: 'gone', complete: false, epoch: other, offset: 12});
            Thunder.unsubscribe('left');
            event({event: 'recovered', channel: 'left', complete: true, epoch: old, offset: 4});
            // Live again: a message already recovered is dropped, the next one passes.
            messageFake({payload: '5', channel: 'news', epoch: old, offset: 5});
            messageFake({payload: '12', channel: 'gone', epoch: other, offset: 12});
            messageFake({payload: '13', channel: 'gone', epoch: other, offset: 13});
        }""",
        [OLD, OTHER],
    )
    seen = await tab.record()
    assert [m["message"] for m in seen["messages"]] == ["news", "gone", "left", 5, 13]
    assert seen["recoveries"] == [
        {
            "channel": "news",
            "info": {"complete": True, "epoch": OLD, "offset": 5},
            "afterMessages": 4,
        },
        {
            "channel": "gone",
            "info": {"complete": False, "epoch": OTHER, "offset": 12},
            "afterMessages": 4,
        },
    ]

    # A channel that no longer keeps history: no stream, no position to send;
    # unsubscribing forgets the position, so subscribing again starts afresh.
    await tab.run(
        """() => {
            messageFake(JSON.stringify({event: 'recovered', channel: 'gone', complete: false,
                                        epoch: '', offset: 0}));
            Thunder.subscribe('left');
        }"""
    )
    assert (await tab.record())["recoveries"][2]["info"] == {
        "complete": False,
        "epoch": "",
        "offset": 0,
    }
    assert (await reconnect_fake(tab))[1] == f"SUBSCRIBE news since={OLD}/5:gone:left"
