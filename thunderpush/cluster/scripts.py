"""The Lua scripts a node runs in Redis, loaded from ``lua/*.lua`` (package data).

Each step that must be atomic is one script, so it is one round trip: a
publish counts its receivers and publishes in the same step, and a
presence-channel join or leave decides "first/last of this user on a live
node" and announces it without a race between nodes.  Each file opens with
what it does, its ``KEYS`` and its ``ARGV``; every key it touches comes from
its ``KEYS`` and carries one tag (``thunderpush.cluster.keys``: a name's, or
``{nodes}`` for the heartbeat's), so on Redis Cluster a script runs on one
slot.  Only ``BEAT``, ``DROP`` and ``LIVE`` read the list of nodes; the
others get the live ones in ``ARGV``, from the caller's last heartbeat
(``thunderpush.cluster.link``).  ``common.lua`` holds the
helpers, none of which touches a key, and goes before each script.

On Redis Cluster a route is a sharded pub/sub channel: each script has a
sharded variant, its text with ``redis.call('PUBLISH'`` made
``redis.call('SPUBLISH'`` (its own sha), which a link over a Redis Cluster
loads and runs instead.  The route a script publishes on carries the tag of
its keys (``tp/{T}``, ``tp/{nodes}``), so it hashes to the script's slot, as
Redis Cluster requires of ``SPUBLISH`` in a script.  Why not ``SPUBLISH``
everywhere: one Redis before 7 has no sharded pub/sub, and a single Redis
gains nothing from it.

Usage::

    await connection.evalsha(SEND.sha, 1, counts_key, route, message, *others)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files


@dataclass(frozen=True)
class Script:
    """One script: its name (its file's, upper-cased), its text, and its SHA1 (hex),
    under which ``EVALSHA`` runs it once ``SCRIPT LOAD`` has; and the same of its
    sharded variant, for Redis Cluster (the text of a script that publishes
    nothing is its own variant)."""

    name: str
    text: str
    sha: str
    sharded_text: str
    sharded_sha: str


def _read(name: str) -> str:
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


# How a script publishes on a route, and how its sharded variant does.
PUBLISH = "redis.call('PUBLISH',"
SPUBLISH = "redis.call('SPUBLISH',"


def _load(name: str) -> Script:
    text = _read("common") + "\n" + _read(name)
    sharded = text.replace(PUBLISH, SPUBLISH)
    return Script(name.upper(), text, _sha(text), sharded, _sha(sharded))


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


SEND = _load("send")
SEND_KEPT = _load("send_kept")
SEND_LAST = _load("send_last")
HISTORY = _load("history")
MEMBER = _load("member")
COUNT = _load("count")
CHANNEL_USERS = _load("channel_users")
FORGET = _load("forget")
BEAT = _load("beat")
DROP = _load("drop")
LIVE = _load("live")
TELL_COUNT = _load("tell_count")

# What a node loads into Redis each time it connects.
ALL = (
    SEND,
    SEND_KEPT,
    SEND_LAST,
    HISTORY,
    MEMBER,
    COUNT,
    CHANNEL_USERS,
    FORGET,
    BEAT,
    DROP,
    LIVE,
    TELL_COUNT,
)
