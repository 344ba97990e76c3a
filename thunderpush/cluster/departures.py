"""Nodes leaving the cluster: a dead one forgotten, and this one saying goodbye.

A node that dies keeps its records in Redis until a live node forgets them.
All of this happens on each shard apart (``thunderpush.cluster.shards``):
a node beats on every shard, and its records of a name are on the name's
shard, so forgetting it on one shard needs nothing of another.  Every
heartbeat answers the nodes not heard from within the presence TTL
(``BEAT``); for each, a node claims the forgetting (``SET tp:{N:<node>}:forgetting
1 NX EX 30``), so one node does it:

1. it reads the dead node's own keys (its channels, users and memberships in
   each app, ``thunderpush.cluster.keys``), in one pipeline;
2. it forgets the dead node in each of those names (``FORGET``, one script per
   name, on that name's keys only), in one pipeline: presence channels announce
   the users no live node has any more, and each answers whether no node
   holds the name any more, which becomes a webhook event (``channel_vacated``,
   ``user_offline``) told by this node alone, and the users it announced gone
   (``member_removed``, told by this node alone too);
3. it takes the node out of the cluster's list, marked forgotten for a day
   (``DROP``: a node only cut off learns it was forgotten, and rewrites its
   records), then deletes the node's own keys (its counters among them) and
   the claim.

A claimer that dies midway leaves its claim to expire: another node, at its
next heartbeat, does it all again, which finds done what was done (no event
is told twice: a name's ``FORGET`` answers a vacancy only where it removed the
node's record).  A node that stops says goodbye the same way, for itself,
without the claim or the mark.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from thunderpush.cluster import keys, scripts
from thunderpush.cluster.registry import read_records
from thunderpush.core.listener import CHANNEL_VACATED, MEMBER_REMOVED, USER_OFFLINE
from thunderpush.core.protocol import is_presence_channel

if TYPE_CHECKING:
    from thunderpush.cluster.hub import HubReporter
    from thunderpush.cluster.link import Link
    from thunderpush.cluster.node import Node

logger = logging.getLogger(__name__)

# Seconds a claim to forget a node lasts: a claimer that died meanwhile has
# left the rest to whoever claims it next.
CLAIM = 30

_PARTS = (keys.CHANNELS, keys.USERS, keys.MEMBERSHIPS)


async def forget(node: Node, link: Link, dead: str) -> None:
    """Forgets the records of the ``dead`` node on ``link``'s shard, unless another
    node claimed it there."""
    pipe = link.pipeline()
    pipe.command(b"SET", keys.forgetting(dead), 1, b"NX", b"EX", CLAIM)
    (claimed,) = await link.execute(pipe)
    if claimed is None:
        return
    await _remove(node, link, dead, died=True)
    logger.info("Forgot node %s: no heartbeat for %g s.", dead, node.ttl)


async def goodbye(node: Node, link: Link) -> None:
    """This node leaves ``link``'s shard: its records there are removed, and its
    departures announced."""
    await _remove(node, link, node.id, died=False)


async def _remove(node: Node, link: Link, gone: str, died: bool) -> None:
    hubs = list(node.hubs.values())
    records = await read_records(link, gone, [hub.key for hub in hubs])
    live = [other for other in link.nodes if other != gone]
    pipe = link.pipeline()
    # What each FORGET answers about: (hub, its event if vacated, the name).
    about: list[tuple[HubReporter, str, str]] = []
    for hub, (channels, users, memberships) in zip(hubs, records, strict=True):
        members: dict[str, list[str]] = {channel: [] for channel in channels}
        for user, channel in memberships:
            members.setdefault(channel, []).append(user)
        for channel, held in members.items():
            tag = keys.tag(hub.key, "c", channel)
            names = [keys.key(tag, part) for part in (keys.COUNTS, keys.MEMBERS, keys.INFOS)]
            names.append(keys.key(tag, keys.SEQ))
            route = keys.route_of(tag)
            link.queue(pipe, scripts.FORGET, names, gone, route, channel, len(live), *live, *held)
            about.append((hub, CHANNEL_VACATED, channel))
        for user in users:
            tag = keys.tag(hub.key, "u", user)
            watchers = keys.watch_route(tag)
            link.queue(pipe, scripts.FORGET, (keys.key(tag, keys.COUNTS),), gone, watchers, user)
            about.append((hub, USER_OFFLINE, user))
    vacated = await link.execute(pipe)

    # Out of the list first: once its keys and the claim are gone, nobody finds it dead.
    pipe = link.pipeline()
    mark = "1" if died else ""
    link.queue(pipe, scripts.DROP, (keys.NODES, keys.GONE), gone, keys.NODES_ROUTE, mark)
    owned = [keys.node_key(gone, hub.key, part) for hub in hubs for part in _PARTS]
    owned += [keys.counters(gone), *([keys.forgetting(gone)] if died else [])]
    pipe.command(b"DEL", *owned)
    await link.execute(pipe)

    for (hub, event, name), (gone_from_all, *members) in zip(about, vacated, strict=True):
        tell = hub.on_transition
        if tell is not None:
            if gone_from_all:
                tell(event, name)
            for member in members:
                tell(MEMBER_REMOVED, name, {"user_id": keys.text(member)})
        counts = hub.local.counts
        if died and counts is not None and event == CHANNEL_VACATED:
            if not is_presence_channel(name):
                counts.changed(name)  # the dead node's connections are out of the count
