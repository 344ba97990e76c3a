"""Driving nginx + Nchan, the native peer of bench/compare.py: its subscribers and its publisher.

Why the bench speaks it: issue 19 measures our server against a C push server
doing the same job, with the same generator, so that the figures differ only
by the server.  With ``--client nchan`` the connections are websockets to
Nchan's subscriber location (``/sub/<channel>``: subscribed once upgraded, each
published body one text frame as it was posted) and the API is its publisher
location (``POST /pub/<channel>``, ``Accept: application/json``: the answer,
201 or 202, counts the channel's subscribers; ``GET`` the same without
publishing).  bench/nchan.conf sets those locations up.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from thunderpush_bench import BenchError
from thunderpush_bench.clients import WSClient

if TYPE_CHECKING:
    from thunderpush_bench.scenarios import Bench

# Where the publisher and subscriber locations are (bench/nchan.conf).
PUBLISHER = "/pub/"
SUBSCRIBER = "/sub/{channel}"
# Scenarios that run against Nchan: no users, no Pusher, no cluster.
NCHAN_SCENARIOS = ("fanout", "idle", "publish", "storm")
# Every body the bench publishes starts with this (``Bench.body``), and Nchan
# sends it as it is: nothing else it sends a subscriber contains it.
NCHAN_MARKER = b'{"seq":'


class NchanClient(WSClient):
    """A websocket to Nchan's subscriber location: subscribed once the upgrade is answered,
    then every message a text frame holding one published body."""

    __slots__ = ()

    marker = NCHAN_MARKER

    def _upgraded(self) -> None:
        self._opened()

    def _message(self, text: bytes) -> int:
        return self._deliveries(text) if text.startswith(NCHAN_MARKER) else 0

    def _payloads(self, text: bytes) -> list[str]:
        return [text.decode()]


async def nchan_subscribers(bench: Bench, channel: str) -> int:
    """How many subscribers Nchan counts in ``channel`` (0 before the first one)."""
    status, body = await bench.api("GET", channel)
    if status == 404:
        return 0
    if status != 200 or not isinstance(body, dict):
        raise BenchError(f"Nchan's publisher location answered {status}: {json.dumps(body)}")
    return int(body.get("subscribers", 0))
