"""The presence on Redis: who is online and where, across every live node.

Each node keeps its own records (``thunderpush.cluster.registry``); these
reads add them up over the nodes heard from within the presence TTL, in one
script each, so a node that died stops counting as soon as its TTL is over,
before any live node has cleaned up after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thunderpush.cluster import scripts
from thunderpush.core.presence import Presence

if TYPE_CHECKING:
    from thunderpush.cluster.node import Node
    from thunderpush.core.apps import App


class RedisPresence(Presence):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def user_count(self, app: App) -> int:
        return await self.node.call(scripts.USER_COUNT, self.node.ttl, app.key)

    async def is_online(self, app: App, userid: str) -> bool:
        return bool(await self.node.call(scripts.IS_ONLINE, self.node.ttl, app.key, userid))

    async def channel_users(self, app: App, channel: str) -> list[str]:
        _, *users = await self.node.call(scripts.CHANNEL_USERS, self.node.ttl, app.key, channel)
        return [user.decode("utf-8") for user in users]

    async def channel_counts(self, app: App, prefix: str) -> dict[str, int]:
        flat = await self.node.call(scripts.CHANNEL_COUNTS, self.node.ttl, app.key, prefix)
        return {
            name.decode("utf-8"): count for name, count in zip(flat[::2], flat[1::2], strict=True)
        }

    async def user_channels(self, app: App, userid: str) -> set[str]:
        channels = await self.node.call(scripts.USER_CHANNELS, self.node.ttl, app.key, userid)
        return {channel.decode("utf-8") for channel in channels}
