"""A Redis Cluster's slot map, and what follows it: a client with a connection to
every master, opened on the first map and lost as a whole.

Two clients hold one connection per master: ``ClusterConnection``
(``thunderpush.cluster.topology``: commands) and ``ShardedSubscriber``
(``thunderpush.cluster.subscriber``: sharded pub/sub).  They route differently,
but they open, wait for their masters and end the same way, which is
``MapFollower``: each says how it follows a map (``_first``) and lets go of its
masters (``_let_go``).  The map is read with ``CLUSTER SHARDS`` (Redis >= 7)::

    slot_map = await read_map([address("redis://10.0.0.1:7000")])
    slot_map.owners[key_slot(b"tp:{5:myapp:c:news}:s")]   # -> ("10.0.0.2", 7000)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Iterable
from typing import Any

from thunderpush.cluster.connection import FAILURES, Address, Connection
from thunderpush.cluster.slots import SLOTS

# A master as the map names it: (host, port).
Endpoint = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class SlotMap:
    """The masters that serve slots, and each slot's master (None: unserved)."""

    masters: dict[Endpoint, Address]
    owners: list[Endpoint | None]


async def read_map(candidates: Iterable[Address]) -> SlotMap:
    """The map from the first of ``candidates`` that answers ``CLUSTER SHARDS``;
    if none does, the last one's error."""
    error: BaseException = ConnectionError("no Redis Cluster node to ask for the slot map")
    for where in candidates:
        try:
            connection = await Connection.open(where)
        except FAILURES as failed:
            error = failed
            continue
        try:
            return parse_shards(await connection.command(b"CLUSTER", b"SHARDS"), where)
        except FAILURES as failed:
            error = failed
        finally:
            connection.close()
    raise error


def parse_shards(shards: list, asked: Address) -> SlotMap:
    """The map in a ``CLUSTER SHARDS`` answer (RESP2: flat lists of name, value)
    from ``asked``, whose login and TLS every master is reached with."""
    masters: dict[Endpoint, Address] = {}
    owners: list[Endpoint | None] = [None] * SLOTS
    for shard in shards:
        fields = _pairs(shard)
        slots = fields[b"slots"]
        for node in map(_pairs, fields[b"nodes"]):
            if node[b"role"] != b"master" or not slots:
                continue
            host = node.get(b"endpoint", b"")
            if host == b"?":  # an endpoint Redis does not know: its IP then
                host = node.get(b"ip", b"")
            port = node.get(b"tls-port") if asked.tls is not None else None
            # An empty endpoint is the host we asked, as Redis means it.
            endpoint = (host.decode() or asked.host, int(port or node[b"port"]))
            masters[endpoint] = dataclasses.replace(
                asked, host=endpoint[0], port=endpoint[1], path=None
            )
            for start, end in zip(slots[::2], slots[1::2], strict=True):
                owners[start : end + 1] = [endpoint] * (end - start + 1)
    return SlotMap(masters, owners)


def _pairs(fields: list) -> dict[bytes, Any]:
    return dict(zip(fields[::2], fields[1::2], strict=True))


class MapFollower:
    """A client of every master of one Redis Cluster, as its slot map says.

    ``_join`` reads the first map from the seeds and follows it (``_first``),
    then waits until every master's connection opened: it raises why if one
    did not, closed.  A master's connection lost is the whole client lost:
    ``_fail`` sets the error ``lost`` raises and lets go of every master
    (``_let_go``).
    """

    def __init__(self, seeds: tuple[Address, ...]) -> None:
        self._loop = asyncio.get_running_loop()
        self._seeds = seeds
        self._closed: asyncio.Future = self._loop.create_future()

    async def _join(self) -> None:
        """Follows the first map; raises why, closed, unless every master's
        connection opens."""
        try:
            openings = self._first(await read_map(self._seeds))
            if openings:
                await asyncio.wait(openings)
            if self._closed.done():
                await self.lost()  # raises why
        except BaseException:
            self.close()
            raise

    def _first(self, slot_map: SlotMap) -> list[Awaitable[Any]]:
        """Follows ``slot_map``, the first; the masters' openings to wait for."""
        raise NotImplementedError

    async def lost(self) -> None:
        """Waits until a master's connection breaks, then raises why."""
        await asyncio.shield(self._closed)

    def close(self) -> None:
        """Closes every master's connection; what still waits fails."""
        self._fail(ConnectionError("the connection to Redis was closed"))

    def _fail(self, error: BaseException) -> None:
        if self._closed.done():
            return
        self._closed.set_exception(error)
        self._closed.exception()  # retrieved: whoever awaits ``lost`` sees it
        self._let_go(error)

    def _let_go(self, error: BaseException) -> None:
        """Closes (or fails with ``error``) every master's connection, and what runs."""
        raise NotImplementedError
