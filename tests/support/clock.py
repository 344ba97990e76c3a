"""A clock the test moves, for code that takes one (``Streams(clock=...)``).

A test of a TTL advances it past the TTL instead of sleeping through it, so
the test neither waits nor depends on how loaded the machine is::

    clock = ManualClock()
    streams = Streams(clock)
    clock.advance(300)
"""

from __future__ import annotations


class ManualClock:
    """Seconds, like ``time.monotonic``, that pass only when ``advance`` says so."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
