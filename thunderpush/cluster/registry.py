"""This node's presence in Redis: its users and subscriptions, written once per loop turn.

Hubs only say *what* changed (a user, a user in a channel), through their
listener (``thunderpush.cluster.hub.HubReporter``); the writer reads the
hub's state (its read-only methods) when it writes, so each write is the
current truth however many changes it sums up, and rewriting everything after
Redis was away is the same operation over every record.  Example of a turn:
three subscriptions and a welcome become one pipeline, the welcome's member
list read after the writes, so a new member sees itself.  A recovery's read of
a channel's stream comes last in the turn, so a presence channel's member list
is told before the missed messages.

Rewriting after an outage announces in presence channels only what changed
while Redis was away (the others were told of the rest before), unless the
cluster had forgotten this node, which it announced: then everything again.
Connections told a member list while Redis was away (this node's members
only) are told the cluster's list once it is back.

A Pusher member's ``user_info`` in a presence channel is written beside its
record (a Thunderpush member has none, and costs nothing more), announced
with its arrival, and read with the member list for a Pusher connection's
welcome.

The counts of an app with a webhook are written by a script that answers the
cluster-wide transitions they make (a channel or user held by no node, then
by one; or the reverse), each to the one node whose write made it, which
records the event; so are the channels and users that a node forgotten or
leaving was the last to hold.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from thunderpush.cluster import scripts
from thunderpush.cluster.history import stream_of
from thunderpush.core.hub import Connection, dialect_of
from thunderpush.core.protocol import is_presence_channel
from thunderpush.webhooks.events import (
    CHANNEL_OCCUPIED,
    CHANNEL_VACATED,
    USER_OFFLINE,
    USER_ONLINE,
)

if TYPE_CHECKING:
    from thunderpush.cluster.connection import Connection as Redis
    from thunderpush.cluster.hub import HubReporter
    from thunderpush.cluster.node import Node


class Registry:
    """What the node's hubs changed since the last write, and the writer."""

    def __init__(self, node: Node) -> None:
        self.node = node
        # Dicts as ordered sets: changes are written in the order they came.
        self._users: dict[tuple[HubReporter, str], None] = {}
        # (hub, channel, user) -> whether a change in a presence channel is announced.
        self._members: dict[tuple[HubReporter, str, str], bool] = {}
        # The members whose record in Redis has a ``user_info``, to delete with it.
        self._informed: dict[tuple[HubReporter, str, str], None] = {}
        # Presence-channel members that changed while Redis was away.
        self._offline: dict[tuple[HubReporter, str, str], None] = {}
        self._welcomes: list[tuple[HubReporter, Connection, str]] = []
        # (hub, connection, channel, the keep's ttl, the offset to read after).
        self._recoveries: list[tuple[HubReporter, Connection, str, float, int]] = []
        self._wanted = asyncio.Event()

    # -- what the hubs report (never waits) --------------------------------

    def user_changed(self, hub: HubReporter, userid: str) -> None:
        if self.node.up:
            self._users[hub, userid] = None
            self._wanted.set()

    def member_changed(self, hub: HubReporter, channel: str, userid: str) -> None:
        if self.node.up:
            self._members[hub, channel, userid] = True
            self._wanted.set()
        elif is_presence_channel(channel):
            self._offline[hub, channel, userid] = None

    def welcome(self, hub: HubReporter, connection: Connection, channel: str) -> bool:
        """Asks Redis for ``channel``'s members for ``connection``; False if it cannot."""
        if not self.node.up:
            return False
        self._welcomes.append((hub, connection, channel))
        self._wanted.set()
        return True

    def recover(
        self, hub: HubReporter, connection: Connection, channel: str, ttl: float, since: int
    ) -> bool:
        """Reads ``channel``'s stream after ``since`` for ``connection`` (messages kept
        for less than ``ttl`` seconds); False if it cannot."""
        if not self.node.up:
            return False
        self._recoveries.append((hub, connection, channel, ttl, since))
        self._wanted.set()
        return True

    # -- writing ------------------------------------------------------------

    async def resync(self, client: Redis, hubs: list[HubReporter], forgotten: bool) -> None:
        """Rewrites every record of this node: what Redis has for it, and what its hubs
        hold; announces everything if the cluster had ``forgotten`` this node."""
        offline, self._offline = self._offline, {}
        members = self._members
        for hub in hubs:
            users, channels, pairs = await self.node.script(
                client, scripts.RECORDS, hub.key, self.node.id
            )
            for user in [*users, *hub.local.user_ids()]:
                self._users[hub, _text(user)] = None
            marked = [(_text(channel), "") for channel in channels]
            marked += [(_text(c), _text(u)) for c, u in zip(pairs[::2], pairs[1::2], strict=True)]
            marked += hub.local.subscriptions()
            for channel, user in marked:
                key = (hub, channel, user)
                members[key] = members.get(key, False) or forgotten or key in offline
            for connection, channel in hub.local.rejoined():
                hub.local.welcome(connection, channel)
        # The infos of the records Redis forgot, and whose members are gone, are no more.
        self._informed = {key: None for key in self._informed if key in members}
        await self.write(client)

    async def write_forever(self, client: Redis) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self.write(client)

    async def write(self, client: Redis) -> None:
        """Writes what changed, then answers the welcomes, then the recoveries."""
        users, members, welcomes = self._users, self._members, self._welcomes
        recoveries = self._recoveries
        self._users, self._members, self._welcomes, self._recoveries = {}, {}, [], []
        if not (users or members or welcomes or recoveries):
            return
        try:
            # Counts only of confirmed routes; a recovery reads after its route is.
            await self.node.confirm()
            answers = await self._send(client, users, members, welcomes, recoveries)
        except BaseException:
            # Left for ``clear``, which the failure leads to.
            for key, loud in members.items():
                self._members[key] = self._members.get(key, False) or loud
            self._welcomes[:0] = welcomes
            self._recoveries[:0] = recoveries
            raise
        lists = answers[: len(welcomes)]
        for (hub, connection, channel), (seq, *names) in zip(welcomes, lists, strict=True):
            infos = dialect_of(connection).member_infos
            hub.local.welcomed(connection, channel, _members(names, infos), seq)
        streams = answers[len(welcomes) :]
        for (hub, connection, channel, *_), read in zip(recoveries, streams, strict=True):
            hub.local.recovered(connection, channel, stream_of(read))

    async def _send(
        self,
        client: Redis,
        users: dict[tuple[HubReporter, str], None],
        members: dict[tuple[HubReporter, str, str], bool],
        welcomes: list[tuple[HubReporter, Connection, str]],
        recoveries: list[tuple[HubReporter, Connection, str, float, int]],
    ) -> list:
        node = self.node
        pipe = client.pipeline(transaction=False)
        watched = self._write_counts(pipe, users, members)
        score = str(int(time.time() * 1000))
        # The members written with a user_info (True) or whose info is deleted (False).
        informed: list[tuple[tuple[HubReporter, str, str], bool]] = []
        # The presence members whose arrival was written, to hear if Redis refused them.
        arrivals: list[tuple[int, HubReporter, str, str]] = []
        for key, loud in members.items():
            hub, channel, user = key
            if user:  # "" only marks a channel whose count to rewrite
                if hub.local.has_member(channel, user):
                    here, info = score, hub.local.member_info(channel, user)
                    info = "" if info is None else json.dumps(info)
                else:
                    here, info = "", "-" if key in self._informed else ""
                if info:
                    informed.append((key, bool(here)))
                if here and is_presence_channel(channel) and hub.max_members:
                    arrivals.append((len(pipe), hub, channel, user))
                loud_flag = "1" if loud else ""
                args = (node.ttl, hub.key, node.id, channel, user, here, loud_flag, info)
                node.queue_script(pipe, scripts.MEMBER, *args, hub.max_members)
        for hub, connection, channel in welcomes:
            infos = "1" if dialect_of(connection).member_infos else ""
            node.queue_script(pipe, scripts.CHANNEL_USERS, node.ttl, hub.key, channel, infos)
        for hub, _, channel, ttl, since in recoveries:
            node.queue_script(pipe, scripts.HISTORY, hub.key, channel, ttl, since)
        results = await pipe.execute()
        for key, kept in informed:
            if kept:
                self._informed[key] = None
            else:
                self._informed.pop(key, None)
        _announce(watched, results[: len(watched)])
        for index, hub, channel, user in arrivals:
            if results[index] == -1:
                hub.local.refused(channel, user)
        return results[len(results) - len(welcomes) - len(recoveries) :]

    def _write_counts(
        self,
        pipe: object,
        users: dict[tuple[HubReporter, str], None],
        members: dict[tuple[HubReporter, str, str], bool],
    ) -> list[tuple[HubReporter, str, list[str]]]:
        """Queues the node's count of each changed user ("u") and channel ("c").

        An app with a webhook writes its counts with ``COUNTS``, queued first so
        that their answers come first; returned are what those answers are about.
        The other apps pay no more than an HSET or HDEL.
        """
        node = self.node
        counts: dict[tuple[HubReporter, str], dict[str, int]] = {}
        for hub, user in users:
            counts.setdefault((hub, "u"), {})[user] = hub.local.user_connection_count(user)
        for hub, channel, _ in members:
            counts.setdefault((hub, "c"), {})[channel] = hub.local.channel_connection_count(channel)
        watched = []
        for (hub, field), names in counts.items():
            if hub.on_transition is not None:
                pairs = [part for name, count in names.items() for part in (name, count)]
                node.queue_script(pipe, scripts.COUNTS, hub.key, node.id, field, *pairs)
                watched.append((hub, field, list(names)))
        for (hub, field), names in counts.items():
            if hub.on_transition is None:
                key = (scripts.user_key if field == "u" else scripts.channel_count_key)(
                    hub.key, node.id
                )
                for name, count in names.items():
                    _set(pipe, key, name, count)
        return watched

    def vacated(self, answer: list) -> None:
        """Redis forgot a node (``BEAT``, ``GOODBYE``): the events of the channels and
        users that no node holds any more, as (app, channels, users)."""
        for key, channels, users in answer:
            hub = self.node.hubs.get(_text(key))
            tell = hub.on_transition if hub is not None else None
            if tell is not None:
                for channel in channels:
                    tell(CHANNEL_VACATED, _text(channel))
                for user in users:
                    tell(USER_OFFLINE, _text(user))

    def clear(self) -> None:
        """Redis is gone: drop what was not written (``resync`` rewrites it all), and
        answer the waiting welcomes with what this node knows and the waiting
        recoveries that they failed."""
        for (hub, channel, user), loud in self._members.items():
            if loud and is_presence_channel(channel):
                self._offline[hub, channel, user] = None  # never announced: announce on return
        self._users, self._members = {}, {}
        welcomes, self._welcomes = self._welcomes, []
        for hub, connection, channel in welcomes:
            hub.local.welcome_alone(connection, channel)
        recoveries, self._recoveries = self._recoveries, []
        for hub, connection, channel, *_ in recoveries:
            hub.local.recovered(connection, channel, None)


# The events of a count hash's field that came to some node, and went from all.
_EVENTS = {"u": (USER_ONLINE, USER_OFFLINE), "c": (CHANNEL_OCCUPIED, CHANNEL_VACATED)}


def _announce(watched: list[tuple[HubReporter, str, list[str]]], answers: list) -> None:
    """Records the transitions ``COUNTS`` answered (1: came, -1: went, 0: neither)."""
    for (hub, field, names), changes in zip(watched, answers, strict=True):
        tell = hub.on_transition
        if tell is None:  # the webhook was removed meanwhile
            continue
        came, went = _EVENTS[field]
        for name, change in zip(names, changes, strict=True):
            if change:
                tell(came if change > 0 else went, name)


def _members(listed: list, infos: bool) -> list[tuple[str, Any]]:
    """``CHANNEL_USERS``' users as (user id, ``user_info``); with ``infos``, each
    user is followed by its info in the list."""
    if not infos:
        return [(_text(user), None) for user in listed]
    return [
        (_text(user), None if info is None else json.loads(info))
        for user, info in zip(listed[::2], listed[1::2], strict=True)
    ]


def _set(pipe: object, key: str, field: str, count: int) -> None:
    if count:
        pipe.hset(key, field, count)
    else:
        pipe.hdel(key, field)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
