"""The server's figures, read when asked: by the metrics, ``/ready`` and the dashboard.

Everything here reads what the server holds anyway (its sessions, hubs and
tallies) through ``Figures`` (``thunderpush.observe.figures``); nothing is kept
for it, so asking costs the server nothing between asks.  ``snapshot`` gives
them all as one dict::

    snapshot(server.figures)["connections"]    # -> 2000

Behind a load balancer each poll of the dashboard may reach another node, so
the dashboard reads ``cluster_snapshot``: on a cluster, every figure is the
cluster's, whichever node answers, and ``summed_nodes`` says how many live
nodes they sum.  The connections (that said ``CONNECT``), users, channels and
busiest channels are read from what the nodes keep in Redis for presence; the
message totals and the sessions by transport are the sums of the ``counters``
each live node writes to Redis with its heartbeat
(``thunderpush.cluster.counters``), so they lag by up to a heartbeat
(``counted_every`` seconds), and totals summed over the same nodes never go
down from one poll to the next, whichever node answers each.
"""

from __future__ import annotations

import heapq
import inspect
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from thunderpush.core.broker import BackendUnavailable

if TYPE_CHECKING:
    from thunderpush.core.apps import App
    from thunderpush.observe.figures import Figures

# How many channels ``snapshot`` lists as the busiest.
BUSIEST = 10


def connections_by_transport(figures: Figures) -> dict[str, int]:
    """Open sessions by SockJS transport (``websocket``, ``rawwebsocket``, ``xhr``...).

    A session counts from its first request until it closes, whether or not
    it has said ``CONNECT`` yet; sockjs-tornado keeps the count per transport.
    """
    return dict(figures.sessions_by_transport())


def users(figures: Figures) -> int:
    """Distinct users with a connection here, summed over the apps."""
    return sum(app.hub.user_count() for app in figures.apps)


def channels(figures: Figures) -> int:
    """Channels with a subscriber here, summed over the apps."""
    return sum(len(app.hub.channels) for app in figures.apps)


def published(figures: Figures) -> dict[str, int]:
    """Messages the API accepted here, by kind (``channel``, ``user``); a batch
    counts each of its items."""
    return dict(figures.published())


def delivered(figures: Figures) -> dict[str, int]:
    """Deliveries made here (one per receiving connection), by kind of message."""
    hubs = [app.hub for app in figures.apps]
    return {
        "channel": sum(hub.delivered_to_channels for hub in hubs),
        "user": sum(hub.delivered_to_users for hub in hubs),
    }


def busiest_channels(
    figures: Figures, count: int = BUSIEST, app: App | None = None
) -> list[dict[str, Any]]:
    """The ``count`` channels with the most connections here, most first
    (of ``app`` only, when given: one app's channel names are its own)."""
    sizes = (
        (len(connections), name)
        for each in (figures.apps if app is None else (app,))
        for name, connections in each.hub.channels.items()
    )
    return _busiest(sizes, count)


def _busiest(sizes: Iterable[tuple[int, str]], count: int) -> list[dict[str, Any]]:
    return [
        {"channel": name, "connections": size}
        for size, name in heapq.nlargest(count, sizes, key=lambda pair: pair[0])
    ]


def counters(figures: Figures) -> dict[str, dict[str, int]]:
    """This process's running counters, which a cluster node writes to Redis with
    each heartbeat for ``cluster_snapshot`` to sum: messages published and
    delivered (totals by kind), sessions by transport."""
    return {
        "published": published(figures),
        "delivered": delivered(figures),
        "transports": connections_by_transport(figures),
    }


def readiness(figures: Figures) -> dict[str, Any]:
    """Whether to send this server traffic: not while it drains, nor while its
    cluster backend is down (API calls would get 503, clients miss messages)."""
    node = figures.cluster
    cluster = None if node is None else ("up" if node.up else "down")
    return {
        "ready": not figures.draining and cluster != "down",
        "draining": figures.draining,
        "cluster": cluster,
    }


def snapshot(figures: Figures, app: App | None = None) -> dict[str, Any]:
    """The server's figures now, as the dashboard shows them (totals since it started).

    The busiest channels are ``app``'s only, when given: the dashboard shows an
    app's owner the server's load, never another app's channel names.
    """
    by_transport = connections_by_transport(figures)
    return {
        "connections": sum(by_transport.values()),
        "connections_by_transport": by_transport,
        "users": users(figures),
        "channels": channels(figures),
        "messages_published": sum(published(figures).values()),
        "messages_delivered": sum(delivered(figures).values()),
        "busiest_channels": busiest_channels(figures, app=app),
        "nodes": list(figures.cluster.nodes) if figures.cluster is not None else [],
        "time": time.time(),
    }


async def cluster_snapshot(figures: Figures, app: App | None = None) -> dict[str, Any]:
    """``snapshot``, with the cluster's figures when there is one (``summed_nodes``:
    how many nodes they sum, 1 on a single process; ``counted_every``: the
    seconds between a node's writes of its counters).

    While Redis is away, this node's own figures, with ``summed_nodes`` 1 and
    ``cluster`` ``"down"``: a partial sum would look right and be wrong.
    """
    shown = snapshot(figures, app)
    node = figures.cluster
    if node is None:
        return {**shown, "summed_nodes": 1}
    totals = {"connections": 0, "users": 0, "channels": 0}
    sizes: list[tuple[int, str]] = []
    try:
        for each in figures.apps:
            presence = each.presence
            totals["connections"] += await _answer(presence.connection_count(each))
            totals["users"] += await _answer(presence.user_count(each))
            counts = await _answer(presence.channel_counts(each, ""))
            totals["channels"] += len(counts)
            if app is None or each is app:
                sizes += [(size, name) for name, size in counts.items()]
        live, written = await node.counters_of_nodes()
    except (BackendUnavailable, ConnectionError, OSError):
        return {**shown, "summed_nodes": 1, "cluster": "down"}
    summed = {"busiest_channels": _busiest(sizes, BUSIEST), "summed_nodes": len(live)}
    return {**shown, **totals, **summed, **_summed(written, node.ttl / 3), "cluster": "up"}


def _summed(written: Iterable[Mapping[str, Any]], every: float) -> dict[str, Any]:
    """The figures of the counters the live nodes wrote, summed."""
    sums: dict[str, Counter[str]] = {"published": Counter(), "delivered": Counter()}
    sums["transports"] = Counter()
    for each in written:
        for name, total in sums.items():
            total.update(each.get(name, {}))
    return {
        "connections_by_transport": dict(sums["transports"]),
        "messages_published": sum(sums["published"].values()),
        "messages_delivered": sum(sums["delivered"].values()),
        "counted_every": every,
    }


async def _answer(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result
