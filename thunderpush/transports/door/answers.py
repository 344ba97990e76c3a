"""Answers and refusals: what an endpoint gives the door, in either API dialect.

An endpoint (``thunderpush.transports.door.endpoints``) answers a request with
an ``Answer``: a status, a body, its content type and the header fields it has
beside the ones every answer has.  A refusal is an ``ApiError`` raised where
the problem is found and turned into an answer in one place per endpoint, in
that endpoint's dialect: a JSON object (``json_error``: Thunderpush's API, as
Tornado's handlers write errors) or a line of plain text (``text_error``:
Pusher's HTTP API, whose server libraries carry it as their exception's
message)::

    raise ApiError(400, "Invalid channel name.")
    ...
    except ApiError as error:
        return json_error(error.status, error.message)  # or text_error
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

JSON = "application/json; charset=UTF-8"
TEXT = "text/plain; charset=UTF-8"


class Answer(NamedTuple):
    """A response: its status, its body (empty for 204 and OPTIONS), its content
    type (none is sent with 204), and its other header fields, in order.

    ``published`` is not sent: it tells the metrics how many messages of each
    kind (``"channel"``, ``"user"``) the request sent.
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    published: tuple[tuple[str, int], ...] = ()
    content_type: str = JSON


class ApiError(Exception):
    """A refusal whose ``message`` the client is meant to read, with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def dumps(data: dict[str, Any]) -> str:
    """The original's response format, which clients may compare as text."""
    return json.dumps(data) + "\n"


def json_error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    """``{"message": ..., "status": ...}``: Tornado's handlers' and Thunderpush's errors."""
    return Answer(status, dumps({"message": message, "status": status}).encode(), headers)


def text_error(status: int, message: str) -> Answer:
    """One line of plain text: Pusher's errors."""
    return Answer(status, (message + "\n").encode(), content_type=TEXT)
