"""The broker on Redis pub/sub: every node gets every message of an app.

A publish goes through Redis to every node, the publishing node included,
so that all nodes see one order; the API answers once Redis has taken the
PUBLISH, so publishes made one after the other arrive in that order
everywhere.  Each node delivers to its own hub and drops what has no
receiver there (docs/cluster.rst measures what a dropped message costs).

A bus message is text, its first character its kind::

    c<channel>\\n<payload>        deliver to a channel
    h<channel>\\n<epoch>\\n<offset>\\n<payload>
                                 deliver to a channel that keeps history: the
                                 message's position in its stream comes along
    e<channel>\\n<pusher>\\n<payload>
    k<channel>\\n<pusher>\\n<epoch>\\n<offset>\\n<payload>
                                 the same for a publish with a Pusher event
                                 name or a socket id to exclude: ``<pusher>``
                                 is ``[event, exclude(, user id(, true))]`` as one
                                 line of JSON (either may be null; JSON escapes
                                 newlines); ``true``: a client event, for Pusher
                                 connections only, and always an ``e`` (never kept)
    u<user>\\n<payload>           deliver to a user
    d<user>                      close a user's connections
    a<channel>\\n<user>\\n<seq>    member_added in a presence channel
    a<channel>\\n<user>\\n<seq>\\n<info>
                                 the same for a member with a Pusher
                                 ``user_info`` (one line of JSON)
    r<channel>\\n<user>\\n<seq>    member_removed

Channel names and user ids hold no newline, so the first newline ends them.
Every node excludes the socket id it is given: the socket is on one node
only, and socket ids are unique across nodes (``thunderpush.pusher.protocol``).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from thunderpush.cluster import scripts
from thunderpush.core.broker import NO_TRIGGER, Broker, Trigger

if TYPE_CHECKING:
    from thunderpush.cluster.hub import ClusterHub
    from thunderpush.cluster.node import Node
    from thunderpush.core.apps import App

logger = logging.getLogger(__name__)


class RedisBroker(Broker):
    """Sends through the app's bus; counts come from every live node's presence,
    this node's own from its hub at the time of the publish."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def send_to_channel(
        self,
        app: App,
        channel: str,
        message: str,
        trigger: Trigger | None = None,
    ) -> int:
        here = len(app.hub.channels.get(channel, ()))
        pusher = _pusher_part(trigger)
        keep = None if trigger is not None and trigger.client else app.history.keep(channel)
        if keep is None:
            if pusher:
                bus_message = f"e{channel}\n{pusher}\n{message}"
            else:
                bus_message = f"c{channel}\n{message}"
            return here + await self._send(app, "c", channel, bus_message)
        node = self.node
        args = (node.ttl, app.key, node.id, channel, keep.size, keep.ttl, message, pusher)
        return here + await node.call(scripts.SEND_KEPT, *args)

    async def send_to_user(self, app: App, userid: str, message: str) -> int:
        here = len(app.hub.users.get(userid, ()))
        return here + await self._send(app, "u", userid, f"u{userid}\n{message}")

    async def disconnect_user(self, app: App, userid: str) -> None:
        await self._send(app, "", userid, f"d{userid}")

    def _send(self, app: App, field: str, name: str, message: str) -> object:
        node = self.node
        return node.call(scripts.SEND, node.ttl, app.key, node.id, field, name, message)


def deliver(hub: ClusterHub, data: bytes) -> None:
    """Hands one bus message to ``hub``; what no connection here wants costs a lookup."""
    kind, rest = data[:1], data[1:]
    try:
        if kind == b"c":
            channel, _, payload = rest.partition(b"\n")
            name = channel.decode("utf-8")
            if name in hub.channels:
                hub.send_to_channel(name, payload)
        elif kind == b"h":
            channel, epoch, offset, payload = rest.split(b"\n", 3)
            name = channel.decode("utf-8")
            if name in hub.channels:
                hub.send_to_channel(name, payload, (epoch.decode("ascii"), int(offset)))
        elif kind == b"e":
            channel, pusher, payload = rest.split(b"\n", 2)
            name = channel.decode("utf-8")
            if name in hub.channels:
                hub.send_to_channel(name, payload, None, Trigger(*json.loads(pusher)))
        elif kind == b"k":
            channel, pusher, epoch, offset, payload = rest.split(b"\n", 4)
            name = channel.decode("utf-8")
            if name in hub.channels:
                position = (epoch.decode("ascii"), int(offset))
                hub.send_to_channel(name, payload, position, Trigger(*json.loads(pusher)))
        elif kind == b"u":
            user, _, payload = rest.partition(b"\n")
            name = user.decode("utf-8")
            if name in hub.users:
                hub.send_to_user(name, payload)
        elif kind == b"d":
            hub.disconnect_user(rest.decode("utf-8"))
        elif kind in (b"a", b"r"):
            channel, user, seq, *info = rest.decode("utf-8").split("\n", 3)
            added = kind == b"a"
            hub.announce(channel, user, int(seq), added, info[0] if info and added else None)
        else:
            raise ValueError(kind)
    except (ValueError, KeyError, TypeError):
        # Nothing but nodes publishes on the bus; say so, once per message, briefly.
        logger.warning("Ignored a malformed message on the cluster bus: %r", data[:80])


def _pusher_part(trigger: Trigger | None) -> str:
    """``trigger`` as the bus carries it: "" for a Thunderpush publish, else
    ``[event, exclude]`` as JSON, with the sender's user id when there is one,
    and ``true`` after it for a client event."""
    if trigger is None or trigger == NO_TRIGGER:
        return ""
    if trigger.client:
        return json.dumps(list(trigger))
    return json.dumps(list(trigger[:3]) if trigger.user_id is not None else list(trigger[:2]))
