"""A lean connection to Redis: every command of one loop turn goes out in one write.

Why not redis-py: ``bench/redis_client.py`` measured it against this (figures
in ``bench/RESULTS.md``).  redis-py checks a connection out of its pool and
runs a read per command; here a command is packed by ``hiredis`` in C,
buffered, and every command of the loop turn is written at once when the turn
ends (automatic pipelining); the answers are parsed by ``hiredis.Reader`` as
they come and resolve the commands' futures in order.  One connection serves
every caller: a slow script delays the answers queued behind it, as it would
delay Redis itself.  ``Wire`` is the plumbing this ``Connection`` and the
pub/sub ``thunderpush.cluster.subscriber.Subscriber`` share.

A command not answered ``TIMEOUT`` seconds after it was written fails, and so
does the connection and everything waiting on it: the node goes down and
reconnects (``thunderpush.cluster.node``), as it did when a pooled
connection of redis-py timed out.  A connection that breaks fails every
command waiting on it with ``ConnectionError`` at once.

URLs are read as redis-py reads them (``redis.asyncio.connection.parse_url``):
``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS (its
``ssl_*`` query options, certificates checked by default), and
``unix://path?db=N&password=...``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import hiredis
from redis.asyncio.connection import RedisSSLContext, parse_url
from redis.exceptions import RedisError

# Seconds a command (and the connect, and each step of the handshake) may take.
TIMEOUT = 1.0


class ReplyError(Exception):
    """Redis answered an error (``-ERR ...``, ``-NOSCRIPT ...``)."""


# What a broken, hung or refusing Redis raises (ConnectionError is an OSError).
FAILURES = (ReplyError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class Address:
    """Where a Redis URL points, and how to log in there."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a Unix socket instead of host and port
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0


def address(url: str) -> Address:
    """The ``Address`` of ``url``; ValueError for what redis-py would refuse."""
    options: dict[str, Any] = dict(parse_url(url))
    tls = None
    if url.lower().startswith("rediss://"):
        given = {name[4:]: value for name, value in options.items() if name.startswith("ssl_")}
        try:
            tls = RedisSSLContext(**{"cert_reqs": "required", "check_hostname": True, **given})
            tls = tls.get()
        except (TypeError, OSError, RedisError) as error:  # RedisError: a bad ssl_cert_reqs
            raise ValueError(f"TLS options: {error}") from None
    return Address(
        host=options.get("host", "localhost"),
        port=options.get("port", 6379),
        path=options.get("path"),
        tls=tls,
        username=options.get("username"),
        password=options.get("password"),
        db=int(options.get("db", 0)),
    )


class Wire(asyncio.Protocol):
    """A Redis connection's plumbing: the write buffer flushed once per loop turn,
    the reader, the answers expected in order, and the timeout on them."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._transport: asyncio.Transport | None = None
        self._buffer: list[bytes] = []
        # The futures of the commands that expect an answer, in the order sent.
        self._waiting: deque[asyncio.Future] = deque()
        # Per write: (how many answers are expected once it is answered, when it went).
        self._writes: deque[tuple[int, float]] = deque()
        self._expected = 0
        self._answered = 0
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed: asyncio.Future = self._loop.create_future()

    @classmethod
    async def _open(cls, where: Address, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        if where.path is not None:
            opening = loop.create_unix_connection(lambda: cls(*args), where.path)
        else:
            opening = loop.create_connection(
                lambda: cls(*args), where.host, where.port, ssl=where.tls
            )
        _, wire = await asyncio.wait_for(opening, TIMEOUT)
        try:
            login = None
            if where.password is not None:
                user = () if where.username is None else (where.username,)
                login = wire._send(b"AUTH", *user, where.password)
            select = wire._send(b"SELECT", where.db) if where.db else None
            for step in (login, select):
                if step is not None:
                    await step
        except BaseException:
            wire.close()
            raise
        return wire

    # -- asyncio.Protocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("Redis closed the connection"))

    # -- sending -----------------------------------------------------------

    def _send(self, *args: Any) -> asyncio.Future:
        """Queues a command for this turn's write; its answer resolves the future."""
        future = self._loop.create_future()
        self._write(hiredis.pack_command(args))
        self._waiting.append(future)
        self._expected += 1
        return future

    def _write(self, packed: bytes) -> None:
        if self._closed.done():
            raise ConnectionError("the connection to Redis is closed")
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(packed)

    def _flush(self) -> None:
        buffer, self._buffer = self._buffer, []
        if self._closed.done():
            return
        self._transport.write(b"".join(buffer))  # type: ignore[union-attr]
        if self._expected > self._answered:
            self._writes.append((self._expected, self._loop.time()))
            if self._watchdog is None:
                self._watchdog = self._loop.call_at(self._loop.time() + TIMEOUT, self._watch)

    def _watch(self) -> None:
        """Fails the connection if its oldest unanswered write is ``TIMEOUT`` old."""
        self._watchdog = None
        writes = self._writes
        while writes and writes[0][0] <= self._answered:
            writes.popleft()
        if not writes:
            return
        due = writes[0][1] + TIMEOUT
        if due <= self._loop.time():
            self._fail(asyncio.TimeoutError(f"Redis did not answer within {TIMEOUT:g} s"))
        else:
            self._watchdog = self._loop.call_at(due, self._watch)

    # -- the end -----------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        if not self._closed.done():
            self._closed.set_exception(error)
            self._closed.exception()  # retrieved: whoever awaits ``lost`` sees it
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._transport is not None:
            self._transport.abort()
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(error)
                future.exception()  # nobody may be left to retrieve it

    def close(self) -> None:
        """Closes the connection; what still waits on it fails."""
        self._fail(ConnectionError("the connection to Redis was closed"))

    async def lost(self) -> None:
        """Waits until the connection breaks, then raises why."""
        await asyncio.shield(self._closed)


class Connection(Wire):
    """Commands to Redis, answered in order; open with ``await Connection.open(address)``."""

    @classmethod
    async def open(cls, where: Address) -> Connection:
        return await cls._open(where)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        answered = 0
        while (reply := reader.gets()) is not False:
            answered += 1
            future = waiting.popleft()
            if future.done():
                continue  # its caller stopped waiting
            if isinstance(reply, ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        self._answered += answered

    def command(self, *args: Any) -> asyncio.Future:
        """Sends ``args`` (str, bytes, int or float) in this turn's write; raises
        ``ConnectionError`` at once if the connection is closed."""
        return self._send(*args)

    def evalsha(self, sha: bytes, numkeys: int, *args: Any) -> asyncio.Future:
        return self._send(b"EVALSHA", sha, numkeys, *args)

    def pipeline(self, transaction: bool = False) -> Pipeline:
        """Commands gathered to be awaited together (they are written this turn
        anyway); never a transaction."""
        assert not transaction, "MULTI is not needed by the cluster"
        return Pipeline(self)


class Commands(Protocol):
    """What a ``Pipeline`` queues its commands on: a ``Connection``, or a
    ``thunderpush.cluster.topology.ClusterConnection`` (which sends each to
    its master; the answers still come back in the pipeline's order)."""

    def command(self, *args: Any) -> asyncio.Future: ...

    def evalsha(self, sha: bytes, numkeys: int, *args: Any) -> asyncio.Future: ...


class Pipeline:
    """Commands queued on a ``Connection`` in one turn, answered by ``execute``."""

    def __init__(self, connection: Commands) -> None:
        self._connection = connection
        self._answers: list[asyncio.Future] = []

    def __len__(self) -> int:
        return len(self._answers)

    def evalsha(self, sha: bytes, numkeys: int, *args: Any) -> None:
        self._answers.append(self._connection.evalsha(sha, numkeys, *args))

    def command(self, *args: Any) -> None:
        self._answers.append(self._connection.command(*args))

    async def execute(self) -> list:
        """Every answer in order; raises the first error once all have come."""
        answers, error = [], None
        for future in self._answers:
            try:
                answers.append(await future)
            except Exception as failed:
                error = error or failed
                answers.append(failed)
        if error is not None:
            raise error
        return answers
