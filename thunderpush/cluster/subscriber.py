"""A pub/sub connection to Redis, whose channels change in batches per loop turn.

A node subscribes to what its hubs need, channel by channel as they come and
go: many changes in one turn (a resync, a burst of first subscribers) must
cost one command, not one each.  So ``subscribe`` and ``unsubscribe`` only
change what is wanted; when the turn ends, the channels whose state changed
go out in one SUBSCRIBE and one UNSUBSCRIBE (SSUBSCRIBE and SUNSUBSCRIBE for
sharded pub/sub, one per slot: Redis Cluster refuses channels of several slots
in one).  A channel subscribed and unsubscribed in the same turn costs nothing.

On Redis Cluster, ``ShardedSubscriber`` keeps one ``Subscriber`` per master
and asks each channel of its slot's master (the map, and how both cluster
clients open and end, are ``thunderpush.cluster.slotmap``'s).  A sharded channel can be dropped by
Redis: its slot moved to another master, which unsubscribes it unasked, or it
was asked of a master that no longer serves its slot (``MOVED``).  The
``Subscriber`` forgets it and tells ``on_dropped`` where the slot went, if
Redis said; the ``ShardedSubscriber`` asks the new master and tells its owner
(``on_moved``): what was published between the two is lost to it.

Messages are handed to the callback as they are parsed, in the order Redis
sent them, without a task or a queue.  The connection, its write per turn
and its timeout are ``thunderpush.cluster.connection``'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import hiredis

from thunderpush.cluster.connection import FAILURES, Address, ReplyError, Wire
from thunderpush.cluster.slotmap import Endpoint, MapFollower, SlotMap, read_map
from thunderpush.cluster.slots import key_slot, redirection

# Channels Redis dropped, and where their slot went ((host, port); None when unsaid).
Dropped = Callable[[list[bytes], tuple[str, int] | None], None]


class Subscriber(Wire):
    """A pub/sub connection: each message goes to ``on_message(channel, data)``;
    ``ping`` answers once Redis has answered everything asked before it,
    (un)subscriptions included.  Sharded channels Redis drops go to
    ``on_dropped``; without one, a drop fails the connection."""

    def __init__(
        self, on_message: Callable[[bytes, bytes], None], on_dropped: Dropped | None = None
    ) -> None:
        super().__init__()
        self.on_message = on_message
        self.on_dropped = on_dropped
        # (sharded?) -> the channels wanted, and those Redis was asked for.
        self._wanted: dict[bool, set[bytes]] = {False: set(), True: set()}
        self._asked: dict[bool, set[bytes]] = {False: set(), True: set()}
        self._touched: dict[bytes, bool] = {}
        # Sharded channel -> acknowledgements due for SUNSUBSCRIBEs sent: an
        # unsubscription that is none of those is Redis dropping the channel.
        self._leaving: dict[bytes, int] = {}

    @classmethod
    async def open(
        cls,
        where: Address,
        on_message: Callable[[bytes, bytes], None],
        on_dropped: Dropped | None = None,
    ) -> Subscriber:
        return await cls._open(where, on_message, on_dropped)

    def subscribe(self, *channels: str | bytes, sharded: bool = False) -> None:
        self._change(channels, sharded, True)

    def unsubscribe(self, *channels: str | bytes, sharded: bool = False) -> None:
        self._change(channels, sharded, False)

    def _change(self, channels: tuple[str | bytes, ...], sharded: bool, wanted: bool) -> None:
        if not channels or self._closed.done():
            return  # a lost connection: its owner subscribes everything on the next one
        if not self._touched:
            self._write(b"")  # the end of the turn writes what changed
        wanting = self._wanted[sharded]
        for channel in channels:
            name = channel.encode() if isinstance(channel, str) else channel
            if wanted:
                wanting.add(name)
            else:
                wanting.discard(name)
            self._touched[name] = sharded

    def _settle(self) -> None:
        """Buffers what the changes since the last write ask of Redis."""
        touched, self._touched = self._touched, {}
        # (sharded, wanted, slot) -> channels: a sharded command names one slot's.
        lists: dict[tuple[bool, bool, int], list[bytes]] = {}
        leaving = self._leaving
        for name, sharded in touched.items():
            wanted, asked = name in self._wanted[sharded], self._asked[sharded]
            if wanted != (name in asked):
                slot = key_slot(name) if sharded else 0
                lists.setdefault((sharded, wanted, slot), []).append(name)
                (asked.add if wanted else asked.discard)(name)
                if sharded and not wanted:
                    leaving[name] = leaving.get(name, 0) + 1
        verbs = (b"SUBSCRIBE", b"UNSUBSCRIBE", b"SSUBSCRIBE", b"SUNSUBSCRIBE")
        for (sharded, wanted, _), names in lists.items():
            self._buffer.append(hiredis.pack_command((verbs[2 * sharded + (not wanted)], *names)))

    def _flush(self) -> None:
        self._settle()
        super()._flush()

    def ping(self) -> asyncio.Future:
        """Answered once Redis has answered everything asked before it."""
        self._settle()
        return self._send(b"PING")

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if type(reply) is list:
                kind = reply[0]
                if kind == b"message" or kind == b"smessage":
                    self.on_message(reply[1], reply[2])
                    continue
                if kind == b"sunsubscribe":
                    self._unsubscribed(reply[1])
                    continue
                if kind != b"pong":
                    continue  # a (un)subscription's acknowledgement
            elif isinstance(reply, ReplyError):
                moved = redirection(str(reply))
                if moved is None or self.on_dropped is None:
                    self._fail(reply)
                    return
                self._moved(moved[1], (moved[2], moved[3]))
                continue
            # A pong: +PONG while subscribed to nothing, ["pong", ""] otherwise.
            self._answered += 1
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(True)

    def _unsubscribed(self, name: bytes) -> None:
        """A SUNSUBSCRIBE's acknowledgement, or Redis dropping ``name`` (its
        slot moved away) if none was due."""
        due = self._leaving.get(name, 0)
        if due > 1:
            self._leaving[name] = due - 1
        elif due:
            del self._leaving[name]
        elif name in self._asked[True]:
            self._drop([name], None)

    def _moved(self, slot: int, where: tuple[str, int]) -> None:
        """Redis refused a sharded (un)subscription: ``slot`` is served at
        ``where``.  No acknowledgement will come for this slot's channels here,
        and none of them is subscribed here any more."""
        for name in [name for name in self._leaving if key_slot(name) == slot]:
            del self._leaving[name]
        self._drop([name for name in self._asked[True] if key_slot(name) == slot], where)

    def _drop(self, names: list[bytes], where: tuple[str, int] | None) -> None:
        if self.on_dropped is None:
            self._fail(ConnectionError(f"Redis dropped the sharded channels {names!r}"))
            return
        for name in names:
            self._asked[True].discard(name)
            self._wanted[True].discard(name)
        if names:
            self.on_dropped(names, where)


def _encoded(channel: str | bytes) -> bytes:
    return channel.encode() if isinstance(channel, str) else channel


class ShardedSubscriber(MapFollower):
    """Sharded pub/sub over every master of a Redis Cluster: each channel is
    asked (``SSUBSCRIBE``) of the ``Subscriber`` of its slot's master, in that
    subscriber's batch of the turn; messages go to ``on_message(channel,
    data)``; channels moved to another master are asked of it and given to
    ``on_moved(channels)``.  ``ping`` answers once every master has answered
    what was asked before it.  Open with ``await ShardedSubscriber.open(*seeds,
    on_message=..., on_moved=...)``; ``lost`` and ``close`` as ``Subscriber``'s:
    a master's subscriber lost is the whole lost."""

    def __init__(
        self,
        seeds: tuple[Address, ...],
        on_message: Callable[[bytes, bytes], None],
        on_moved: Callable[[list[bytes]], None],
    ) -> None:
        super().__init__(seeds)
        self.on_message = on_message
        self.on_moved = on_moved
        self._map: SlotMap | None = None
        self._subscribers: dict[Endpoint, _Shard] = {}
        self._opening: dict[Endpoint, asyncio.Task] = {}
        # Channel -> the master it was asked of (None: none yet, or Redis dropped it).
        self._where: dict[bytes, Endpoint | None] = {}
        self._dropped: set[bytes] = set()  # by Redis, not asked again yet
        self._refreshing: asyncio.Task | None = None
        self._again = False

    @classmethod
    async def open(
        cls,
        *seeds: Address,
        on_message: Callable[[bytes, bytes], None],
        on_moved: Callable[[list[bytes]], None],
    ) -> ShardedSubscriber:
        sharded = cls(seeds, on_message, on_moved)
        await sharded._join()
        return sharded

    def _first(self, slot_map: SlotMap) -> list[asyncio.Task]:
        """Follows the first map; the masters' subscribers to wait for."""
        self._adopt(slot_map)
        return list(self._opening.values())

    def subscribe(self, *channels: str | bytes) -> None:
        if not self._closed.done():  # lost: its owner subscribes everything on the next one
            self._place([name for name in map(_encoded, channels) if name not in self._where])

    def unsubscribe(self, *channels: str | bytes) -> None:
        leaving: dict[Endpoint, list[bytes]] = {}
        for name in map(_encoded, channels):
            self._dropped.discard(name)
            endpoint = self._where.pop(name, None)
            if endpoint is not None:
                leaving.setdefault(endpoint, []).append(name)
        for endpoint, names in leaving.items():
            if (subscriber := self._subscribers.get(endpoint)) is not None:
                subscriber.unsubscribe(*names, sharded=True)

    def ping(self) -> asyncio.Future:
        """Answered once every master has answered what was asked before it,
        and no channel waits for the map or for a new master's subscriber."""
        if self._closed.done():
            raise ConnectionError("the connection to Redis is closed")
        pings = [subscriber.ping() for subscriber in self._subscribers.values()]
        return asyncio.ensure_future(self._confirm(pings))

    async def _confirm(self, pings: list[asyncio.Future]) -> bool:
        while True:
            await asyncio.gather(*pings)
            waits = [*self._opening.values(), *filter(None, [self._refreshing])]
            if not waits:
                return True
            await asyncio.wait(waits)
            if self._closed.done():
                await self.lost()
            pings = [subscriber.ping() for subscriber in self._subscribers.values()]

    # -- following the map -----------------------------------------------------

    def _place(self, names: list[bytes]) -> None:
        """Asks each of ``names`` of its slot's master, if it was not, and tells
        ``on_moved`` those asked elsewhere before, or dropped by Redis."""
        assert self._map is not None
        owners, where = self._map.owners, self._where
        leaving: dict[Endpoint, list[bytes]] = {}
        joining: dict[Endpoint, list[bytes]] = {}
        moved = []
        for name in names:
            old, new = where.get(name), owners[key_slot(name)]
            if old is not None and old == new:
                continue
            if old is not None:
                leaving.setdefault(old, []).append(name)
            if old is not None or name in self._dropped:
                moved.append(name)
            where[name] = new
            if new is None:  # a slot no master serves (yet): the map is read again
                self._refresh_soon()
            else:
                self._dropped.discard(name)
                joining.setdefault(new, []).append(name)
        for endpoint, gone in leaving.items():
            if (subscriber := self._subscribers.get(endpoint)) is not None:
                subscriber.unsubscribe(*gone, sharded=True)
        for endpoint, come in joining.items():
            if (subscriber := self._subscribers.get(endpoint)) is not None:
                subscriber.subscribe(*come, sharded=True)
            elif endpoint not in self._opening:  # asked once it is open
                self._open_shard(endpoint)
        if moved:
            self.on_moved(moved)

    def _dropped_by(self, endpoint: Endpoint, names: list[bytes], to: Endpoint | None) -> None:
        """Redis dropped ``names`` at ``endpoint``; their slot is served at ``to``
        if it said (``MOVED``), else the map is read again."""
        assert self._map is not None
        for name in names:
            if self._where.get(name) == endpoint:
                self._where[name] = None
                self._dropped.add(name)
        if to is None:
            self._refresh_soon()
            return
        to = (to[0] or endpoint[0], to[1])
        if to not in self._map.masters:
            where = dataclasses.replace(self._seeds[0], host=to[0], port=to[1], path=None)
            self._map.masters[to] = where
        self._map.owners[key_slot(names[0])] = to
        self._place(names)

    def _adopt(self, slot_map: SlotMap) -> None:
        """Follows ``slot_map``: a subscriber on every master (so that ``ping``
        and ``lost`` speak for all), every channel asked of its master, the
        subscribers of masters that serve no slot any more closed."""
        self._map = slot_map
        for endpoint in slot_map.masters:
            if endpoint not in self._subscribers and endpoint not in self._opening:
                self._open_shard(endpoint)
        self._place(list(self._where))
        for endpoint in [e for e in self._subscribers if e not in slot_map.masters]:
            subscriber = self._subscribers.pop(endpoint)
            subscriber.ping().add_done_callback(lambda _, gone=subscriber: gone.close())

    def _refresh_soon(self) -> None:
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
        else:
            self._again = True

    async def _refresh(self) -> None:
        """Reads the map again (from a master known, else a seed) until nothing
        asked for it meanwhile."""
        try:
            while True:
                self._again = False
                assert self._map is not None
                slot_map = await read_map([*self._map.masters.values(), *self._seeds])
                self._adopt(slot_map)
                if not self._again:
                    return
        except FAILURES as error:
            self._fail(error)
        finally:
            self._refreshing = None

    def _open_shard(self, endpoint: Endpoint) -> None:
        self._opening[endpoint] = asyncio.ensure_future(self._open_shard_now(endpoint))

    async def _open_shard_now(self, endpoint: Endpoint) -> None:
        assert self._map is not None
        try:
            subscriber = await _Shard.connect(self._map.masters[endpoint], self, endpoint)
        except FAILURES as error:
            self._fail(error)
            return
        finally:
            self._opening.pop(endpoint, None)
        if endpoint not in self._map.masters:  # a map read meanwhile let go of it
            subscriber.close()
            return
        self._subscribers[endpoint] = subscriber
        names = [name for name, asked in self._where.items() if asked == endpoint]
        subscriber.subscribe(*names, sharded=True)

    # -- the end ---------------------------------------------------------------

    def _shard_lost(self, subscriber: _Shard, error: BaseException) -> None:
        if self._subscribers.get(subscriber.endpoint) is subscriber:
            self._fail(error)

    def _let_go(self, error: BaseException) -> None:
        subscribers, self._subscribers = self._subscribers, {}
        for subscriber in subscribers.values():
            subscriber.close()
        for task in [*self._opening.values(), *filter(None, [self._refreshing])]:
            task.cancel()


class _Shard(Subscriber):
    """One master's subscriber in a ``ShardedSubscriber``, which it tells of
    what Redis dropped and of its loss."""

    def __init__(self, owner: ShardedSubscriber, endpoint: Endpoint) -> None:
        super().__init__(owner.on_message, self._dropped_here)
        self._owner = owner
        self.endpoint = endpoint

    @classmethod
    async def connect(cls, where: Address, owner: ShardedSubscriber, endpoint: Endpoint) -> _Shard:
        return await cls._open(where, owner, endpoint)

    def _dropped_here(self, names: list[bytes], to: Endpoint | None) -> None:
        self._owner._dropped_by(self.endpoint, names, to)

    def _fail(self, error: BaseException) -> None:
        first = not self._closed.done()
        super()._fail(error)
        if first:
            self._owner._shard_lost(self, error)
