"""The history on Redis: channel streams that every node writes and reads.

A publish to a channel that keeps history is kept in Redis by the publishing
node, in the same script that publishes it (``scripts.SEND_KEPT``), so the
position each node delivers is the one Redis gave.  The API's reads and a
reconnecting client's recovery (``thunderpush.cluster.hub``) read the stream
there (on the channel's shard), so a client recovers on whichever node it
reconnects to.  A channel's last publication (``thunderpush.core.lasts``) is
kept the same way, by the publishing node's script (``scripts.SEND_LAST``), in
a key that expires with the app's ``cache_ttl``, and read here by the node of
each new subscriber.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thunderpush.cluster import keys, scripts
from thunderpush.cluster.bus import read_fields
from thunderpush.core.history import History
from thunderpush.core.lasts import Last
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

    def last(self, app: App, channel: str) -> Result[Last | None]:
        if app.last_ttl(channel) is None:
            return None
        return self._last(keys.tag(app.key, "c", channel))

    async def _last(self, tag: bytes) -> Last | None:
        (kept,) = await self.node.link_of(tag).read(("GET", keys.key(tag, keys.LAST)))
        return None if kept is None else last_of(kept)


def last_of(kept: bytes) -> Last:
    """The ``Last`` that a ``keys.LAST`` value holds: the event as a field, the payload."""
    (event,), at = read_fields(kept, 0, 1)
    return Last(event or None, keys.text(kept[at:]))


def stream_of(answer: list) -> Stream:
    """The ``Stream`` that a ``scripts.HISTORY`` answer describes."""
    epoch, offset, *messages = answer
    payloads = map(keys.text, messages[1::2])
    return Stream(epoch.decode("ascii"), offset, tuple(zip(messages[::2], payloads, strict=True)))
