"""``Client``: the HTTP API from a blocking program (Django, Flask, a script).

One ``Client`` keeps one connection open and sends its calls over it one
after the other, so a backend that publishes often pays for one TCP (and TLS)
handshake, not one per message::

    from thunderpush_client import Client

    with Client("http://localhost:8000", "key", "secret") as thunderpush:
        thunderpush.publish("news", {"title": "Hello"})   # -> connections reached

A ``Client`` is not shared between threads: give each thread its own.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from thunderpush_client import calls
from thunderpush_client.calls import Call, History
from thunderpush_client.errors import Unreachable, reason

T = TypeVar("T")

# What a kept connection that the server closed meanwhile (its idle timeout)
# raises before any answer: the call is sent again, once, on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Client:
    """The API of the app ``key`` on the server at ``url``, authenticated by ``secret``.

    Every method raises ``ThunderpushError`` with the server's status and
    message when the server refuses the call, and ``Unreachable`` (one of
    them) naming ``url`` when no answer comes within ``timeout`` seconds.
    """

    def __init__(self, url: str, key: str, secret: str, timeout: float = 10.0) -> None:
        self.target = calls.target(url, key)
        self.secret = secret
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    # -- sending -------------------------------------------------------------

    def publish(self, channel: str, message: Any) -> int:
        """Sends ``message`` (any JSON value; bytes: JSON text, sent as they are)
        to every connection subscribed to ``channel``; how many it reached."""
        return self.call(calls.publish(channel, message))

    def send_to_user(self, user: str, message: Any) -> int:
        """Sends ``message`` to every connection of ``user``; how many it reached."""
        return self.call(calls.send_to_user(user, message))

    def batch(self, items: Iterable[Mapping[str, Any]]) -> list[int]:
        """Sends many messages in one request, all or none: each item is
        ``{"channel": c, "message": m}`` or ``{"user": u, "message": m}``; the
        count of each, in item order."""
        return self.call(calls.batch(items))

    def disconnect(self, user: str) -> None:
        """Closes every connection of ``user`` (close code 9002: no reconnection)."""
        return self.call(calls.disconnect(user))

    # -- asking --------------------------------------------------------------

    def user_count(self) -> int:
        """How many distinct users have a connection open."""
        return self.call(calls.user_count())

    def is_online(self, user: str) -> bool:
        """Whether ``user`` has a connection open."""
        return self.call(calls.is_online(user))

    def channel_users(self, channel: str) -> list[str]:
        """The users subscribed to ``channel``, in the order they first subscribed."""
        return self.call(calls.channel_users(channel))

    def channel_counts(self, prefix: str = "") -> dict[str, int]:
        """Every channel with a subscriber (names starting with ``prefix``) and its
        number of connections."""
        return self.call(calls.channel_counts(prefix))

    def user_channels(self, user: str) -> list[str]:
        """The channels ``user`` is subscribed to, sorted."""
        return self.call(calls.user_channels(user))

    def history(self, channel: str, since: int | None = None) -> History:
        """What ``channel`` keeps (docs/history.rst); only what came after the
        offset ``since`` when given."""
        return self.call(calls.history(channel, since))

    # -- the connection ------------------------------------------------------

    def call(self, call: Call[T]) -> T:
        """Sends ``call`` on the kept connection (opened if need be); its value."""
        reused = self._connection is not None
        try:
            try:
                status, body = self._exchange(call)
            except _STALE:
                if not reused:
                    raise
                self.close()
                status, body = self._exchange(call)
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise Unreachable(self.target.url, reason(error)) from None
        return calls.answer(call, status, body)

    def _exchange(self, call: Call[Any]) -> tuple[int, bytes]:
        connection = self._connection or self._connect()
        self._connection = connection
        path = self.target.prefix + call.path
        connection.request(call.method, path, call.body, calls.headers(self.secret, call))
        response = connection.getresponse()
        body = response.read()
        if response.will_close:
            self.close()
        return response.status, body

    def _connect(self) -> http.client.HTTPConnection:
        kind = (
            http.client.HTTPSConnection
            if self.target.scheme == "https"
            else http.client.HTTPConnection
        )
        return kind(self.target.host, self.target.port, timeout=self.timeout)

    def close(self) -> None:
        """Closes the kept connection; the next call opens another."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
