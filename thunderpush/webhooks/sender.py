"""Each app's queue of webhook events, and the task that POSTs them.

Recording an event is an append to its app's queue: nothing on the delivery
path waits for a webhook, and an app without a webhook URL records nothing
(its hub has no one to tell).  One task per app sends the queue in order, one
POST at a time: at most ``BATCH`` events per POST, sent ``LINGER`` seconds
after the first of them came (at once when ``BATCH`` are waiting).  A POST
that fails (refused, no answer within ``TIMEOUT``, a status other than 2xx) is
tried again after a backoff that doubles from ``MIN_BACKOFF`` to
``MAX_BACKOFF``, for as long as its events are queued: a queue holds at most
``LIMIT`` events and drops the oldest beyond, counted and logged once per
outage.  When the server stops, what is queued gets one last try, for at most
``LAST_TRY`` seconds in all.  Example::

    webhooks = Webhooks()
    webhooks.watch(app)        # app.webhook_url is set: its hub tells the queue
    webhooks.start()           # in the server's loop
    ...
    await webhooks.stop()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from thunderpush.server.settings import masked_url
from thunderpush.webhooks.events import Event, payload, signature
from thunderpush.webhooks.post import post

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
        # Events the receivers answered 2xx to, events dropped (queue full, the
        # app's URL removed, unsent when the server stopped), POSTs that failed.
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self._outboxes: dict[str, Outbox] = {}
        self._started = False
        self.stopping = asyncio.Event()

    def watch(self, app: App) -> None:
        """Points ``app``'s hub at its queue if the app has a webhook URL, else at
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


class Outbox:
    """The events of one app waiting to be sent, and the task that sends them."""

    def __init__(self, webhooks: Webhooks, app: App) -> None:
        self.webhooks = webhooks
        self.app = app
        self.events: deque[Event] = deque()
        self.task: asyncio.Task | None = None
        # Set while events are queued; set by a full batch, or the server stopping.
        self._queued = asyncio.Event()
        self._hurry = asyncio.Event()
        # Since the last POST the receiver took: whether one failed, or events were dropped.
        self._failing = False
        self._dropping = False

    def record(self, name: str, subject: str) -> None:
        """The hub's transitions land here: one append (and the oldest dropped when full)."""
        events = self.events
        if len(events) >= LIMIT:
            self._drop()
        events.append((name, subject))
        self._queued.set()
        if len(events) >= BATCH:
            self._hurry.set()

    def _drop(self) -> None:
        self.events.popleft()
        self.webhooks.dropped += 1
        if not self._dropping:
            self._dropping = True
            logger.warning(
                "Webhook queue of app %s is full (%d events): dropping the oldest.",
                self.app.key,
                LIMIT,
            )

    def discard(self) -> None:
        """The app has no webhook URL any more: its queued events go nowhere."""
        self.webhooks.dropped += len(self.events)
        self.events.clear()

    def start(self) -> None:
        self.task = asyncio.create_task(self._send_forever())

    def wake(self) -> asyncio.Task:
        """The server stops: no more waiting; the task ends when the queue is sent or a
        POST fails."""
        assert self.task is not None
        self._queued.set()
        self._hurry.set()
        return self.task

    def give_up(self) -> None:
        """Whatever is still queued when the server has stopped is lost: counted and said."""
        if self.events:
            logger.warning(
                "%d webhook events of app %s were not sent before the server stopped.",
                len(self.events),
                self.app.key,
            )
            self.discard()

    async def _send_forever(self) -> None:
        stopping = self.webhooks.stopping
        backoff = MIN_BACKOFF
        while True:
            await self._queued.wait()
            if len(self.events) < BATCH and not stopping.is_set():
                await _wait(self._hurry, LINGER)
            if not self.events:
                if stopping.is_set():
                    return
                self._queued.clear()
                continue
            if await self._send():
                backoff = MIN_BACKOFF
            elif stopping.is_set():
                return
            else:
                await _wait(stopping, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _send(self) -> bool:
        """POSTs the oldest batch; True if the receiver took it, else it is queued again."""
        queue = self.events
        batch = [queue.popleft() for _ in range(min(BATCH, len(queue)))]
        if len(queue) < BATCH:
            self._hurry.clear()
        app, webhooks = self.app, self.webhooks
        if not app.webhook_url:
            webhooks.dropped += len(batch)
            return True
        body = payload(batch, int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "X-Thunder-Key": app.key,
            "X-Thunder-Signature": signature(app.secret, body),
        }
        try:
            failure = await post(app.webhook_url, headers, body, TIMEOUT)
        except asyncio.CancelledError:
            self._requeue(batch)
            raise
        if failure is None:
            webhooks.sent += len(batch)
            if self._failing or self._dropping:
                logger.info("Webhooks of app %s are delivered again.", app.key)
            self._failing = self._dropping = False
            return True
        webhooks.failures += 1
        self._requeue(batch)
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

    def _requeue(self, batch: list[Event]) -> None:
        """``batch`` back at the front, in order; the oldest beyond ``LIMIT`` are dropped."""
        self.events.extendleft(reversed(batch))
        self._queued.set()
        while len(self.events) > LIMIT:
            self._drop()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set, ``seconds`` at most."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        pass
