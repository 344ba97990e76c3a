"""A pub/sub connection to Redis, whose channels change in batches per loop turn.

A node subscribes to what its hubs need, channel by channel as they come and
go: many changes in one turn (a resync, a burst of first subscribers) must
cost one command, not one each.  So ``subscribe`` and ``unsubscribe`` only
change what is wanted; when the turn ends, the channels whose state changed
go out in one SUBSCRIBE and one UNSUBSCRIBE (SSUBSCRIBE and SUNSUBSCRIBE for
sharded pub/sub: on Redis Cluster, one ``Subscriber`` per shard, each with
channels of its slots).  A channel subscribed and unsubscribed in the same
turn costs nothing.

Messages are handed to the callback as they are parsed, in the order Redis
sent them, without a task or a queue.  The connection, its write per turn
and its timeout are ``thunderpush.cluster.connection``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import hiredis

from thunderpush.cluster.connection import Address, ReplyError, Wire


class Subscriber(Wire):
    """A pub/sub connection: each message goes to ``on_message(channel, data)``;
    ``ping`` answers once Redis has answered everything asked before it,
    (un)subscriptions included."""

    def __init__(self, on_message: Callable[[bytes, bytes], None]) -> None:
        super().__init__()
        self.on_message = on_message
        # (sharded?) -> the channels wanted, and those Redis was asked for.
        self._wanted: dict[bool, set[bytes]] = {False: set(), True: set()}
        self._asked: dict[bool, set[bytes]] = {False: set(), True: set()}
        self._touched: dict[bytes, bool] = {}

    @classmethod
    async def open(cls, where: Address, on_message: Callable[[bytes, bytes], None]) -> Subscriber:
        return await cls._open(where, on_message)

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
        lists: dict[tuple[bool, bool], list[bytes]] = {}
        for name, sharded in touched.items():
            wanted, asked = name in self._wanted[sharded], self._asked[sharded]
            if wanted != (name in asked):
                lists.setdefault((sharded, wanted), []).append(name)
                (asked.add if wanted else asked.discard)(name)
        verbs = (b"SUBSCRIBE", b"UNSUBSCRIBE", b"SSUBSCRIBE", b"SUNSUBSCRIBE")
        for (sharded, wanted), names in lists.items():
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
                if kind != b"pong":
                    continue  # a (un)subscription's acknowledgement
            elif isinstance(reply, ReplyError):
                self._fail(reply)
                return
            # A pong: +PONG while subscribed to nothing, ["pong", ""] otherwise.
            self._answered += 1
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(True)
