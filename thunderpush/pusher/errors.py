"""The errors of Pusher's HTTP API: a status and a plain-text explanation, as Pusher answers.

Every refusal is raised where it is found and answered in one place
(``thunderpush.pusher.handlers``), so no request ends in a traceback.  The
``pusher`` server libraries raise on the status (400 ``PusherBadRequest``,
401 ``PusherBadAuth``, 403 ``PusherForbidden``, others ``PusherBadStatus``)
and carry the body as the exception's message.
"""

from __future__ import annotations


class Refused(Exception):
    """A request the API refuses, with the status and the text the client is meant to read."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> Refused:
    return Refused(400, message)


def unauthorized(message: str) -> Refused:
    return Refused(401, message)


# A request signed with an app's secret whose path names another app id (or none's).
WRONG_APP = Refused(401, "auth_key is not the key of the app in the path")
TOO_LARGE = Refused(413, "Request body too large")
BACKEND_UNAVAILABLE = Refused(503, "Cluster backend unavailable")
