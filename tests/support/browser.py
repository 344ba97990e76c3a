"""Headless Chromium driving the browser client on a test page.

``Tabs`` are one test's pages in one browser context (tests/browser/conftest.py's
``tabs`` fixture); each ``Tab`` drives ``Thunder`` on ``page.html`` and reads what
the page recorded.  ``TokenHandler`` is the page's backend, signing users and
channels as a site's would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from playwright.async_api import BrowserContext, Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from thunderpush.auth import channel_token, user_token

from . import KEY, SECRET
from .processes import ServerProcess
from .served import LiveServer

# The pages (page.html, pusher.html) beside the browser tests, and the client.
PAGES = Path(__file__).resolve().parents[1] / "browser"
CLIENT_DIR = PAGES.parents[1] / "client"
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


@dataclass
class Tab:
    """One test page, on which the tests drive ``Thunder``."""

    page: Page

    async def connect(
        self,
        server: ServerProcess | LiveServer,
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


def assert_clean_log(text: str) -> None:
    """Nothing the browser does may make the server log an error or a traceback."""
    bad = [line for line in text.splitlines() if "Traceback" in line or " ERROR " in line]
    assert not bad, text
