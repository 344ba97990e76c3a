"""How often a log line about one client may be written: once per key per window.

A hostile page or a misconfigured client can repeat the same refused request
many times a second; a line per request would flood the log and hide the
rest.  ``Throttle`` says when the next line about a key (an origin, an address)
is due: the first time, then once per ``window`` seconds; it remembers at most
``most`` keys, forgetting the oldest first, so a flood of distinct keys costs
bounded memory.  Its ``clock`` is injected, so that tests move time instead of
sleeping::

    refused = Throttle(window=60.0)
    if refused.due(origin):
        logger.info("Origin refused: %s.", origin)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

# How long a key stays quiet after its line, and how many keys are remembered.
WINDOW_SECONDS = 60.0
MOST_KEYS = 10_000


class Throttle:
    """Whether a line about a key is due now: once per ``window`` seconds per key."""

    def __init__(
        self,
        window: float = WINDOW_SECONDS,
        most: int = MOST_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window, self.most, self.clock = window, most, clock
        # Each key and when its last line was written, oldest first.
        self._last: dict[Hashable, float] = {}

    def due(self, key: Hashable) -> bool:
        """True (and the key's window starts again) if no line about ``key`` was
        written in the last ``window`` seconds."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            return False
        self._last.pop(key, None)
        if len(self._last) >= self.most:
            del self._last[next(iter(self._last))]
        self._last[key] = now
        return True
