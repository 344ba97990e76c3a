"""``/dashboard`` in Chromium: it refuses a wrong secret and shows the server's figures, live.

The server runs as users run it (its own process); websocket clients and API
calls from the test make the traffic the page must show.  The run also takes
the screenshot in docs/: with ``UPDATE_DOCS_SCREENSHOT=1`` it is written there.
"""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page

from ..support import KEY, SECRET
from ..support.api import call_api
from ..support.browser import WAIT_MS, assert_clean_log
from ..support.clients import WebSocketClient
from ..support.processes import ServerProcess, start_server_process

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


@pytest.fixture
def server(tmp_path):
    running = start_server_process(tmp_path)
    yield running
    assert running.stop() == 0
    assert_clean_log(running.log())


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser):
    context = await browser.new_context(viewport={"width": 960, "height": 600})
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    await context.close()
    assert not errors, errors


async def log_in(page: Page, server: ServerProcess, secret: str) -> None:
    await page.goto(server.url + "/dashboard")
    await page.fill("#key", KEY)
    await page.fill("#secret", secret)
    async with page.expect_navigation():
        await page.click("#login")


async def text(page: Page, selector: str) -> str:
    return (await page.text_content(selector) or "").strip()


async def test_a_wrong_secret_is_refused(server, page):
    await log_in(page, server, "not the secret")
    assert await text(page, "#error") == "Wrong key or secret."
    assert await page.query_selector("#connections") is None
    assert "secret" not in page.url
    # Nor can the page's script read the figures without a session.
    status = await page.evaluate("() => fetch('/dashboard/data').then(r => r.status)")
    assert status == 403


async def test_logging_in_and_out_pass_the_origin_check(server, page):
    # The pages' Referrer-Policy (same-origin) makes Chromium send this origin, not
    # "null", with the form's POSTs, which the server refuses from other origins.
    await log_in(page, server, SECRET)
    assert await page.query_selector("#connections") is not None
    async with page.expect_navigation():
        await page.click("text=Log out")
    assert await page.query_selector("#login") is not None
    status = await page.evaluate("() => fetch('/dashboard/data').then(r => r.status)")
    assert status == 403


async def test_the_figures_follow_the_traffic(server, page):
    await log_in(page, server, SECRET)
    assert "secret" not in page.url
    await page.wait_for_function(
        "document.getElementById('connections').textContent === '0'", timeout=WAIT_MS
    )

    clients = []
    for user, channels in [
        ("alice", ["news", "sport"]),
        ("bob", ["news"]),
        ("carol", ["news", "weather"]),
    ]:
        client = await WebSocketClient(server.url).open()
        await client.send(f"CONNECT {user}:{KEY}", "SUBSCRIBE " + ":".join(channels))
        clients.append(client)
    publishing = asyncio.ensure_future(publish_for_a_while(server, 40))
    try:
        await page.wait_for_function(
            """() => document.getElementById('connections').textContent === '3'
                && document.getElementById('users').textContent === '3'
                && document.getElementById('channels').textContent === '3'
                && Number(document.getElementById('published-total').textContent) >= 10
                && Number(document.getElementById('delivered-rate').textContent) > 0""",
            timeout=WAIT_MS,
        )
        # Channels of 3 and 1 connections: the test's own, in the order of the counts.
        busiest = await page.eval_on_selector_all(
            "#busiest tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
        )
        assert busiest[0] == ["news", "3"]
        assert sorted(busiest[1:]) == [["sport", "1"], ["weather", "1"]]
        assert await text(page, "#nodes") == "this process (no cluster)"
        points = await page.get_attribute("#chart-connections polyline", "points")
        assert points and len(points.split()) >= 2
        await publishing
    finally:
        publishing.cancel()
        for client in clients:
            await client.close()

    shot = await page.screenshot(type="png")
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", shot[16:24]) == (960, 600)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        SCREENSHOT.write_bytes(shot)


async def publish_for_a_while(server: ServerProcess, count: int) -> None:
    """``count`` publishes to ``news``, at a changing pace, so the rate chart has a shape."""
    for index in range(count):
        response = await call_api(server.url, "POST", "channels/news/", f'{{"n": {index}}}')
        assert response.code == 200, response.body
        await asyncio.sleep(0.02 + 0.08 * (index % 10) / 10)
