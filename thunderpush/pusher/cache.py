"""Pusher's cache channels: a new subscriber's last event, or ``pusher:cache_miss``.

A channel named ``cache-``, ``private-cache-``, ``presence-cache-`` or
``private-encrypted-cache-`` (``protocol.CACHE_PREFIXES``; the server marks
them with ``Apps.keep_last``) keeps the last event the backend published to
it, for the app's ``cache_ttl``: the core keeps it (``thunderpush.core.lasts``,
written by the broker, read through the app's ``History.last``: this process's
memory, or Redis in a cluster, whichever node published it).  A client's own
events never count, as Soketi does and as Pusher's "last triggered event" reads.

Right after a subscription's ``pusher_internal:subscription_succeeded`` (a
presence channel's member list too, which comes through the hub), the
subscriber is sent the kept event as it was published (its name, channel and
data), or ``pusher:cache_miss``; a miss is also told to the app's webhooks
(``CACHE_MISS``) by this node only, the one that served the subscription.

In a cluster the read is a round trip to Redis.  Until it answers, the
connection's deliveries are held (at most ``MAX_HELD`` at a time), so no event
published after the kept one reaches the client before it; the kept event may
then come twice (once read, once live), never after a newer one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from functools import partial
from typing import TYPE_CHECKING

from thunderpush.core.broker import PublishOptions
from thunderpush.core.lasts import Last
from thunderpush.core.listener import CACHE_MISS
from thunderpush.pusher import protocol
from thunderpush.pusher.dialect import PUSHER

if TYPE_CHECKING:
    from thunderpush.pusher.connection import PusherConnection

logger = logging.getLogger(__name__)

# Deliveries held while a read is under way; past it they go out, and the kept
# event may come after them (a read that slow is Redis in trouble).
MAX_HELD = 1000


class CacheReplies:
    """One connection's cache-channel subscriptions still to be told their last event.

    The connection hands it every delivery while it exists (``deliver``) and
    drops it once ``idle``: a connection with no cache subscription under way
    pays one attribute test per delivery.
    """

    def __init__(self, connection: PusherConnection) -> None:
        self.connection = connection
        # Presence cache channels whose member list (or refusal) has not gone out yet.
        self.welcoming: dict[str, None] = {}
        # Reads of the last event under way, and the deliveries held meanwhile.
        self.reading = 0
        self.held: list[str] = []

    @property
    def idle(self) -> bool:
        return not self.welcoming and not self.reading and not self.held

    def deliver(self, element: str) -> None:
        """One delivery to the connection: held while a read is under way; a
        presence cache channel's member list is followed by its last event."""
        if self.reading:
            if len(self.held) < MAX_HELD:
                self.held.append(element)
                return
            self._release(force=True)
        self._send(element)

    def _send(self, element: str) -> None:
        if self.connection.closed:
            return  # held for a client gone meanwhile
        self.connection.socket.send_element(element)
        if self.welcoming:
            channel = protocol.answered_channel(element)
            if channel is not None and channel in self.welcoming:
                del self.welcoming[channel]
                if element.startswith(protocol.SUCCEEDED_HEAD):
                    self.send_last(channel)
                self._done()

    def send_last(self, channel: str) -> None:
        """``channel``'s subscription succeeded: its last event, or a miss, now or
        once read."""
        app = self.connection.app
        result = app.recall.last(app, channel)
        if not isinstance(result, Awaitable):
            self._tell(channel, result)
            self._done()
            return
        self.reading += 1
        asyncio.ensure_future(result).add_done_callback(partial(self._read, channel))

    def _read(self, channel: str, future: asyncio.Future[Last | None]) -> None:
        self.reading -= 1
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if error is None:
            self._tell(channel, future.result())
        else:
            # Redis away: the client is told the miss (it may fetch the state
            # itself); the backend is not, as nothing says the cache is empty.
            logger.info("The last event of %s could not be read: %r", channel, error)
            self._tell(channel, None, webhook=False)
        if not self.reading:
            self._release()
        self._done()

    def _tell(self, channel: str, last: Last | None, webhook: bool = True) -> None:
        connection = self.connection
        hub = connection.app.hub
        if connection.closed or not hub.is_subscribed(connection, channel):
            return
        if last is not None:
            options = PublishOptions(last.event)
            frame = PUSHER.publication(channel, last.payload, None, options)
            connection.socket.send_pack(frame)
            return
        connection.socket.send_pack(protocol.cache_miss(channel))
        if webhook and hub.on_transition is not None:
            hub.on_transition(CACHE_MISS, channel, None)

    def forget(self, channel: str) -> None:
        """The client left ``channel``: no member list is awaited there."""
        self.welcoming.pop(channel, None)
        self._done()

    def _release(self, force: bool = False) -> None:
        """The held deliveries go out, in order; a member list among them may start
        a read, which holds those after it (unless ``force``: too many held)."""
        held, self.held = self.held, []
        for at, element in enumerate(held):
            if self.reading and not force:
                self.held = held[at:]
                return
            self._send(element)

    def _done(self) -> None:
        if self.idle and self.connection.cache is self:
            self.connection.cache = None
