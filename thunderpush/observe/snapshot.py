"""The server's figures, read when asked: by the metrics, ``/ready`` and the dashboard.

Everything here reads what the server holds anyway (its sessions, hubs and
tallies); nothing is kept for it, so asking costs the server nothing between
asks.  ``snapshot`` gives them all as one dict::

    snapshot(server)["connections"]    # -> 2000
"""

from __future__ import annotations

import heapq
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thunderpush.core.apps import App
    from thunderpush.server.application import Server

# How many channels ``snapshot`` lists as the busiest.
BUSIEST = 10


def connections_by_transport(server: Server) -> dict[str, int]:
    """Open sessions by SockJS transport (``websocket``, ``rawwebsocket``, ``xhr``...).

    A session counts from its first request until it closes, whether or not
    it has said ``CONNECT`` yet; sockjs-tornado keeps the count per transport.
    """
    return dict(server.router.stats.sess_transports)


def users(server: Server) -> int:
    """Distinct users with a connection here, summed over the apps."""
    return sum(app.hub.user_count() for app in server.apps)


def channels(server: Server) -> int:
    """Channels with a subscriber here, summed over the apps."""
    return sum(len(app.hub.channels) for app in server.apps)


def published(server: Server) -> dict[str, int]:
    """Messages the API accepted here, by kind (``channel``, ``user``); a batch
    counts each of its items."""
    return dict(server.api.published)


def delivered(server: Server) -> dict[str, int]:
    """Deliveries made here (one per receiving connection), by kind of message."""
    hubs = [app.hub for app in server.apps]
    return {
        "channel": sum(hub.delivered_to_channels for hub in hubs),
        "user": sum(hub.delivered_to_users for hub in hubs),
    }


def busiest_channels(
    server: Server, count: int = BUSIEST, app: App | None = None
) -> list[dict[str, Any]]:
    """The ``count`` channels with the most connections here, most first
    (of ``app`` only, when given: one app's channel names are its own)."""
    sizes = (
        (len(connections), name)
        for each in (server.apps if app is None else (app,))
        for name, connections in each.hub.channels.items()
    )
    return [
        {"channel": name, "connections": size}
        for size, name in heapq.nlargest(count, sizes, key=lambda pair: pair[0])
    ]


def readiness(server: Server) -> dict[str, Any]:
    """Whether to send this server traffic: not while it drains, nor while its
    cluster backend is down (API calls would get 503, clients miss messages)."""
    node = server.node
    cluster = None if node is None else ("up" if node.up else "down")
    return {
        "ready": not server.draining and cluster != "down",
        "draining": server.draining,
        "cluster": cluster,
    }


def snapshot(server: Server, app: App | None = None) -> dict[str, Any]:
    """The server's figures now, as the dashboard shows them (totals since it started).

    The busiest channels are ``app``'s only, when given: the dashboard shows an
    app's owner the server's load, never another app's channel names.
    """
    by_transport = connections_by_transport(server)
    return {
        "connections": sum(by_transport.values()),
        "connections_by_transport": by_transport,
        "users": users(server),
        "channels": channels(server),
        "messages_published": sum(published(server).values()),
        "messages_delivered": sum(delivered(server).values()),
        "busiest_channels": busiest_channels(server, app=app),
        "nodes": list(server.node.nodes) if server.node is not None else [],
        "time": time.time(),
    }
