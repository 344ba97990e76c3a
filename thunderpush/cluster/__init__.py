"""The cluster: several processes, on one machine or many, serving the same apps
through Redis (docs/cluster.rst).

It plugs the core's four seams (``thunderpush.core``), and nothing else changes:
``cluster_apps`` hands ``Apps`` the Redis ``Broker`` (``bus.RedisBroker``: a publish
reaches every node with receivers), ``Presence`` (``presence.RedisPresence``: who is
online, over every live node), ``History`` (``history.RedisHistory``: the kept
streams) and the hubs' ``Listener`` (``Node.hub`` makes each app's hub with a
``hub.HubReporter`` as its listener: the hub's changes recorded in Redis).  The modules:

* ``node`` - this process in the cluster: its heartbeat, staying joined, reconnection,
  on each Redis it is given;
* ``link`` - the node's side of one Redis: its connections, scripts, live nodes, routes;
* ``shards`` - which of several Redis holds a channel or a user (jump consistent hash);
* ``connection`` - commands to Redis, every command of a loop turn in one write;
* ``subscriber`` - the pub/sub connection, its channels changed in batches per turn
  (and, for Redis Cluster, one per master with each channel on its slot's);
* ``slots``, ``slotmap`` and ``topology`` - Redis Cluster: a key's slot, the map of
  the masters that serve the slots (and ``MapFollower``, how a client of every
  master opens and ends), and a connection that sends each command to its key's master;
* ``bus`` - the broker on Redis pub/sub, and delivery of what arrives to the local hub;
* ``hub`` - the local hub's listener, which records it in Redis;
* ``registry`` - this node's presence records, written once per loop turn;
* ``members`` and ``telling`` - what the registry's write writes and reads of channel
  members (their records, a welcome's member list), and of subscription counts and
  watchlists;
* ``departures`` - a dead node forgotten (by one claimer), and this one's goodbye;
* ``presence`` - the API's reads, added up over every live node;
* ``history`` - the streams of the channels that keep history, in Redis;
* ``keys`` - every key and route, each name's under its tag (one slot per name);
* ``scripts`` - the Lua (``lua/*.lua``) that does each one-name step in one round trip.

Nothing outside ``thunderpush.server`` imports this package, and at run time only
``server.application``, when a Redis URL is configured: a single process never
loads redis.
"""

from __future__ import annotations

from thunderpush.cluster.bus import RedisBroker
from thunderpush.cluster.history import RedisHistory
from thunderpush.cluster.node import Node
from thunderpush.cluster.presence import RedisPresence
from thunderpush.core.apps import Apps


def cluster_apps(node: Node) -> Apps:
    """An empty registry of apps whose backend is the cluster ``node`` belongs to."""
    return Apps(RedisBroker(node), RedisPresence(node), node.hub, RedisHistory(node))


__all__ = ["Node", "cluster_apps"]
