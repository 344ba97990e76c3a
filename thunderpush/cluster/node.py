"""One node of the cluster: its id, its links to Redis, and staying joined.

The node has one link (``thunderpush.cluster.link``) per ``--redis-url``, or
with ``--redis-cluster`` one link over the Redis Cluster they are seeds of:
each channel and user lives on one link, its *shard*, chosen from its tag
(``thunderpush.cluster.shards``), and everything about a name (its route,
its records, its publishes, its presence and history) goes over that link
only (``link_of``).  The node's own records of a name are written on the
name's shard too, so each shard holds what this node has of its names, and
nothing of the others.

Each link has its own session.  It is up while connected: subscribed to the
route of every channel and user of its shard that the hubs hold
(``thunderpush.cluster.bus``), beating its heartbeat there (every
``presence_ttl / 3``) and writing the node's records of its names.  When any
of that fails, that link is down: one WARNING naming its URL, every API call
for a name of that shard answers 503 at once, the other shards' names are
served, clients keep their connections.  It reconnects with a backoff
(doubling, capped at ``MAX_BACKOFF``); once back it resubscribes its routes
and waits for Redis to confirm them, beats, rewrites the node's records of
its names from the hubs, and says so in one INFO line.  Then it closes, with
``MISSED`` (Pusher: 4200), every connection that holds a channel or user of
that shard: messages may have been published to them meanwhile (counted by
their records that Redis still had, or through a node back first), which the
node cannot know; the clients reconnect and recover with the positions they
have.  The node is ``up`` while every link is.

Each heartbeat answers the nodes that stopped beating on that shard; the
node forgets their records there unless another claimed them first
(``thunderpush.cluster.departures``), and a node that stops says goodbye on
every shard the same way.  A node that restarts is a new node: the id is
made when the process starts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from thunderpush.cluster import counters, departures, keys, shards
from thunderpush.cluster.bus import deliver
from thunderpush.cluster.connection import FAILURES, TIMEOUT, address
from thunderpush.cluster.hub import HubReporter
from thunderpush.cluster.link import Link
from thunderpush.cluster.registry import Registry
from thunderpush.core.broker import BackendUnavailable
from thunderpush.core.hub import Hub
from thunderpush.core.protocol import MISSED
from thunderpush.settings import masked_url

logger = logging.getLogger(__name__)

# Every Redis call (connect, command) gives up after ``TIMEOUT`` seconds
# (``thunderpush.cluster.connection``): an API call that needs Redis answers
# within about a second.
MIN_BACKOFF = 0.1
MAX_BACKOFF = 2.0


@dataclass(eq=False)
class _Shard:
    """One Redis of the node's, and what its session keeps between attempts."""

    index: int
    link: Link
    registry: Registry
    # The URL as the log shows it: without the password.
    shown_url: str
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    warned: bool = False


class Node:
    """This process in the cluster on the Redis at each of ``urls`` (shards), or on
    the Redis Cluster they are seeds of (``cluster``); gone for the others ``ttl``
    seconds after its last heartbeat."""

    def __init__(self, urls: Sequence[str], ttl: float, cluster: bool = False) -> None:
        if not urls:
            raise ValueError("no Redis URL")
        self.id = uuid.uuid4().hex
        self.urls = tuple(urls)
        self.ttl = ttl
        if cluster:
            # One link: the cluster routes each command and route to its slot's master.
            seeds = [address(url) for url in self.urls]
            self.links = [Link.over_cluster(seeds, self.id, self._received, self._moved)]
            shown = [", ".join(map(masked_url, self.urls))]
        else:
            self.links = [Link(address(url), self.id, self._received) for url in self.urls]
            shown = [masked_url(url) for url in self.urls]
        self._shards = [
            _Shard(index, link, Registry(self, index), url)
            for index, (link, url) in enumerate(zip(self.links, shown, strict=True))
        ]
        # Each app's hub, with its listener.
        self.hubs: dict[str, HubReporter] = {}
        # Every route wanted, to its hub.
        self._routes: dict[bytes, Hub] = {}
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        # This process's running counters, written with each heartbeat on the
        # first shard for the dashboard's sums (``thunderpush.cluster.counters``).
        self.counters: counters.Source | None = None

    @property
    def up(self) -> bool:
        """Whether every shard is up (a name on a down one answers 503)."""
        return all(link.up for link in self.links)

    @property
    def nodes(self) -> list[str]:
        """The ids of the live nodes (this one included), as this one knows them on
        the shards that are up."""
        if len(self.links) == 1:
            return self.links[0].nodes
        return sorted({node for link in self.links if link.up for node in link.nodes})

    @property
    def shown_urls(self) -> list[str]:
        """The URLs as the log shows them: without their passwords."""
        return [shard.shown_url for shard in self._shards]

    async def counters_of_nodes(self) -> tuple[list[str], list[dict[str, Any]]]:
        """The live nodes, and the counters each last wrote (``counters.read``)."""
        return await counters.read(self)

    def shard_of(self, tag: bytes) -> int:
        """The index in ``links`` of the shard of the name whose tag is ``tag``."""
        return shards.shard_of(tag, len(self.links))

    def link_of(self, tag: bytes) -> Link:
        """The link to the shard of the name whose tag is ``tag``: the only way to
        pick one for a name, so that every node agrees on it."""
        return self.links[self.shard_of(tag)]

    def registry_of(self, tag: bytes) -> Registry:
        """The writer of this node's records on the shard of ``tag``."""
        return self._shards[self.shard_of(tag)].registry

    def holds(self, index: int, app: str, kind: str, name: str) -> bool:
        """Whether shard ``index`` holds ``app``'s channel (``kind`` "c") or user ("u") ``name``."""
        return len(self.links) == 1 or self.shard_of(keys.tag(app, kind, name)) == index

    def hub(self, key: str) -> Hub:
        """The hub of app ``key`` on this node (``Apps`` calls this for each app),
        reported to Redis by its listener."""
        hub = Hub()
        self.hubs[key] = HubReporter(key, hub, self)
        return hub

    # -- routes ----------------------------------------------------------------

    def route_opened(self, hub: Hub, tag: bytes, watch: bool = False) -> None:
        """``hub`` has its first connection in the channel or user of ``tag`` (with
        ``watch``: its first watching the user, whose watch route it is): the
        route is subscribed on its shard at the end of the loop turn, confirmed
        before the registry's next write there.  Counts are written only for
        confirmed routes, so a publish that counts a subscriber reaches it; a
        watchlist's users are read once their watch routes are."""
        route = keys.watch_route(tag) if watch else keys.route_of(tag)
        self._routes[route] = hub
        self.link_of(tag).subscribe(route)

    def route_closed(self, tag: bytes, watch: bool = False) -> None:
        """The last connection of ``tag``'s channel or user here left (with ``watch``:
        the last watching the user)."""
        route = keys.watch_route(tag) if watch else keys.route_of(tag)
        self._routes.pop(route, None)
        self.link_of(tag).unsubscribe(route)

    def when_confirmed(self, tag: bytes, then: Callable[[], None]) -> None:
        """Calls ``then`` once Redis confirmed this node's subscription to the route
        of ``tag`` (at once if it has).  The confirmation comes with the
        registry's next write on its shard, which the subscription that opened
        the route asked for, or when the shard rejoins; a route closed
        meanwhile drops ``then``."""
        self.link_of(tag).when_confirmed(keys.route_of(tag), then)

    # -- life ------------------------------------------------------------------

    async def start(self) -> None:
        """Joins the cluster on every shard; a shard not there within ``TIMEOUT`` is
        tried again in the background while the server serves what needs no
        Redis, or only the shards that are there."""
        self._tasks = [asyncio.create_task(self._stay_joined(shard)) for shard in self._shards]
        joined = [asyncio.ensure_future(shard.joined.wait()) for shard in self._shards]
        try:
            await asyncio.wait(joined, timeout=TIMEOUT * 2)
        finally:
            for waiting in joined:
                waiting.cancel()

    async def stop(self) -> None:
        """Leaves the cluster: this node's presence is removed and announced on every shard."""
        self._stopping.set()
        if self._tasks:
            # What has not said goodbye by then is cancelled.
            await asyncio.wait(self._tasks, timeout=TIMEOUT * 3)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stay_joined(self, shard: _Shard) -> None:
        backoff = MIN_BACKOFF
        while not self._stopping.is_set():
            try:
                await self._session(shard)
            except (*FAILURES, BackendUnavailable) as error:
                self._went_down(shard, error)
            if shard.joined.is_set():
                shard.joined.clear()
                backoff = MIN_BACKOFF
            else:
                backoff = min(backoff * 2, MAX_BACKOFF)
            try:
                await asyncio.wait_for(self._stopping.wait(), backoff)
            except asyncio.TimeoutError:
                pass

    async def _session(self, shard: _Shard) -> None:
        """One shard's link, from joining until it fails or the node stops."""
        link, registry = shard.link, shard.registry
        try:
            await link.connect()
            forgotten = await self._beat(link)
            link.up = True
            await registry.resync(list(self.hubs.values()), forgotten)
            for hub in self.hubs.values():
                held = self._held_by(shard.index, hub.key)
                hub.local.close_holding(*MISSED, held)
            shard.joined.set()
            if shard.warned:
                logger.info("Back in the cluster on %s.", shard.shown_url)
            else:
                logger.info("Joined the cluster on %s as node %s.", shard.shown_url, self.id)
            shard.warned = False
            await _until_one_ends(
                self._beat_forever(shard),
                link.lost(),
                registry.write_forever(),
                self._stopping.wait(),
            )
            await self._leave(link)
        finally:
            link.close()
            registry.clear()

    def _held_by(self, index: int, app: str) -> Callable[[str, str], bool]:
        """Whether shard ``index`` holds a channel (``kind`` "c") or user of ``app``."""
        return lambda kind, name: self.holds(index, app, kind, name)

    async def _leave(self, link: Link) -> None:
        try:
            await departures.goodbye(self, link)
        except (*FAILURES, BackendUnavailable):
            logger.warning("Could not remove this node's presence from Redis.")

    def _went_down(self, shard: _Shard, error: BaseException) -> None:
        if shard.warned:
            logger.debug("Redis at %s is still unavailable: %s", shard.shown_url, error)
            return
        shard.warned = True
        logger.warning("Redis at %s is unavailable (%s); reconnecting.", shard.shown_url, error)

    async def _beat(self, link: Link) -> bool:
        """Says on ``link``'s shard that this node is alive, and forgets the dead
        there; True if that shard had forgotten this node."""
        written = counters.encode(self.counters) if link is self.links[0] else None
        forgotten, dead = await link.beat(self.ttl, written)
        for node in dead:
            await departures.forget(self, link, node)
        return forgotten

    async def _beat_forever(self, shard: _Shard) -> None:
        link = shard.link
        while True:
            await asyncio.sleep(self.ttl / 3)
            if await self._beat(link):
                await self._remembered(shard)
            await link.ping()

    async def _remembered(self, shard: _Shard) -> None:
        """The shard had forgotten this node while it ran (no heartbeat there for
        ``ttl`` seconds: a stalled loop, a slow link), and another node removed its
        records and announced its members gone: all of them are written and
        announced again at once, not at the next reconnect.  Its routes stayed
        subscribed, so its clients missed no message."""
        logger.warning(
            "The cluster on %s had forgotten this node (no heartbeat for %g s);"
            " writing its records again.",
            shard.shown_url,
            self.ttl,
        )
        await shard.registry.resync(list(self.hubs.values()), True)

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
        moved: dict[Hub, set[tuple[str, str]]] = {}
        for route in routes:
            hub = self._routes.get(route)
            if hub is not None:
                _, kind, name = keys.name_of(route)
                # A watch route is on its user's slot: its watchers are held as the user's.
                moved.setdefault(hub, set()).add(("u" if kind == "w" else kind, name))
        if moved:
            asyncio.get_running_loop().call_soon(_close_holders, moved)


def _close_holders(moved: dict[Hub, set[tuple[str, str]]]) -> None:
    for hub, names in moved.items():
        hub.close_holding(*MISSED, lambda kind, name, names=names: (kind, name) in names)


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
