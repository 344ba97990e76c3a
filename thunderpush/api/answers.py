"""API answers: a status and a JSON body, in the original's exact text format.

Every error is an ``ApiError`` raised where it is found and turned into an
``{"message": ..., "status": ...}`` answer in one place (``Call.finish``), so
no request can end in an HTML page or a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, NamedTuple


class Answer(NamedTuple):
    """An API response: its status, its body (empty for 204 and OPTIONS), and
    the header fields it has beside the ones every API answer has."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


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


def ok(data: dict[str, Any]) -> Answer:
    return Answer(200, dumps(data).encode())


# On every API answer, errors included, so that browsers may call the API.
CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, POST, DELETE"),
    ("Access-Control-Allow-Headers", "X-Thunder-Secret-Key, Content-Type"),
)

NO_CONTENT = Answer(204, b"")
PREFLIGHT = Answer(200, b"")
NOT_FOUND = error_answer(404, "Not found.")
METHOD_NOT_ALLOWED = error_answer(405, "Method not allowed.")
WRONG_KEY = error_answer(401, "Wrong API key/secret.")
TOO_LARGE = error_answer(413, "Request body is too large.")
BACKEND_UNAVAILABLE = error_answer(503, "Cluster backend unavailable.")


def method_not_allowed(methods: Iterable[str]) -> Answer:
    """405, with the ``Allow`` field RFC 9110 requires: the route's methods and OPTIONS."""
    return METHOD_NOT_ALLOWED._replace(headers=(("Allow", ", ".join([*methods, "OPTIONS"])),))


INVALID_JSON = ApiError(400, "Request body is not valid JSON.")
INVALID_CHANNEL = ApiError(400, "Invalid channel name.")
INVALID_SINCE = ApiError(400, "Invalid since offset.")
