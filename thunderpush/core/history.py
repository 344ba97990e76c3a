"""Recall: what the API reads of a channel's history, and a channel's last publication.

The hub keeps the streams of its own process; the API asks for the app's,
wherever they are kept.  On one process the two are the same, so
``LocalHistory`` reads the hub's streams.  A cluster implementation (Redis)
reads them there, with awaitable results (see ``thunderpush.core.broker.Result``).
A channel's last publication (``thunderpush.core.lasts``), which a dialect
sends a new subscriber, is read the same way: the hub's ``lasts`` here, Redis
in a cluster, whichever node published it.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from thunderpush.core.lasts import Last
from thunderpush.core.results import Result
from thunderpush.core.streams import Stream

if TYPE_CHECKING:
    from thunderpush.core.apps import App


class History(abc.ABC):
    """The API's view of an app's channel streams."""

    @abc.abstractmethod
    def read(self, app: App, channel: str, since: int | None) -> Result[Stream]:
        """``channel``'s stream with the messages after offset ``since`` (all when None);
        ``NO_STREAM`` for a channel that keeps no history or has no stream."""

    @abc.abstractmethod
    def last(self, app: App, channel: str) -> Result[Last | None]:
        """``channel``'s last publication, or None: it keeps none, or has none now."""


class LocalHistory(History):
    """Every stream is on this process: the hub keeps them."""

    def read(self, app: App, channel: str, since: int | None) -> Stream:
        stream = app.hub.streams.read(channel, app.history.keep(channel))
        return stream if since is None else stream.after(since)

    def last(self, app: App, channel: str) -> Last | None:
        return app.hub.lasts.get(channel)
