"""One kind's webhook events waiting to be sent: coalesced per name, or not at all.

Most events are statements of state ("news is occupied"): while one is
pending for a name, a second for the same name either takes it back (``news``
vacated before ``news occupied`` was sent: nothing to say) or says it again
(in a cluster, another node may have told the reverse in between: once is
enough).  So ``Pending`` holds at most one event per name, in the order the
names became pending, and a client that subscribes and unsubscribes the same
channels over and over fills it with no more than those channels, however
fast it goes::

    channels = Pending(limit=10_000)
    channels.record("channel_occupied", "news")   # -> False (nothing dropped)
    channels.record("channel_vacated", "news")    # nothing pending any more

A name is the event's subject (a channel, a user) or, for a presence member,
``(channel, user id)``.  ``Latest`` keeps the last value said of each name (a
channel's subscription count: only the newest matters), and ``Queue`` keeps
every event, in order (a client event says something each time); all three
hold at most ``limit`` events and drop their oldest beyond.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

from thunderpush.webhooks.events import Detail, Event


class Held:
    """What the three kinds of queue share: a bound, their events, and a count."""

    __slots__ = ("coalesced", "events", "limit")

    events: OrderedDict[Hashable, Event] | deque[Event]

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Events that said nothing new: taken back, said twice, or replaced while pending.
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self.events)

    def record(
        self, event: str, subject: str, detail: Detail = None, name: Hashable = None
    ) -> bool:
        """``event`` about ``subject`` (named ``name``, by default the subject) happened;
        True if the oldest pending one was dropped to make room for it."""
        raise NotImplementedError

    def take(self, count: int) -> list[Event]:
        """The ``count`` oldest pending events at most, no longer pending."""
        raise NotImplementedError

    def clear(self) -> int:
        """Forgets every pending event; how many there were."""
        count = len(self.events)
        self.events.clear()
        return count


class Pending(Held):
    """At most ``limit`` names, each with its pending event; the oldest dropped beyond."""

    __slots__ = ()

    events: OrderedDict[Hashable, Event]

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        # name -> event.  An OrderedDict: taking and dropping from the front is
        # O(1), where a dict's front fills with holes that each read skips.
        self.events = OrderedDict()

    def record(
        self, event: str, subject: str, detail: Detail = None, name: Hashable = None
    ) -> bool:
        events = self.events
        key = subject if name is None else name
        pending = events.get(key)
        if pending is None:
            return self._add(key, (event, subject, detail))
        if pending[0] != event:
            del events[key]  # the reverse of what was pending: nothing to say
            self.coalesced += 2
        else:
            self.coalesced += 1
        return False

    def _add(self, key: Hashable, event: Event) -> bool:
        events = self.events
        dropped = len(events) >= self.limit
        if dropped:
            events.popitem(last=False)
        events[key] = event
        return dropped

    def take(self, count: int) -> list[Event]:
        events = self.events
        return [events.popitem(last=False)[1] for _ in range(min(count, len(events)))]


class Latest(Pending):
    """One pending event per name, the last said: a newer value replaces the
    pending one where it waits (its place in the order stays)."""

    __slots__ = ()

    def record(
        self, event: str, subject: str, detail: Detail = None, name: Hashable = None
    ) -> bool:
        key = subject if name is None else name
        if key not in self.events:
            return self._add(key, (event, subject, detail))
        self.events[key] = (event, subject, detail)
        self.coalesced += 1
        return False


class Queue(Held):
    """Every event, in order, ``limit`` at most: the oldest dropped beyond.
    Nothing is coalesced (``coalesced`` stays 0)."""

    __slots__ = ()

    events: deque[Event]

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        # A full deque drops its oldest event as it appends one.
        self.events = deque(maxlen=limit)

    def record(
        self, event: str, subject: str, detail: Detail = None, name: Hashable = None
    ) -> bool:
        full = len(self.events) == self.limit
        self.events.append((event, subject, detail))
        return full

    def take(self, count: int) -> list[Event]:
        events = self.events
        return [events.popleft() for _ in range(min(count, len(events)))]
