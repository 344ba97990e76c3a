"""The broker: how a publish, a user send or a user disconnect reaches every hub.

On one process every receiver is in the local ``Hub``, so ``LocalBroker`` calls
it directly and answers at once; a publish to a channel that keeps history is
kept in the hub's streams first, and delivered with its position (a Pusher
client event never is: ``Trigger.client``).  A cluster
broker (Redis) implements the same three methods by moving the request to
every node; its answers are awaitables, which raise ``BackendUnavailable``
when the cluster cannot be reached.  Callers accept either (``Result``), so
the single-process path never creates a task or a future per request.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable
from typing import TYPE_CHECKING, NamedTuple, TypeVar

if TYPE_CHECKING:
    from thunderpush.core.apps import App

T = TypeVar("T")
# An answer now, or one to await: a local backend never makes callers wait.
Result = T | Awaitable[T]


class Trigger(NamedTuple):
    """A publish as Pusher clients get it: the event name (None: a Thunderpush
    publish, ``thunderpush.pusher.protocol.DEFAULT_EVENT``), the socket id that
    does not get it (the sender's), and in a presence channel the sender's
    user id.  Thunderpush connections get the payload whatever it says, unless
    it is a Pusher ``client`` event: a client's words, not the backend's, which
    only Pusher connections get and no history keeps (docs/pusher.rst)."""

    event: str | None = None
    exclude: str | None = None
    user_id: str | None = None
    client: bool = False


# A Thunderpush publish: the default event, nobody excluded.
NO_TRIGGER = Trigger()


class BackendUnavailable(Exception):
    """The backend cannot answer now (a cluster's Redis is down); the API says 503."""


class Broker(abc.ABC):
    """Moves what the API asks for to the connections it concerns, wherever they are."""

    @abc.abstractmethod
    def send_to_channel(
        self,
        app: App,
        channel: str,
        message: str,
        trigger: Trigger | None = None,
    ) -> Result[int]:
        """Deliver to every connection in ``channel``; the answer is how many.

        ``trigger`` says how Pusher connections get it (see ``Hub.send_to_channel``).
        """

    @abc.abstractmethod
    def send_to_user(self, app: App, userid: str, message: str) -> Result[int]:
        """Deliver to every connection of ``userid``; the answer is how many."""

    @abc.abstractmethod
    def disconnect_user(self, app: App, userid: str) -> Result[None]:
        """Close every connection of ``userid`` with code 9002."""


class LocalBroker(Broker):
    """Every connection is on this process: the app's hub is the whole audience."""

    def send_to_channel(
        self,
        app: App,
        channel: str,
        message: str,
        trigger: Trigger | None = None,
    ) -> int:
        keep = None if trigger is not None and trigger.client else app.history.keep(channel)
        if keep is None:
            return app.hub.send_to_channel(channel, message, None, trigger)
        position = app.hub.streams.append(channel, message, keep)
        return app.hub.send_to_channel(channel, message, position, trigger)

    def send_to_user(self, app: App, userid: str, message: str) -> int:
        return app.hub.send_to_user(userid, message)

    def disconnect_user(self, app: App, userid: str) -> None:
        app.hub.disconnect_user(userid)
