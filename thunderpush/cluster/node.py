"""One node of the cluster: its id, its Redis connections, and staying joined.

A node is up while it is connected: subscribed to every app's bus and to the
route of every channel and user its hubs hold (``thunderpush.cluster.bus``),
beating its heartbeat (every ``presence_ttl / 3``) and writing its presence.
When any of that fails, it is down: one WARNING, every API call that needs
Redis answers 503 at once, clients keep their connections.  It reconnects with
a backoff (doubling, capped at ``MAX_BACKOFF``); once back it resubscribes
everything and waits for Redis to confirm it, registers again, rewrites its
whole presence from its hubs, and says so in one INFO line.  Then it closes
every connection it holds with ``MISSED`` (Pusher: 4200): messages may have
been published to them meanwhile (counted by their records that Redis still
had, or through a node back first), which the node cannot know; the clients
reconnect and recover with the positions they have.

Counts are written only for confirmed routes (``confirm``, called by the
registry before each write), so a publish that counts a subscriber reaches it.
A node that restarts is a new node: the id is made when the process starts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from thunderpush.cluster import scripts
from thunderpush.cluster.bus import deliver
from thunderpush.cluster.connection import (
    FAILURES,
    TIMEOUT,
    Connection,
    Pipeline,
    address,
)
from thunderpush.cluster.hub import HubReporter
from thunderpush.cluster.registry import Registry
from thunderpush.cluster.subscriber import Subscriber
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
    """This process in the cluster on ``url``; gone for the others ``ttl`` seconds after
    its last heartbeat."""

    def __init__(self, url: str, ttl: float) -> None:
        self.id = uuid.uuid4().hex
        self.url = url
        self.address = address(url)
        # The URL as the log shows it: without the password.
        self.shown_url = masked_url(url)
        self.ttl = ttl
        self.up = False
        # The ids of the nodes in the cluster when this one last beat (itself included).
        self.nodes: list[str] = []
        self.registry = Registry(self)
        # Each app's hub, with its listener.
        self.hubs: dict[str, HubReporter] = {}
        # Every pub/sub channel wanted (the apps' buses, the routes), to its hub.
        self._routes: dict[bytes, Hub] = {}
        # Routes asked for and not yet confirmed (each with a token of its asking),
        # and those Redis confirmed on the current bus.
        self._pending: dict[bytes, object] = {}
        self._confirmed: set[bytes] = set()
        # What waits for a route's confirmation: subscriptions' answers.
        self._waiters: dict[bytes, list[Callable[[], None]]] = {}
        self._client: Connection | None = None
        self._bus: Subscriber | None = None
        self._shas: dict[str, bytes] = {}
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._lost = asyncio.Event()
        self._joined = asyncio.Event()
        self._warned = False

    def hub(self, key: str) -> Hub:
        """The hub of app ``key`` on this node (``Apps`` calls this for each app),
        reported to Redis by its listener."""
        hub = Hub()
        self.hubs[key] = HubReporter(key, hub, self.registry)
        channel = scripts.bus_channel(key).encode()
        self._routes[channel] = hub
        if self._bus is not None:
            self._bus.subscribe(channel)
        return hub

    # -- routes ----------------------------------------------------------------

    def route_opened(self, hub: Hub, route: bytes) -> None:
        """``hub`` has its first connection in the channel or user of ``route``:
        subscribed at the end of the loop turn, confirmed by ``confirm``."""
        self._routes[route] = hub
        self._confirmed.discard(route)
        self._pending[route] = object()
        if self._bus is not None:
            self._bus.subscribe(route)

    def route_closed(self, route: bytes) -> None:
        """The last connection of ``route``'s channel or user here left."""
        self._routes.pop(route, None)
        self._pending.pop(route, None)
        self._waiters.pop(route, None)
        self._confirmed.discard(route)
        if self._bus is not None:
            self._bus.unsubscribe(route)

    def confirmed(self, route: bytes) -> bool:
        """Whether Redis confirmed this node's subscription to ``route``."""
        return route in self._confirmed

    def when_confirmed(self, route: bytes, then: Callable[[], None]) -> None:
        """Calls ``then`` once Redis confirmed this node's subscription to ``route``
        (at once if it has).  The confirmation comes with the registry's next
        write, which the subscription that opened the route asked for, or when
        the node rejoins; a route closed meanwhile drops ``then``."""
        if route in self._confirmed:
            then()
        elif route in self._routes:
            self._waiters.setdefault(route, []).append(then)

    async def confirm(self) -> None:
        """Waits until Redis has answered every subscription asked so far; a route
        closed or asked again meanwhile waits for its own answer.  Then what
        waited for those routes is called."""
        if not self._pending:
            return
        bus = self._bus
        if bus is None:
            raise BackendUnavailable
        asked = dict(self._pending)
        await bus.ping()
        for route, token in asked.items():
            if self._pending.get(route) is token:
                del self._pending[route]
                self._confirmed.add(route)
                for then in self._waiters.pop(route, ()):
                    then()

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
        """Two connections to Redis (commands, and the bus), from joining until
        either fails or the node stops."""
        client = bus = None
        self._lost.clear()
        try:
            client = await Connection.open(self.address)
            bus = await Subscriber.open(self.address, self._received)
            loads = [client.command(b"SCRIPT", b"LOAD", text) for text in scripts.ALL]
            self._shas = {text: await load for text, load in zip(scripts.ALL, loads, strict=True)}
            self._bus = bus
            self._pending = {route: object() for route in self._routes}
            bus.subscribe(*self._routes)
            await self.confirm()
            forgotten = await self._beat(client)
            self._client = client
            self.up = True
            await self.registry.resync(client, list(self.hubs.values()), forgotten)
            for hub in self.hubs.values():
                hub.local.close_all(*MISSED)
            self._joined.set()
            if self._warned:
                logger.info("Back in the cluster on %s.", self.shown_url)
            else:
                logger.info("Joined the cluster on %s as node %s.", self.shown_url, self.id)
            self._warned = False
            await _until_one_ends(
                self._beat_forever(client, bus),
                client.lost(),
                bus.lost(),
                self.registry.write_forever(client),
                self._lost.wait(),
                self._stopping.wait(),
            )
            if self._lost.is_set():
                raise ConnectionError("a Redis call failed")
            await self._leave(client)
        finally:
            self.up = False
            self._client = self._bus = None
            self._confirmed.clear()
            self.registry.clear()
            for connection in (client, bus):
                if connection is not None:
                    connection.close()

    async def _leave(self, client: Connection) -> None:
        try:
            vacated = await self.script(client, scripts.GOODBYE, self.ttl, self.id, *self._apps())
        except BackendUnavailable:
            logger.warning("Could not remove this node's presence from Redis.")
        else:
            self.registry.vacated(vacated)

    def _apps(self) -> list[str]:
        """The scripts' (app, watched) pairs: watched if the app has a webhook."""
        return [
            part
            for key, hub in self.hubs.items()
            for part in (key, "1" if hub.on_transition is not None else "")
        ]

    def _went_down(self, error: BaseException) -> None:
        if self._warned:
            logger.debug("Redis at %s is still unavailable: %s", self.shown_url, error)
            return
        self._warned = True
        logger.warning("Redis at %s is unavailable (%s); reconnecting.", self.shown_url, error)

    async def _beat(self, client: Connection) -> bool:
        """Says this node is alive; True if the others had forgotten it."""
        was_forgotten, dead, vacated = await self.script(
            client, scripts.BEAT, self.ttl, self.id, *self._apps()
        )
        for node in dead:
            logger.info("Forgot node %s: no heartbeat for %g s.", node.decode(), self.ttl)
        self.registry.vacated(vacated)
        # The beat has just forgotten the dead: every node left beat within the TTL.
        listed = await client.command(b"ZRANGE", scripts.NODES, 0, -1)
        self.nodes = sorted(node.decode() for node in listed)
        return bool(was_forgotten)

    async def _beat_forever(self, client: Connection, bus: Subscriber) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            await self._beat(client)
            await bus.ping()  # a bus that stopped answering is a lost bus

    def _received(self, channel: bytes, data: bytes) -> None:
        """A message from an app's bus or a route: to that app's hub."""
        hub = self._routes.get(channel)
        if hub is not None:
            try:
                deliver(hub, data)
            except Exception:
                # A bug in one delivery must not cost the node its bus.
                logger.exception("Could not deliver a message from the cluster bus.")

    # -- calls -------------------------------------------------------------------

    async def call(self, script: str, *args: Any) -> Any:
        """Runs ``script`` for the API; ``BackendUnavailable`` at once while down."""
        client = self._client
        if not self.up or client is None:
            raise BackendUnavailable
        return await self.script(client, script, *args)

    async def script(self, client: Connection, script: str, *args: Any) -> Any:
        """Runs ``script`` on ``client``; a failure sends the node down its reconnect path."""
        try:
            return await client.evalsha(self._shas[script], 0, *args)
        except FAILURES as error:
            logger.debug("A Redis call failed: %s", error)
            self._lost.set()
            raise BackendUnavailable(str(error) or type(error).__name__) from None

    def queue_script(self, pipe: Pipeline, script: str, *args: Any) -> None:
        """Adds ``script`` to ``pipe`` (``Connection.pipeline``), answered by its ``execute``."""
        pipe.evalsha(self._shas[script], 0, *args)


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
