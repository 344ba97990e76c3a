"""The browser tests' shared parts: headless Chromium (one per test module), the
page's origin and the pages the tests drive ``Thunder`` on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import tornado.netutil
import tornado.web
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from tornado.httpserver import HTTPServer

from thunderpush.auth import channel_token, user_token

from ..conftest import KEY, SECRET, Server
from ..processes import ServerProcess

HERE = Path(__file__).parent
CLIENT_DIR = HERE.parent.parent / "client"
SOCKJS_DIR = CLIENT_DIR / "node_modules" / "sockjs-client" / "dist"

# Bound for anything that should happen promptly (an open, a delivery).
WAIT_MS = 10_000

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


# -- the browser and the page's origin ----------------------------------------


class TokenHandler(tornado.web.RequestHandler):
    """The page's backend: signs the user, or the user and a channel, it is asked for.

    A site's backend would sign its logged-in user; the test page names its user.
    """

    def get(self) -> None:
        user = self.get_argument("user")
        channel = self.get_argument("channel", None)
        if channel is None:
            self.write(user_token(KEY, SECRET, user))
        else:
            self.write(channel_token(KEY, SECRET, user, channel))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site():
    """``http://localhost:<port>``: the test page, sockjs-client and the client."""
    if not (SOCKJS_DIR / "sockjs.min.js").is_file():
        pytest.fail("sockjs-client is missing: run `npm ci` in client/")
    application = tornado.web.Application(
        [
            (
                r"/()",
                tornado.web.StaticFileHandler,
                {"path": HERE, "default_filename": "page.html"},
            ),
            (r"/(sockjs\.min\.js)", tornado.web.StaticFileHandler, {"path": SOCKJS_DIR}),
            (r"/(thunderpush\.js)", tornado.web.StaticFileHandler, {"path": CLIENT_DIR}),
            (r"/token", TokenHandler),
        ]
    )
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http = HTTPServer(application)
    http.add_sockets(sockets)
    yield f"http://localhost:{sockets[0].getsockname()[1]}"
    http.stop()
    await http.close_all_connections()


@dataclass
class Tab:
    """One test page, on which the tests drive ``Thunder``."""

    page: Page

    async def connect(
        self,
        server: ServerProcess | Server,
        user: str | None,
        channels: list[str],
        transport: str | None = None,
        signed: bool = False,
    ) -> None:
        """``Thunder.connect``, then waits until it is open on ``transport``.

        ``signed`` adds the page's ``token`` and ``authorize`` (``signedOptions``).
        """
        options: dict[str, Any] = {} if user is None else {"user": user}
        if transport:
            options["transports"] = transport
        await self.page.evaluate(
            """([server, key, channels, options, signed]) => Thunder.connect(
                server, key, channels,
                signed ? Object.assign(signedOptions(options.user), options) : options)""",
            [f"127.0.0.1:{server.port}", KEY, channels, options, signed],
        )
        await self.wait("record.opens >= 1")
        assert await self.page.evaluate("record.hookThis"), "hooks run with this = Thunder"
        if transport:
            assert (await self.record())["transports"] == [transport]

    async def run(self, script: str, arg: Any = None) -> Any:
        return await self.page.evaluate(script, arg)

    async def wait(self, condition: str, timeout: float = WAIT_MS) -> None:
        """Waits (bounded) until the page's ``condition`` holds."""
        try:
            await self.page.wait_for_function(condition, timeout=timeout)
        except PlaywrightTimeoutError:
            pytest.fail(f"timed out waiting for {condition!r}; page saw {await self.record()}")

    async def stays_false(self, condition: str, timeout: float) -> bool:
        """True if ``condition`` did not become true within ``timeout`` ms."""
        try:
            await self.page.wait_for_function(condition, timeout=timeout)
        except PlaywrightTimeoutError:
            return True
        return False

    async def messages(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` messages received, once they have all arrived."""
        await self.wait(f"record.messages.length >= {count}")
        return (await self.record())["messages"][:count]

    async def record(self) -> dict[str, Any]:
        return await self.page.evaluate(
            "() => ({messages: record.messages, opens: record.opens, closes: record.closes,"
            " transports: record.transports, sent: record.sent, sockets: record.sockets.length,"
            " presence: record.presence, answers: record.answers, recoveries: record.recoveries})"
        )


@dataclass
class Tabs:
    """The pages of one test, in one browser context; their script errors fail it."""

    context: BrowserContext
    site: str
    errors: list[str] = field(default_factory=list)

    async def open(self) -> Tab:
        page = await self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        await page.goto(self.site + "/")
        return Tab(page)


@pytest_asyncio.fixture(loop_scope="module")
async def tabs(browser: Browser, site: str):
    context = await browser.new_context()
    opened = Tabs(context, site)
    yield opened
    await context.close()
    assert not opened.errors, opened.errors
