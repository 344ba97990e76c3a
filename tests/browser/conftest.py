"""The browser tests' fixtures: headless Chromium (one per test module), the
page's origin and the pages the tests drive ``Thunder`` on (``support.browser``)."""

from __future__ import annotations

import pytest
import pytest_asyncio
import tornado.netutil
import tornado.web
from playwright.async_api import Browser, async_playwright
from tornado.httpserver import HTTPServer

from ..support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CLIENT_DIR,
    PAGES,
    SOCKJS_DIR,
    Tabs,
    TokenHandler,
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


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
                {"path": PAGES, "default_filename": "page.html"},
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


@pytest_asyncio.fixture(loop_scope="module")
async def tabs(browser: Browser, site: str):
    context = await browser.new_context()
    opened = Tabs(context, site)
    yield opened
    await context.close()
    assert not opened.errors, opened.errors
