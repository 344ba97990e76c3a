"""An HTTP connection's deadlines, on one timer per connection.

``Deadlines`` is what ``HttpConnection`` adds to the shared read buffer: no
complete head ``head_timeout`` seconds after a connection opens or a request
begins, no complete body ``body_timeout`` after its head, nothing
``idle_timeout`` after the last answer, and ``timed_out`` is called.  One timer
serves them all::

    self.enter(BODY)        # a new phase, armed by the next arm_deadline
    self.arm_deadline(config)
    self.stop_deadlines()   # for good: the connection is served elsewhere
"""

from __future__ import annotations

import asyncio
from typing import Any

from thunderpush.config import Config
from thunderpush.transports.reads import SharedReadBuffer

# Where a connection is, for its deadline; DONE once it has none any more.
HEAD, BODY, IDLE, DONE = range(4)


class Deadlines(SharedReadBuffer):
    """A connection's deadline for its current phase, on one timer.

    The timer is moved only when a deadline comes earlier: a later one is
    noticed when the timer fires, so a busy keep-alive connection does not
    cancel and schedule a timer per request.
    """

    __slots__ = ("_loop", "_phase", "_rearm", "_deadline", "_timer")

    def __init__(self) -> None:
        self._loop: Any = None
        self._phase = HEAD
        self._rearm = True
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def enter(self, phase: int) -> None:
        """A new phase: the next ``arm_deadline`` gives it its deadline."""
        if self._phase != DONE:
            self._phase = phase
            self._rearm = True

    def arm_deadline(self, config: Config) -> None:
        """After each read: a new phase gets a new deadline, one timer serves them all."""
        if not self._rearm or self._phase == DONE:
            return
        self._rearm = False
        phase = self._phase
        if phase == IDLE:
            timeout = config.idle_timeout
        else:
            timeout = config.head_timeout if phase == HEAD else config.body_timeout
        self._deadline = deadline = self._loop.time() + timeout
        timer = self._timer
        if timer is None or deadline < timer.when():
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._expire)

    def stop_deadlines(self) -> None:
        """No more deadlines: the connection is not this object's any more."""
        self._phase = DONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def timed_out(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _expire(self) -> None:
        self._timer = None
        if self._phase == DONE:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._expire)
            return
        self.timed_out()
