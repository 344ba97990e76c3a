"""Presence: who is online and who listens where, as the API reports it.

The hub knows the connections of its own process; presence answers for every
connection of the app.  On one process the two are the same, so
``LocalPresence`` reads the hub.  A cluster implementation (Redis) answers
for every node, with awaitable results (see ``thunderpush.core.broker.Result``).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from thunderpush.core.results import Result

if TYPE_CHECKING:
    from thunderpush.core.apps import App


class Presence(abc.ABC):
    """The API's view of an app's users and channels."""

    @abc.abstractmethod
    def user_count(self, app: App) -> Result[int]:
        """Distinct user ids online."""

    @abc.abstractmethod
    def is_online(self, app: App, userid: str) -> Result[bool]:
        """Whether ``userid`` has at least one connection."""

    @abc.abstractmethod
    def channel_users(self, app: App, channel: str) -> Result[list[str]]:
        """User ids subscribed to ``channel``, each once, in order of first subscription."""

    @abc.abstractmethod
    def channel_counts(self, app: App, prefix: str) -> Result[dict[str, int]]:
        """Connections per channel, for every channel whose name starts with ``prefix``
        and has at least one connection (in no particular order)."""

    @abc.abstractmethod
    def user_channels(self, app: App, userid: str) -> Result[set[str]]:
        """The channels that at least one connection of ``userid`` is in."""

    @abc.abstractmethod
    def connection_count(self, app: App) -> Result[int]:
        """Connections that said who they are (``CONNECT``), on every node."""


class LocalPresence(Presence):
    """Every connection is on this process: the hub knows."""

    def user_count(self, app: App) -> int:
        return app.hub.user_count()

    def is_online(self, app: App, userid: str) -> bool:
        return app.hub.is_online(userid)

    def channel_users(self, app: App, channel: str) -> list[str]:
        return app.hub.channel_users(channel)

    def channel_counts(self, app: App, prefix: str) -> dict[str, int]:
        return app.hub.channel_counts(prefix)

    def user_channels(self, app: App, userid: str) -> set[str]:
        return app.hub.user_channels(userid)

    def connection_count(self, app: App) -> int:
        return app.hub.connection_count()
