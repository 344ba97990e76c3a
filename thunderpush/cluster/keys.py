"""Every Redis key and pub/sub channel of the cluster, named in one place.

A *name* is an app's channel or user.  Its **tag** is
``<length of the app key>:<app key>:<kind>:<name>`` (kind ``c`` for a channel,
``u`` for a user; the length keeps any two apps apart), and every key of the
name carries the tag in braces, so that on Redis Cluster they all hash to one
slot and a script can touch them together.  ``T`` is ``{<tag>}``::

    tp:T:n     hash  node -> the name's connections on that node (a
                     channel's subscribed connections, a user's connections)
    tp:T:m     zset  "<node> <user>" -> ms of its first subscription (channels)
    tp:T:i     hash  "<node> <user>" -> its Pusher ``user_info`` as JSON
                     (presence channels, members that have one)
    tp:T:s     int   the number of the channel's last presence event (kept a
                     day after its last member left: an event still on its
                     way keeps its number)
    tp:T:h     list  a channel's kept messages, oldest first, each
                     "<offset>\\n<ms kept, Redis time>\\n<payload>"
    tp:T:hm    hash  its stream: epoch, offset (of the last message)
    tp:T:l     str   a channel's last publication (the channels an app keeps
                     it for: Pusher's cache channels), its event as a bus
                     field ("" for the default) then its payload; expires
                     with the app's ``cache_ttl``
    tp:T:sc    hash  a channel's subscription count last told ("c") and when
                     ("t", Redis ms), with ``--subscription-count``
    tp/T             the name's pub/sub channel, its *route*
    tp/Tw            a user's *watch route*: where its first connection in the
                     cluster and its last are told, to the nodes with a
                     connection watching it (``thunderpush.core.watchlist``)

A user id may hold ``}``: Redis Cluster's hash tag then ends there, which is
still a function of the name alone, so the keys of one name still share a slot.

A node's own keys, for what spans names (listings, its rewrite after an
outage, forgetting it), carry its id: ``N`` is ``{N:<node>}``, and ``<app>``
the app key with its length before it (``3:key``)::

    tp:N:<app>:c     hash  channel -> the node's subscribed connections in it
    tp:N:<app>:u     hash  user -> the node's connections of that user
    tp:N:<app>:p     zset  "<user>\\0<channel>" (score 0, so ZRANGEBYLEX finds a
                           user's channels): the node's memberships
    tp:N:forgetting        a node claiming the forgetting of this (dead) one
    tp:N:counters          its running counters, as JSON (messages published
                           and delivered, sessions by transport), written
                           with each heartbeat on the first shard, expiring
                           with the presence TTL: the dashboard sums them

The cluster's nodes::

    tp:{nodes}       zset  node -> when Redis last heard from it (Redis time, s)
    tp:{nodes}:gone  zset  node -> when it was forgotten, kept a day, so that a
                           node only cut off learns it was forgotten
    tp/{nodes}             where a node's arrival or departure is told (``j``, ``l``)

Pub/sub channels are not keys: a route is named here and handed to the
scripts that publish on it, never rebuilt in Lua.  User ids hold no control
character (``thunderpush.core.protocol.is_valid_user_id``), so the ``\\0`` of
a membership cannot be part of one.
"""

from __future__ import annotations

NODES = b"tp:{nodes}"
GONE = b"tp:{nodes}:gone"
NODES_ROUTE = b"tp/{nodes}"

# The parts of a name's keys.
COUNTS = b"n"
MEMBERS = b"m"
INFOS = b"i"
SEQ = b"s"
KEPT = b"h"
STREAM = b"hm"
LAST = b"l"
TOLD = b"sc"

# The parts of a node's keys, per app.
CHANNELS = b"c"
USERS = b"u"
MEMBERSHIPS = b"p"


def tag(app: str, kind: str, name: str) -> bytes:
    """The tag of ``app``'s channel (``kind`` "c") or user ("u") ``name``."""
    key = app.encode()
    return b"%d:%b:%b:%b" % (len(key), key, kind.encode(), name.encode("utf-8", "surrogatepass"))


def key(tag: bytes, part: bytes) -> bytes:
    """The key ``part`` (``COUNTS``, ``MEMBERS``...) of the name of ``tag``."""
    return b"tp:{%b}:%b" % (tag, part)


def route_of(tag: bytes) -> bytes:
    """The pub/sub channel of the name of ``tag``."""
    return b"tp/{%b}" % tag


def watch_route(tag: bytes) -> bytes:
    """The watch route of the user of ``tag``: the user's slot, another channel."""
    return b"tp/{%b}w" % tag


def text(data: bytes) -> str:
    """A name or payload as Redis holds it, as text again (``tag`` and the bus
    write lone surrogates through, so they come back)."""
    return data.decode("utf-8", "surrogatepass")


def name_of(route: bytes) -> tuple[str, str, str]:
    """The app, kind ("c", "u"; "w" for a watch route) and name of a name's
    ``route`` (``route_of``'s inverse): for the routes Redis tells of."""
    if route.endswith(b"}w"):
        app, _, name = name_of(route[:-1])
        return app, "w", name
    tag = route[len(b"tp/{") : -1]
    length, _, rest = tag.partition(b":")
    app, rest = rest[: int(length)], rest[int(length) + 1 :]
    kind, _, name = rest.partition(b":")
    return app.decode(), kind.decode(), text(name)


def route(app: str, kind: str, name: str) -> bytes:
    """The pub/sub channel of ``app``'s channel (``kind`` "c") or user ("u") ``name``."""
    return route_of(tag(app, kind, name))


def node_key(node: str, app: str, part: bytes) -> bytes:
    """The key ``part`` (``CHANNELS``, ``USERS``, ``MEMBERSHIPS``) of ``node`` in ``app``."""
    app_key = app.encode()
    return b"tp:{N:%b}:%d:%b:%b" % (node.encode(), len(app_key), app_key, part)


def forgetting(node: str) -> bytes:
    """The claim of the node forgetting the dead ``node``."""
    return b"tp:{N:%b}:forgetting" % node.encode()


def counters(node: str) -> bytes:
    """The running counters ``node`` writes with its heartbeat, for the dashboard."""
    return b"tp:{N:%b}:counters" % node.encode()


def membership(user: str, channel: str) -> bytes:
    """A member of a node's ``MEMBERSHIPS``."""
    return b"%b\0%b" % (user.encode("utf-8", "surrogatepass"), channel.encode())


def memberships_of(user: str) -> tuple[bytes, bytes]:
    """The ZRANGEBYLEX bounds of ``user``'s memberships."""
    data = user.encode("utf-8", "surrogatepass")
    return b"[%b\0" % data, b"(%b\1" % data
