"""How the docs test runs an HTML block: the page in Chromium, against a real server.

A reader saves the block as a page of their site and opens it; here a small
site on ``http://127.0.0.1:<P1>`` serves it as ``/`` (the client needs an
origin), and ``/static/sockjs.min.js`` beside it for the pages that serve
sockjs-client themselves.  ``localhost:8000`` and ``yourserver:8000`` become
the test's server; Playwright's routing answers the CDN's sockjs-client from
``client/node_modules`` and fails the page on any other request that leaves
127.0.0.1 (there is no network here).

Then the page must show what the docs say it shows: the channel messages the
same file's ``curl`` lines publish, a message on each channel its
``Thunder.connect`` names and one to its user, each published through the
HTTP API until the page's console shows it (the pages log what they get, the
channel's name or the user's beside the message).  A page that connects to
nothing must at least define ``SockJS`` and ``Thunder``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import tornado.netutil
import tornado.web
from playwright.async_api import (
    ConsoleMessage,
    Page,
    Request,
    Response,
    Route,
    async_playwright,
)
from tornado.httpserver import HTTPServer

from .api import call_api
from .browser import CHROMIUM, CHROMIUM_ARGS, SOCKJS_DIR, WAIT_MS
from .docblocks import Block, commands
from .docruns import on_server

CDN_SOCKJS = "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js"
HELLO = {"title": "Hello"}


@dataclass(frozen=True)
class Delivery:
    """A message the page must log: to ``path`` of the API, shown beside ``label``."""

    path: str
    body: Any
    label: str
    exact: bool  # the label is an argument of its own (a channel), or within one (a user)


# The page's channels and user, as its ``Thunder.connect`` names them.
_CONNECT = re.compile(r'Thunder\.connect\(\s*"[^"]*",\s*"[^"]*",\s*(\[[^\]]*\])', re.DOTALL)
_USER = re.compile(r'\buser:\s*"([^"]+)"')


def deliveries(page: str, documented: Sequence[Block]) -> list[Delivery]:
    """What the docs publish (``documented``'s curl lines) and what ``page`` subscribes to."""
    found = {
        channel: Delivery(f"channels/{channel}/", body, channel, True)
        for channel, body in published(documented)
    }
    connect = _CONNECT.search(page)
    for channel in json.loads(connect[1]) if connect else []:
        found.setdefault(channel, Delivery(f"channels/{channel}/", HELLO, channel, True))
    user = _USER.search(page) if connect else None
    extra = [Delivery(f"users/{user[1]}/", HELLO, user[1], False)] if user else []
    return [*found.values(), *extra]


_PUBLISH = re.compile(r"/api/1\.0\.0/[^/]+/channels/([^/]+)/$")


def published(documented: Sequence[Block]) -> list[tuple[str, Any]]:
    """The channels, and bodies, that the blocks' ``curl`` lines publish to."""
    found = []
    for block in documented:
        for command in commands(block) if block.lang in {"console", "sh"} else []:
            words = shlex.split(command.line)
            target = [_PUBLISH.search(word) for word in words if word.startswith("http")]
            if words[0] == "curl" and "-d" in words and target and target[0]:
                found.append((target[0][1], json.loads(words[words.index("-d") + 1])))
    return found


def run_page(block: Block, port: int, documented: Sequence[Block]) -> None:
    """Opens the block as a page beside the server on ``port``; fails on what it misses."""
    page = on_server(block.text.replace("yourserver:8000", "localhost:8000"), port)
    asyncio.run(_run(page, f"http://127.0.0.1:{port}", deliveries(page, documented)))


async def _run(html: str, server: str, expected: list[Delivery]) -> None:
    problems: list[str] = []
    async with site(html) as origin, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            _watch(page, problems)
            logged: list[ConsoleMessage] = []
            page.on("console", lambda message: logged.append(message))
            await page.route("**/*", lambda route: _answer(route, problems))
            await page.goto(origin + "/")
            defined = "typeof SockJS === 'function' && typeof Thunder === 'object'"
            assert await page.evaluate(defined), f"SockJS or Thunder missing: {problems}"
            for delivery in expected:
                await _deliver(page, server, delivery, logged)
            assert not problems, problems
        finally:
            await browser.close()


def _watch(page: Page, problems: list[str]) -> None:
    """Notes in ``problems`` the page's script errors and the requests that fail it."""

    def answered(response: Response) -> None:
        if response.request.resource_type == "script" and response.status >= 400:
            problems.append(f"{response.status} for {response.url}")

    def failed(request: Request) -> None:
        problems.append(f"{request.url} failed: {request.failure}")

    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("response", answered)
    page.on("requestfailed", failed)


async def _answer(route: Route, problems: list[str]) -> None:
    url = route.request.url
    if url == CDN_SOCKJS:
        await route.fulfill(path=SOCKJS_DIR / "sockjs.min.js", content_type="text/javascript")
    elif urlsplit(url).hostname == "127.0.0.1":
        await route.continue_()
    else:
        problems.append(f"the page asked for {url}, which is not here")
        await route.abort()


async def _deliver(page: Page, server: str, delivery: Delivery, logged: list) -> None:
    """Publishes (again while the page is connecting) until the console shows it (bounded)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    seen: list[list[Any]] = []  # each console message's arguments, as JSON
    while True:
        response = await call_api(server, "POST", delivery.path, json.dumps(delivery.body))
        assert response.code == 200, (delivery.path, response.code, response.body)
        for _ in range(10):
            for message in logged[len(seen) :]:
                seen.append(await _values(message))
            if any(_shows(values, delivery) for values in seen):
                return
            await asyncio.sleep(0.05)
        if time.monotonic() > deadline:
            shown = [message.text for message in logged]
            pytest.fail(f"the page never logged {delivery}; its console: {shown}")


async def _values(message: ConsoleMessage) -> list[Any]:
    try:
        return [await arg.json_value() for arg in message.args]
    except Exception:  # an argument JSON cannot hold (an event): not a delivery
        return []


def _shows(values: list[Any], delivery: Delivery) -> bool:
    if delivery.body not in values:
        return False
    if delivery.exact:
        return delivery.label in values
    return any(isinstance(value, str) and delivery.label in value for value in values)


class _Page(tornado.web.RequestHandler):
    def initialize(self, html: str) -> None:
        self.html = html

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(self.html)


@asynccontextmanager
async def site(html: str) -> AsyncIterator[str]:
    """``http://127.0.0.1:<port>``: the page as ``/``, and ``/static/sockjs.min.js``."""
    application = tornado.web.Application(
        [
            (r"/", _Page, {"html": html}),
            (r"/static/(sockjs\.min\.js)", tornado.web.StaticFileHandler, {"path": SOCKJS_DIR}),
        ]
    )
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http = HTTPServer(application)
    http.add_sockets(sockets)
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    finally:
        http.stop()
        await http.close_all_connections()
