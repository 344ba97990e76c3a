"""examples/flask/, run as its README says, driven in Chromium end to end.

Thunderpush runs with ``--require-signature`` on ``127.0.0.1:<P1>``; the example
app runs under ``flask run`` on ``localhost:<P2>`` (another origin, as on a real
site), serving sockjs-client itself, which the server's iframe page loads too
(``--sockjs-url``).  Two users log in through the form; messages published
through the app (the Python client) reach the right pages, over the user
token, the channel tokens of the private inboxes and ``news``.  No request
leaves the two servers: the page needs no CDN.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page

from ..support import KEY, SECRET
from ..support.browser import SOCKJS_DIR, WAIT_MS
from ..support.processes import (
    ServerProcess,
    bad_log_lines,
    free_port,
    start_server_process,
    wait_until_listening,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "flask"


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Iterator[tuple[ServerProcess, str]]:
    """The Thunderpush server and the example app's URL, each its own process."""
    pytest.importorskip("flask", reason="Flask is in requirements-test.txt")
    tmp_path = tmp_path_factory.mktemp("example")
    app_port = free_port()
    site = f"http://localhost:{app_port}"
    server = start_server_process(
        tmp_path, "--require-signature", "--sockjs-url", f"{site}/sockjs.min.js"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "clients" / "python"), str(ROOT)]),
        "THUNDERPUSH_URL": server.url,
        "THUNDERPUSH_PUBLIC": f"127.0.0.1:{server.port}",
        "THUNDERPUSH_APIKEY": KEY,
        "THUNDERPUSH_APISECRET": SECRET,
        "SOCKJS_FILE": str(SOCKJS_DIR / "sockjs.min.js"),
    }
    command = [sys.executable, "-m", "flask", "--app", "app", "run"]
    command += ["--host", "127.0.0.1", "--port", str(app_port)]
    log = tmp_path / "flask.log"
    with open(log, "wb") as out:
        app = subprocess.Popen(command, cwd=EXAMPLE, env=env, stdout=out, stderr=out)
    try:
        wait_until_listening(app, app_port, log)
        yield server, site
        assert "Traceback" not in log.read_text(), log.read_text()
        assert not bad_log_lines(server), server.log()
    finally:
        app.terminate()
        app.wait(10)
        server.stop()


class Visitor:
    """One user's browser (a context of its own: its own session cookie)."""

    def __init__(self, page: Page, allowed: set[str]) -> None:
        self.page = page
        self.elsewhere: list[str] = []
        page.on("request", self._request)
        self.allowed = allowed

    def _request(self, request) -> None:
        if urlsplit(request.url).netloc not in self.allowed:
            self.elsewhere.append(request.url)

    async def log_in(self, site: str, name: str) -> None:
        await self.page.goto(site + "/")
        assert urlsplit(self.page.url).path == "/login"
        await self.page.fill("input[name=name]", name)
        await self.page.click("button[type=submit]")
        await self.page.wait_for_function(
            "document.getElementById('status').textContent === 'open'", timeout=WAIT_MS
        )

    async def send(self, text: str, to: str = "") -> str:
        await self.page.fill("#send input[name=text]", text)
        await self.page.fill("#send input[name=to]", to)
        await self.page.evaluate("document.getElementById('sent').textContent = ''")
        await self.page.click("#send button")
        await self.page.wait_for_function(
            "document.getElementById('sent').textContent !== ''", timeout=WAIT_MS
        )
        return await self.page.text_content("#sent")

    async def messages(self, count: int) -> list[str]:
        await self.page.wait_for_function(
            f"document.querySelectorAll('#messages li').length >= {count}", timeout=WAIT_MS
        )
        return await self.page.eval_on_selector_all(
            "#messages li", "items => items.map(i => i.textContent)"
        )


@pytest_asyncio.fixture(loop_scope="module")
async def visitors(browser: Browser, sites):
    server, site = sites
    allowed = {urlsplit(site).netloc, f"127.0.0.1:{server.port}"}
    contexts = [await browser.new_context() for _ in range(2)]
    errors: list[str] = []
    made = []
    for context in contexts:
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        made.append(Visitor(page, allowed))
    yield made
    for context in contexts:
        await context.close()
    assert not errors, errors
    for visitor in made:
        assert not visitor.elsewhere, visitor.elsewhere


async def test_messages_published_through_the_app_reach_the_pages(sites, visitors):
    server, site = sites
    alice, bob = visitors
    await alice.log_in(site, "alice")
    await bob.log_in(site, "bob")
    # Both pages got their user token and the channel token of their inbox.
    assert "alice" in (await alice.page.title())

    assert await bob.send("hello everybody") == "delivered to 2"
    expected = "[news] bob: hello everybody"
    assert await alice.messages(1) == [expected]
    assert await bob.messages(1) == [expected]

    # Bob writes to Alice's inbox: only she reads it, over its channel token.
    assert await bob.send("just for you", to="alice") == "delivered to 1"
    assert (await alice.messages(2))[1] == "[private-inbox-alice] bob: just for you"
    assert await bob.send("and news again") == "delivered to 2"
    assert (await bob.messages(2))[1] == "[news] bob: and news again"


async def test_the_app_refuses_a_channel_token_for_another_users_inbox(sites, visitors):
    server, site = sites
    alice, _ = visitors
    await alice.log_in(site, "alice")
    refused = await alice.page.evaluate(
        """() => new Promise(resolve => Thunder.subscribe("private-inbox-bob",
            () => resolve("subscribed"), (thunder, message) => resolve(message)))"""
    )
    assert refused == "/push/auth: HTTP 403"


async def test_a_bad_login_is_one_clear_line(sites, visitors):
    _, site = sites
    page = visitors[0].page
    await page.goto(site + "/login")
    await page.fill("input[name=name]", "not a name")
    await page.click("button[type=submit]")
    assert "A name is 1 to 32 letters" in await page.text_content("#error")
