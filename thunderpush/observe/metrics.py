"""The server's Prometheus metrics, read from the server when scraped.

Nothing on the delivery path touches Prometheus: the paths count in plain ints
(``tally``, the hubs, the router, the connection limits) and this collector
turns those figures, read through ``Figures`` (``figures``), into samples at
scrape time.  Each server has its own registry (tests and embedding
applications run several in one process), served at ``/metrics``
(``endpoints``); docs/metrics.rst lists every metric.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from thunderpush.core import protocol
from thunderpush.observe import snapshot

if TYPE_CHECKING:
    from thunderpush.observe.figures import Figures

# The ``reason`` label of each close code the server uses.
CLOSE_REASONS = {
    3000: "ended",  # the client left, or its session expired
    protocol.INVALID_API_KEY.code: "invalid_api_key",
    protocol.SUBSCRIBE_BEFORE_CONNECT.code: "subscribe_before_connect",
    protocol.FORCED_DISCONNECT.code: "forced_disconnect",
    protocol.INVALID_SIGNATURE.code: "invalid_signature",
    protocol.SERVER_SHUTDOWN.code: "server_shutdown",
    protocol.CLIENT_TOO_SLOW.code: "client_too_slow",
    protocol.TOO_MANY_COMMANDS.code: "too_many_commands",
}


class ServerCollector:
    """Every Thunderpush metric of a server, read from its ``figures`` at each scrape."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        figures = self.figures
        yield _labelled(
            GaugeMetricFamily,
            "thunderpush_connections",
            "Open sessions, by transport.",
            "transport",
            snapshot.connections_by_transport(figures),
        )
        yield GaugeMetricFamily(
            "thunderpush_tcp_connections",
            "Open TCP connections, whoever serves them (what the connection limits count).",
            value=figures.tcp_connections(),
        )
        yield GaugeMetricFamily(
            "thunderpush_users", "Distinct users connected here.", value=snapshot.users(figures)
        )
        yield GaugeMetricFamily(
            "thunderpush_channels",
            "Channels with a subscriber here.",
            value=snapshot.channels(figures),
        )
        yield _labelled(
            CounterMetricFamily,
            "thunderpush_messages_published",
            "Messages the API accepted here, by kind.",
            "kind",
            snapshot.published(figures),
        )
        yield _labelled(
            CounterMetricFamily,
            "thunderpush_messages_delivered",
            "Deliveries made here (one per receiving connection), by kind of message.",
            "kind",
            snapshot.delivered(figures),
        )
        requests = CounterMetricFamily(
            "thunderpush_api_requests",
            "API requests answered, by endpoint and status.",
            labels=("endpoint", "status"),
        )
        for (endpoint, status), count in sorted(figures.api_requests().items()):
            requests.add_metric((endpoint, str(status)), count)
        yield requests
        latency = figures.publish_latency()
        yield HistogramMetricFamily(
            "thunderpush_publish_latency_seconds",
            "From a send's request body to its receivers' sockets written "
            "(with a cluster: to the cluster bus).",
            buckets=latency.cumulative(),
            sum_value=latency.sum,
        )
        closed = {}
        for code, count in figures.closed_by_code().items():
            reason = CLOSE_REASONS.get(code, "other")
            closed[reason] = closed.get(reason, 0) + count
        yield _labelled(
            CounterMetricFamily,
            "thunderpush_sessions_closed",
            "Sessions closed, by reason (client_too_slow, too_many_commands...).",
            "reason",
            closed,
        )
        yield _labelled(
            CounterMetricFamily,
            "thunderpush_connections_refused",
            "Connections refused at the door, by the limit that refused them.",
            "limit",
            figures.refused(),
        )
        ready = snapshot.readiness(figures)
        yield GaugeMetricFamily(
            "thunderpush_ready",
            "1 while the server accepts traffic (/ready).",
            value=int(ready["ready"]),
        )
        yield GaugeMetricFamily(
            "thunderpush_draining", "1 while the server drains.", value=int(ready["draining"])
        )
        events = CounterMetricFamily(
            "thunderpush_webhook_events",
            "Webhook events the receivers took (sent), that were lost (dropped), or that "
            "said nothing new and were never sent (coalesced), by kind (channel, user; and "
            "member, client_event, cache_miss, subscription_count in Pusher's format).",
            labels=("result", "kind"),
        )
        for result, counts in sorted(figures.webhook_events().items()):
            for kind, count in sorted(counts.items()):
                events.add_metric((result, kind), count)
        yield events
        yield CounterMetricFamily(
            "thunderpush_webhook_failures",
            "Webhook POSTs that failed (each is tried again while its events are queued).",
            value=figures.webhook_failures(),
        )
        node = figures.cluster
        if node is not None:
            yield GaugeMetricFamily(
                "thunderpush_cluster_up",
                "1 while the cluster backend is reachable.",
                value=int(node.up),
            )
            yield GaugeMetricFamily(
                "thunderpush_cluster_nodes",
                "Nodes in the cluster at this node's last heartbeat.",
                value=len(node.nodes),
            )


def _labelled(
    family: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    documentation: str,
    label: str,
    values: Mapping[str, int],
) -> Metric:
    metric = family(name, documentation, labels=(label,))
    for value, count in sorted(values.items()):
        metric.add_metric((value,), count)
    return metric


def registry(figures: Figures) -> CollectorRegistry:
    """The registry of a server's metrics (read from its ``figures``) and this
    process's (CPU, memory, open files)."""
    registry = CollectorRegistry()
    registry.register(ServerCollector(figures))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus's text format."""
    return generate_latest(registry)
