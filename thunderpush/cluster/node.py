"""One node of the cluster: its id, its Redis connection, and staying joined.

A node is up while it is connected: subscribed to every app's bus, beating
its heartbeat (every ``presence_ttl / 3``) and writing its presence.  When any
of that fails, it is down: one WARNING, every API call that needs Redis
answers 503 at once, clients keep their connections.  It reconnects with a
backoff (doubling, capped at ``MAX_BACKOFF``); once back it registers again,
rewrites its whole presence from its hubs, and says so in one INFO line.
A node that restarts is a new node: the id is made when the process starts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from thunderpush.cluster import scripts
from thunderpush.cluster.bus import deliver
from thunderpush.cluster.hub import HubReporter
from thunderpush.cluster.registry import Registry
from thunderpush.core.broker import BackendUnavailable
from thunderpush.core.hub import Hub
from thunderpush.server.settings import masked_url

logger = logging.getLogger(__name__)

# Every Redis call (connect, command, pool wait) gives up after this, in
# seconds: an API call that needs Redis answers within about a second.
TIMEOUT = 1.0
MIN_BACKOFF = 0.1
MAX_BACKOFF = 2.0
# Connections to Redis: one for the bus, the rest for API calls and writes.
MAX_CONNECTIONS = 32

FAILURES = (RedisError, OSError, asyncio.TimeoutError)


class Node:
    """This process in the cluster on ``url``; gone for the others ``ttl`` seconds after
    its last heartbeat."""

    def __init__(self, url: str, ttl: float) -> None:
        self.id = uuid.uuid4().hex
        self.url = url
        # The URL as the log shows it: without the password.
        self.shown_url = masked_url(url)
        self.ttl = ttl
        self.up = False
        # The ids of the nodes in the cluster when this one last beat (itself included).
        self.nodes: list[str] = []
        self.registry = Registry(self)
        # Each app's hub, with its listener.
        self.hubs: dict[str, HubReporter] = {}
        self._by_bus: dict[bytes, Hub] = {}
        self._client: Redis | None = None
        self._shas: dict[str, str] = {}
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
        self._by_bus[scripts.bus_channel(key).encode()] = hub
        return hub

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
        """One connection to Redis, from joining until it fails or the node stops."""
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=TIMEOUT,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        client = Redis(connection_pool=pool)
        bus = client.pubsub()
        self._lost.clear()
        try:
            self._shas = {}
            for text in scripts.ALL:
                self._shas[text] = await client.script_load(text)
            await bus.subscribe(*self._by_bus)
            forgotten = await self._beat(client)
            self._client = client
            self.up = True
            await self.registry.resync(client, list(self.hubs.values()), forgotten)
            self._joined.set()
            if self._warned:
                logger.info("Back in the cluster on %s.", self.shown_url)
            else:
                logger.info("Joined the cluster on %s as node %s.", self.shown_url, self.id)
            self._warned = False
            await _until_one_ends(
                self._beat_forever(client),
                self._read_forever(bus),
                self.registry.write_forever(client),
                self._lost.wait(),
                self._stopping.wait(),
            )
            if self._lost.is_set():
                raise ConnectionError("a Redis call failed")
            await self._leave(client)
        finally:
            self.up = False
            self._client = None
            self.registry.clear()
            await _quietly(bus.aclose())
            await _quietly(client.aclose())
            await _quietly(pool.aclose())

    async def _leave(self, client: Redis) -> None:
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

    async def _beat(self, client: Redis) -> bool:
        """Says this node is alive; True if the others had forgotten it."""
        was_forgotten, dead, vacated = await self.script(
            client, scripts.BEAT, self.ttl, self.id, *self._apps()
        )
        for node in dead:
            logger.info("Forgot node %s: no heartbeat for %g s.", node.decode(), self.ttl)
        self.registry.vacated(vacated)
        # The beat has just forgotten the dead: every node left beat within the TTL.
        self.nodes = sorted(node.decode() for node in await client.zrange(scripts.NODES, 0, -1))
        return bool(was_forgotten)

    async def _beat_forever(self, client: Redis) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            await self._beat(client)

    async def _read_forever(self, bus: Any) -> None:
        by_bus = self._by_bus
        while True:
            message = await bus.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is not None and message["type"] == "message":
                hub = by_bus.get(message["channel"])
                if hub is not None:
                    deliver(hub, message["data"])

    # -- calls -------------------------------------------------------------------

    async def call(self, script: str, *args: Any) -> Any:
        """Runs ``script`` for the API; ``BackendUnavailable`` at once while down."""
        client = self._client
        if not self.up or client is None:
            raise BackendUnavailable
        return await self.script(client, script, *args)

    async def script(self, client: Redis, script: str, *args: Any) -> Any:
        try:
            return await client.evalsha(self._shas[script], 0, *args)
        except FAILURES as error:
            logger.debug("A Redis call failed: %s", error)
            self._lost.set()
            raise BackendUnavailable(str(error) or type(error).__name__) from None

    def queue_script(self, pipe: Any, script: str, *args: Any) -> None:
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


async def _quietly(closing: Awaitable[Any]) -> None:
    try:
        await asyncio.wait_for(closing, TIMEOUT)
    except (*FAILURES, RuntimeError):
        pass
