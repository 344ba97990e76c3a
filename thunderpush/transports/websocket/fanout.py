"""The fan-out fast path: a frame built once per publish, one send per socket per loop turn.

Tornado writes each websocket message through a new frame, a Future and a Task
(``WebSocketHandler.write_message``); at thousands of receivers per publish those
objects cost more than the sends themselves and keep the cyclic GC busy.  Here a
publish encodes its websocket frame once (``text_frame``, cached for the
receivers of the same delivery), each receiver appends that frame to its
``Outbox`` entry, and once per event-loop turn every socket with something
queued gets one ``send`` of everything queued for it.

Ordering is kept: a socket with bytes already waiting in Tornado's ``IOStream``
gets its frames through ``IOStream.write`` behind them, and any other write of
a connection (heartbeat, close) first flushes what the outbox holds for it.
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
    """Frames queued during this loop turn, per socket, flushed at its end.

    One per event loop (``WebSocketService.bind_to_running_loop`` makes it),
    so a flush never outlives the loop that was to run it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Queued] = []

    def queue(self, target: Queued, frame: bytes) -> None:
        pending = target.pending
        if not pending:
            dirty = self._dirty
            if not dirty:
                self._loop.call_soon(self.flush)
            dirty.append(target)
            target.pending = [frame]
            return
        pending.append(frame)  # type: ignore[union-attr]

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for target in dirty:
            target.flush_pending()


class Queued(Protocol):
    """What an outbox entry offers (``thunderpush.transports.websocket.socket.WebSocket``
    is one): frames waiting in ``pending`` until ``flush_pending`` writes them
    (none: an empty tuple or list, which ``queue`` replaces)."""

    pending: list[bytes] | tuple[()]

    def flush_pending(self) -> None: ...
