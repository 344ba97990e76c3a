"""Pusher's HTTP API as an endpoint: ``/apps/<app_id>/...``, served on the front door.

``PusherApi`` implements the endpoint contract
(``thunderpush.transports.door.endpoints``) that Thunderpush's own API does, so
the front door serves a server library's trigger without Tornado, and Tornado
serves the requests the door hands off through the same calls
(``thunderpush.transports.door.fallback``).  Each request is authenticated
from its path and query before its body is read
(``thunderpush.pusher.authentication``), and a body over the server's
``max_body_size`` is refused with 413, so nothing a client sends is held
unbounded.  Answers are compact JSON; refusals are a line of plain text, as
Pusher's are (``text_error``)::

    started = PusherApi(api).start(request)   # None: not Pusher's path
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from thunderpush.api.calls import Api
from thunderpush.core.apps import App
from thunderpush.core.broker import BackendUnavailable
from thunderpush.core.results import Result
from thunderpush.pusher.api import ROUTES, Action, routes
from thunderpush.pusher.authentication import authenticate, check_body
from thunderpush.transports.door.answers import Answer, ApiError, text_error
from thunderpush.transports.door.endpoints import RequestHead

logger = logging.getLogger(__name__)

METHOD_NOT_ALLOWED = text_error(405, "Method not allowed")
TOO_LARGE = text_error(413, "Request body too large")
BACKEND_UNAVAILABLE = text_error(503, "Cluster backend unavailable")
SERVER_ERROR = text_error(500, "Internal Server Error")
# A path whose segments are not UTF-8 (Tornado's answer).
NOT_UTF8 = text_error(400, "Bad Request")
_JSON = "application/json"
# The paths of Pusher's routes begin so (``pusher.api.ROUTES``).
_PREFIXES = ("/apps/", "/users/")


def _dumps(found: dict[str, Any]) -> bytes:
    return json.dumps(found, separators=(",", ":")).encode()


# What a trigger without ``info`` answers, as every server library sends it.
_EMPTY = Answer(200, _dumps({}), content_type=_JSON)


def _parameters(query: str) -> dict[str, str]:
    """The query's parameters (the last of a name given twice), as ``parse_qsl`` reads
    them; a signed query of plain ``name=value`` pairs (what server libraries
    send) is split without it, a fifth of a trigger's cost."""
    if "%" in query or "+" in query:
        return dict(parse_qsl(query, keep_blank_values=True))
    params = {}
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params[name] = value
    return params


# The name each action's requests are counted under (``Api.requests``).
_NAMES = {
    action: f"pusher_{action.__name__}" for _, actions in ROUTES for action in actions.values()
}


class PusherApi:
    """Pusher's HTTP API for the apps of ``api``, whose request counts (the
    metrics) count these too, as ``pusher_<action>``."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.max_body_size = api.max_body_size

    def start(self, request: RequestHead) -> Answer | PusherCall | None:
        """Routes and authenticates a request (``endpoints.Endpoint``); None: not Pusher's."""
        path = request.path
        if not path.startswith(_PREFIXES):
            return None
        try:
            found = routes.match(path)
        except UnicodeDecodeError:
            return self._counted("pusher_other", NOT_UTF8)
        if found is None:
            return None
        actions, args = found
        action = actions.get(request.method)
        if action is None:
            return self._counted("pusher_other", METHOD_NOT_ALLOWED)
        name = _NAMES[action]
        params = _parameters(request.query)
        try:
            app = authenticate(self.api.apps, args.get("app_id"), request.method, path, params)
        except ApiError as refused:
            return self._counted(name, text_error(refused.status, refused.message))
        length = request.get("content-length", "0")
        if not (length.isascii() and length.isdigit()) or int(length) > self.max_body_size:
            return self._counted(name, TOO_LARGE)  # before a byte of the body is read
        return PusherCall(self, name, action, app, args, params)

    def _counted(self, name: str, answer: Answer) -> Answer:
        self.api.count(name, answer.status)
        return answer


class PusherCall:
    """An authenticated request; ``finish`` checks its body and runs its action."""

    __slots__ = ("_action", "_app", "_args", "_endpoint", "_name", "_params")

    def __init__(
        self,
        endpoint: PusherApi,
        name: str,
        action: Action,
        app: App,
        args: Mapping[str, str],
        params: Mapping[str, str],
    ) -> None:
        self._endpoint = endpoint
        self._name = name
        self._action = action
        self._app = app
        self._args = args
        self._params = params

    def finish(self, body: bytes) -> Answer | Awaitable[Answer]:
        try:
            check_body(self._params, body)
            found = self._action(self._app, self._args, self._params, body)
        except Exception as error:
            return self._refused(error)
        # A local backend's answer is a dict now (``isinstance`` of ``Awaitable``
        # costs an ABC check per request).
        if type(found) is dict or not isinstance(found, Awaitable):
            return self._answer(found)
        return self._later(found)

    def too_large(self) -> Answer:
        return self._endpoint._counted(self._name, TOO_LARGE)

    async def _later(self, found: Result[dict[str, Any]]) -> Answer:
        try:
            return self._answer(await found)
        except Exception as error:
            return self._refused(error)

    def _answer(self, found: dict[str, Any]) -> Answer:
        answer = Answer(200, _dumps(found), content_type=_JSON) if found else _EMPTY
        return self._endpoint._counted(self._name, answer)

    def _refused(self, error: Exception) -> Answer:
        if isinstance(error, ApiError):
            answer = text_error(error.status, error.message)
        elif isinstance(error, BackendUnavailable):
            answer = BACKEND_UNAVAILABLE
        else:
            logger.error("Uncaught exception in a Pusher API call.", exc_info=error)
            answer = SERVER_ERROR
        return self._endpoint._counted(self._name, answer)
