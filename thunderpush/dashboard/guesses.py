"""The dashboard login's guess limit: wrong logins counted per client address.

An address that fails ``LIMIT`` logins within ``WINDOW`` seconds is refused
any login (right or wrong) for ``WINDOW`` seconds after the last of them, so
nobody guesses more than about ``LIMIT`` secrets a minute from one address,
where nothing stopped 1,456 tries a second before.  A right login does not
reset the count: the owner of one app would otherwise reset it between
guesses at another's secret.

The count is kept for the addresses that failed within the last ``WINDOW``
seconds, in the order of their last failure, so the expired ones are dropped
from the front; at most ``MOST`` addresses are kept (the oldest go first),
so no number of addresses grows it without bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

LIMIT = 5
WINDOW = 60.0
MOST = 10_000


@dataclass
class _Failures:
    # When the count started, how many, the last one, and until when the address is refused.
    start: float
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class Guesses:
    """Wrong logins per address; ``locked`` says how long one is still refused."""

    def __init__(
        self,
        limit: int = LIMIT,
        window: float = WINDOW,
        most: int = MOST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.most, self.clock = limit, window, most, clock
        self._failures: dict[str, _Failures] = {}

    def locked(self, address: str) -> float:
        """The seconds ``address`` is still refused any login; 0 if it is not."""
        failures = self._failures.get(address)
        if failures is None:
            return 0.0
        return max(0.0, failures.locked_until - self.clock())

    def failed(self, address: str) -> bool:
        """Counts a wrong login from ``address``; True if it starts a lockout (say so once)."""
        now = self.clock()
        self._forget_before(now - self.window)
        failures = self._failures.pop(address, None)
        if failures is None or now - failures.start >= self.window:
            failures = _Failures(now)
        if len(self._failures) >= self.most:
            del self._failures[next(iter(self._failures))]
        # Last in the dict: the order is the order of the last failure.
        self._failures[address] = failures
        failures.count += 1
        failures.last = now
        if failures.count < self.limit:
            return False
        failures.count = 0
        failures.start = failures.locked_until = now + self.window
        return True

    def _forget_before(self, moment: float) -> None:
        """Drops the addresses whose last failure is older than ``moment``: their
        count and lockout are over."""
        failures = self._failures
        while failures:
            address = next(iter(failures))
            if failures[address].last > moment:
                return
            del failures[address]
