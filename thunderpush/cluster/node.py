"""One node of the cluster: its id, its link to Redis, and staying joined.

A node is up while its link is (``thunderpush.cluster.link``): subscribed to
the route of every channel and user its hubs hold (``thunderpush.cluster.bus``),
beating its heartbeat (every ``presence_ttl / 3``) and writing its presence.
When any of that fails, it is down: one WARNING, every API call that needs
Redis answers 503 at once, clients keep their connections.  It reconnects with
a backoff (doubling, capped at ``MAX_BACKOFF``); once back it resubscribes
everything and waits for Redis to confirm it, beats, rewrites its whole
presence from its hubs, and says so in one INFO line.  Then it closes every
connection it holds with ``MISSED`` (Pusher: 4200): messages may have been
published to them meanwhile (counted by their records that Redis still had,
or through a node back first), which the node cannot know; the clients
reconnect and recover with the positions they have.

Each heartbeat answers the nodes that stopped beating; the node forgets them
unless another claimed them first (``thunderpush.cluster.departures``), and a
node that stops says goodbye the same way.  A node that restarts is a new
node: the id is made when the process starts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from thunderpush.cluster import departures, keys
from thunderpush.cluster.bus import deliver
from thunderpush.cluster.connection import FAILURES, TIMEOUT, address
from thunderpush.cluster.hub import HubReporter
from thunderpush.cluster.link import Link
from thunderpush.cluster.registry import Registry
from thunderpush.core.broker import BackendUnavailable
from thunderpush.core.hub import Hub
from thunderpush.core.protocol import MISSED
from thunderpush.server.settings import masked_url

logger = logging.getLogger(__name__)

# Every Redis call (connect, command) gives up after ``TIMEOUT`` seconds
# (``thunderpush.cluster.connection``): an API call that needs Redis answers
# within about a second.
MIN_BACKOFF = 0.1
MAX_BACKOFF = 2.0


class Node:
    """This process in the cluster on ``urls`` (with ``cluster``: seeds of one Redis
    Cluster); gone for the others ``ttl`` seconds after its last heartbeat."""

    def __init__(self, urls: Sequence[str], ttl: float, cluster: bool = False) -> None:
        self.id = uuid.uuid4().hex
        self.urls = tuple(urls)
        # The URLs as the log shows them: without the password.
        self.shown_url = ", ".join(map(masked_url, self.urls))
        self.ttl = ttl
        if cluster:
            seeds = [address(url) for url in self.urls]
            self.link = Link.over_cluster(seeds, self.id, self._received, self._moved)
        else:
            self.link = Link(address(self.urls[0]), self.id, self._received)
        self.registry = Registry(self)
        # Each app's hub, with its listener.
        self.hubs: dict[str, HubReporter] = {}
        # Every route wanted, to its hub.
        self._routes: dict[bytes, Hub] = {}
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._joined = asyncio.Event()
        self._warned = False

    @property
    def up(self) -> bool:
        return self.link.up

    @property
    def nodes(self) -> list[str]:
        """The ids of the live nodes (this one included), as this one knows them."""
        return self.link.nodes

    def hub(self, key: str) -> Hub:
        """The hub of app ``key`` on this node (``Apps`` calls this for each app),
        reported to Redis by its listener."""
        hub = Hub()
        self.hubs[key] = HubReporter(key, hub, self.registry)
        return hub

    # -- routes ----------------------------------------------------------------

    def route_opened(self, hub: Hub, route: bytes) -> None:
        """``hub`` has its first connection in the channel or user of ``route``:
        subscribed at the end of the loop turn, confirmed by ``confirm``.  Counts
        are written only for confirmed routes (the registry confirms before each
        write), so a publish that counts a subscriber reaches it."""
        self._routes[route] = hub
        self.link.subscribe(route)

    def route_closed(self, route: bytes) -> None:
        """The last connection of ``route``'s channel or user here left."""
        self._routes.pop(route, None)
        self.link.unsubscribe(route)

    def when_confirmed(self, route: bytes, then: Callable[[], None]) -> None:
        """Calls ``then`` once Redis confirmed this node's subscription to ``route``
        (at once if it has).  The confirmation comes with the registry's next
        write, which the subscription that opened the route asked for, or when
        the node rejoins; a route closed meanwhile drops ``then``."""
        self.link.when_confirmed(route, then)

    async def confirm(self) -> None:
        """Waits until Redis has answered every subscription asked so far."""
        await self.link.confirm()

    # -- life ------------------------------------------------------------------

    async def start(self) -> None:
        """Joins the cluster; if Redis is not there within ``TIMEOUT``, keeps trying
        in the background while the server serves what needs no Redis."""
        self._task = asyncio.create_task(self._stay_joined())
        try:
            await asyncio.wait_for(self._joined.wait(), TIMEOUT * 2)
        except asyncio.TimeoutError:
            pass

    async def stop(self) -> None:
        """Leaves the cluster: this node's presence is removed and announced."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, TIMEOUT * 3)
            except asyncio.TimeoutError:
                pass  # wait_for cancelled it

    async def _stay_joined(self) -> None:
        backoff = MIN_BACKOFF
        while not self._stopping.is_set():
            try:
                await self._session()
            except (*FAILURES, BackendUnavailable) as error:
                self._went_down(error)
            if self._joined.is_set():
                self._joined.clear()
                backoff = MIN_BACKOFF
            else:
                backoff = min(backoff * 2, MAX_BACKOFF)
            try:
                await asyncio.wait_for(self._stopping.wait(), backoff)
            except asyncio.TimeoutError:
                pass

    async def _session(self) -> None:
        """The link to Redis, from joining until it fails or the node stops."""
        link = self.link
        try:
            await link.connect()
            forgotten = await self._beat()
            link.up = True
            await self.registry.resync(list(self.hubs.values()), forgotten)
            for hub in self.hubs.values():
                hub.local.close_all(*MISSED)
            self._joined.set()
            if self._warned:
                logger.info("Back in the cluster on %s.", self.shown_url)
            else:
                logger.info("Joined the cluster on %s as node %s.", self.shown_url, self.id)
            self._warned = False
            await _until_one_ends(
                self._beat_forever(),
                link.lost(),
                self.registry.write_forever(),
                self._stopping.wait(),
            )
            await self._leave()
        finally:
            link.close()
            self.registry.clear()

    async def _leave(self) -> None:
        try:
            await departures.goodbye(self)
        except (*FAILURES, BackendUnavailable):
            logger.warning("Could not remove this node's presence from Redis.")

    def _went_down(self, error: BaseException) -> None:
        if self._warned:
            logger.debug("Redis at %s is still unavailable: %s", self.shown_url, error)
            return
        self._warned = True
        logger.warning("Redis at %s is unavailable (%s); reconnecting.", self.shown_url, error)

    async def _beat(self) -> bool:
        """Says this node is alive, and forgets the dead; True if the others had
        forgotten this one."""
        forgotten, dead = await self.link.beat(self.ttl)
        for node in dead:
            await departures.forget(self, node)
        return forgotten

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            await self._beat()
            await self.link.ping()

    def _received(self, channel: bytes, data: bytes) -> None:
        """A message from a route: to that route's hub."""
        hub = self._routes.get(channel)
        if hub is not None:
            try:
                deliver(hub, data)
            except Exception:
                # A bug in one delivery must not cost the node its bus.
                logger.exception("Could not deliver a message from the cluster bus.")

    def _moved(self, routes: list[bytes]) -> None:
        """Redis Cluster moved the slots of ``routes`` while this node was subscribed
        to them: messages may have been missed there, so the connections that
        hold those channels and users are closed with ``MISSED`` (Pusher: 4200)
        to reconnect and recover; at the end of the turn, not inside the
        subscriber's reading."""
        held = [(self._routes[route], route) for route in routes if route in self._routes]
        if held:
            asyncio.get_running_loop().call_soon(_close_holders, held)


def _close_holders(held: list[tuple[Hub, bytes]]) -> None:
    for hub, route in held:
        _, kind, name = keys.name_of(route)
        holders = hub.channel_connections(name) if kind == "c" else hub.user_connections(name)
        for connection in holders:
            connection.close(*MISSED)


async def _until_one_ends(*parts: Awaitable[Any]) -> None:
    """Runs ``parts`` until the first ends (raising if it raised), then cancels the rest."""
    tasks = [asyncio.ensure_future(part) for part in parts]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
