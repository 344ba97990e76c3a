"""Redis Cluster: which master serves each slot, and connections that send each
command to the master of its key.

A Redis Cluster splits its keys into 16384 slots (``thunderpush.cluster.slots``),
each served by one master.  ``ClusterConnection`` has ``Connection``'s
interface (``command``, ``evalsha``, ``pipeline``, ``lost``, ``close``) over
one ``Connection`` per master: a command goes to the master of its first key
(``EVALSHA``'s ``KEYS[1]``, ``SPUBLISH``'s channel), found in the slot map read
at ``open`` with ``CLUSTER SHARDS`` (Redis >= 7; ``thunderpush.cluster.slotmap``).
Every master still gets one write per loop turn, so a pipeline is split by
master for free, and its answers come back in its own order.  The pub/sub side,
``thunderpush.cluster.subscriber.ShardedSubscriber``, asks each channel
(``SSUBSCRIBE``) of a ``Subscriber`` to its slot's master, by the same map.

    connection = await ClusterConnection.open(address("redis://10.0.0.1:7000"))
    await connection.command(b"SET", b"tp:{5:myapp:c:news}:s", 1)

When slots move (``redis-cli --cluster reshard``) they are followed: a
``MOVED`` answer sends the command again to the master it names, once, and
the map is read again from that master; an ``ASK`` (a slot half-way through
its move) sends ``ASKING`` and the command to the importing master, leaving
the map as it is; a ``TRYAGAIN`` (a command with several keys, some of them
already moved) is sent again every ``RETRY`` seconds, ``TRIES`` times at
most, until the move ends and the master answers it or ``MOVED``.  A sharded
channel whose slot moved is unsubscribed by its old master; it is subscribed
again on the new one, and ``on_moved`` is told (messages published between
the two are lost to this subscriber).

A master lost (closed, refused, or silent for ``TIMEOUT``) is the whole
``ClusterConnection`` (or ``ShardedSubscriber``) lost: what waits fails with
the errors ``Connection`` raises (``FAILURES``) and ``lost`` raises, as for
one Redis.  Why not carry on with the other masters: the cluster is one
backend to the node (a key's master is not chosen, so a down master is down
for whatever hashes there), and a node's way back, ``open`` again, reads the
map afresh, which is when a replica promoted in the lost master's place is
found.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from typing import Any

import hiredis

from thunderpush.cluster.connection import FAILURES, Address, Connection, Pipeline, ReplyError
from thunderpush.cluster.slotmap import Endpoint, MapFollower, SlotMap, parse_shards
from thunderpush.cluster.slots import SLOTS, key_slot, redirection

# The commands whose first key is KEYS[1] (after the script and numkeys).
_SCRIPTS = frozenset((b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"))
_ASKING = hiredis.pack_command((b"ASKING",))
# A TRYAGAIN is sent again this often, at most this many times (about a second:
# the time a call waits for Redis anyway, ``connection.TIMEOUT``).
RETRY = 0.05
TRIES = 20
_SHARDS = hiredis.pack_command((b"CLUSTER", b"SHARDS"))


def _bytes(value: Any) -> bytes:
    """``value`` as ``hiredis.pack_command`` sends it (so its slot is Redis's)."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else str(value).encode()


class ClusterConnection(MapFollower):
    """``Connection``'s interface over every master of a Redis Cluster; open
    with ``await ClusterConnection.open(*seeds)`` (any of its nodes, tried in
    order for the map).  A ``SCRIPT LOAD`` goes to every master, and to each
    master that appears later, before anything else is sent to it."""

    def __init__(self, seeds: tuple[Address, ...]) -> None:
        super().__init__(seeds)
        self._masters: dict[Endpoint, _Master | _Opening] = {}
        self._route: list[_Master | _Opening | None] = [None] * SLOTS
        self._scripts: dict[bytes, None] = {}  # texts of SCRIPT LOAD, in order
        # Commands sent again after MOVED or ASK: a second redirection fails them.
        self._redirected: set[asyncio.Future] = set()
        # Commands answered TRYAGAIN, and how many times they were sent again.
        self._tries: dict[asyncio.Future, int] = {}
        self._refreshing: asyncio.Task | None = None
        self._oracle: _Master | _Opening | None = None  # whom the next refresh asks

    @classmethod
    async def open(cls, *seeds: Address) -> ClusterConnection:
        cluster = cls(seeds)
        await cluster._join()
        return cluster

    def _first(self, slot_map: SlotMap) -> list[asyncio.Task]:
        """Routes by the first map; the masters' connections to wait for."""
        self._adopt(slot_map)
        if not self._masters:
            raise ReplyError("CLUSTERDOWN no master serves a slot")
        return [m.task for m in self._masters.values() if isinstance(m, _Opening)]

    # -- Connection's interface ------------------------------------------------

    def command(self, *args: Any) -> asyncio.Future:
        """Sends ``args`` to the master of its first key (``args[1]``, or
        ``KEYS[1]`` of a script; any master if it has none); raises
        ``ConnectionError`` at once if the connection is lost or closed."""
        verb = args[0]
        verb = (verb if type(verb) is bytes else _bytes(verb)).upper()
        if verb in _SCRIPTS:
            key = args[3] if int(args[2]) else None
        elif verb == b"SCRIPT" and len(args) == 3 and _bytes(args[1]).upper() == b"LOAD":
            return self._load(_bytes(args[2]))
        else:
            key = args[1] if len(args) > 1 else None
        return self._send(key, hiredis.pack_command(args))

    def evalsha(self, sha: bytes, numkeys: int, *args: Any) -> asyncio.Future:
        """Runs the script on the master of its ``KEYS[1]``."""
        key = args[0] if numkeys else None
        return self._send(key, hiredis.pack_command((b"EVALSHA", sha, numkeys, *args)))

    def pipeline(self, transaction: bool = False) -> Pipeline:
        """Commands gathered to be awaited together, each sent to its master
        this turn; ``execute`` answers in the order they were queued."""
        assert not transaction, "MULTI is not needed by the cluster"
        return Pipeline(self)

    # -- routing ---------------------------------------------------------------

    def _send(self, key: Any, packed: bytes) -> asyncio.Future:
        if self._closed.done():
            raise ConnectionError("the connection to Redis is closed")
        if key is None:
            target = None
        else:
            target = self._route[key_slot(key if type(key) is bytes else _bytes(key))]
        if target is None:  # keyless, or a slot unserved: a master answers for it
            target = next(iter(self._masters.values()))
        future = self._loop.create_future()
        target.submit(packed, future)
        return future

    def _load(self, text: bytes) -> asyncio.Future:
        """``SCRIPT LOAD`` on every master (and, later, on each new one): the sha."""
        if self._closed.done():
            raise ConnectionError("the connection to Redis is closed")
        self._scripts[text] = None
        packed = hiredis.pack_command((b"SCRIPT", b"LOAD", text))
        answers = []
        for master in self._masters.values():
            answers.append(self._loop.create_future())
            master.submit(packed, answers[-1])

        async def sha() -> bytes:
            return (await asyncio.gather(*answers))[0]

        return asyncio.ensure_future(sha())

    def _redirect(self, master: _Master, error: ReplyError, packed: bytes, future: Any) -> bool:
        """Sends a command answered ``MOVED``/``ASK`` to the master named, once:
        True if it was sent again."""
        moved = redirection(str(error))
        if moved is None or future in self._redirected or self._closed.done():
            return False
        kind, slot, host, port = moved
        endpoint = (host or master.endpoint[0], port)
        target = self._masters.get(endpoint)
        if target is None:
            where = dataclasses.replace(master.address, host=endpoint[0], port=port)
            target = self._connect(endpoint, where)
        if kind == "MOVED":
            self._route[slot] = target
            self._refresh_soon(target)
        self._redirected.add(future)
        future.add_done_callback(self._redirected.discard)
        target.submit(packed, future, asking=kind == "ASK")
        return True

    def _again(self, master: _Master, error: ReplyError, packed: bytes, future: Any) -> bool:
        """Sends a command answered ``TRYAGAIN`` to ``master`` again in ``RETRY``
        seconds, up to ``TRIES`` times: True if it will be."""
        tries = self._tries.get(future, 0)
        if not str(error).startswith("TRYAGAIN") or tries >= TRIES or self._closed.done():
            return False
        if not tries:
            future.add_done_callback(lambda done: self._tries.pop(done, None))
        self._tries[future] = tries + 1
        self._loop.call_later(RETRY, master.resend, packed, future)
        return True

    # -- the map ---------------------------------------------------------------

    def _adopt(self, slot_map: SlotMap) -> None:
        """Routes by ``slot_map``: connects to its new masters, lets go of those
        that serve no slot any more."""
        for endpoint, where in slot_map.masters.items():
            if endpoint not in self._masters:
                self._connect(endpoint, where)
        for endpoint in [e for e in self._masters if e not in slot_map.masters]:
            master = self._masters.pop(endpoint)
            if isinstance(master, _Master):  # an opening one is retired once open
                master.retire()
        masters = self._masters
        self._route = [None if e is None else masters[e] for e in slot_map.owners]

    def _refresh_soon(self, oracle: _Master | _Opening) -> None:
        self._oracle = oracle
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        """Reads the map again, from the master the last ``MOVED`` named (it
        knows its slots first), until no ``MOVED`` came while reading."""
        try:
            while (oracle := self._oracle) is not None and not self._closed.done():
                self._oracle = None
                if oracle not in self._masters.values():  # let go of by a map meanwhile
                    oracle = next(iter(self._masters.values()))
                answer = self._loop.create_future()
                oracle.submit(_SHARDS, answer)
                self._adopt(parse_shards(await answer, self._seeds[0]))
        except FAILURES as error:
            self._fail(error)
        finally:
            self._refreshing = None

    def _connect(self, endpoint: Endpoint, where: Address) -> _Opening:
        opening = _Opening()
        self._masters[endpoint] = opening
        opening.task = asyncio.ensure_future(self._open_master(endpoint, where, opening))
        return opening

    async def _open_master(self, endpoint: Endpoint, where: Address, opening: _Opening) -> None:
        try:
            master = await _Master.connect(where, self, endpoint)
        except FAILURES as error:
            self._fail(error)
            return
        if self._masters.get(endpoint) is not opening:
            # Let go of by a map meanwhile: it answers what waited for it
            # (``MOVED``, which sends it on), then goes.
            opening.replay(master)
            master.retire()
            return
        for text in self._scripts:
            master.submit(hiredis.pack_command((b"SCRIPT", b"LOAD", text)), master.ignored)
        self._masters[endpoint] = master
        self._route = [master if target is opening else target for target in self._route]
        opening.replay(master)

    # -- the end ---------------------------------------------------------------

    def _master_lost(self, master: _Master, error: BaseException) -> None:
        """A master in service lost is the whole connection lost (not one still
        opening: its error is the one to tell; nor one let go of)."""
        if self._masters.get(master.endpoint) is master:
            self._fail(error)

    def _let_go(self, error: BaseException) -> None:
        masters, self._masters = self._masters, {}
        for master in masters.values():
            master.fail(error)
        if self._refreshing is not None:
            self._refreshing.cancel()


class _Master(Connection):
    """One master's connection, which keeps each command it sent until answered,
    so that a ``MOVED`` or ``ASK`` answer can send it again elsewhere."""

    def __init__(self, cluster: ClusterConnection, where: Address, endpoint: Endpoint) -> None:
        super().__init__()
        self._cluster = cluster
        self.address = where
        self.endpoint = endpoint
        self._sent: deque[bytes] = deque()
        self.ignored = self._loop.create_future()  # an answer nobody waits for
        self.ignored.cancel()

    @classmethod
    async def connect(
        cls, where: Address, cluster: ClusterConnection, endpoint: Endpoint
    ) -> _Master:
        return await cls._open(where, cluster, where, endpoint)

    def submit(self, packed: bytes, future: asyncio.Future, asking: bool = False) -> None:
        if asking:  # the command after ASKING may use the slot being imported
            self._write(_ASKING)
            self._waiting.append(self.ignored)
            self._sent.append(b"")
            self._expected += 1
        self._write(packed)
        self._waiting.append(future)
        self._sent.append(packed)
        self._expected += 1

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting, sent = self._waiting, self._sent
        answered = 0
        while (reply := reader.gets()) is not False:
            answered += 1
            future = waiting.popleft()
            packed = sent.popleft()
            if future.done():
                continue  # its caller stopped waiting, or nobody waits
            if isinstance(reply, ReplyError):
                cluster = self._cluster
                if not cluster._redirect(self, reply, packed, future) and not cluster._again(
                    self, reply, packed, future
                ):
                    future.set_exception(reply)
            else:
                future.set_result(reply)
        self._answered += answered

    def resend(self, packed: bytes, future: asyncio.Future) -> None:
        """``submit`` once more, unless its caller stopped waiting; fails it if
        this master's connection was lost meanwhile."""
        if future.done():
            return
        try:
            self.submit(packed, future)
        except ConnectionError as error:
            future.set_exception(error)

    def retire(self) -> None:
        """Serves no slot any more: closed once what was sent has been answered."""
        if not self._closed.done():
            ping = self._loop.create_future()
            self.submit(hiredis.pack_command((b"PING",)), ping)
            ping.add_done_callback(lambda _: self.close())

    def fail(self, error: BaseException) -> None:
        self._fail(error)

    def _fail(self, error: BaseException) -> None:
        first = not self._closed.done()
        super()._fail(error)
        self._sent = deque()  # as ``_waiting``: a reading loop keeps the old ones
        if first:
            self._cluster._master_lost(self, error)


class _Opening:
    """A master being connected to: what is sent to it waits here meanwhile."""

    def __init__(self) -> None:
        self.task: asyncio.Future | None = None
        self._queue: list[tuple[bytes, asyncio.Future, bool]] = []

    def submit(self, packed: bytes, future: asyncio.Future, asking: bool = False) -> None:
        self._queue.append((packed, future, asking))

    def replay(self, master: _Master) -> None:
        queue, self._queue = self._queue, []
        for packed, future, asking in queue:
            try:
                master.submit(packed, future, asking)
            except ConnectionError as error:
                future.set_exception(error)

    def fail(self, error: BaseException) -> None:
        if self.task is not None:
            self.task.cancel()
        queue, self._queue = self._queue, []
        for _, future, _ in queue:
            if not future.done():
                future.set_exception(error)
                future.exception()
