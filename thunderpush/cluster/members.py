"""What a registry's write writes and reads of channel members (``thunderpush.cluster.registry``).

Each changed member of a channel (a user in it, or no more) is written by
``MEMBER`` under the channel's tag (its members, their infos, its presence
event counter) and under this node's own memberships.  In a presence channel
its arrival or departure is announced to every node, and answered as
announced to the one node whose write announced it, which records the
webhooks' ``member_added`` or ``member_removed``; an arrival past the app's
``max_presence_members`` is refused by Redis, and the hub is told.

A Pusher member's ``user_info`` in a presence channel is written beside its
record (a Thunderpush member has none, and costs nothing more), announced
with its arrival, and read with the member list for a Pusher connection's
welcome (``CHANNEL_USERS``); the registry keeps which records have one
(``Informed``), to delete it with them.

Apart from the registry, which decides what is written when and keeps what
waits, as ``thunderpush.cluster.telling`` is for counts and watchlists: here
is what one member's record is in Redis and what its answers mean.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from thunderpush.cluster import keys, scripts
from thunderpush.core.dialect import dialect_of
from thunderpush.core.hub import Connection
from thunderpush.core.listener import MEMBER_ADDED, MEMBER_REMOVED
from thunderpush.core.protocol import is_presence_channel

if TYPE_CHECKING:
    from thunderpush.cluster.connection import Pipeline
    from thunderpush.cluster.hub import HubReporter
    from thunderpush.cluster.link import Link

# (hub, channel, user): one member of a channel ("" only marks a channel whose
# count to rewrite).
Member = tuple["HubReporter", str, str]
# The members that changed -> whether a change in a presence channel is announced.
Changed = dict[Member, bool]
# The members whose record in Redis has a ``user_info``.
Informed = dict[Member, None]
# (hub, connection, channel): the welcomes whose member list to read.
Welcomes = list[tuple["HubReporter", Connection, str]]

# ``MEMBER``'s answer when its change was announced: the webhooks' member event.
ANNOUNCED = 2


@dataclass
class Written:
    """Where a turn's member writes stand in its pipeline, to read their answers."""

    # The members written with a user_info (True) or whose info is deleted (False).
    informed: list[tuple[Member, bool]] = field(default_factory=list)
    # The presence members whose arrival was written, to hear if Redis refused them.
    arrivals: list[tuple[int, HubReporter, str, str]] = field(default_factory=list)
    # The presence members whose change may be announced, for the webhooks.
    announced: list[tuple[int, HubReporter, str, str, bool]] = field(default_factory=list)


def queue_members(
    link: Link, pipe: Pipeline, node: str, members: Changed, informed: Informed
) -> Written:
    """Queues ``MEMBER`` for each changed member of ``members``, and its entry in
    ``node``'s own memberships; returns where their answers will be."""
    score = str(int(time.time() * 1000))
    written = Written()
    for key, loud in members.items():
        hub, channel, user = key
        if not user:  # "" only marks a channel whose count to rewrite
            continue
        if hub.local.has_member(channel, user):
            here, info = score, hub.local.member_info(channel, user)
            info = "" if info is None else json.dumps(info)
        else:
            here, info = "", "-" if key in informed else ""
        if info:
            written.informed.append((key, bool(here)))
        if is_presence_channel(channel):
            if here and hub.max_members:
                written.arrivals.append((len(pipe), hub, channel, user))
            if loud and hub.on_transition is not None:
                written.announced.append((len(pipe), hub, channel, user, bool(here)))
        tag = keys.tag(hub.key, "c", channel)
        args = (node, user, here, "1" if loud else "", info, hub.max_members, channel)
        route = keys.route_of(tag)
        link.queue(pipe, scripts.MEMBER, _member_keys(tag), *args, route, *link.others)
        own = keys.node_key(node, hub.key, keys.MEMBERSHIPS)
        entry = keys.membership(user, channel)
        pipe.command(*((b"ZADD", own, 0, entry) if here else (b"ZREM", own, entry)))
    return written


def answer_members(written: Written, results: list, informed: Informed) -> None:
    """What the pipeline answered of the members ``written``: the records that
    have an info now, the refused arrivals, the announced changes."""
    for key, kept in written.informed:
        if kept:
            informed[key] = None
        else:
            informed.pop(key, None)
    for index, hub, channel, user in written.arrivals:
        if results[index] == -1:
            hub.local.refused(channel, user)
    for index, hub, channel, user, here in written.announced:
        tell = hub.on_transition
        if results[index] == ANNOUNCED and tell is not None:
            tell(MEMBER_ADDED if here else MEMBER_REMOVED, channel, {"user_id": user})


def queue_welcomes(link: Link, pipe: Pipeline, welcomes: Welcomes) -> None:
    """Queues the read of each welcome's member list (with their infos for a dialect
    that shows them)."""
    for hub, connection, channel in welcomes:
        infos = "1" if dialect_of(connection).member_infos else ""
        tag = keys.tag(hub.key, "c", channel)
        link.queue(pipe, scripts.CHANNEL_USERS, _member_keys(tag), infos, *link.nodes)


def answer_welcomes(welcomes: Welcomes, answers: list) -> None:
    """Welcomes each connection of ``welcomes`` with the member list read for it."""
    for (hub, connection, channel), (seq, *names) in zip(welcomes, answers, strict=True):
        infos = dialect_of(connection).member_infos
        hub.local.welcomed(connection, channel, _members(names, infos), seq)


def _member_keys(tag: bytes) -> tuple[bytes, bytes, bytes]:
    """A channel's members, their infos and its presence event counter."""
    return keys.key(tag, keys.MEMBERS), keys.key(tag, keys.INFOS), keys.key(tag, keys.SEQ)


def _members(listed: list, infos: bool) -> list[tuple[str, Any]]:
    """``CHANNEL_USERS``' users as (user id, ``user_info``); with ``infos``, each
    user is followed by its info in the list."""
    if not infos:
        return [(keys.text(user), None) for user in listed]
    return [
        (keys.text(user), None if info is None else json.loads(info))
        for user, info in zip(listed[::2], listed[1::2], strict=True)
    ]
