"""What a registry's write tells and reads for subscription counts and watchlists.

Subscription counts (``--subscription-count``, ``thunderpush.core.counts``): a
channel whose count changed on this node is told with ``TELL_COUNT`` after the
turn's writes of the counts, so the node's own is in the sum: Redis tells the
cluster's count on the channel's route, at most once a second whichever node
asks (its clock keeps the second), and answers the one node that told it,
which tells the webhooks; a node told to wait asks again once the second is over.

Watchlists: a connection that starts watching users (``thunderpush.core.watchlist``) on a
cluster node is first told which of them are online anywhere: its hub's
listener (``thunderpush.cluster.hub.HubReporter``) subscribes the watch route
of each user nobody on the node watched yet (``Node.route_opened``), then asks
the registry of each user's shard to read the user's counts; the registry
reads them in its next write, after Redis confirmed the routes, so a
transition after the read reaches the node and one before it is in the read.
A user is online if a live node counts a connection of it.  What a watch
route tells meanwhile is held by the watchlist until every shard answered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thunderpush.cluster import keys, scripts
from thunderpush.core.counts import INTERVAL
from thunderpush.core.listener import SUBSCRIPTION_COUNT

if TYPE_CHECKING:
    from thunderpush.cluster.connection import Pipeline
    from thunderpush.cluster.hub import HubReporter
    from thunderpush.cluster.link import Link

# (hub, the watching connection, the users of this shard it watches).
Asked = list[tuple["HubReporter", Any, list[str]]]
# The channels whose count to tell, each with its hub.
Counted = dict[tuple["HubReporter", str], None]


def queue_counts(link: Link, pipe: Pipeline, counted: Counted) -> None:
    """Queues ``TELL_COUNT`` for each channel of ``counted``, on the live nodes' counts."""
    for hub, channel in counted:
        tag = keys.tag(hub.key, "c", channel)
        names = (keys.key(tag, keys.COUNTS), keys.key(tag, keys.TOLD))
        args = (round(INTERVAL * 1000), channel, keys.route_of(tag), *link.nodes)
        link.queue(pipe, scripts.TELL_COUNT, names, *args)


def counted(counted: Counted, answers: list) -> None:
    """What ``TELL_COUNT`` answered of each channel: told (this node tells the
    webhooks), told already, or to ask again once the interval is over."""
    for (hub, channel), (outcome, count) in zip(counted, answers, strict=True):
        if outcome == 1:
            tell = hub.on_transition
            if tell is not None:
                tell(SUBSCRIPTION_COUNT, channel, {"subscription_count": count})
        elif outcome == 2 and hub.local.counts is not None:
            hub.local.counts.again(channel)


def queue_watches(link: Link, pipe: Pipeline, asked: Asked) -> None:
    """Queues the reads of ``asked``'s users (one HMGET of each user's counts on the
    live nodes)."""
    for hub, _, users in asked:
        for user in users:
            counts = keys.key(keys.tag(hub.key, "u", user), keys.COUNTS)
            pipe.command(b"HMGET", counts, *link.nodes)


def answer_watches(asked: Asked, answers: list) -> None:
    """Tells each watchlist of ``asked`` who of its users the reads found online."""
    at = 0
    for hub, connection, users in asked:
        read = answers[at : at + len(users)]
        at += len(users)
        online = [user for user, counts in zip(users, read, strict=True) if any(counts)]
        hub.local.watchlist.answered(connection, online)


def answer_alone(asked: Asked) -> None:
    """Redis is away: each watchlist of ``asked`` is told who is online on this node."""
    for hub, connection, users in asked:
        local = hub.local
        local.watchlist.answered(connection, [user for user in users if local.is_online(user)])
