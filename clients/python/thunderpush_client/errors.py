"""The one exception of the client: what went wrong, in the server's words when it answered."""

from __future__ import annotations

import asyncio


class ThunderpushError(Exception):
    """A request that did not succeed.

    ``status`` is the HTTP status the server answered (401, 404, 400...) and
    ``message`` the ``message`` of its JSON error body, word for word, so a
    backend can log it or show it as it is.  ``status`` is None when no answer
    came at all (``Unreachable``).
    """

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message if self.status is None else f"{self.status}: {self.message}"


class Unreachable(ThunderpushError):
    """No answer: the server is down, the URL is wrong, or it did not answer in time.

    The message names the URL that was tried, so that a wrong setting is found
    from the log line alone.
    """

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(None, f"Cannot reach the Thunderpush server at {url}: {reason}")
        self.url = url


def reason(error: BaseException) -> str:
    """A network failure in a few words (``Connection refused``), for ``Unreachable``."""
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return f"no answer in time ({error})" if str(error) else "no answer in time"
    if isinstance(error, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(error, asyncio.IncompleteReadError):
        return "the connection closed before an answer"
    if isinstance(error, ThunderpushError):
        return error.message
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
