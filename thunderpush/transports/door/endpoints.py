"""The endpoint contract: how an HTTP API is served, by the front door or by Tornado.

An ``Endpoint`` owns its routes.  ``start`` is shown every request head: it
answers at once (an ``Answer``: the request is refused, or needs no body),
returns a ``Call`` that ``finish`` completes with the body, or returns None
(not its request).  The front door (``thunderpush.transports.door.frontdoor``)
tries its endpoints in order and hands a request none takes to Tornado; the
Tornado fallback (``thunderpush.transports.door.fallback``) feeds the requests
Tornado serves into the same two calls, so both answer alike.  Thunderpush's
API (``thunderpush.api.Api``) and Pusher's HTTP API
(``thunderpush.pusher.endpoint.PusherApi``) are endpoints::

    started = endpoint.start(request)
    if isinstance(started, Answer): ...       # write it
    elif started is not None:
        answer = started.finish(body)         # an Answer, or an awaitable of one

This module imports no endpoint: they implement it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Iterable
from typing import Generic, Protocol, TypeVar
from urllib.parse import unquote_to_bytes

from thunderpush.transports.door.answers import Answer


class RequestHead(Protocol):
    """What an endpoint reads of a request: the door's ``messages.Request`` or
    Tornado's request (``fallback``)."""

    # The method, and the path and query as sent (not percent-decoded).
    method: str
    path: str
    query: str

    def get(self, name: str, default: str = "") -> str:
        """The value of header field ``name`` (lower case), or ``default``."""


class Call(Protocol):
    """A request whose head an endpoint accepted; ``finish`` answers it with its body.

    ``finish`` never raises: a fault is logged and answered (500) in the
    endpoint's dialect.
    """

    def finish(self, body: bytes) -> Answer | Awaitable[Answer]: ...

    def too_large(self) -> Answer:
        """The answer to a body that grew past ``max_body_size`` as it came
        (Tornado's chunked bodies; a declared one is refused by ``start``)."""


class Endpoint(Protocol):
    """An HTTP API that owns its routes (see the module's docstring)."""

    # The longest body a call takes.
    max_body_size: int

    def start(self, request: RequestHead) -> Answer | Call | None:
        """The answer, a call waiting for the body, or None: not this endpoint's request."""


Target = TypeVar("Target")
# How many paths ``Routes`` remembers, and the longest it remembers: a head may
# be 64 KiB, and 1,024 such paths (with their segments) would hold 128 MiB.
_REMEMBERED = 1024
_LONGEST_REMEMBERED = 256


class Routes(Generic[Target]):
    """An endpoint's routes: Tornado-style path patterns (named groups, no final
    ``$``), each with what it serves; ``match`` finds a path's."""

    def __init__(self, routes: Iterable[tuple[str, Target]]) -> None:
        self.compiled = [(re.compile(pattern + "$"), target) for pattern, target in routes]
        # The paths matched lately and what they found: a backend publishes to the
        # same paths again and again (emptied when full and short paths only, so
        # any client may fill it at little cost).
        self._found: dict[str, tuple[Target, dict[str, str]] | None] = {}

    def match(self, path: str) -> tuple[Target, dict[str, str]] | None:
        """What serves ``path`` and its named segments, percent-decoded as Tornado
        decodes them; None: no route.  ``UnicodeDecodeError``: a segment is not UTF-8."""
        try:
            found = self._found[path]
        except KeyError:
            found = self._match(path)
            if len(path) <= _LONGEST_REMEMBERED:
                if len(self._found) >= _REMEMBERED:
                    self._found.clear()
                self._found[path] = found
        return None if found is None else (found[0], dict(found[1]))

    def _match(self, path: str) -> tuple[Target, dict[str, str]] | None:
        for pattern, target in self.compiled:
            found = pattern.match(path)
            if found is not None:
                segments = found.groupdict().items()
                return target, {name: _decoded(value) for name, value in segments}
        return None


def _decoded(segment: str) -> str:
    return unquote_to_bytes(segment).decode("utf-8")
