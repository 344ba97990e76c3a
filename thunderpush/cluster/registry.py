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

A node has one registry per Redis it has (``thunderpush.cluster.shards``),
each with the changes, welcomes and recoveries of that shard's names: a
turn's writes are one pipeline per shard, and a shard that is down keeps
none of the others from being written.

Each record is written twice in the same pipeline: under its name's tag
(``thunderpush.cluster.keys``: the name's count per node, its members), which
a publish, a member list or a presence change reads in one script on one
slot; and under this node's own keys (its channels, users and memberships per
app) on the same shard, which the reads that span names (over every shard),
this node's rewrite after an outage of that shard and the forgetting of this
node there read.

The counts of an app with a webhook, and every user's, are written by a
script (``COUNT``) that answers the cluster-wide transition it makes (a
channel or user held by no node, then by one; or the reverse) to the one node
whose write made it, which records the event; so are the channels and users
that a node forgotten or leaving was the last to hold
(``thunderpush.cluster.departures``).  A user's transition is also told on its
watch route, to the nodes where a connection watches it; what a write tells
and reads for subscription counts and watchlists is ``thunderpush.cluster.telling``.

A member's record (``MEMBER``: its presence announcements, a Pusher member's
``user_info``) and a welcome's member list are written and read as
``thunderpush.cluster.members`` says.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from thunderpush.cluster import keys, members, scripts, telling
from thunderpush.cluster.history import stream_of
from thunderpush.core.hub import Connection
from thunderpush.core.listener import CHANNEL_OCCUPIED, CHANNEL_VACATED, USER_OFFLINE, USER_ONLINE
from thunderpush.core.protocol import is_presence_channel

if TYPE_CHECKING:
    from thunderpush.cluster.connection import Pipeline
    from thunderpush.cluster.hub import HubReporter
    from thunderpush.cluster.link import Link
    from thunderpush.cluster.node import Node


class Registry:
    """What the node's hubs changed since the last write in the names of shard
    ``index`` (of ``node.links``), and the writer of those on that shard."""

    def __init__(self, node: Node, index: int) -> None:
        self.node = node
        self.index = index
        self.link = node.links[index]
        # Dicts as ordered sets: changes are written in the order they came.
        self._users: dict[tuple[HubReporter, str], None] = {}
        # (hub, channel, user) -> whether a change in a presence channel is announced.
        self._members: members.Changed = {}
        # The members whose record in Redis has a ``user_info``, to delete with it.
        self._informed: members.Informed = {}
        # Presence-channel members that changed while Redis was away.
        self._offline: dict[tuple[HubReporter, str, str], None] = {}
        self._welcomes: members.Welcomes = []
        # (hub, connection, channel, the keep's ttl, the offset to read after).
        self._recoveries: list[tuple[HubReporter, Connection, str, float, int]] = []
        # The channels whose cluster-wide subscription count to tell (``TELL_COUNT``).
        self._counted: telling.Counted = {}
        # The watchlists whose users' states to read (``thunderpush.cluster.telling``).
        self._watches: telling.Asked = []
        self._wanted = asyncio.Event()

    # -- what the hubs report (never waits) --------------------------------

    def user_changed(self, hub: HubReporter, userid: str) -> None:
        if self.link.up:
            self._users[hub, userid] = None
            self._wanted.set()

    def member_changed(self, hub: HubReporter, channel: str, userid: str) -> None:
        if self.link.up:
            self._members[hub, channel, userid] = True
            self._wanted.set()
        elif is_presence_channel(channel):
            self._offline[hub, channel, userid] = None

    def counted(self, hub: HubReporter, channel: str) -> None:
        """Tells ``channel``'s cluster-wide subscription count after this turn's writes."""
        if self.link.up:
            self._counted[hub, channel] = None
            self._wanted.set()

    def watch(self, hub: HubReporter, connection: Connection, users: list[str]) -> bool:
        """Reads whether ``users`` (of this shard) are online, for ``connection``'s
        watchlist; False if it cannot."""
        if not self.link.up:
            return False
        self._watches.append((hub, connection, users))
        self._wanted.set()
        return True

    def welcome(self, hub: HubReporter, connection: Connection, channel: str) -> bool:
        """Asks Redis for ``channel``'s members for ``connection``; False if it cannot."""
        if not self.link.up:
            return False
        self._welcomes.append((hub, connection, channel))
        self._wanted.set()
        return True

    def recover(
        self, hub: HubReporter, connection: Connection, channel: str, ttl: float, since: int
    ) -> bool:
        """Reads ``channel``'s stream after ``since`` for ``connection`` (messages kept
        for less than ``ttl`` seconds); False if it cannot."""
        if not self.link.up:
            return False
        self._recoveries.append((hub, connection, channel, ttl, since))
        self._wanted.set()
        return True

    # -- writing ------------------------------------------------------------

    async def resync(self, hubs: list[HubReporter], forgotten: bool) -> None:
        """Rewrites every record of this node on the shard: what Redis has for it
        there, and what its hubs hold of the shard's names; announces everything
        if the shard had ``forgotten`` this node."""
        offline, self._offline = self._offline, {}
        changed = self._members
        held = await read_records(self.link, self.node.id, [hub.key for hub in hubs])
        holds = self.node.holds
        for hub, (channels, users, memberships) in zip(hubs, held, strict=True):
            app, index = hub.key, self.index
            local = [user for user in hub.local.user_ids() if holds(index, app, "u", user)]
            for user in [*users, *local]:
                self._users[hub, user] = None
            marked = [(channel, "") for channel in channels]
            marked += [(channel, user) for user, channel in memberships]
            marked += [
                (channel, user)
                for channel, user in hub.local.subscriptions()
                if holds(index, app, "c", channel)
            ]
            for channel, user in marked:
                key = (hub, channel, user)
                changed[key] = changed.get(key, False) or forgotten or key in offline
            listed = partial(holds, index, app, "c")
            for connection, channel in hub.local.rejoined(listed):
                hub.local.welcome(connection, channel)
        # The infos of the records Redis forgot, and whose members are gone, are no more.
        self._informed = {key: None for key in self._informed if key in changed}
        await self.write()

    async def write_forever(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self.write()

    async def write(self) -> None:
        """Writes what changed, then answers the welcomes, then the recoveries."""
        users, changed, welcomes = self._users, self._members, self._welcomes
        recoveries, counted, watches = self._recoveries, self._counted, self._watches
        self._users, self._members, self._welcomes, self._recoveries = {}, {}, [], []
        self._counted, self._watches = {}, []
        if not (users or changed or welcomes or recoveries or counted or watches):
            return
        try:
            # Counts only of confirmed routes; a welcome and a recovery read after
            # their route is, so that what follows the read reaches them.
            await self.link.confirm()
            answers = await self._send(users, changed, welcomes, recoveries, counted, watches)
        except BaseException:
            # Left for ``clear``, which the failure leads to.
            for key, loud in changed.items():
                self._members[key] = self._members.get(key, False) or loud
            self._welcomes[:0] = welcomes
            self._recoveries[:0] = recoveries
            self._watches[:0] = watches
            raise
        members.answer_welcomes(welcomes, answers[: len(welcomes)])
        streams = answers[len(welcomes) : len(welcomes) + len(recoveries)]
        for (hub, connection, channel, *_), read in zip(recoveries, streams, strict=True):
            hub.local.recovered(connection, channel, stream_of(read))
        telling.answer_watches(watches, answers[len(welcomes) + len(recoveries) :])

    async def _send(
        self,
        users: dict[tuple[HubReporter, str], None],
        changed: members.Changed,
        welcomes: members.Welcomes,
        recoveries: list[tuple[HubReporter, Connection, str, float, int]],
        counted: telling.Counted,
        watches: telling.Asked,
    ) -> list:
        """One pipeline: the counts, the member records, the subscription counts to
        tell, then the reads; answers the reads'."""
        node, link = self.node, self.link
        pipe = link.pipeline()
        watched = self._write_counts(pipe, users, changed)
        written = members.queue_members(link, pipe, node.id, changed, self._informed)
        told = len(pipe)
        telling.queue_counts(link, pipe, counted)
        reads = len(pipe)
        members.queue_welcomes(link, pipe, welcomes)
        for hub, _, channel, ttl, since in recoveries:
            tag = keys.tag(hub.key, "c", channel)
            stream = (keys.key(tag, keys.KEPT), keys.key(tag, keys.STREAM))
            link.queue(pipe, scripts.HISTORY, stream, ttl, since)
        telling.queue_watches(link, pipe, watches)
        results = await link.execute(pipe)
        for index, hub, kind, name in watched:
            tell = hub.on_transition
            if results[index] and tell is not None:  # None: the webhook was removed meanwhile
                came, went = _EVENTS[kind]
                tell(came if results[index] > 0 else went, name)
        members.answer_members(written, results, self._informed)
        telling.counted(counted, results[told:reads])
        return results[reads:]

    def _write_counts(
        self,
        pipe: Pipeline,
        users: dict[tuple[HubReporter, str], None],
        changed: members.Changed,
    ) -> list[tuple[int, HubReporter, str, str]]:
        """Queues the node's count of each changed user and channel, under the name's
        tag and under the node's own keys.

        A user's count, and the counts of an app with a webhook, are written
        with ``COUNT``, whose answers for the webhooks (where they are in
        ``pipe``, and about what) are returned; it tells a user's first
        connection in the cluster and its last on the user's watch route.  The
        channels of an app without a webhook pay no more than an HSET or HDEL.
        """
        node, link = self.node, self.link
        counts: dict[tuple[HubReporter, str, str], int] = {}
        for hub, user in users:
            counts[hub, "u", user] = hub.local.user_connection_count(user)
        for hub, channel, _ in changed:
            counts[hub, "c", channel] = hub.local.channel_connection_count(channel)
        watched = []
        for (hub, kind, name), count in counts.items():
            tag = keys.tag(hub.key, kind, name)
            counted = keys.key(tag, keys.COUNTS)
            if hub.on_transition is not None:
                watched.append((len(pipe), hub, kind, name))
            if kind == "u":  # its transitions are told to its watchers
                link.queue(
                    pipe, scripts.COUNT, (counted,), node.id, count, keys.watch_route(tag), name
                )
            elif hub.on_transition is not None:
                link.queue(pipe, scripts.COUNT, (counted,), node.id, count)
            else:
                _set(pipe, counted, node.id, count)
            _set(pipe, keys.node_key(node.id, hub.key, _OWN[kind]), name, count)
        return watched

    def clear(self) -> None:
        """The shard is gone: drop what was not written (``resync`` rewrites it all), and
        answer the waiting welcomes with what this node knows and the waiting
        recoveries that they failed."""
        for (hub, channel, user), loud in self._members.items():
            if loud and is_presence_channel(channel):
                self._offline[hub, channel, user] = None  # never announced: announce on return
        self._users, self._members, self._counted = {}, {}, {}
        welcomes, self._welcomes = self._welcomes, []
        for hub, connection, channel in welcomes:
            hub.local.welcome_alone(connection, channel)
        recoveries, self._recoveries = self._recoveries, []
        for hub, connection, channel, *_ in recoveries:
            hub.local.recovered(connection, channel, None)
        watches, self._watches = self._watches, []
        telling.answer_alone(watches)


async def read_records(
    link: Link, node: str, apps: list[str]
) -> list[tuple[list[str], list[str], list[tuple[str, str]]]]:
    """What Redis holds under ``node``'s own keys in each of ``apps``: its channels,
    its users, and its memberships as (user, channel), in one pipeline."""
    pipe = link.pipeline()
    for app in apps:
        pipe.command(b"HKEYS", keys.node_key(node, app, keys.CHANNELS))
        pipe.command(b"HKEYS", keys.node_key(node, app, keys.USERS))
        pipe.command(b"ZRANGE", keys.node_key(node, app, keys.MEMBERSHIPS), 0, -1)
    answers = await link.execute(pipe)
    out = []
    for index in range(0, len(answers), 3):
        channels, users, memberships = answers[index : index + 3]
        pairs = [entry.partition(b"\0")[::2] for entry in memberships]
        out.append(
            (
                [keys.text(channel) for channel in channels],
                [keys.text(user) for user in users],
                [(keys.text(user), keys.text(channel)) for user, channel in pairs],
            )
        )
    return out


# The webhook events of a user ("u") and of a channel ("c"): came to some node, went from all.
_EVENTS = {"u": (USER_ONLINE, USER_OFFLINE), "c": (CHANNEL_OCCUPIED, CHANNEL_VACATED)}
# The node's own key of each kind of name.
_OWN = {"u": keys.USERS, "c": keys.CHANNELS}


def _set(pipe: Pipeline, key: bytes, field: str, count: int) -> None:
    if count:
        pipe.command(b"HSET", key, field, count)
    else:
        pipe.command(b"HDEL", key, field)
