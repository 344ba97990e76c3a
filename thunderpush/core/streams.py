"""The streams of the channels that keep history, in this process's memory.

Each channel that keeps history (``thunderpush.core.retention``) has a stream:
an epoch, made when the stream starts, and the offset of its last message
(the first message of an epoch is offset 1), with its last messages.  A
client that saw up to some (epoch, offset) can be sent exactly what came
after, or be told that it cannot.  ``Streams`` holds one app's streams;
``Stream`` is what a read answers, here or from a cluster.  Example::

    streams = Streams()
    streams.append("news", '{"a": 1}', Keep(10, 300))   # -> ("9f2c4e1a7b3d5c60", 1)
    streams.read("news", Keep(10, 300)).after(0)          # -> that one message

Nothing piles up: a stream keeps at most ``keep.size`` messages, none older
than ``keep.ttl`` seconds, and a stream with no publish for ``keep.ttl``
seconds is dropped whole (its next publish starts a new epoch).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import Any, Protocol

from thunderpush.core.retention import Keep

# An epoch is this many random bytes, written as twice as many hex digits.
EPOCH_BYTES = 8


@dataclass(frozen=True)
class Stream:
    """A channel's stream as read: its epoch, the offset of its last message,
    and the messages it still keeps as (offset, payload), oldest first."""

    epoch: str
    offset: int
    messages: tuple[tuple[int, str], ...] = ()

    def after(self, offset: int) -> Stream:
        """The same stream with only the messages after ``offset``."""
        return Stream(self.epoch, self.offset, tuple(m for m in self.messages if m[0] > offset))

    def recoverable(self, epoch: str, offset: int) -> bool:
        """Whether every message after (``epoch``, ``offset``) is still kept, so that
        a client that saw up to there misses nothing when sent ``after(offset)``."""
        if epoch != self.epoch or offset > self.offset:
            return False
        first = self.messages[0][0] if self.messages else self.offset + 1
        return offset >= first - 1


# A channel that keeps no history, or whose stream has not started (or expired).
NO_STREAM = Stream("", 0)


class _Live:
    """A stream being written: its position, its messages as (offset, payload,
    time kept), and when it was last published to and for how long it lives."""

    __slots__ = ("epoch", "messages", "offset", "published", "ttl")

    def __init__(self, keep: Keep) -> None:
        self.epoch = secrets.token_hex(EPOCH_BYTES)
        self.offset = 0
        self.messages: deque[tuple[int, str, float]] = deque(maxlen=keep.size)
        self.published = 0.0
        self.ttl = keep.ttl


class Streams:
    """One app's streams on this process, by channel name.

    The policy is given on each call, so a reload that changes it applies to
    the next publish and read.  The dict is kept in order of last publish, so
    each append drops the expired streams at its front without a scan.
    """

    def __init__(self, clock: Callable[[], float] = monotonic) -> None:
        self._streams: dict[str, _Live] = {}
        # Seconds, for the ttls: ``time.monotonic``, or a clock a test moves.
        self.clock = clock

    def append(self, channel: str, payload: str, keep: Keep) -> tuple[str, int]:
        """Keeps ``payload`` as the next message of ``channel``; returns its (epoch, offset)."""
        now = self.clock()
        self._drop_expired(now)
        stream = self._streams.pop(channel, None)
        if stream is None or now - stream.published >= keep.ttl:
            stream = _Live(keep)
        elif stream.messages.maxlen != keep.size:
            stream.messages = deque(stream.messages, maxlen=keep.size)
        stream.offset += 1
        stream.messages.append((stream.offset, payload, now))
        stream.published, stream.ttl = now, keep.ttl
        _drop_old(stream.messages, now - keep.ttl)
        self._streams[channel] = stream
        return stream.epoch, stream.offset

    def read(self, channel: str, keep: Keep | None) -> Stream:
        """``channel``'s stream now; ``NO_STREAM`` if it keeps no history (``keep`` None)
        or has none."""
        stream = self._streams.get(channel)
        now = self.clock()
        if keep is None or stream is None or now - stream.published >= keep.ttl:
            return NO_STREAM
        cutoff = now - keep.ttl
        kept = [(offset, payload) for offset, payload, at in stream.messages if at > cutoff]
        return Stream(stream.epoch, stream.offset, tuple(kept[-keep.size :]))

    def __len__(self) -> int:
        return len(self._streams)

    def _drop_expired(self, now: float) -> None:
        drop_expired(self._streams, now)


class Expiring(Protocol):
    """What ``drop_expired`` reads of a kept entry: when it was last written, for how long."""

    published: float
    ttl: float


def drop_expired(entries: dict[str, Any], now: float) -> None:
    """Drops the entries at the front of ``entries`` (``Expiring``, in order of
    last write) whose time is up.

    Entries of different ttls may wait behind a longer-lived one, but for no
    longer than the longest ttl, so memory stays bounded.
    """
    while entries:
        name = next(iter(entries))
        entry: Expiring = entries[name]
        if now - entry.published < entry.ttl:
            return
        del entries[name]


def _drop_old(messages: deque[tuple[int, str, float]], cutoff: float) -> None:
    while messages and messages[0][2] <= cutoff:
        messages.popleft()
