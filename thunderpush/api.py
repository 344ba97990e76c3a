"""The HTTP API that backends call: ``/api/1.0.0/<apikey>/...``.

Each handler authenticates, checks its input and makes one messenger call.
Every error is raised as ``ApiError`` where it is found and written in one
place (``write_error``) as ``{"message": ..., "status": ...}``, so no request
can end in an HTML page or a traceback.

Bodies are streamed in (``stream_request_body``) so that an oversized body is
refused with 413 without ever being held in memory.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

import tornado.web

from thunderpush import settings
from thunderpush.messenger import Messenger
from thunderpush.protocol import is_valid_channel_name
from thunderpush.sortingstation import SortingStation

logger = logging.getLogger(__name__)


class ApiError(tornado.web.HTTPError):
    """An API failure whose ``message`` the client is meant to read."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status)
        self.message = message


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


def dumps(data: dict[str, Any]) -> str:
    """The original's response format, which clients may compare as text."""
    return json.dumps(data) + "\n"


@tornado.web.stream_request_body
class ThunderApiHandler(tornado.web.RequestHandler):
    """Base of the API handlers: CORS, authentication, body and errors."""

    messenger: Messenger

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE")
        self.set_header("Access-Control-Allow-Headers", "X-Thunder-Secret-Key, Content-Type")

    def prepare(self) -> None:
        self._body = bytearray()
        if self.request.method == "OPTIONS":
            return
        # As in the original: an unsupported method is 405 before any key check.
        name = self.request.method.lower()
        if getattr(type(self), name, None) is getattr(tornado.web.RequestHandler, name, None):
            raise tornado.web.HTTPError(405)
        self.messenger = self._authenticate(self.path_kwargs["apikey"])
        # The body is counted as it streams in; a declared size that is
        # already too large is refused before a byte of it is read.
        self.request.connection.set_max_body_size(2**63)
        declared = self.request.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > settings.MAX_BODY_SIZE:
            raise ApiError(413, "Request body is too large.")

    def _authenticate(self, apikey: str) -> Messenger:
        messenger = SortingStation.instance().get_messenger_by_apikey(apikey)
        secret = self.request.headers.get("X-Thunder-Secret-Key", "")
        expected = messenger.apisecret if messenger is not None else ""
        # Compared even for an unknown key, and in constant time, so that
        # timing tells nothing about either key.
        if not hmac.compare_digest(secret.encode("utf-8"), expected.encode("utf-8")) or (
            messenger is None
        ):
            raise ApiError(401, "Wrong API key/secret.")
        return messenger

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        if len(self._body) + len(chunk) > settings.MAX_BODY_SIZE:
            error = ApiError(413, "Request body is too large.")
            self.send_error(413, exc_info=(ApiError, error, None))
            return
        self._body += chunk

    def payload(self) -> str:
        return validated_body(bytes(self._body))

    def respond(self, data: dict[str, Any]) -> None:
        self.finish(dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError):
            message = error.message
        else:
            message = _STATUS_MESSAGES.get(status_code, self._reason)
        self.finish(dumps({"message": message, "status": status_code}))

    def options(self, *args: Any, **kwargs: Any) -> None:
        # CORS preflight: no authentication, empty 200.
        self.finish()

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return  # an answer to the client, not a server fault
        super().log_exception(typ, value, tb)


_STATUS_MESSAGES = {
    404: "Not found.",
    405: "Method not allowed.",
}


def _channel(name: str) -> str:
    if not is_valid_channel_name(name):
        raise ApiError(400, "Invalid channel name.")
    return name


class UserCountHandler(ThunderApiHandler):
    def get(self, apikey: str) -> None:
        """How many distinct users are online."""
        self.respond({"count": self.messenger.get_user_count()})


class UserHandler(ThunderApiHandler):
    def get(self, apikey: str, user: str) -> None:
        self.respond({"online": self.messenger.is_user_online(user)})

    def post(self, apikey: str, user: str) -> None:
        count = self.messenger.send_to_user(user, self.payload())
        logger.debug("Message sent to %d connections of user %s.", count, user)
        self.respond({"count": count})

    def delete(self, apikey: str, user: str) -> None:
        self.messenger.force_disconnect_user(user)
        self.set_status(204)
        self.finish()


class ChannelHandler(ThunderApiHandler):
    def get(self, apikey: str, channel: str) -> None:
        connections = self.messenger.get_users_in_channel(_channel(channel))
        # One entry per user, in order of first subscription.
        users = list(dict.fromkeys(connection.userid for connection in connections))
        self.respond({"users": users})

    def post(self, apikey: str, channel: str) -> None:
        count = self.messenger.send_to_channel(_channel(channel), self.payload())
        logger.debug("Message sent to %d connections in %s.", count, channel)
        self.respond({"count": count})


class NotFoundHandler(ThunderApiHandler):
    """Everything the routes do not match: a JSON 404, not an HTML page."""

    def prepare(self) -> None:
        # A CORS preflight is answered on any API path, known or not.
        if self.request.method != "OPTIONS" or not self.request.path.startswith("/api/"):
            raise ApiError(404, "Not found.")


_SEGMENT = r"(?P<{}>[^/]+)"
_PREFIX = r"/api/1\.0\.0/" + _SEGMENT.format("apikey")

urls: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    (_PREFIX + r"/users/", UserCountHandler),
    (_PREFIX + r"/users/" + _SEGMENT.format("user") + "/", UserHandler),
    (_PREFIX + r"/channels/" + _SEGMENT.format("channel") + "/", ChannelHandler),
]

__all__ = ["urls", "NotFoundHandler", "ApiError", "validated_body"]
