"""The broker on Redis pub/sub, routed: a channel's messages reach only the nodes
that have a subscriber in it.

Each channel of an app, and each user, has its own Redis pub/sub channel, its
*route* (``keys.route``); a node subscribes to a route while its hub has a
connection there (``Node.route_opened``, ``Node.route_closed``).  A publish is
one script (``SEND``, ``SEND_KEPT``; ``SEND_LAST`` where the channel keeps its
last publication, ``thunderpush.core.lasts``) on the name's shard (``Node.link_of``):
it publishes on the route and answers the count of the other live nodes
(``Link.others``, in its ``ARGV``) in the same round trip.  Every node, the
publishing node included, delivers what reaches it from Redis, so all nodes
see one channel's messages in Redis's order; the
API answers once Redis has taken the publish, so publishes made one after the
other arrive in that order everywhere.  This node's own count is added only
once its subscription to the route is confirmed (``Link.confirmed``): a count
never includes a subscriber that the message cannot reach.

Presence events go on the channel's route too, so only the nodes with a
subscriber there hear them: a joiner's member list is read from Redis after
its route is confirmed (``thunderpush.cluster.registry``), with the number of
the channel's last event, and is followed by the events numbered after it.

A bus message is bytes: its kind (one letter), then its fields, each its
length in bytes, a colon and the bytes (``5:hello``), then what remains is
the payload.  No field can spill into another, whatever it holds (a user id
with a newline, a lone surrogate, which is carried as UTF-8 with
``surrogatepass``).  Length-prefixed fields were chosen over one line of JSON
before the payload by a measurement of encode + decode per message
(``bench/bus_format.py``): 1.9-2.6 us against 5.2-5.7 us for a plain
publish, 5.8-7.2 against 6.9-7.4 with publish options::

    c <channel> <payload>          deliver to a channel
    p <channel> <event> <skip> <sender> <from client> <payload>
                                   the same with ``PublishOptions`` ("" is None,
                                   "1" a client's message)
    h <epoch> <offset> then a ``c`` or ``p`` message
                                   a publish to a channel that keeps history,
                                   with its position in the stream (the script
                                   ``SEND_KEPT`` puts it before the head)
    u <user> <payload>             deliver to a user
    d <user>                       close a user's connections
    a <channel> <user> <seq> <info>
                                   a member joined presence ``channel``: event
                                   number ``seq``, its info as JSON ("": none)
    r <channel> <user> <seq>       a member left
    n <channel> <count>            the channel's subscription count, to tell its
                                   subscribers (``--subscription-count``)
    w <user> <1 or 0>              on a user's watch route: its first connection in
                                   the cluster (1) or its last (0)
    j <node>, l <node>             on ``tp/{nodes}``: a node arrived, a node left
                                   (``thunderpush.cluster.link``)

The options are the publish's own (``thunderpush.core.broker.PublishOptions``),
in no dialect's words: each node's hub has each connection's dialect frame
them.  Every node skips the connection id it is given: a connection is on one
node only, and connection ids are unique across nodes.
"""

from __future__ import annotations

import json
import logging
import math
import random
from typing import TYPE_CHECKING

from thunderpush.cluster import keys, scripts
from thunderpush.cluster.keys import text as _text
from thunderpush.core.broker import PLAIN, Broker, PublishOptions

if TYPE_CHECKING:
    from thunderpush.cluster.node import Node
    from thunderpush.core.apps import App
    from thunderpush.core.hub import Hub

logger = logging.getLogger(__name__)


class RedisBroker(Broker):
    """Publishes on routes; counts come from every other live node's records, this
    node's own from its hub at the time of the publish, if the route is confirmed."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def send_to_channel(
        self,
        app: App,
        channel: str,
        message: str,
        options: PublishOptions = PLAIN,
    ) -> int:
        tag = keys.tag(app.key, "c", channel)
        link = self.node.link_of(tag)
        route = keys.route_of(tag)
        here = app.hub.channel_connection_count(channel) if link.confirmed(route) else 0
        head = publication_head(channel, options)
        payload = _bytes(message)
        keep = last = None
        if not options.from_client:
            keep, last = app.history.keep(channel), app.last_ttl(channel)
        counts = (keys.key(tag, keys.COUNTS),)
        if keep is None and last is None:
            return here + await link.call(scripts.SEND, counts, route, head + payload, *link.others)
        if last is not None:
            # Kept with the publish; with history too, after SEND_KEPT published it.
            kept = (counts[0], keys.key(tag, keys.LAST))
            event, ms = field(options.event or ""), math.ceil(last * 1000)
            args = (b"" if keep else route, head, payload, event, ms)
            count = await link.call(scripts.SEND_LAST, kept, *args, *link.others)
            if keep is None:
                return here + count
        stream = (keys.key(tag, keys.KEPT), keys.key(tag, keys.STREAM))
        epoch_digits = f"{random.getrandbits(12):03x}"
        args = (route, head, payload, keep.size, keep.ttl, epoch_digits)
        return here + await link.call(scripts.SEND_KEPT, counts + stream, *args, *link.others)

    async def send_to_user(self, app: App, userid: str, message: str) -> int:
        tag = keys.tag(app.key, "u", userid)
        link = self.node.link_of(tag)
        route = keys.route_of(tag)
        here = app.hub.user_connection_count(userid) if link.confirmed(route) else 0
        bus_message = b"u" + field(userid) + _bytes(message)
        counts = (keys.key(tag, keys.COUNTS),)
        return here + await link.call(scripts.SEND, counts, route, bus_message, *link.others)

    async def disconnect_user(self, app: App, userid: str) -> None:
        tag = keys.tag(app.key, "u", userid)
        counts = (keys.key(tag, keys.COUNTS),)  # nothing counted: no node given
        link = self.node.link_of(tag)
        await link.call(scripts.SEND, counts, keys.route_of(tag), b"d" + field(userid))


def field(text: str) -> bytes:
    """``text`` as one field of a bus message."""
    data = _bytes(text)
    return b"%d:%b" % (len(data), data)


def publication_head(channel: str, options: PublishOptions) -> bytes:
    """A publish's bus message up to its payload: ``c`` or, with options, ``p``."""
    if options == PLAIN:
        return b"c" + field(channel)
    event, skip, sender, from_client = options
    parts = (channel, event or "", skip or "", sender or "", "1" if from_client else "")
    return b"p" + b"".join(map(field, parts))


def deliver(hub: Hub, data: bytes) -> None:
    """Hands one bus message to ``hub``; what no connection here wants costs a lookup."""
    kind = data[:1]
    try:
        if kind == b"c" or kind == b"p" or kind == b"h":
            _publication(hub, data)
        elif kind == b"u":
            (user,), at = read_fields(data, 1, 1)
            if hub.user_connection_count(user):
                hub.send_to_user(user, _text(data[at:]))
        elif kind == b"d":
            (user,), _ = read_fields(data, 1, 1)
            hub.disconnect_user(user)
        elif kind == b"a":
            (channel, user, seq, info), _ = read_fields(data, 1, 4)
            hub.announce(channel, user, int(seq), True, json.loads(info) if info else None)
        elif kind == b"r":
            (channel, user, seq), _ = read_fields(data, 1, 3)
            hub.announce(channel, user, int(seq), False)
        elif kind == b"w":
            (user, online), _ = read_fields(data, 1, 2)
            hub.watchlist.changed(user, online == "1")
        elif kind == b"n":
            (channel, count), _ = read_fields(data, 1, 2)
            hub.tell_count(channel, int(count))
        else:
            raise ValueError(kind)
    except (ValueError, KeyError, TypeError):
        # Nothing but nodes publishes on the bus; say so, once per message, briefly.
        logger.warning("Ignored a malformed message on the cluster bus: %r", data[:80])


def _publication(hub: Hub, data: bytes) -> None:
    position = None
    at = 1
    if data[:1] == b"h":
        (epoch, offset), at = read_fields(data, 1, 2)
        position = (epoch, int(offset))
        at += 1
    if data[at - 1 : at] == b"c":
        (channel,), at = read_fields(data, at, 1)
        options = PLAIN
    elif data[at - 1 : at] == b"p":
        (channel, event, skip, sender, client), at = read_fields(data, at, 5)
        options = PublishOptions(event or None, skip or None, sender or None, client == "1")
    else:
        raise ValueError(data[at - 1 : at])
    if hub.has_channel(channel):
        hub.send_to_channel(channel, _text(data[at:]), position, options)


def read_fields(data: bytes, at: int, count: int) -> tuple[list[str], int]:
    """The ``count`` fields of ``data`` from index ``at``, and where the next begins."""
    fields = []
    for _ in range(count):
        colon = data.index(b":", at)
        length = data[at:colon]
        end = colon + 1 + int(length)
        if not length.isdigit() or end > len(data):
            raise ValueError(length)
        fields.append(_text(data[colon + 1 : end]))
        at = end
    return fields, at


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
