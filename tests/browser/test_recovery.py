"""The bundled client recovers by itself after the server cuts its connection.

Thunderpush runs in the test's own process here: the test needs the server's
side of the connection to cut it. The page is the same as in test_client.py.
The server closes the page's session with a code after which the client
reconnects, the test publishes while the page is away, and the page's
handlers must get exactly the missed messages, in order, then a recovery
report; then new messages as usual.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_asyncio

from ..support.api import call_api
from ..support.browser import Tab, Tabs
from ..support.served import LiveServer, client_in, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

# A streaming and a polling transport: the cut reaches the page differently.
each_transport = pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
CHANNEL, USER = "news", "reader"


@pytest_asyncio.fixture(loop_scope="module")
async def server(request, site):
    """``@pytest.mark.config(**fields)`` sets its Config fields, as for tests/conftest.py's."""
    marker = request.node.get_closest_marker("config")
    settings = {"sockjs_url": site + "/sockjs.min.js", **(marker.kwargs if marker else {})}
    async with serving(settings) as running:
        yield running


async def api(server: LiveServer, method: str, path: str, body: str | None = None) -> Any:
    response = await call_api(server.url, method, path, body)
    assert response.code == 200, (method, path, response.code, response.body)
    return json.loads(response.body)


async def publish(server: LiveServer, *bodies: str) -> list[int]:
    """Publishes each body on CHANNEL; the number of connections each reached."""
    return [(await api(server, "POST", f"channels/{CHANNEL}/", body))["count"] for body in bodies]


async def reader(server: LiveServer, tabs: Tabs, transport: str) -> Tab:
    """A page subscribed to CHANNEL that has seen its first message, "1"."""
    tab = await tabs.open()
    await tab.connect(server, USER, [CHANNEL], transport)
    await server.settled(lambda: client_in(server.hub, CHANNEL, USER))
    assert await publish(server, "1") == [1]
    await tab.messages(1)
    return tab


async def cut(server: LiveServer, tab: Tab) -> None:
    """The server closes the page's session with a code the client reconnects after."""
    for connection in server.hub.channel_connections(CHANNEL):
        connection.close(3000, "Cut by the test.")
    await server.settled(lambda: not client_in(server.hub, CHANNEL, USER))
    await tab.wait("record.closes.length >= 1")
    assert (await tab.record())["closes"] == [{"code": 3000, "reason": "Cut by the test."}]


async def reconnected(tab: Tab, transport: str) -> dict[str, Any]:
    """Waits (bounded) for the page's recovery report; what the page has seen by then."""
    await tab.wait("record.recoveries.length >= 1")
    seen = await tab.record()
    assert seen["transports"] == [transport, transport]
    first = seen["messages"][0]
    assert first == {"message": 1, "meta": {"channel": CHANNEL}, "argc": 2}
    return seen


@each_transport
@pytest.mark.config(history_size=10)
async def test_missed_messages_then_a_complete_report(transport, server, tabs):
    tab = await reader(server, tabs, transport)
    await cut(server, tab)
    # Published while the page is away (it waits 1 s before reconnecting).
    assert await publish(server, "2", '{"n": 3}', '"4"') == [0, 0, 0]

    seen = await reconnected(tab, transport)
    stream = await api(server, "GET", f"channels/{CHANNEL}/history/")
    assert stream["offset"] == 4
    epoch = stream["epoch"]
    assert seen["sent"][-1] == f"SUBSCRIBE {CHANNEL} since={epoch}/1"
    assert [m["message"] for m in seen["messages"]] == [1, 2, {"n": 3}, "4"]
    assert all(m["meta"] == {"channel": CHANNEL} for m in seen["messages"])
    assert seen["recoveries"] == [
        {
            "channel": CHANNEL,
            "info": {"complete": True, "epoch": epoch, "offset": 4},
            "afterMessages": 4,
        }
    ]

    # Live again, with nothing repeated.
    assert await publish(server, "5") == [1]
    assert [m["message"] for m in await tab.messages(5)] == [1, 2, {"n": 3}, "4", 5]
    assert len((await tab.record())["messages"]) == 5


@each_transport
@pytest.mark.config(history_size=2)
async def test_a_gap_longer_than_the_history_is_reported_incomplete(transport, server, tabs):
    tab = await reader(server, tabs, transport)
    await cut(server, tab)
    # Three missed, two kept: "2" is gone, so none is sent.
    assert await publish(server, "2", "3", "4") == [0, 0, 0]

    seen = await reconnected(tab, transport)
    stream = await api(server, "GET", f"channels/{CHANNEL}/history/")
    assert [m["offset"] for m in stream["messages"]] == [3, 4]
    assert [m["message"] for m in seen["messages"]] == [1]
    assert seen["recoveries"] == [
        {
            "channel": CHANNEL,
            "info": {"complete": False, "epoch": stream["epoch"], "offset": 4},
            "afterMessages": 1,
        }
    ]

    # The stream goes on from the reported position.
    assert await publish(server, "5") == [1]
    assert [m["message"] for m in await tab.messages(2)] == [1, 5]
