"""One kind's webhook events waiting to be sent, coalesced per name.

An event is a statement of state ("news is occupied"): while one is pending
for a name, a second for the same name either takes it back (``news`` vacated
before ``news occupied`` was sent: nothing to say) or says it again (in a
cluster, another node may have told the reverse in between: once is enough).
So a queue holds at most one event per name, in the order the names became
pending, and a client that subscribes and unsubscribes the same channels over
and over fills it with no more than those channels, however fast it goes::

    channels = Pending(limit=10_000)
    channels.record("channel_occupied", "news")   # -> False (nothing dropped)
    channels.record("channel_vacated", "news")    # nothing pending any more
"""

from __future__ import annotations

from collections import OrderedDict

from thunderpush.webhooks.events import Event


class Pending:
    """At most ``limit`` names, each with its pending event; the oldest dropped beyond."""

    __slots__ = ("coalesced", "events", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # name -> event name.  An OrderedDict: taking and dropping from the front
        # is O(1), where a dict's front fills with holes that each read skips.
        self.events: OrderedDict[str, str] = OrderedDict()
        # Events that said nothing new: taken back, or said twice while pending.
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self.events)

    def record(self, event: str, name: str) -> bool:
        """``event`` about ``name`` happened; True if the oldest pending one was dropped
        to make room for it."""
        events = self.events
        pending = events.get(name)
        if pending is None:
            dropped = len(events) >= self.limit
            if dropped:
                events.popitem(last=False)
            events[name] = event
            return dropped
        if pending != event:
            del events[name]  # the reverse of what was pending: nothing to say
            self.coalesced += 2
        else:
            self.coalesced += 1
        return False

    def take(self, count: int) -> list[Event]:
        """The ``count`` oldest pending events at most, no longer pending."""
        events = self.events
        taken = []
        for _ in range(min(count, len(events))):
            name, event = events.popitem(last=False)
            taken.append((event, name))
        return taken

    def clear(self) -> int:
        """Forgets every pending event; how many there were."""
        count = len(self.events)
        self.events.clear()
        return count
