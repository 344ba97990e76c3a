"""The HTTP API that backends call: ``/api/1.0.0/<apikey>/...``.

The API is written once, independent of any HTTP server: ``start`` checks a
request's headers (405 before authentication, authentication before the body,
413 for a declared body that is too large) and returns either the final
``Answer`` or a ``Call``, whose ``finish`` takes the body and runs the action.
Two transports call it and must stay byte-identical:

* the Tornado handlers in ``urls`` (for applications that mount the API on
  their own Tornado server, and for requests the front door hands to Tornado);
* ``thunderpush.frontdoor``, which answers API requests without Tornado.

Example, the way a server uses it::

    started = api.start("POST", actions, {"apikey": "key", "user": "u"}, secret, "8")
    answer = started if isinstance(started, api.Answer) else started.finish(body)

Every error is an ``ApiError`` raised where it is found and turned into an
``{"message": ..., "status": ...}`` answer in one place (``Call.finish``), so no
request can end in an HTML page or a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import tornado.web

from thunderpush import settings
from thunderpush.messenger import Messenger
from thunderpush.protocol import is_valid_channel_name
from thunderpush.sortingstation import SortingStation

logger = logging.getLogger(__name__)


class Answer(NamedTuple):
    """An API response: its status and its body (empty for 204 and OPTIONS)."""

    status: int
    body: bytes


class ApiError(Exception):
    """An API failure whose ``message`` the client is meant to read."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def answer(self) -> Answer:
        return error_answer(self.status, self.message)


def dumps(data: dict[str, Any]) -> str:
    """The original's response format, which clients may compare as text."""
    return json.dumps(data) + "\n"


def error_answer(status: int, message: str) -> Answer:
    return Answer(status, dumps({"message": message, "status": status}).encode())


def _ok(data: dict[str, Any]) -> Answer:
    return Answer(200, dumps(data).encode())


_BOM = "\ufeff"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def validated_body(body: bytes) -> str:
    """The body as text, once it is known to be strict JSON in UTF-8.

    Strict means no NaN/Infinity, no other encoding, no trailing garbage; a
    leading BOM and surrounding whitespace are allowed, and kept: subscribers
    get the body exactly as it was posted.
    """
    try:
        text = body.decode("utf-8")
        json.loads(text.removeprefix(_BOM), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "Request body is not valid JSON.") from None
    return text


def _channel(name: str) -> str:
    if not is_valid_channel_name(name):
        raise ApiError(400, "Invalid channel name.")
    return name


# -- the actions: (messenger, path arguments, body) -> answer -----------------

Action = Callable[[Messenger, Mapping[str, str], bytes], Answer]


def _user_count(messenger: Messenger, args: Mapping[str, str], body: bytes) -> Answer:
    return _ok({"count": messenger.get_user_count()})


def _user_online(messenger: Messenger, args: Mapping[str, str], body: bytes) -> Answer:
    return _ok({"online": messenger.is_user_online(args["user"])})


def _send_to_user(messenger: Messenger, args: Mapping[str, str], body: bytes) -> Answer:
    user = args["user"]
    count = messenger.send_to_user(user, validated_body(body))
    logger.debug("Message sent to %d connections of user %s.", count, user)
    return _ok({"count": count})


def _disconnect_user(messenger: Messenger, args: Mapping[str, str], body: bytes) -> Answer:
    messenger.force_disconnect_user(args["user"])
    return NO_CONTENT


def _channel_users(messenger: Messenger, args: Mapping[str, str], body: bytes) -> Answer:
    connections = messenger.get_users_in_channel(_channel(args["channel"]))
    # One entry per user, in order of first subscription.
    return _ok({"users": list(dict.fromkeys(connection.userid for connection in connections))})


def _send_to_channel(messenger: Messenger, args: Mapping[str, str], body: bytes) -> Answer:
    channel = _channel(args["channel"])
    count = messenger.send_to_channel(channel, validated_body(body))
    logger.debug("Message sent to %d connections in %s.", count, channel)
    return _ok({"count": count})


NO_CONTENT = Answer(204, b"")
PREFLIGHT = Answer(200, b"")
NOT_FOUND = error_answer(404, "Not found.")
METHOD_NOT_ALLOWED = error_answer(405, "Method not allowed.")
WRONG_KEY = error_answer(401, "Wrong API key/secret.")
TOO_LARGE = error_answer(413, "Request body is too large.")


class Call:
    """A request whose headers passed every check; ``finish`` runs it."""

    __slots__ = ("_action", "_messenger", "_args")

    def __init__(self, action: Action, messenger: Messenger, args: Mapping[str, str]) -> None:
        self._action = action
        self._messenger = messenger
        self._args = args

    def finish(self, body: bytes) -> Answer:
        try:
            return self._action(self._messenger, self._args, body)
        except ApiError as error:
            return error.answer()


def start(
    method: str,
    actions: Mapping[str, Action],
    args: Mapping[str, str],
    secret: str,
    content_length: str,
) -> Answer | Call:
    """Checks a routed request's method, key and declared size, in that order.

    ``args`` are the route's percent-decoded path segments; ``secret`` and
    ``content_length`` the headers' values ("" and "0" when absent).
    """
    if method == "OPTIONS":
        return PREFLIGHT  # CORS preflight: no authentication
    action = actions.get(method)
    if action is None:
        # As in the original: an unsupported method is 405 before any key check.
        return METHOD_NOT_ALLOWED
    messenger = _authenticate(args["apikey"], secret)
    if messenger is None:
        return WRONG_KEY
    if not content_length.isdigit() or int(content_length) > settings.MAX_BODY_SIZE:
        # Refused before a byte of the body is read.
        return TOO_LARGE
    return Call(action, messenger, args)


def unrouted(method: str, path: str) -> Answer:
    """A path no route matches: a preflight under ``/api/`` is answered, else 404."""
    if method == "OPTIONS" and path.startswith("/api/"):
        return PREFLIGHT
    return NOT_FOUND


def _authenticate(apikey: str, secret: str) -> Messenger | None:
    messenger = SortingStation.instance().get_messenger_by_apikey(apikey)
    expected = messenger.apisecret if messenger is not None else ""
    # Compared even for an unknown key, and in constant time, so that timing
    # tells nothing about either key.
    if hmac.compare_digest(secret.encode("utf-8"), expected.encode("utf-8")):
        return messenger
    return None


# -- the Tornado handlers -----------------------------------------------------

_STATUS_MESSAGES = {
    404: "Not found.",
    405: "Method not allowed.",
}


@tornado.web.stream_request_body
class ThunderApiHandler(tornado.web.RequestHandler):
    """Serves one route's ``actions`` through ``start`` and ``Call.finish``.

    Bodies are streamed in (``stream_request_body``) so that an oversized body
    is refused with 413 without ever being held in memory.
    """

    actions: ClassVar[Mapping[str, Action]] = {}

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE")
        self.set_header("Access-Control-Allow-Headers", "X-Thunder-Secret-Key, Content-Type")

    def prepare(self) -> None:
        self._body = bytearray()
        headers = self.request.headers
        started = start(
            self.request.method,
            self.actions,
            self.path_kwargs,
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
        if self._finished:
            return
        if len(self._body) + len(chunk) > settings.MAX_BODY_SIZE:
            self.answer(TOO_LARGE)
            return
        self._body += chunk

    def run(self, *args: Any, **kwargs: Any) -> None:
        self.answer(self._call.finish(bytes(self._body)))

    get = post = delete = run

    def answer(self, answer: Answer) -> None:
        self.set_status(answer.status)
        self.finish(answer.body or None)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Only Tornado's own refusals get here (an unknown method, a path that
        # is not UTF-8); the API's errors are answers, not exceptions.
        message = _STATUS_MESSAGES.get(status_code, self._reason)
        self.finish(dumps({"message": message, "status": status_code}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return  # an answer to the client, not a server fault
        super().log_exception(typ, value, tb)


class UserCountHandler(ThunderApiHandler):
    actions = {"GET": _user_count}


class UserHandler(ThunderApiHandler):
    actions = {"GET": _user_online, "POST": _send_to_user, "DELETE": _disconnect_user}


class ChannelHandler(ThunderApiHandler):
    actions = {"GET": _channel_users, "POST": _send_to_channel}


class NotFoundHandler(ThunderApiHandler):
    """Everything the routes do not match: a JSON 404, not an HTML page."""

    def prepare(self) -> None:
        self.answer(unrouted(self.request.method, self.request.path))


_SEGMENT = r"(?P<{}>[^/]+)"
_PREFIX = r"/api/1\.0\.0/" + _SEGMENT.format("apikey")

urls: list[tuple[str, type[ThunderApiHandler]]] = [
    (_PREFIX + r"/users/", UserCountHandler),
    (_PREFIX + r"/users/" + _SEGMENT.format("user") + "/", UserHandler),
    (_PREFIX + r"/channels/" + _SEGMENT.format("channel") + "/", ChannelHandler),
]

# The same routes for servers that match paths themselves; ``$`` as Tornado adds it.
routes: list[tuple[re.Pattern[str], Mapping[str, Action]]] = [
    (re.compile(pattern + "$"), handler.actions) for pattern, handler in urls
]

__all__ = [
    "Answer",
    "ApiError",
    "Call",
    "NotFoundHandler",
    "routes",
    "start",
    "unrouted",
    "urls",
    "validated_body",
]
