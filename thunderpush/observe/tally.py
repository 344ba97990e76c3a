"""Plain counters for what happens on the hot paths, read by ``metrics`` at scrape time.

A Prometheus ``Counter`` takes a lock per increment and a ``Histogram`` a lock
and a search per observation; at thousands of publishes a second a dict
increment is all the delivery path can afford.  So the paths count here, in
ints, once per request or per publish (never per receiver), and the metrics
collector turns the figures into Prometheus samples only when it is scraped.
"""

from __future__ import annotations

from bisect import bisect_left

# Upper bounds, in seconds, of publish-to-send latency: from a tenth of a
# millisecond (one receiver) to seconds (a fan-out that makes the loop late).
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Latency:
    """A histogram in plain ints: ``counts[i]`` observations at most ``bounds[i]``
    (and above every bound, the last), not cumulative."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: ``(le, observations at most le)``, ``+Inf`` last."""
        buckets, total = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets
