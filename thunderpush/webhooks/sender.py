"""Each app's queues of webhook events, and the task that POSTs them.

Recording an event is a dict operation on its app's queue: nothing on the
delivery path waits for a webhook, and an app without a webhook URL records
nothing (its hub has no one to tell).  Each app has one queue per kind of
event (``events.KINDS``: users, channels, and in Pusher's format presence
members, client events, cache misses, subscription counts: ``pending``), each
holding at most ``LIMIT`` events: the statements of state coalesce per name
(an event taken back before it was sent is nothing to say; a newer count
replaces the pending one), client events are kept each and in order.  Churn
of one kind fills that kind's queue only, and can never push another's event
out.  The app's format (``events.FORMATS``) says which events it carries; the
hub tells every one, and the others are left at the cost of a lookup.

One task per app sends them in rounds, one POST at a time: a round starts
``LINGER`` seconds after the first event it carries came (the window in which
events coalesce), takes what is pending then, and sends it in POSTs of at most
``BATCH`` events, the kinds in ``KINDS``' order (user events first); what
comes during a round waits for the next, so a round starts at most every
``LINGER`` seconds and sends at most one event per name that changed (and
every client event).  A POST that fails (refused, no answer within
``TIMEOUT``, a status other than 2xx) is tried again, the same batch, after a
backoff that doubles from ``MIN_BACKOFF`` to ``MAX_BACKOFF``; meanwhile the
queues go on coalescing, and drop their oldest beyond ``LIMIT`` (counted per
kind and logged once per outage).  When the server stops, what is queued gets
one last try, for at most ``LAST_TRY`` seconds in all.  Example::

    webhooks = Webhooks()
    webhooks.watch(app)        # app.webhook_url is set: its hub tells the queues
    webhooks.start()           # in the server's loop
    ...
    await webhooks.stop()
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from thunderpush.core.listener import CACHE_MISS, CLIENT_EVENT, SUBSCRIPTION_COUNT
from thunderpush.settings import masked_url
from thunderpush.webhooks.events import (
    CARRIED,
    CHANNEL,
    KINDS,
    MEMBER,
    USER,
    Detail,
    Event,
    headers,
    kind,
    payload,
)
from thunderpush.webhooks.pending import Held, Latest, Pending, Queue
from thunderpush.webhooks.post import Poster

if TYPE_CHECKING:
    from thunderpush.core.apps import App

logger = logging.getLogger(__name__)

LINGER = 0.5
BATCH = 100
LIMIT = 10_000
TIMEOUT = 5.0
MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
LAST_TRY = 1.0


class Webhooks:
    """The queues of the apps that have a webhook URL, and what they sent and lost."""

    def __init__(self) -> None:
        # By kind (``channel``, ``user``, and Pusher's kinds once an app has
        # Pusher's format): events the receivers answered 2xx to, and events
        # dropped (pushed out of a full queue, the app's URL removed, unsent when
        # the server stopped).  And POSTs that failed.
        self.sent = dict.fromkeys((CHANNEL, USER), 0)
        self.dropped = dict.fromkeys((CHANNEL, USER), 0)
        self.failures = 0
        self.poster = Poster()
        self._outboxes: dict[str, Outbox] = {}
        self._started = False
        self.stopping = asyncio.Event()

    @property
    def coalesced(self) -> dict[str, int]:
        """By kind: events never sent because they said nothing new (taken back
        before they were sent, or said twice while pending)."""
        outboxes = self._outboxes.values()
        return {
            of_kind: sum(outbox.queues[of_kind].coalesced for outbox in outboxes)
            for of_kind in self.sent
        }

    def watch(self, app: App) -> None:
        """Points ``app``'s hub at its queues if the app has a webhook URL, else at
        nothing; called again whenever the app's settings change (SIGHUP)."""
        outbox = self._outboxes.get(app.key)
        if not app.webhook_url:
            app.hub.on_transition = None
            if outbox is not None:
                outbox.discard()
            return
        if outbox is None:
            outbox = self._outboxes[app.key] = Outbox(self, app)
            if self._started:
                outbox.start()
        outbox.app = app
        outbox.carry(app.webhook_format)
        for of_kind in outbox.kinds:
            self.sent.setdefault(of_kind, 0)
            self.dropped.setdefault(of_kind, 0)
        app.hub.on_transition = outbox.record

    def start(self) -> None:
        """Starts sending (in the running loop); events recorded before wait until then."""
        self._started = True
        for outbox in self._outboxes.values():
            outbox.start()

    async def stop(self) -> None:
        """One last try for what is queued, ``LAST_TRY`` seconds at most; the rest is dropped."""
        if not self._started or self.stopping.is_set():
            return
        self.stopping.set()
        tasks = [outbox.wake() for outbox in self._outboxes.values()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=LAST_TRY)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for outbox in self._outboxes.values():
            outbox.give_up()
        await self.poster.close()


class Outbox:
    """The events of one app waiting to be sent, and the task that sends them."""

    def __init__(self, webhooks: Webhooks, app: App) -> None:
        self.webhooks = webhooks
        self.app = app
        # One queue per kind, in the order a batch takes them.
        self.queues: dict[str, Held] = {of_kind: _QUEUE[of_kind](LIMIT) for of_kind in KINDS}
        # The format the app's events are written in, the kinds it carries, and
        # the queue of each event it carries (``carry``).
        self.format = ""
        self.kinds: tuple[str, ...] = ()
        self._queue_of: dict[str, tuple[str, Held]] = {}
        # The batch being sent, or to send again: taken from the queues, not yet
        # answered 2xx.  Kept whole across retries, so that each POST carries
        # exactly the statements of state it carried the first time.
        self.batch: list[Event] = []
        self.task: asyncio.Task | None = None
        # Set when an event is recorded.
        self._queued = asyncio.Event()
        # Since the last POST the receiver took: whether one failed, or events were dropped.
        self._failing = False
        self._dropping = False
        self.carry(app.webhook_format)

    def carry(self, form: str) -> None:
        """Writes the app's events in format ``form`` from now on: what is queued of
        the kinds it does not carry is dropped (an app's format changed by SIGHUP)."""
        if form == self.format:
            return
        self.format = form
        carried = CARRIED[form]
        self.kinds = tuple(dict.fromkeys(kind(name) for name in carried))
        self._queue_of = {name: (kind(name), self.queues[kind(name)]) for name in carried}
        dropped = self.webhooks.dropped
        kept = [event for event in self.batch if event[0] in carried]
        if len(kept) < len(self.batch):
            # A batch on its way is then sent again as what is left of it.
            for event in self.batch:
                if event[0] not in carried:
                    dropped[kind(event[0])] += 1
            self.batch = kept
        for of_kind, queue in self.queues.items():
            if of_kind not in self.kinds and len(queue):
                dropped[of_kind] = dropped.get(of_kind, 0) + queue.clear()

    def record(self, name: str, subject: str, detail: Detail = None) -> None:
        """The hub's transitions land here: one dict operation in the queue of its kind.
        The events the app's format does not carry are left."""
        route = self._queue_of.get(name)
        if route is None:
            return
        of_kind, queue = route
        # A presence member is named by its channel and user: each has its own pending event.
        named = (subject, detail["user_id"]) if of_kind == MEMBER and detail else None
        if queue.record(name, subject, detail, named):
            self._dropped(of_kind)
        if not self._queued.is_set():
            self._queued.set()

    def _dropped(self, of_kind: str) -> None:
        self.webhooks.dropped[of_kind] += 1
        if not self._dropping:
            self._dropping = True
            logger.warning(
                "Webhook queue of app %s holds %d %s names: dropping the oldest.",
                self.app.key,
                LIMIT,
                of_kind,
            )

    def discard(self) -> None:
        """The app has no webhook URL any more: its queued events go nowhere."""
        dropped = self.webhooks.dropped
        for event in self.batch:
            dropped[kind(event[0])] += 1
        self.batch = []
        for of_kind, queue in self.queues.items():
            if len(queue):
                dropped[of_kind] += queue.clear()

    def start(self) -> None:
        self.task = asyncio.create_task(self._send_forever())

    def wake(self) -> asyncio.Task:
        """The server stops: no more waiting; the task ends when the queues are sent
        or a POST fails."""
        assert self.task is not None
        self._queued.set()
        return self.task

    def give_up(self) -> None:
        """Whatever is still queued when the server has stopped is lost: counted and said."""
        count = len(self.batch) + self._due()
        if count:
            logger.warning(
                "%d webhook events of app %s were not sent before the server stopped.",
                count,
                self.app.key,
            )
            self.discard()

    async def _send_forever(self) -> None:
        stopping = self.webhooks.stopping
        backoff = MIN_BACKOFF
        while True:
            await self._queued.wait()
            if not stopping.is_set():
                await _wait(stopping, LINGER)  # the window: events coalesce
            self._queued.clear()
            # This round: what is pending now (all of it when stopping).
            due = self._due()
            while self.batch or due > 0 or (stopping.is_set() and self._pending()):
                if not self.batch:
                    self.batch = self._take(min(BATCH, due) if due > 0 else BATCH)
                    due -= len(self.batch)
                    if not self.batch:
                        break  # what was due was taken back meanwhile
                if await self._send():
                    backoff = MIN_BACKOFF
                elif stopping.is_set():
                    return
                else:
                    await _wait(stopping, backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
            if stopping.is_set():
                return

    def _due(self) -> int:
        return sum(len(queue) for queue in self.queues.values())

    def _pending(self) -> bool:
        return any(queue.events for queue in self.queues.values())

    def _take(self, count: int) -> list[Event]:
        """The next batch: user events first, then channel events, then Pusher's others."""
        batch: list[Event] = []
        for queue in self.queues.values():
            if len(batch) >= count:
                break
            batch += queue.take(count - len(batch))
        return batch

    async def _send(self) -> bool:
        """POSTs ``self.batch``; True if the receiver took it (or there is no URL any
        more), else it stays to be sent again."""
        app, webhooks, batch = self.app, self.webhooks, self.batch
        if not app.webhook_url:
            self.discard()
            return True
        body = payload(batch, int(time.time() * 1000))
        signed = headers(self.format, app.key, app.secret, body)
        failure = await webhooks.poster.post(app.webhook_url, signed, body, TIMEOUT)
        if failure is None:
            if self.batch is batch:  # not discarded while it was on its way
                self.batch = []
                for name, *_ in batch:
                    webhooks.sent[kind(name)] += 1
            if self._failing or self._dropping:
                logger.info("Webhooks of app %s are delivered again.", app.key)
            self._failing = self._dropping = False
            return True
        webhooks.failures += 1
        if self._failing:
            logger.debug("Webhook POST of app %s failed again: %s", app.key, failure)
        else:
            self._failing = True
            logger.warning(
                "Webhook POST of app %s to %s failed (%s); retrying with backoff.",
                app.key,
                masked_url(app.webhook_url),
                failure,
            )
        return False


# The queue of each kind: statements of state coalesce, a count is replaced by a
# newer one, a client event is said each time.
_QUEUE: dict[str, type[Held]] = {
    USER: Pending,
    CHANNEL: Pending,
    MEMBER: Pending,
    CLIENT_EVENT: Queue,
    CACHE_MISS: Pending,
    SUBSCRIPTION_COUNT: Latest,
}


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set, ``seconds`` at most."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        pass
