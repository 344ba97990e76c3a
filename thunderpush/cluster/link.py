"""The node's side of one Redis: its two connections there, and what it knows of it.

A ``Link`` is where the node's commands go and where its routes are
subscribed: a command connection (every command of a loop turn in one write,
``thunderpush.cluster.connection``), a subscriber (routes changed in batches
per turn, ``thunderpush.cluster.subscriber``), the scripts loaded
(``thunderpush.cluster.scripts``), whether it is up, the live nodes, and which
routes Redis has confirmed.  The node holds one per shard (one in all on a
single Redis or a Redis Cluster) and asks the name's link everything about
it.  Every key and route of a name carries the name's tag
(``thunderpush.cluster.keys``), and each script, like each command with
several keys, touches the keys of one tag: a link over a Redis Cluster can
send each command to the master of its first key's slot, and names spread
over several Redis need one link each, the one of each name's tag.

The live nodes are those heard from within the presence TTL at this node's
last heartbeat (``beat``), corrected as other nodes arrive and leave: each
tells so on ``tp/{nodes}`` (``BEAT``, ``DROP``), which every link subscribes.
Scripts get them in ``ARGV`` and never read the list of nodes, so a publish
stays one round trip on one slot.

Counts are written only for confirmed routes (``confirm``, called before each
write of the registry), so a publish that counts a subscriber reaches it.

A link over a Redis Cluster (``Link.over_cluster``, ``--redis-cluster``) is
the same link on other connections: a ``ClusterConnection`` (each command to
the master of its first key's slot, ``thunderpush.cluster.topology``) and a
``ShardedSubscriber`` (each route subscribed with ``SSUBSCRIBE`` on its slot's
master), with the scripts' sharded variants, which publish with ``SPUBLISH``
(``thunderpush.cluster.scripts``).  A route whose slot moved to another
master while subscribed is subscribed there again, but what was published in
between is lost to this node: the link hands those routes to ``on_moved``,
the node's, which closes the connections that hold them with ``MISSED``.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from thunderpush.cluster import keys, scripts
from thunderpush.cluster.bus import read_fields
from thunderpush.cluster.connection import FAILURES, Address, Connection, Pipeline
from thunderpush.cluster.subscriber import ShardedSubscriber, Subscriber
from thunderpush.cluster.topology import ClusterConnection
from thunderpush.core.broker import BackendUnavailable


class Link:
    """This node (``node``, its id) on the Redis at ``address``; what comes on a
    route goes to ``on_message(route, data)``."""

    def __init__(
        self, address: Address, node: str, on_message: Callable[[bytes, bytes], None]
    ) -> None:
        self.address = address
        self.node = node
        self.on_message = on_message
        self.up = False
        # A Redis Cluster's seeds (``over_cluster``); none: the one Redis at ``address``.
        self.seeds: tuple[Address, ...] = ()
        self.on_moved: Callable[[list[bytes]], None] | None = None
        # The live nodes' ids, sorted (this one among them), and those but this one.
        self.nodes: list[str] = []
        self.others: tuple[str, ...] = ()
        # What nodes told of their arrivals and departures since the last beat was
        # sent, replayed on its answer (which may have been taken before them).
        self._told: list[tuple[bool, str]] | None = None
        self._client: Connection | ClusterConnection | None = None
        self._subscriber: Subscriber | ShardedSubscriber | None = None
        # The routes wanted; those asked for and not yet confirmed (each with a
        # token of its asking), and those Redis confirmed on this subscriber.
        self._wanted: set[bytes] = set()
        self._pending: dict[bytes, object] = {}
        self._confirmed: set[bytes] = set()
        # What waits for a route's confirmation: subscriptions' answers.
        self._waiters: dict[bytes, list[Callable[[], None]]] = {}
        self._failed = asyncio.Event()

    @classmethod
    def over_cluster(
        cls,
        seeds: Sequence[Address],
        node: str,
        on_message: Callable[[bytes, bytes], None],
        on_moved: Callable[[list[bytes]], None],
    ) -> Link:
        """A link over the Redis Cluster that ``seeds`` belong to (the map is read
        from the first that answers); routes whose slot moved while subscribed
        go to ``on_moved`` (the nodes' route excepted: the next beat corrects
        the live nodes)."""
        link = cls(seeds[0], node, on_message)
        link.seeds = tuple(seeds)
        link.on_moved = on_moved
        return link

    # -- connecting ---------------------------------------------------------------

    async def connect(self) -> None:
        """Opens both connections, loads the scripts, subscribes every route wanted
        (and the nodes' route) and waits for Redis to confirm them.  Not up yet:
        the node says when (``up``)."""
        self._failed.clear()
        if self.seeds:
            self._client = await ClusterConnection.open(*self.seeds)
            self._subscriber = await ShardedSubscriber.open(
                *self.seeds, on_message=self._received, on_moved=self._moved
            )
        else:
            self._client = await Connection.open(self.address)
            self._subscriber = await Subscriber.open(self.address, self._received)
        texts = [script.sharded_text if self.seeds else script.text for script in scripts.ALL]
        loads = [self._client.command(b"SCRIPT", b"LOAD", text) for text in texts]
        for load in loads:
            await load
        self._pending = {route: object() for route in self._wanted}
        self._subscriber.subscribe(keys.NODES_ROUTE, *self._wanted)
        await self.confirm()

    def close(self) -> None:
        """Down: both connections closed (what waits on them fails), nothing confirmed."""
        self.up = False
        wires, self._client, self._subscriber = (self._client, self._subscriber), None, None
        self._confirmed.clear()
        for wire in wires:
            if wire is not None:
                wire.close()

    async def lost(self) -> None:
        """Waits until a connection breaks or a call fails, then raises why."""
        assert self._client is not None and self._subscriber is not None
        parts = [
            asyncio.ensure_future(part)
            for part in (self._client.lost(), self._subscriber.lost(), self._failed.wait())
        ]
        try:
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for part in parts:
                part.cancel()
        for part in done:
            part.result()
        raise ConnectionError("a Redis call failed")

    # -- routes -------------------------------------------------------------------

    def subscribe(self, route: bytes) -> None:
        """Subscribes ``route`` at the end of the loop turn; ``confirm`` confirms it."""
        self._wanted.add(route)
        self._confirmed.discard(route)
        self._pending[route] = object()
        if self._subscriber is not None:
            self._subscriber.subscribe(route)

    def unsubscribe(self, route: bytes) -> None:
        self._wanted.discard(route)
        self._pending.pop(route, None)
        self._waiters.pop(route, None)
        self._confirmed.discard(route)
        if self._subscriber is not None:
            self._subscriber.unsubscribe(route)

    def confirmed(self, route: bytes) -> bool:
        """Whether Redis confirmed this node's subscription to ``route``."""
        return route in self._confirmed

    def when_confirmed(self, route: bytes, then: Callable[[], None]) -> None:
        """Calls ``then`` once Redis confirmed the subscription to ``route`` (at once
        if it has); a route unsubscribed meanwhile drops ``then``."""
        if route in self._confirmed:
            then()
        elif route in self._wanted:
            self._waiters.setdefault(route, []).append(then)

    async def confirm(self) -> None:
        """Waits until Redis has answered every subscription asked so far; a route
        unsubscribed or asked again meanwhile waits for its own answer.  Then what
        waited for those routes is called."""
        if not self._pending:
            return
        subscriber = self._subscriber
        if subscriber is None:
            raise BackendUnavailable
        asked = dict(self._pending)
        await subscriber.ping()
        for route, token in asked.items():
            if self._pending.get(route) is token:
                del self._pending[route]
                self._confirmed.add(route)
                for then in self._waiters.pop(route, ()):
                    then()

    async def ping(self) -> None:
        """Answered once the subscriber answered: one that stopped answering is lost
        (its connection fails, ``lost``)."""
        if self._subscriber is None:
            raise BackendUnavailable
        await self._subscriber.ping()

    def _received(self, channel: bytes, data: bytes) -> None:
        if channel == keys.NODES_ROUTE:
            self._heard(data)
        else:
            self.on_message(channel, data)

    def _moved(self, routes: list[bytes]) -> None:
        """Redis Cluster moved the slots of ``routes`` to other masters, where the
        subscriber asked them again: unconfirmed until Redis answers there, and
        what was published in between is lost to this node."""
        moved = [route for route in routes if route in self._wanted]
        for route in moved:
            self._confirmed.discard(route)
            self._pending[route] = object()
        if moved and self.on_moved is not None:
            self.on_moved(moved)

    # -- the nodes ----------------------------------------------------------------

    async def beat(self, ttl: float, counters: bytes | None = None) -> tuple[bool, list[str]]:
        """Says this node is alive; answers whether the cluster had forgotten it,
        and the nodes not heard from within ``ttl`` (dead, not yet forgotten).
        ``counters``, when given, is written as the node's (``keys.counters``),
        expiring ``ttl`` seconds later, in the same round trip."""
        self._told = told = []
        try:
            pipe = self.pipeline()
            names = (keys.NODES, keys.GONE)
            self.queue(pipe, scripts.BEAT, names, self.node, ttl, keys.NODES_ROUTE)
            if counters is not None:
                expiry = max(1, round(ttl * 1000))
                pipe.command(b"SET", keys.counters(self.node), counters, b"PX", expiry)
            (forgotten, live, dead), *_ = await self.execute(pipe)
        finally:
            self._told = None
        self._set_nodes(node.decode() for node in live)
        for arrived, node in told:
            self._change(arrived, node)
        return bool(forgotten), [node.decode() for node in dead]

    async def live(self, ttl: float) -> list[str]:
        """The nodes heard from within ``ttl`` now, by Redis's clock (one round trip)."""
        return [node.decode() for node in await self.call(scripts.LIVE, (keys.NODES,), ttl)]

    def _heard(self, data: bytes) -> None:
        """A node told its arrival (``j``) or departure (``l``)."""
        (node,), _ = read_fields(data, 1, 1)
        arrived = data[:1] == b"j"
        if self._told is not None:
            self._told.append((arrived, node))
        self._change(arrived, node)

    def _change(self, arrived: bool, node: str) -> None:
        nodes = self.nodes
        at = bisect.bisect_left(nodes, node)
        present = at < len(nodes) and nodes[at] == node
        if arrived and not present:
            nodes.insert(at, node)
        elif not arrived and present and node != self.node:
            del nodes[at]
        else:
            return
        self.others = tuple(other for other in nodes if other != self.node)

    def _set_nodes(self, nodes: Iterable[str]) -> None:
        self.nodes = sorted(nodes)
        self.others = tuple(other for other in self.nodes if other != self.node)

    # -- commands -----------------------------------------------------------------

    async def call(self, script: scripts.Script, keys: Sequence[bytes], *args: Any) -> Any:
        """Runs ``script`` for the API; ``BackendUnavailable`` at once while down."""
        if not self.up:
            raise BackendUnavailable
        return await self.run(script, keys, *args)

    async def run(self, script: scripts.Script, keys: Sequence[bytes], *args: Any) -> Any:
        """Runs ``script`` with ``keys`` and ``args``; a failure takes the link down
        (``lost``) and raises ``BackendUnavailable``."""
        client = self._client
        if client is None:
            raise BackendUnavailable
        try:
            return await client.evalsha(self._sha(script), len(keys), *keys, *args)
        except FAILURES as error:
            raise self._fail(error) from None

    async def read(self, *commands: Sequence[Any]) -> list:
        """The answers of ``commands`` (each a command's words), sent together; for
        the API: ``BackendUnavailable`` at once while down."""
        if not self.up:
            raise BackendUnavailable
        pipe = self.pipeline()
        for command in commands:
            pipe.command(*command)
        return await self.execute(pipe)

    def pipeline(self) -> Pipeline:
        """Commands to send together (``queue``, ``Pipeline.command``), answered by
        ``execute``."""
        if self._client is None:
            raise BackendUnavailable
        return self._client.pipeline()

    def queue(
        self, pipe: Pipeline, script: scripts.Script, keys: Sequence[bytes], *args: Any
    ) -> None:
        """Adds ``script`` to ``pipe``."""
        pipe.evalsha(self._sha(script), len(keys), *keys, *args)

    def _sha(self, script: scripts.Script) -> str:
        """The sha of ``script`` as this link loaded it: its sharded variant on a cluster."""
        return script.sharded_sha if self.seeds else script.sha

    async def execute(self, pipe: Pipeline) -> list:
        """Every answer of ``pipe``, in order; a failure as in ``run``."""
        try:
            return await pipe.execute()
        except FAILURES as error:
            raise self._fail(error) from None

    def _fail(self, error: BaseException) -> BackendUnavailable:
        self._failed.set()
        return BackendUnavailable(str(error) or type(error).__name__)
