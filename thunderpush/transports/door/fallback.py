"""Endpoints on Tornado: the requests the front door hands off, served alike.

The front door serves its endpoints' requests itself and hands Tornado what
it does not parse (chunked bodies, ``Expect``, HTTP/1.0, repeated fields...).
``EndpointHandler`` feeds such a request into the same ``Endpoint.start`` and
``Call.finish`` (``thunderpush.transports.door.endpoints``), so the answer is
the same whoever parsed the request.  It is the application's default handler:
the paths no other route of the application takes::

    tornado.web.Application(
        urls,
        default_handler_class=EndpointHandler,
        default_handler_args={"endpoints": [api, pusher_api], "otherwise": api.not_found},
    )
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import tornado.web
from tornado.httputil import HTTPServerRequest

from thunderpush.transports.door.answers import Answer
from thunderpush.transports.door.endpoints import Call, Endpoint, RequestHead


class _EveryMethod:
    """Tornado's ``SUPPORTED_METHODS`` for endpoints: every method reaches ``start``,
    which answers the ones its routes do not serve in its own dialect."""

    def __contains__(self, method: object) -> bool:
        return True


class TornadoRequest:
    """A Tornado request as an endpoint reads it (``endpoints.RequestHead``)."""

    __slots__ = ("method", "path", "query", "_headers")

    def __init__(self, request: HTTPServerRequest) -> None:
        self.method = request.method or ""
        self.path = request.path
        self.query = request.query
        self._headers = request.headers

    def get(self, name: str, default: str = "") -> str:
        return self._headers.get(name, default)


@tornado.web.stream_request_body
class EndpointHandler(tornado.web.RequestHandler):
    """Serves a request through the first of ``endpoints`` that takes it, else
    through ``otherwise``.

    Bodies are streamed in (``stream_request_body``) so that a body over the
    endpoint's ``max_body_size`` is refused without ever being held in memory.
    """

    SUPPORTED_METHODS = _EveryMethod()  # type: ignore[assignment]

    def initialize(
        self, endpoints: Sequence[Endpoint], otherwise: Callable[[RequestHead], Answer]
    ) -> None:
        self._endpoints = endpoints
        self._otherwise = otherwise
        self._call: Call | None = None
        self._limit = 0
        self._body = bytearray()
        self._answered = False

    def prepare(self) -> None:
        request = TornadoRequest(self.request)
        for endpoint in self._endpoints:
            started = endpoint.start(request)
            if started is not None:
                break
        else:
            started = self._otherwise(request)
        if isinstance(started, Answer):
            self.answer(started)
            return
        self._call, self._limit = started, endpoint.max_body_size
        # ``start`` checked the declared size; ``data_received`` counts the rest.
        self.request.connection.set_max_body_size(2**63)

    def data_received(self, chunk: bytes) -> None:
        if self._answered:
            return
        if len(self._body) + len(chunk) > self._limit:
            self.answer(self._call.too_large())
            return
        self._body += chunk

    def run(self, *args: Any, **kwargs: Any) -> Awaitable[None] | None:
        if self._answered:
            return None
        answer = self._call.finish(bytes(self._body))
        if isinstance(answer, Answer):
            self.answer(answer)
            return None
        return self._answer_later(answer)

    get = head = post = delete = put = patch = run

    async def _answer_later(self, answer: Awaitable[Answer]) -> None:
        self.answer(await answer)

    def answer(self, answer: Answer) -> None:
        """Writes ``answer`` with Tornado's fields (``Server``, ``Date``, ``Etag``...)."""
        self._answered = True
        self.set_status(answer.status)
        self.set_header("Content-Type", answer.content_type)
        for name, value in answer.headers:
            self.set_header(name, value)
        self.finish(answer.body or None)
