"""``Api``: the checks every API request passes, in the original's order, then its action.

The API is written once, independent of any HTTP server: ``Api.start`` checks
a request's headers (405 before authentication, authentication before the
body, 413 for a declared body that is too large) and returns either the final
``Answer`` or a ``Call``, whose ``finish`` takes the body and runs the action.
Two transports call it and must stay byte-identical: the front door
(``thunderpush.transports``) and the Tornado handlers (``handlers``).
Example, the way a server uses it::

    api = Api(apps, max_body_size=1024 * 1024)
    started = api.start("POST", actions, {"apikey": "key", "user": "u"}, secret, "8")
    answer = started if isinstance(started, Answer) else started.finish(body)
    # ``answer`` is an Answer, or (cluster backends) an awaitable of one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

from thunderpush.api.actions import Action, Handling
from thunderpush.api.answers import (
    BACKEND_UNAVAILABLE,
    NOT_FOUND,
    PREFLIGHT,
    TOO_LARGE,
    WRONG_KEY,
    Answer,
    ApiError,
    method_not_allowed,
)
from thunderpush.core.apps import App, Apps
from thunderpush.core.broker import BackendUnavailable, Result


class Call:
    """A request whose headers passed every check; ``finish`` runs it."""

    __slots__ = ("_action", "_app", "_args")

    def __init__(self, action: Action, app: App, args: Mapping[str, str]) -> None:
        self._action = action
        self._app = app
        self._args = args

    def finish(self, body: bytes) -> Result[Answer]:
        try:
            answer = self._action(self._app, self._args, body)
        except ApiError as error:
            return error.answer()
        if isinstance(answer, Answer):
            return answer
        return _answered(answer)


async def _answered(answer: Awaitable[Answer]) -> Answer:
    try:
        return await answer
    except ApiError as error:
        return error.answer()
    except BackendUnavailable:
        return BACKEND_UNAVAILABLE


class Api:
    """The API of the apps in ``apps``, refusing bodies over ``max_body_size``."""

    def __init__(self, apps: Apps, max_body_size: int) -> None:
        self.apps = apps
        self.max_body_size = max_body_size

    def start(
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
            return PREFLIGHT  # CORS preflight: no authentication
        action = actions.get(method)
        if action is None:
            # As in the original: an unsupported method is 405 before any key check.
            return method_not_allowed(actions)
        if isinstance(action, Answer):
            return action  # public: the same for everybody
        app = self.apps.authenticate(args["apikey"], secret)
        if app is None:
            return WRONG_KEY
        if (
            not (content_length.isascii() and content_length.isdigit())
            or int(content_length) > self.max_body_size
        ):
            # Refused before a byte of the body is read.
            return TOO_LARGE
        return Call(action, app, args)

    @staticmethod
    def unrouted(method: str, path: str) -> Answer:
        """A path no route matches: a preflight under ``/api/`` is answered, else 404."""
        if method == "OPTIONS" and path.startswith("/api/"):
            return PREFLIGHT
        return NOT_FOUND
