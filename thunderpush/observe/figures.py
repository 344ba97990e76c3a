"""The numbers a running server shows its operators, as ``observe/`` reads them.

The metrics, ``/ready``, the dashboard's snapshot and the statistics log line
read a server through ``Figures`` and nothing else: where a figure is kept
(the front door's connection limits, the SockJS router's sessions, the API's
tallies) is the server's business, and ``thunderpush.server.figures`` is the
one module that knows it.  So this package imports no server, no door and no
router, and a door or a router can change how it counts without ``observe/``
noticing.  Every figure is read when asked; nothing is kept for it::

    figures.tcp_connections()         # -> 2000
    figures.sessions_by_transport()   # -> {"websocket": 1990, "xhr": 10}
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from thunderpush.core.apps import App
    from thunderpush.observe.tally import Latency


class ClusterFigures(Protocol):
    """What the figures say of this process's cluster node."""

    @property
    def up(self) -> bool:
        """Whether the cluster backend is reachable."""

    @property
    def nodes(self) -> Collection[str]:
        """The nodes in the cluster at this node's last heartbeat."""

    @property
    def ttl(self) -> float:
        """Seconds a node counts after its last heartbeat (it beats every third of it)."""

    async def counters_of_nodes(self) -> tuple[Sequence[str], Sequence[Mapping[str, Any]]]:
        """The nodes live now, and the counters (``snapshot.counters``) each wrote
        to Redis at its last heartbeat."""


class Figures(Protocol):
    """One server's figures, read when asked (totals since it started)."""

    @property
    def apps(self) -> Iterable[App]:
        """The apps served here: their hubs hold users, channels and deliveries."""

    @property
    def draining(self) -> bool:
        """True from the start of shutdown on."""

    @property
    def cluster(self) -> ClusterFigures | None:
        """This process's cluster node; None on a single process."""

    def tcp_connections(self) -> int:
        """Open TCP connections, whoever serves them (what the connection limits count)."""

    def refused(self) -> Mapping[str, int]:
        """Connections refused at the door, by the limit that refused them."""

    def sessions_by_transport(self) -> Mapping[str, int]:
        """Open sessions by SockJS transport (``websocket``, ``rawwebsocket``, ``xhr``...)."""

    def closed_by_code(self) -> Mapping[int, int]:
        """Sessions closed, by close code."""

    def published(self) -> Mapping[str, int]:
        """Messages the API accepted here, by kind (``channel``, ``user``)."""

    def api_requests(self) -> Mapping[tuple[str, int], int]:
        """API requests answered, by (endpoint, status)."""

    def publish_latency(self) -> Latency:
        """From a send's request body to its receivers' sockets written."""

    def webhook_events(self) -> Mapping[str, Mapping[str, int]]:
        """Webhook events by result (``coalesced``, ``dropped``, ``sent``), then by kind."""

    def webhook_failures(self) -> int:
        """Webhook POSTs that failed."""
