"""The broker: how a publish, a user send or a user disconnect reaches every hub.

On one process every receiver is in the local ``Hub``, so ``LocalBroker`` calls
it directly and answers at once; a publish to a channel that keeps history is
kept in the hub's streams first, and delivered with its position, and one to a
channel that keeps its last publication is kept in the hub's ``lasts`` (a
client's message never is kept: ``PublishOptions.from_client``).  A cluster
broker (Redis) implements the same three methods by moving the request to
every node; its answers are awaitables, which raise ``BackendUnavailable``
when the cluster cannot be reached.  Callers accept either (``thunderpush.core.results.Result``), so
the single-process path never creates a task or a future per request.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, NamedTuple

from thunderpush.core.lasts import Last
from thunderpush.core.results import Result

if TYPE_CHECKING:
    from thunderpush.core.apps import App


class PublishOptions(NamedTuple):
    """How a publish is told, in no dialect's words: each connection's dialect
    (``thunderpush.core.dialect``) decides what of it its clients see.

    ``event``: the event name a dialect that names events uses (None: its
    default); ``skip``: the ``id`` of the one connection that does not get it
    (the sender's); ``sender``: the sender's user id, for dialects that say
    who sent it; ``from_client``: a client's words, not the backend's: never
    kept in history, and only dialects that take client messages deliver it.
    """

    event: str | None = None
    skip: str | None = None
    sender: str | None = None
    from_client: bool = False


# A backend's plain publish: the default event, nobody skipped.
PLAIN = PublishOptions()


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
        options: PublishOptions = PLAIN,
    ) -> Result[int]:
        """Deliver to every connection in ``channel``; the answer is how many.

        ``options`` say how each dialect tells it (see ``Hub.send_to_channel``).
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
        options: PublishOptions = PLAIN,
    ) -> int:
        if options.from_client:
            return app.hub.send_to_channel(channel, message, None, options)
        marker = app.last_marker  # most channels are told apart here, without a call
        if marker is not None and marker in channel:
            ttl = app.last_ttl(channel)
            if ttl is not None:
                app.hub.lasts.keep(channel, Last(options.event, message), ttl)
        keep = app.history.keep(channel)
        if keep is None:
            return app.hub.send_to_channel(channel, message, None, options)
        position = app.hub.streams.append(channel, message, keep)
        return app.hub.send_to_channel(channel, message, position, options)

    def send_to_user(self, app: App, userid: str, message: str) -> int:
        return app.hub.send_to_user(userid, message)

    def disconnect_user(self, app: App, userid: str) -> None:
        app.hub.disconnect_user(userid)
