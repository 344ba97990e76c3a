"""A backend's webhook endpoint: a real HTTP server in the test's loop.

``Receiver`` keeps every POST (the ``receiver`` fixture, registered in conftest,
is one listening); "down" is its port closed (``close``) or answering the
statuses a test queues.  Each node's events arrive in the order it recorded
them, so a marker transition made last proves that nothing came twice before it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer

from .processes import free_port


@dataclass
class Post:
    headers: Any
    body: bytes

    @property
    def events(self) -> list[tuple[str, str]]:
        return [(event["name"], event.get("channel", event.get("user"))) for event in self.items]

    @property
    def items(self) -> list[dict[str, Any]]:
        """The events whole, with every field (Pusher's ``user_id``, ``data``...)."""
        return json.loads(self.body)["events"]


@dataclass
class Receiver:
    """An HTTP server that keeps what is POSTed to ``url``; ``close`` and ``listen`` again.

    It answers after ``delay`` seconds (a backend that does some work), over TLS
    when given a context, and counts the TCP connections it accepted.
    """

    port: int = field(default_factory=free_port)
    posts: list[Post] = field(default_factory=list)
    # The statuses of the next answers, in order; then 200.
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    tls: ssl.SSLContext | None = None
    connections: int = 0
    _server: HTTPServer | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def listen(self) -> None:
        receiver = self

        class Hook(tornado.web.RequestHandler):
            async def post(self) -> None:
                if receiver.delay:
                    await asyncio.sleep(receiver.delay)
                receiver.posts.append(Post(self.request.headers, self.request.body))
                if receiver.statuses:
                    self.set_status(receiver.statuses.pop(0))

        class Counting(HTTPServer):
            def handle_stream(self, stream, address) -> None:
                receiver.connections += 1
                super().handle_stream(stream, address)

        # Its 503s are the test's own, not the server's errors: not logged.
        application = tornado.web.Application([(r"/hook", Hook)], log_function=lambda _: None)
        self._server = Counting(application, ssl_options=self.tls)
        self._server.listen(self.port, "127.0.0.1")

    async def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    def events(self) -> list[tuple[str, str]]:
        return [event for post in self.posts for event in post.events]

    def items(self) -> list[dict[str, Any]]:
        return [item for post in self.posts for item in post.items]

    async def until_items(self, *items: dict[str, Any], timeout: float = 10) -> None:
        """Waits (bounded) until every one of ``items`` (whole events) has arrived."""
        deadline = time.monotonic() + timeout
        while any(item not in self.items() for item in items):
            missing = [item for item in items if item not in self.items()]
            assert time.monotonic() < deadline, f"never received {missing}"
            await asyncio.sleep(0.02)

    async def until(self, *events: tuple[str, str], timeout: float = 10) -> None:
        """Waits (bounded) until every one of ``events`` has arrived."""
        deadline = time.monotonic() + timeout
        while not set(events) <= set(self.events()):
            missing = set(events) - set(self.events())
            assert time.monotonic() < deadline, f"never received {missing}"
            await asyncio.sleep(0.02)
