"""Pusher's HTTP API as Tornado request handlers.

The front door hands every request it does not serve itself to Tornado, so
these serve ``/apps/<app_id>/...`` on the server's port; a server library makes
one request per trigger, where Tornado's cost per request is small beside the
fan-out it starts.  Each request is authenticated from its path and query
before its body is read (``thunderpush.pusher.authentication``), and bodies are
streamed in and refused with 413 past the server's ``max_body_size``, so
nothing a client sends is held unbounded.  Answers are JSON; refusals are
plain text, as Pusher's are.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import tornado.web
from tornado.httputil import responses

from thunderpush.api.calls import Api
from thunderpush.core.broker import BackendUnavailable
from thunderpush.pusher.api import ROUTES, Action
from thunderpush.pusher.authentication import authenticate, check_body
from thunderpush.pusher.errors import BACKEND_UNAVAILABLE, TOO_LARGE, Refused


@tornado.web.stream_request_body
class PusherApiHandler(tornado.web.RequestHandler):
    """Serves one route's ``actions`` for the apps of ``api``, whose request counts
    (the metrics) count these too, as ``pusher_<action>``."""

    def initialize(self, api: Api, actions: Mapping[str, Action]) -> None:
        self.api = api
        self.apps = api.apps
        self.max_body_size = api.max_body_size
        self.actions = actions
        self._body = bytearray()
        self._params: dict[str, str] = {}
        self._refused = False

    def prepare(self) -> None:
        request = self.request
        if request.method not in self.actions:
            self.refuse(Refused(405, "Method not allowed"))
            return
        self._params = dict(parse_qsl(request.query, keep_blank_values=True))
        try:
            self._app = authenticate(
                self.apps,
                self.path_kwargs.get("app_id"),
                request.method,
                request.path,
                self._params,
            )
        except Refused as refused:
            self.refuse(refused)
            return
        length = request.headers.get("Content-Length", "0")
        if not (length.isascii() and length.isdigit()) or int(length) > self.max_body_size:
            self.refuse(TOO_LARGE)  # before a byte of the body is read
            return
        # Checked above; ``data_received`` counts what a chunked body brings.
        request.connection.set_max_body_size(2**63)

    def data_received(self, chunk: bytes) -> None:
        if self._refused:
            return
        if len(self._body) + len(chunk) > self.max_body_size:
            self.refuse(TOO_LARGE)
            return
        self._body += chunk

    async def serve(self, *args: Any, **kwargs: Any) -> None:
        if self._refused:
            return
        body = bytes(self._body)
        try:
            check_body(self._params, body)
            answer = self.actions[self.request.method](
                self._app, self.path_kwargs, self._params, body
            )
            if isinstance(answer, Awaitable):
                answer = await answer
        except Refused as refused:
            self.refuse(refused)
            return
        except BackendUnavailable:
            self.refuse(BACKEND_UNAVAILABLE)
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(answer, separators=(",", ":")))

    get = post = serve

    def on_finish(self) -> None:
        action = self.actions.get(self.request.method)
        name = action.__name__ if action is not None else "other"
        self.api.count(f"pusher_{name}", self.get_status())

    def refuse(self, refused: Refused) -> None:
        self._refused = True
        self.set_status(refused.status)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(refused.message + "\n")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Only Tornado's own refusals get here (a method it does not know, a
        # path that is not UTF-8): plain text like every other refusal.
        self.refuse(Refused(status_code, responses.get(status_code, "Unknown")))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return  # an answer to the client, not a server fault
        super().log_exception(typ, value, tb)


def urls(api: Api) -> list[tuple[str, type[PusherApiHandler], dict]]:
    """The routes of Pusher's HTTP API, for a Tornado application."""
    return [(pattern, PusherApiHandler, {"api": api, "actions": a}) for pattern, a in ROUTES]
