"""The API as Tornado request handlers, for requests that Tornado serves.

The front door answers API requests itself; these serve the ones it hands to
Tornado and applications that mount the API on their own Tornado server::

    application = tornado.web.Application(handlers.urls(api))

They call the same ``Api.start`` and ``Call.finish`` as the front door, so the
answers are the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

import tornado.web
from tornado.httputil import responses

from thunderpush.api.actions import ROUTES, Handling
from thunderpush.api.answers import (
    CORS_HEADERS,
    TOO_LARGE,
    Answer,
    dumps,
    method_not_allowed,
)
from thunderpush.api.calls import Api, Call, arguments

_STATUS_MESSAGES = {404: "Not found."}


@tornado.web.stream_request_body
class ApiHandler(tornado.web.RequestHandler):
    """Serves one route's ``actions`` through ``Api.start`` and ``Call.finish``.

    Bodies are streamed in (``stream_request_body``) so that an oversized body
    is refused with 413 without ever being held in memory.
    """

    def initialize(self, api: Api, actions: Mapping[str, Handling]) -> None:
        self.api = api
        self.actions = actions
        self._call: Call | None = None
        self._answered = False
        self._body = bytearray()

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        for name, value in CORS_HEADERS:
            self.set_header(name, value)

    def prepare(self) -> None:
        headers = self.request.headers
        started = self.api.start(
            self.request.method,
            self.actions,
            arguments(self.path_kwargs, self.request.query),
            headers.get("X-Thunder-Secret-Key", ""),
            headers.get("Content-Length", "0"),
        )
        if isinstance(started, Answer):
            self.answer(started)
            return
        self._call = started
        # ``start`` checked the declared size; ``data_received`` counts the rest.
        self.request.connection.set_max_body_size(2**63)

    def data_received(self, chunk: bytes) -> None:
        if self._answered:
            return
        if len(self._body) + len(chunk) > self.api.max_body_size:
            self.answer(TOO_LARGE)
            return
        self._body += chunk

    def run(self, *args: Any, **kwargs: Any) -> Awaitable[None] | None:
        answer = self._call.finish(bytes(self._body))
        if isinstance(answer, Answer):
            self.answer(answer)
            return None
        return self._answer_later(answer)

    get = post = delete = run

    async def _answer_later(self, answer: Awaitable[Answer]) -> None:
        self.answer(await answer)

    def answer(self, answer: Answer) -> None:
        self._answered = True
        self.set_status(answer.status)
        for name, value in answer.headers:
            self.set_header(name, value)
        self.finish(answer.body or None)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Only Tornado's own refusals get here (an unknown method, a path that
        # is not UTF-8); the API's errors are answers, not exceptions.
        if status_code == 405:
            self.answer(method_not_allowed(self.actions))
            return
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = (
            _STATUS_MESSAGES.get(status_code)
            or getattr(error, "reason", None)
            or responses.get(status_code, "Unknown")
        )
        self.finish(dumps({"message": message, "status": status_code}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return  # an answer to the client, not a server fault
        super().log_exception(typ, value, tb)


class NotFoundHandler(ApiHandler):
    """Everything the routes do not match: a JSON 404, not an HTML page."""

    def initialize(self, api: Api, actions: Mapping[str, Handling] | None = None) -> None:
        super().initialize(api, {})

    def prepare(self) -> None:
        self.answer(self.api.unrouted(self.request.method, self.request.path))


def urls(api: Api) -> list[tuple[str, type[ApiHandler], dict[str, Any]]]:
    """The API's routes for a Tornado application."""
    return [(pattern, ApiHandler, {"api": api, "actions": actions}) for pattern, actions in ROUTES]
