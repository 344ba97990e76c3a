"""What the hub holds back while its listener answers: welcomes and recoveries.

Where presence or history live elsewhere (a cluster's Redis, through the
hub's listener), a connection's presence welcome and its recovery are answered
later, and what reaches the connection meanwhile must wait for the answer:

* a connection waiting for its presence member list has the channel's
  presence events held; once told the list as of event number ``seq``, it
  gets the held events numbered after ``seq``, and later ones only if they
  are numbered after it (``presence_event``);
* a connection recovering a channel has the channel's deliveries held; once
  sent what it missed up to a position, it gets the held deliveries after
  that position, and the deliveries still on their way from before the read
  are dropped until one comes after it (``admit``, ``fresh``).

A channel none of whose connections is recovering is not *guarded*: its
publishes are delivered without asking (one dict lookup).  On one process
nothing is ever held (``Transitions`` answers nothing later).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Connection = Any
# A connection in a channel.
Subscription = tuple[Connection, str]
Position = tuple[str, int]


class Gates:
    """The held welcomes and recoveries of one hub's connections."""

    def __init__(self) -> None:
        # (connection, presence channel) -> events that came while it waited
        # for the member list, as (number, element).
        self._waiting: dict[Subscription, list[tuple[int, str]]] = {}
        # (connection, presence channel) -> the number of the last event its
        # member list included.
        self._told_until: dict[Subscription, int] = {}
        # Connections told only this hub's members, while the listener could not answer.
        self._alone: dict[Subscription, None] = {}
        # (connection, channel) -> the position a recovery waits to read after,
        # and the channel's deliveries that came meanwhile, as (position, element).
        self._recovering: dict[Subscription, tuple[Position, list[tuple[Position, str]]]] = {}
        # (connection, channel) -> the position its recovery sent up to, until
        # a later delivery of that epoch comes.
        self._sent_until: dict[Subscription, Position] = {}
        # channel -> how many of its connections are in either dict above.
        self._guarded: dict[str, int] = {}

    # -- presence welcomes ----------------------------------------------------

    def wait_for_members(self, connection: Connection, channel: str) -> None:
        self._waiting.setdefault((connection, channel), [])

    def members_told(
        self, connection: Connection, channel: str, seq: int | None = None
    ) -> list[tuple[int, str]] | None:
        """``connection`` is told ``channel``'s members (as of event ``seq``, if the
        listener numbered them): the events held for it; None if it was not waiting."""
        waiting = self._waiting.pop((connection, channel), None)
        if waiting is not None and seq is not None:
            self._told_until[connection, channel] = seq
        return waiting

    def told_alone(self, connection: Connection, channel: str) -> None:
        self._alone[connection, channel] = None

    def rejoined(self, listed: Callable[[str], bool]) -> list[Subscription]:
        """Event numbers start again in the channels ``listed`` answers True for
        (a cluster's shard that came back holds those, the others carry on);
        returns their connections ``told_alone``."""
        self._told_until = {key: seq for key, seq in self._told_until.items() if not listed(key[1])}
        alone = [key for key in self._alone if listed(key[1])]
        for key in alone:
            del self._alone[key]
        return alone

    def presence_event(self, connection: Connection, channel: str, seq: int, frame: str) -> bool:
        """Whether event number ``seq`` goes to ``connection`` now (else it is held,
        or its member list included it)."""
        key = (connection, channel)
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append((seq, frame))
            return False
        return seq > self._told_until.get(key, 0)

    # -- recoveries -------------------------------------------------------------

    def guards(self, channel: str) -> bool:
        """Whether a delivery to ``channel`` must ask ``admit`` for each connection."""
        return channel in self._guarded

    def recovering(self, connection: Connection, channel: str) -> bool:
        return (connection, channel) in self._recovering

    def reread(self, connection: Connection, channel: str) -> None:
        """A new recovery supersedes what the last one sent."""
        if self._sent_until.pop((connection, channel), None) is not None:
            self._unguard(channel)

    def hold(self, connection: Connection, channel: str, since: Position) -> None:
        self._recovering[connection, channel] = (since, [])
        self._guard(channel)

    def release(
        self, connection: Connection, channel: str
    ) -> tuple[Position, list[tuple[Position, str]]] | None:
        """The recovery's ``since`` and the deliveries held; None if none was under way."""
        waiting = self._recovering.pop((connection, channel), None)
        if waiting is not None:
            self._unguard(channel)
        return waiting

    def sent(self, connection: Connection, channel: str, until: Position) -> None:
        """The recovery sent up to ``until``: drop deliveries up to it."""
        self._sent_until[connection, channel] = until
        self._guard(channel)

    def admit(
        self, connection: Connection, channel: str, position: Position, element: str
    ) -> bool | None:
        """A delivery at ``position``: True to send now, None if held, False if the
        recovery sent it already."""
        waiting = self._recovering.get((connection, channel))
        if waiting is not None:
            waiting[1].append((position, element))
            return None
        return self.fresh(connection, channel, position)

    def fresh(self, connection: Connection, channel: str, position: Position) -> bool:
        """Whether the delivery at ``position`` comes after what the recovery of
        ``connection`` sent (so always when none did)."""
        key = (connection, channel)
        until = self._sent_until.get(key)
        if until is None or position[0] != until[0]:
            return True
        if position[1] <= until[1]:
            return False
        # Deliveries are past what the read saw: nothing more to drop.
        del self._sent_until[key]
        self._unguard(channel)
        return True

    def forget(self, connection: Connection, channel: str) -> None:
        """``connection`` left ``channel``: nothing is held for it there."""
        key = (connection, channel)
        self._waiting.pop(key, None)
        self._told_until.pop(key, None)
        self._alone.pop(key, None)
        if self._recovering.pop(key, None) is not None:
            self._unguard(channel)
        if self._sent_until.pop(key, None) is not None:
            self._unguard(channel)

    def _guard(self, channel: str) -> None:
        self._guarded[channel] = self._guarded.get(channel, 0) + 1

    def _unguard(self, channel: str) -> None:
        left = self._guarded.pop(channel) - 1
        if left:
            self._guarded[channel] = left
