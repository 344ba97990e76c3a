"""The presence on Redis: who is online and where, across every live node.

Each node keeps its own records (``thunderpush.cluster.registry``).  A read
of one name is one command or script on that name's keys, on its shard,
counting the nodes this node knows alive there (``Link.nodes``).  A read
that spans names (how many users, the channels and their counts, a user's
channels) asks every shard, at once, which nodes it heard from within the
presence TTL, by its clock, then reads each of those nodes' own keys there
in one pipeline, and merges the shards' answers here: a node that died stops
counting as soon as its TTL is over, before any live node has forgotten it.
Such a read answers 503 while any shard is down: a total without one shard's
names would look right and be wrong.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from thunderpush.cluster import keys, scripts
from thunderpush.core.broker import BackendUnavailable
from thunderpush.core.presence import Presence

if TYPE_CHECKING:
    from thunderpush.cluster.link import Link
    from thunderpush.cluster.node import Node
    from thunderpush.core.apps import App


class RedisPresence(Presence):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def user_count(self, app: App) -> int:
        users = await self._per_node(app, keys.USERS, b"HKEYS")
        return len(set().union(*users))

    async def is_online(self, app: App, userid: str) -> bool:
        tag = keys.tag(app.key, "u", userid)
        link = self.node.link_of(tag)
        counts = keys.key(tag, keys.COUNTS)
        (here,) = await link.read((b"HMGET", counts, *link.nodes))
        return any(here)

    async def channel_users(self, app: App, channel: str) -> list[str]:
        tag = keys.tag(app.key, "c", channel)
        link = self.node.link_of(tag)
        names = (keys.key(tag, keys.MEMBERS), keys.key(tag, keys.INFOS), keys.key(tag, keys.SEQ))
        _, *users = await link.call(scripts.CHANNEL_USERS, names, "", *link.nodes)
        return [user.decode("utf-8") for user in users]

    async def channel_counts(self, app: App, prefix: str) -> dict[str, int]:
        start = prefix.encode()
        totals: dict[bytes, int] = {}
        for flat in await self._per_node(app, keys.CHANNELS, b"HGETALL"):
            for name, count in zip(flat[::2], flat[1::2], strict=True):
                if name.startswith(start):
                    totals[name] = totals.get(name, 0) + int(count)
        return {name.decode("utf-8"): count for name, count in totals.items()}

    async def user_channels(self, app: App, userid: str) -> set[str]:
        low, high = keys.memberships_of(userid)
        found = await self._per_node(app, keys.MEMBERSHIPS, b"ZRANGEBYLEX", low, high)
        return {entry.partition(b"\0")[2].decode() for entries in found for entry in entries}

    async def connection_count(self, app: App) -> int:
        # Each node's users hash holds its count of each user's connections.
        counts = await self._per_node(app, keys.USERS, b"HVALS")
        return sum(int(count) for each in counts for count in each)

    async def _per_node(self, app: App, part: bytes, verb: bytes, *args: Any) -> list:
        """``verb`` on the key ``part`` of each live node on every shard: one
        pipeline per shard, the shards asked together."""
        links = self.node.links
        if len(links) == 1:
            return await self._on(links[0], app, part, verb, *args)
        if not self.node.up:
            raise BackendUnavailable
        answers = await asyncio.gather(*(self._on(link, app, part, verb, *args) for link in links))
        return [answer for answered in answers for answer in answered]

    async def _on(self, link: Link, app: App, part: bytes, verb: bytes, *args: Any) -> list:
        """``verb`` on the key ``part`` of each node live on ``link``'s shard, in one pipeline."""
        live = await link.live(self.node.ttl)
        owned = (keys.node_key(node, app.key, part) for node in live)
        return await link.read(*((verb, key, *args) for key in owned))
