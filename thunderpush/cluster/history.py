"""The history on Redis: channel streams that every node writes and reads.

A publish to a channel that keeps history is kept in Redis by the publishing
node, in the same script that publishes it (``scripts.SEND_KEPT``), so the
position each node delivers is the one Redis gave.  The API's reads and a
reconnecting client's recovery (``thunderpush.cluster.hub``) read the stream
there (on the channel's shard), so a client recovers on whichever node it
reconnects to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thunderpush.cluster import keys, scripts
from thunderpush.core.history import History
from thunderpush.core.results import Result
from thunderpush.core.streams import NO_STREAM, Stream

if TYPE_CHECKING:
    from thunderpush.cluster.node import Node
    from thunderpush.core.apps import App


class RedisHistory(History):
    def __init__(self, node: Node) -> None:
        self.node = node

    def read(self, app: App, channel: str, since: int | None) -> Result[Stream]:
        keep = app.history.keep(channel)
        if keep is None:
            return NO_STREAM
        return self._read(app.key, channel, keep.ttl, "" if since is None else since)

    async def _read(self, app: str, channel: str, ttl: float, since: int | str) -> Stream:
        tag = keys.tag(app, "c", channel)
        stream = (keys.key(tag, keys.KEPT), keys.key(tag, keys.STREAM))
        link = self.node.link_of(tag)
        return stream_of(await link.call(scripts.HISTORY, stream, ttl, since))


def stream_of(answer: list) -> Stream:
    """The ``Stream`` that a ``scripts.HISTORY`` answer describes."""
    epoch, offset, *messages = answer
    payloads = (payload.decode("utf-8", "surrogatepass") for payload in messages[1::2])
    return Stream(epoch.decode("ascii"), offset, tuple(zip(messages[::2], payloads, strict=True)))
