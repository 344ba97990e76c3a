"""Each node's running counters in Redis, for the dashboard's sums.

Behind a load balancer each poll of the dashboard may reach another node; the
totals it shows must be the cluster's, not the answering node's.  So each node
writes its own counters (whatever ``Node.counters`` answers: the messages
published and delivered, the sessions by transport), as JSON, to its own key
(``keys.counters``) on the first shard, in the round trip of its heartbeat
there (``Link.beat``), expiring with the presence TTL: nothing is written per
message or per request, and a dead node's counters leave with its record.

``read`` answers the counters of the nodes live by Redis's clock, read in one
pipeline; every node reads the same, so totals summed over the same nodes
never go down, whichever node answers (they lag by up to a heartbeat).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from thunderpush.cluster import keys

if TYPE_CHECKING:
    from thunderpush.cluster.node import Node

# What a node's counters look like: a mapping of mappings of integers.
Counters = Mapping[str, Mapping[str, int]]
Source = Callable[[], Counters]


def encode(source: Source | None) -> bytes | None:
    """The counters ``source`` answers, as written; None without a source."""
    if source is None:
        return None
    return json.dumps({name: dict(values) for name, values in source().items()}).encode()


async def read(node: Node) -> tuple[list[str], list[dict[str, Any]]]:
    """The nodes live on the first shard now (by Redis's clock), and the counters
    each of them last wrote (one that wrote none yet is left out)."""
    link = node.links[0]
    live = await link.live(node.ttl)
    if not live:
        return live, []
    written = await link.read(*((b"GET", keys.counters(each)) for each in live))
    return live, [json.loads(data) for data in written if data is not None]
