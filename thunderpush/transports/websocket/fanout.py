"""The fan-out fast path: a frame built once per publish, written at once when the
server is idle, else one send per socket per loop turn.

Tornado writes each websocket message through a new frame, a Future and a Task
(``WebSocketHandler.write_message``); at thousands of receivers per publish those
objects cost more than the sends themselves and keep the cyclic GC busy.  Here a
publish encodes its websocket frame once (``text_frame``, cached for the
receivers of the same delivery) and hands it to the ``Outbox`` for each receiver.

Two ways out, chosen once per loop turn.  While publishes keep coming (one was
sent within ``Outbox.BUSY_SECONDS``), each receiver's frames wait in its
``pending`` until the end of the turn, when every socket with something queued
gets one ``send`` of everything queued for it: several publishes in a turn cost
one system call per socket.  A publish to an idle server has nothing to share
a send with, so its frames are written at once, as the hub reaches each
receiver: the first subscriber does not wait for the last one to be queued
(with 2,000 subscribers, 2-4 ms of queueing before the first write), and no
list per receiver is made and dropped (their collection paused fan-outs for
tens of milliseconds at a time).  Only that publish's frame is written at
once: another publish in the same turn is queued behind it.

Ordering is kept: a socket with bytes already waiting in its transport gets
its frames behind them, and any other write of a connection (heartbeat, close)
first flushes what the outbox holds for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class FrameCache:
    """Remembers the frame of the last delivery: every receiver of one publish
    is handed the same ``element`` object, so an identity check suffices."""

    __slots__ = ("_encode", "_element", "_frame")

    def __init__(self, encode: Callable[[str], bytes]) -> None:
        self._encode = encode
        self._element: str | None = None
        self._frame = b""

    def frame(self, element: str) -> bytes:
        if element is not self._element:
            self._frame = self._encode(element)
            self._element = element
        return self._frame


class Outbox:
    """Frames for the server's websockets: written at once in an idle loop turn,
    else queued per socket and flushed at the end of the turn.

    One per event loop (``WebSocketService.bind_to_running_loop`` makes it),
    so a flush never outlives the loop that was to run it.
    """

    # A turn that starts sending within this long after the last one that sent
    # is busy: its frames are queued, to share a send with the next publish's.
    # Flat out, the next publish may come several milliseconds after a flush
    # (its publisher was reading deliveries): with 5 ms, 34 of 152 sending turns
    # of a full-speed fan-out to 2,000 were judged idle on a loaded machine, and
    # each cost every socket one more send; with 50 ms, only the first.  A
    # publisher pacing itself at 5 messages/s leaves 200 ms between them.
    BUSY_SECONDS = 0.05

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Queued] = []
        # The one frame this loop turn writes at once (the first publish of an
        # idle turn), else None; a websocket compares it to write inline,
        # without calling ``queue``.  Any other frame in the same turn (the
        # next publish, if several came together) is queued: a turn judged
        # idle by mistake costs a socket two sends, not one per publish.
        self.direct: bytes | None = None
        # This turn has written at once (until ``_end_direct``, next turn).
        self._direct_turn = False
        # When the last turn that sent anything ended (the loop's clock).
        self._last_sent = float("-inf")

    def queue(self, target: Queued, frame: bytes) -> None:
        pending = target.pending
        if pending:
            if pending.__class__ is bytes:
                target.pending = [pending, frame]  # type: ignore[list-item]
            else:
                pending.append(frame)  # type: ignore[union-attr]
            return
        if frame is self.direct:
            target.write_now(frame)
            return
        dirty = self._dirty
        if not dirty:
            loop = self._loop
            if not self._direct_turn and loop.time() - self._last_sent > self.BUSY_SECONDS:
                self.direct = frame
                self._direct_turn = True
                loop.call_soon(self._end_direct)
                target.write_now(frame)
                return
            self.direct = None
            loop.call_soon(self.flush)
        dirty.append(target)
        # The first frame alone, not in a list: no container per receiver for
        # the cyclic GC to track (a second frame in the turn makes the list).
        target.pending = frame

    def _end_direct(self) -> None:
        """The turn that wrote at once is over: the next ones within
        ``BUSY_SECONDS`` queue."""
        self.direct = None
        self._direct_turn = False
        self._last_sent = self._loop.time()

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for target in dirty:
            target.flush_pending()
        self._last_sent = self._loop.time()


class Queued(Protocol):
    """What an outbox entry offers (``thunderpush.transports.websocket.socket.WebSocket``
    is one): frames waiting in ``pending`` until ``flush_pending`` writes them
    (none: an empty bytes, which ``queue`` replaces; one frame: its bytes;
    more: a list of them), and ``write_now`` for a frame that need not wait."""

    pending: bytes | list[bytes]

    def flush_pending(self) -> None: ...

    def write_now(self, frame: bytes) -> None: ...
