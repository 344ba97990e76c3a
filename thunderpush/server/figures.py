"""Where each figure ``observe/`` reads is kept: the one place that walks the server's parts.

``thunderpush.observe.figures.Figures`` is what the metrics, ``/ready``, the
dashboard and the statistics line read; ``ServerFigures`` answers it from the
parts ``build`` wired (the front door's connection limits, the SockJS router's
sessions and closes, the API's tallies, the webhooks, the cluster node).  When
a part changes where it counts, this module changes and ``observe/`` does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thunderpush.cluster import Node
    from thunderpush.core.apps import App
    from thunderpush.observe.tally import Latency
    from thunderpush.server.application import Server


class ServerFigures:
    """``Figures`` of ``server``, read from its parts at each call."""

    def __init__(self, server: Server) -> None:
        self.server = server

    @property
    def apps(self) -> Iterable[App]:
        return self.server.apps

    @property
    def draining(self) -> bool:
        return self.server.draining

    @property
    def cluster(self) -> Node | None:
        return self.server.node

    def tcp_connections(self) -> int:
        return self.server.door.open.total

    def refused(self) -> Mapping[str, int]:
        return self.server.door.open.refused

    def sessions_by_transport(self) -> Mapping[str, int]:
        return self.server.router.stats.sess_transports

    def closed_by_code(self) -> Mapping[int, int]:
        return self.server.router.closed_by_code

    def published(self) -> Mapping[str, int]:
        return self.server.api.published

    def api_requests(self) -> Mapping[tuple[str, int], int]:
        return self.server.api.requests

    def publish_latency(self) -> Latency:
        return self.server.api.latency

    def webhook_events(self) -> Mapping[str, Mapping[str, int]]:
        webhooks = self.server.webhooks
        return {"coalesced": webhooks.coalesced, "dropped": webhooks.dropped, "sent": webhooks.sent}

    def webhook_failures(self) -> int:
        return self.server.webhooks.failures
