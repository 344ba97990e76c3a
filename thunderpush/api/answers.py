"""The API's answers: JSON in the original's exact text format, open to browsers.

Every error is an ``ApiError`` (``thunderpush.transports.door.answers``)
raised where it is found and turned into an ``{"message": ..., "status": ...}``
answer in one place (``Call.finish``), so no request can end in an HTML page
or a traceback.  Every answer carries the CORS fields, errors included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from thunderpush.transports.door.answers import Answer, ApiError, dumps, json_error

# On every API answer, errors included, so that browsers may call the API.
CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, POST, DELETE"),
    ("Access-Control-Allow-Headers", "X-Thunder-Secret-Key, Content-Type"),
)


def error_answer(status: int, message: str) -> Answer:
    """An API error: JSON, with the CORS fields."""
    return json_error(status, message, CORS_HEADERS)


def ok(data: dict[str, Any], published: tuple[tuple[str, int], ...] = ()) -> Answer:
    return Answer(200, dumps(data).encode(), CORS_HEADERS, published)


# ``ok({"count": count})``'s body, as ``dumps`` writes it: the answer of every send.
_COUNT = b'{"count": %d}\n'


def count_answer(count: int, published: tuple[tuple[str, int], ...]) -> Answer:
    """``ok({"count": count}, published)`` without encoding JSON: a send's answer."""
    return Answer(200, _COUNT % count, CORS_HEADERS, published)


def fixed(status: int, body: bytes = b"") -> Answer:
    """An answer whose body is known in advance (a preflight, the API's description)."""
    return Answer(status, body, CORS_HEADERS)


NO_CONTENT = fixed(204)
PREFLIGHT = fixed(200)
NOT_FOUND = error_answer(404, "Not found.")
METHOD_NOT_ALLOWED = error_answer(405, "Method not allowed.")
WRONG_KEY = error_answer(401, "Wrong API key/secret.")
TOO_LARGE = error_answer(413, "Request body is too large.")
BACKEND_UNAVAILABLE = error_answer(503, "Cluster backend unavailable.")
SERVER_ERROR = error_answer(500, "Internal Server Error")
# A path whose segments are not UTF-8 (Tornado's answer, without its reason).
NOT_UTF8 = error_answer(400, "Bad Request")


def method_not_allowed(methods: Iterable[str]) -> Answer:
    """405, with the ``Allow`` field RFC 9110 requires: the route's methods and OPTIONS."""
    # HEAD is answered as GET (``thunderpush.api.calls``).
    listed = [
        each for method in methods for each in (method, "HEAD")[: 2 if method == "GET" else 1]
    ]
    allow = ("Allow", ", ".join([*listed, "OPTIONS"]))
    return METHOD_NOT_ALLOWED._replace(headers=(*CORS_HEADERS, allow))


INVALID_JSON = ApiError(400, "Request body is not valid JSON.")
INVALID_CHANNEL = ApiError(400, "Invalid channel name.")
INVALID_SINCE = ApiError(400, "Invalid since offset.")
