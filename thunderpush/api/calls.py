"""``Api``: the API's endpoint; its routes, then the checks every request passes, then its action.

The API is written once, independent of any HTTP server: it is an endpoint
(``thunderpush.transports.door.endpoints``).  ``Api.start`` routes a request,
checks its headers (405 before authentication, authentication before the
body, 413 for a declared body that is too large) and returns either the final
``Answer`` or a ``Call``, whose ``finish`` takes the body and runs the action.
The front door and, for the requests it hands off, the Tornado fallback
(``thunderpush.transports.door.fallback``) call it, so they answer alike.
Example, the way a server uses it::

    api = Api(apps, max_body_size=1024 * 1024)
    started = api.start(request)    # None: not under /api/
    answer = started if isinstance(started, Answer) else started.finish(body)
    # ``answer`` is an Answer, or (cluster backends) an awaitable of one.

Every answer is counted by endpoint and status (``Api.requests``), and each
message sent by the time its receivers' sockets were written to
(``Api.latency``), for ``thunderpush.observe.metrics``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from time import perf_counter
from urllib.parse import parse_qsl

from thunderpush.api.actions import Action, Handling, routes
from thunderpush.api.answers import (
    BACKEND_UNAVAILABLE,
    NOT_FOUND,
    NOT_UTF8,
    PREFLIGHT,
    SERVER_ERROR,
    TOO_LARGE,
    WRONG_KEY,
    Answer,
    ApiError,
    error_answer,
    method_not_allowed,
)
from thunderpush.core.apps import App, Apps
from thunderpush.core.broker import BackendUnavailable
from thunderpush.core.results import Result
from thunderpush.observe.tally import Latency
from thunderpush.transports.door.endpoints import RequestHead

logger = logging.getLogger(__name__)

# The ``endpoint`` of a request no action serves (unrouted, preflight, 405, the description).
OTHER = "other"
# The endpoints that send messages: their answers are timed (``Api.latency``).
SENDS = frozenset({"send_to_channel", "send_to_user", "batch"})


def arguments(path: Mapping[str, str], query: str) -> dict[str, str]:
    """An action's arguments: the query's parameters, then the path's segments.

    The path wins, so no query can name another app or user than the URL's
    path; of a parameter given twice the last counts, and unknown ones are
    ignored, as they always were.
    """
    if not query:
        return dict(path)
    return {**dict(parse_qsl(query, keep_blank_values=True)), **path}


def _failed() -> Answer:
    """A fault in an action (never the client's): logged, and Tornado's JSON 500."""
    logger.exception("Uncaught exception in an API call.")
    return SERVER_ERROR


class Call:
    """A request whose headers passed every check; ``finish`` runs it."""

    __slots__ = ("_action", "_api", "_app", "_args")

    def __init__(self, api: Api, action: Action, app: App, args: Mapping[str, str]) -> None:
        self._api = api
        self._action = action
        self._app = app
        self._args = args

    def finish(self, body: bytes) -> Result[Answer]:
        started = perf_counter()
        try:
            answer = self._action(self._app, self._args, body)
        except ApiError as error:
            answer = error_answer(error.status, error.message)
        except Exception:
            answer = _failed()
        if isinstance(answer, Answer):
            self._api.answered(self._action.__name__, answer, started)
            return answer
        return self._answered(answer, started)

    async def _answered(self, answer: Awaitable[Answer], started: float) -> Answer:
        try:
            final = await answer
        except ApiError as error:
            final = error_answer(error.status, error.message)
        except BackendUnavailable:
            final = BACKEND_UNAVAILABLE
        except Exception:
            final = _failed()
        self._api.answered(self._action.__name__, final, started)
        return final

    def too_large(self) -> Answer:
        return TOO_LARGE


class Api:
    """The API of the apps in ``apps``, refusing bodies over ``max_body_size``."""

    def __init__(self, apps: Apps, max_body_size: int) -> None:
        self.apps = apps
        self.max_body_size = max_body_size
        # (endpoint, status) -> answers given: the action's name, or ``OTHER``.
        self.requests: dict[tuple[str, int], int] = {}
        # Messages the API accepted, by kind: one per single send, one per batch item.
        self.published = {"channel": 0, "user": 0}
        # From a send's body to its receivers' sockets written (or the cluster bus reached).
        self.latency = Latency()
        # When each send of this loop turn began, until the turn's sockets are written.
        self._unsent: list[float] = []

    def start(self, request: RequestHead) -> Answer | Call | None:
        """What a request under ``/api/`` gets (``endpoints.Endpoint``); None for others."""
        path = request.path
        if not path.startswith("/api/"):
            return None
        try:
            found = routes.match(path)
        except UnicodeDecodeError:
            return NOT_UTF8
        if found is None:
            return self.not_found(request)
        actions, path_args = found
        return self.check(
            request.method,
            actions,
            arguments(path_args, request.query),
            request.get("x-thunder-secret-key"),
            request.get("content-length", "0"),
        )

    def check(
        self,
        method: str,
        actions: Mapping[str, Handling],
        args: Mapping[str, str],
        secret: str,
        content_length: str,
    ) -> Answer | Call:
        """Checks a routed request's method, key and declared size, in that order.

        A method whose handling is a fixed ``Answer`` is public: it is answered
        before the key is looked at.

        ``args`` are the route's percent-decoded path segments; ``secret`` and
        ``content_length`` the headers' values ("" and "0" when absent).
        """
        if method == "OPTIONS":
            return self._counted(OTHER, PREFLIGHT)  # CORS preflight: no authentication
        # HEAD is GET without the body (uptime checks use it); Tornado drops the body.
        action = actions.get("GET" if method == "HEAD" else method)
        if action is None:
            # As in the original: an unsupported method is 405 before any key check.
            return self._counted(OTHER, method_not_allowed(actions))
        if isinstance(action, Answer):
            return self._counted(OTHER, action)  # public: the same for everybody
        app = self.apps.authenticate(args["apikey"], secret)
        if app is None:
            return self._counted(action.__name__, WRONG_KEY)
        if (
            not (content_length.isascii() and content_length.isdigit())
            or int(content_length) > self.max_body_size
        ):
            # Refused before a byte of the body is read.
            return self._counted(action.__name__, TOO_LARGE)
        return Call(self, action, app, args)

    def not_found(self, request: RequestHead) -> Answer:
        """A path no route matches: a preflight under ``/api/`` is answered, else 404."""
        if request.method == "OPTIONS" and request.path.startswith("/api/"):
            return self._counted(OTHER, PREFLIGHT)
        return self._counted(OTHER, NOT_FOUND)

    def _counted(self, endpoint: str, answer: Answer) -> Answer:
        self.count(endpoint, answer.status)
        return answer

    def count(self, endpoint: str, status: int) -> None:
        """One more answer of ``status`` at ``endpoint`` (other front doors' too)."""
        key = (endpoint, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def answered(self, endpoint: str, answer: Answer, started: float) -> None:
        """Counts a call's answer and the messages it sent; a send is timed once its
        sockets are written (a batch once, as one send).

        Websockets are written at the end of the loop turn (``transports.fanout``),
        so the sends of a turn are timed in one callback behind that flush (a
        callback per message cost a publish a tenth more).
        """
        key = (endpoint, answer.status)
        self.requests[key] = self.requests.get(key, 0) + 1
        for kind, count in answer.published:
            self.published[kind] += count
        if answer.status != 200 or endpoint not in SENDS:
            return
        unsent = self._unsent
        if not unsent:
            try:
                asyncio.get_running_loop().call_soon(self._sent)
            except RuntimeError:  # no loop (a test calling the API directly): nothing queued
                self.latency.observe(perf_counter() - started)
                return
        unsent.append(started)

    def _sent(self) -> None:
        now = perf_counter()
        unsent, self._unsent = self._unsent, []
        for started in unsent:
            self.latency.observe(now - started)
