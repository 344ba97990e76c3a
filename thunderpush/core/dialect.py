"""Dialects: how a connection's clients are told what the hub delivers.

A connection carries its ``dialect`` (``Dialect``); the hub never knows which
dialects exist, only that connections may differ: a publish is framed once per
dialect among its receivers and the frame shared by all of them.  A
connection without a ``dialect`` speaks ``THUNDERPUSH``, the wire format of
``thunderpush.core.protocol``; the Pusher dialect is ``thunderpush.pusher.dialect``.
A new dialect is a module of its own that implements ``Dialect``: nothing in
``thunderpush.core`` or ``thunderpush.cluster`` changes.  Example::

    class Shouting(ThunderpushDialect):
        def user_delivery(self, userid, text):
            return encode_delivery(text.upper())
"""

from __future__ import annotations

from typing import Any, Protocol

from thunderpush.core.broker import PublishOptions
from thunderpush.core.protocol import (
    encode_delivery,
    member_added,
    member_removed,
    subscription_error,
    subscription_succeeded,
)

# A presence channel's members as a welcome lists them: (user id, info or None).
MemberList = list[tuple[str, Any]]


class Dialect(Protocol):
    """Frames what the hub delivers, as the JSON text of one element.

    A dialect is shared by its connections and compared by identity: the hub
    keeps one frame per dialect object per publish.
    """

    # Whether a welcome shows the members' info (a cluster then reads it too).
    member_infos: bool

    def publication(
        self, channel: str, text: str, position: tuple[str, int] | None, options: PublishOptions
    ) -> str | None:
        """A publish to ``channel``; None: this dialect's clients do not get it."""

    def user_delivery(self, userid: str, text: str) -> str:
        """A message sent to user ``userid``."""

    def member_added(self, channel: str, userid: str, info: Any) -> str:
        """``userid`` (with its ``info``, if it has one) joined presence ``channel``."""

    def member_removed(self, channel: str, userid: str) -> str:
        """``userid``'s last connection left presence ``channel``."""

    def welcome(self, channel: str, members: MemberList) -> str:
        """The members of presence ``channel`` that a new subscriber is told."""

    def refusal(self, channel: str, message: str) -> str:
        """``channel`` refused the subscription, for ``message``'s reason."""

    def subscription_count(self, channel: str, count: int) -> str | None:
        """``channel`` has ``count`` subscribed connections now (``thunderpush.core.counts``);
        None: this dialect's clients are not told."""


class ThunderpushDialect:
    """Thunderpush's own clients: payloads as published, never a client's words."""

    member_infos = False

    def publication(
        self, channel: str, text: str, position: tuple[str, int] | None, options: PublishOptions
    ) -> str | None:
        if options.from_client:
            return None
        return encode_delivery(text, channel, position)

    def user_delivery(self, userid: str, text: str) -> str:
        return encode_delivery(text)

    def member_added(self, channel: str, userid: str, info: Any) -> str:
        return member_added(channel, userid)

    def member_removed(self, channel: str, userid: str) -> str:
        return member_removed(channel, userid)

    def welcome(self, channel: str, members: MemberList) -> str:
        return subscription_succeeded(channel, [user for user, _ in members])

    def refusal(self, channel: str, message: str) -> str:
        return subscription_error(channel, message)

    def subscription_count(self, channel: str, count: int) -> str | None:
        return None


THUNDERPUSH: Dialect = ThunderpushDialect()

# A connection of another dialect than Thunderpush's, as a hub keeps it: its
# dialect, and its ``id`` (the name a publish's ``skip`` gives it).  ``OWN``
# stands for every connection that speaks Thunderpush.
Foreign = tuple[Dialect, Any]
OWN: Foreign = (THUNDERPUSH, None)


def dialect_of(connection: Any) -> Dialect:
    """The dialect ``connection`` speaks (its ``dialect``, else ``THUNDERPUSH``), for
    its whole life (even once removed from its hub)."""
    return getattr(connection, "dialect", THUNDERPUSH)
