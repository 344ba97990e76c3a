"""Redis Cluster's plumbing (``thunderpush.cluster.slots`` and ``topology``)
against a real three-master cluster: slots as Redis computes them, commands and
pipelines on the right masters, a slot half-moved, and a master that hangs."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import AsyncIterator

import pytest

from thunderpush.cluster.connection import TIMEOUT, Connection, ReplyError, address
from thunderpush.cluster.slots import key_slot
from thunderpush.cluster.topology import ClusterConnection

from .cluster import RedisCluster, RedisServer
from .processes import free_port


def tag_on(cluster: RedisCluster, server: RedisServer) -> bytes:
    """A hash tag whose slot ``server`` serves now."""
    ranges = [r for r, port in cluster.owners(cluster.servers[0]).items() if port == server.port]
    for n in range(100_000):
        tag = f"5:myapp:c:room-{n}".encode()
        if any(start <= key_slot(tag) <= end for start, end in ranges):
            return tag
    raise AssertionError("no tag found")


def moved_count(server: RedisServer) -> int:
    """How many MOVED answers ``server`` gave since its start."""
    with server.client() as client:
        stats = client.info("errorstats")
    return stats.get("errorstat_MOVED", {}).get("count", 0)


def count_writes(connection: Connection) -> list[bytes]:
    """The writes ``connection`` makes from now on, recorded as they pass."""
    writes: list[bytes] = []
    write = connection._transport.write

    def recorded(data: bytes) -> None:
        writes.append(data)
        write(data)

    connection._transport.write = recorded
    return writes


@pytest.fixture
async def connection(fresh_redis_cluster: RedisCluster) -> AsyncIterator[ClusterConnection]:
    seeds = [address(url) for url in fresh_redis_cluster.urls]
    connection = await ClusterConnection.open(*seeds)
    try:
        yield connection
    finally:
        connection.close()


def test_key_slot_is_redis_clusters(fresh_redis_cluster):
    chosen = [
        *(b"", b"{", b"}", b"{}", b"}{", b"a{}b", b"a{}b}", b"{}{a}", b"}a{b}c", b"{a}{b}"),
        *(b"{{a}}", b"a{b", b"a}b", b"{\x00}x", b"{\xff\xfe}y", b"x{\n}", b"{ }"),
        b"tp:{5:myapp:u:bo}b}:n",  # a user id with '}': the tag ends there
        "tp:{5:myapp:c:caf\u00e9}:h".encode(),
        "tp/{5:myapp:u:\ud800}".encode("utf-8", "surrogatepass"),
        b"tp:{N:" + b"f" * 32 + b"}:5:myapp:c",
        b"k" * 1000,
    ]
    rng = random.Random(16)
    alphabet = b"{}ab\x00\xff:"
    made = [bytes(rng.choice(alphabet) for _ in range(rng.randrange(12))) for _ in range(2000)]
    made += [rng.randbytes(rng.randrange(40)) for _ in range(500)]
    keys = chosen + made
    with fresh_redis_cluster.servers[0].client() as client:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("CLUSTER", "KEYSLOT", key)
        slots = pipe.execute()
    pairs = zip(keys, slots, strict=True)
    assert [(key, slot) for key, slot in pairs if key_slot(key) != slot] == []
    assert len(set(slots)) > 1000  # spread: not all hashed alike


async def test_each_key_goes_straight_to_its_master(fresh_redis_cluster, connection):
    servers = fresh_redis_cluster.servers
    keys = [b"tp:{" + tag_on(fresh_redis_cluster, server) + b"}:s" for server in servers]
    before = [moved_count(server) for server in servers]
    assert await asyncio.gather(*(connection.command("SET", key, n) for n, key in enumerate(keys)))
    assert await connection.command(b"incr", keys[2]) == 3  # the verb in any case
    for n, (server, key) in enumerate(zip(servers, keys, strict=True)):
        with server.client() as client:
            assert client.dbsize() == 1 and int(client.get(key)) == n + (n == 2)
    assert [moved_count(server) for server in servers] == before  # never redirected
    assert await connection.command("PING") == b"PONG"  # keyless: any master


async def test_a_pipeline_across_masters_answers_in_its_order(fresh_redis_cluster, connection):
    servers = fresh_redis_cluster.servers
    keys = [b"tp:{" + tag_on(fresh_redis_cluster, server) + b"}:n" for server in servers]
    pipe = connection.pipeline(transaction=False)
    for round_ in range(30):
        for n, key in enumerate(keys):
            pipe.hset(key, f"node{round_}", n)
        pipe.hdel(keys[round_ % 3], f"node{round_}")
    answers = await pipe.execute()
    assert answers == [1, 1, 1, 1] * 30
    lengths = await asyncio.gather(*(connection.command("HLEN", key) for key in keys))
    assert lengths == [20, 20, 20]
    # One pipeline, one write per master.
    writes = [count_writes(master) for master in connection._masters.values()]
    pipe = connection.pipeline()
    for key in keys * 10:
        pipe.hset(key, "x", 1)
    assert len(await pipe.execute()) == 30
    assert [len(written) for written in writes] == [1, 1, 1]
    # A failed command fails the pipeline once all have answered, as on one Redis.
    pipe = connection.pipeline()
    pipe.hset(keys[0], "f", 1)
    pipe.evalsha(b"0" * 40, 1, keys[1])
    pipe.hdel(keys[2], "x")
    with pytest.raises(ReplyError, match="NOSCRIPT"):
        await pipe.execute()
    assert await connection.command("HEXISTS", keys[2], "x") == 0


async def test_a_slot_half_moved_answers_ask_and_is_followed(fresh_redis_cluster, connection):
    source, target = fresh_redis_cluster.servers[2], fresh_redis_cluster.servers[0]
    tag = tag_on(fresh_redis_cluster, source)
    slot, moved_key, new_key = key_slot(tag), b"{" + tag + b"}a", b"{" + tag + b"}b"
    await connection.command("SET", moved_key, "there")
    fresh_redis_cluster.begin_move(slot, target)  # its keys go: moved_key
    try:
        redirected = moved_count(source)
        # The source has not moved_key: ASK, then ASKING and the command on the target.
        assert await connection.command("GET", moved_key) == b"there"
        assert await connection.command("SET", new_key, "new") == b"OK"
        assert await connection.command("GET", moved_key) == b"there"
        with target.client() as client:
            assert client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 2
        assert moved_count(source) == redirected  # ASK, never MOVED
        assert connection._route[slot] is connection._masters[("127.0.0.1", source.port)]
    finally:
        fresh_redis_cluster.end_move(slot, source)


async def test_a_hung_master_fails_calls_after_the_timeout(fresh_redis_cluster, connection):
    victim = fresh_redis_cluster.servers[2]
    key = b"tp:{" + tag_on(fresh_redis_cluster, victim) + b"}:s"
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(connection.command("GET", key), TIMEOUT * 3)
        assert TIMEOUT * 0.9 < time.monotonic() - start < TIMEOUT * 2
        with pytest.raises(asyncio.TimeoutError):
            await connection.lost()
    finally:
        victim.proc.send_signal(signal.SIGCONT)


async def test_open_tries_the_seeds_in_order_and_says_why_none_answers(fresh_redis_cluster):
    dead = address(f"redis://127.0.0.1:{free_port()}/0")
    connection = await ClusterConnection.open(dead, address(fresh_redis_cluster.urls[2]))
    try:
        assert await connection.command("SET", "k", "v") == b"OK"
    finally:
        connection.close()
    with pytest.raises(OSError):
        await ClusterConnection.open(dead)


async def test_a_redis_without_cluster_is_refused(fresh_redis):
    with pytest.raises(ReplyError, match="cluster support disabled"):
        await ClusterConnection.open(address(fresh_redis.url))
