"""Redis Cluster's plumbing (``thunderpush.cluster.slots``, ``topology`` and the
``ShardedSubscriber``) against a real three-master cluster: slots as Redis
computes them, commands and pipelines on the right masters, scripts, sharded
pub/sub, slots moved under a running connection, and a master that dies."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import AsyncIterator, Callable

import pytest

from thunderpush.cluster.connection import FAILURES, TIMEOUT, ReplyError, address
from thunderpush.cluster.slots import key_slot
from thunderpush.cluster.subscriber import ShardedSubscriber
from thunderpush.cluster.topology import ClusterConnection

from .support.cluster import RedisCluster, RedisServer
from .support.processes import free_port
from .test_redis_connection import count_writes

pytestmark = pytest.mark.slow

# Sets KEYS[1], publishes ARGV[2] on the shard channel ARGV[1] (of KEYS[1]'s
# slot); answers the new value of KEYS[2] (same slot) and how many heard.
SCRIPT = """
redis.call('SET', KEYS[1], ARGV[2])
local heard = redis.call('SPUBLISH', ARGV[1], ARGV[2])
return {redis.call('INCR', KEYS[2]), heard}
"""


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


# Holds Redis for about three seconds.
BUSY = "local t = redis.call('TIME') while redis.call('TIME')[1] - t[1] < 3 do end return 1"


class Heard:
    """What a ``ShardedSubscriber`` delivered, and the channels it said moved."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.moved: list[bytes] = []

    def message(self, channel: bytes, data: bytes) -> None:
        self.messages.append((channel, data))

    def on_moved(self, channels: list[bytes]) -> None:
        self.moved.extend(channels)


async def until(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def connection(fresh_redis_cluster: RedisCluster) -> AsyncIterator[ClusterConnection]:
    seeds = [address(url) for url in fresh_redis_cluster.urls]
    connection = await ClusterConnection.open(*seeds)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
async def heard(
    fresh_redis_cluster: RedisCluster,
) -> AsyncIterator[tuple[ShardedSubscriber, Heard]]:
    heard = Heard()
    subscriber = await ShardedSubscriber.open(
        address(fresh_redis_cluster.urls[1]), on_message=heard.message, on_moved=heard.on_moved
    )
    try:
        yield subscriber, heard
    finally:
        subscriber.close()


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
            pipe.command(b"HSET", key, f"node{round_}", n)
        pipe.command(b"HDEL", keys[round_ % 3], f"node{round_}")
    answers = await pipe.execute()
    assert answers == [1, 1, 1, 1] * 30
    lengths = await asyncio.gather(*(connection.command("HLEN", key) for key in keys))
    assert lengths == [20, 20, 20]
    # One pipeline, one write per master.
    writes = [count_writes(master) for master in connection._masters.values()]
    pipe = connection.pipeline()
    for key in keys * 10:
        pipe.command(b"HSET", key, "x", 1)
    assert len(await pipe.execute()) == 30
    assert [len(written) for written in writes] == [1, 1, 1]
    # A failed command fails the pipeline once all have answered, as on one Redis.
    pipe = connection.pipeline()
    pipe.command(b"HSET", keys[0], "f", 1)
    pipe.evalsha(b"0" * 40, 1, keys[1])
    pipe.command(b"HDEL", keys[2], "x")
    with pytest.raises(ReplyError, match="NOSCRIPT"):
        await pipe.execute()
    assert await connection.command("HEXISTS", keys[2], "x") == 0


async def test_scripts_load_everywhere_and_run_on_their_first_keys_master(
    fresh_redis_cluster, connection, heard
):
    subscriber, got = heard
    sha = await connection.command(b"SCRIPT", b"LOAD", SCRIPT)
    for server in fresh_redis_cluster.servers:
        with server.client() as client:
            assert client.script_exists(sha) == [True]
    routes = []
    for server in fresh_redis_cluster.servers:
        tag = tag_on(fresh_redis_cluster, server)
        routes.append(b"tp/{" + tag + b"}")
        subscriber.subscribe(routes[-1])
    assert await subscriber.ping()
    calls = []
    for n, route in enumerate(routes):
        tag = route[3:]
        keys = (b"tp:" + tag + b":h", b"tp:" + tag + b":s")
        calls.append(connection.evalsha(sha, 2, *keys, route, f"m{n}"))
    assert await asyncio.gather(*calls) == [[1, 1], [1, 1], [1, 1]]
    for server, route in zip(fresh_redis_cluster.servers, routes, strict=True):
        with server.client() as client:
            assert client.get(b"tp:" + route[3:] + b":h") is not None
            assert client.dbsize() == 2
    assert await subscriber.ping()
    assert sorted(got.messages) == sorted(zip(routes, [b"m0", b"m1", b"m2"], strict=True))
    # SPUBLISH itself goes to its channel's master.
    assert await connection.command(b"SPUBLISH", routes[1], b"direct") == 1
    assert await connection.command(b"SPUBLISH", b"tp/{nobody}", b"lost") == 0
    await until(lambda: (routes[1], b"direct") in got.messages)
    assert got.moved == []


async def test_sharded_subscriptions_change_in_batches_and_unsubscribe(
    fresh_redis_cluster, connection, heard
):
    subscriber, got = heard
    channels = [f"tp/{{5:myapp:c:{n}}}".encode() for n in range(300)]
    writes = [count_writes(master) for master in subscriber._subscribers.values()]
    subscriber.subscribe(*channels)
    subscriber.subscribe(b"gone")
    subscriber.unsubscribe(b"gone")  # in the same turn: never asked
    assert await subscriber.ping()
    # One write per master, an SSUBSCRIBE per slot in it (Redis refuses more).
    assert [len(written) for written in writes] == [1, 1, 1]
    assert sum(written[0].count(b"SSUBSCRIBE") for written in writes) == len(
        {key_slot(channel) for channel in channels}
    )
    assert not any(b"gone" in written[0] for written in writes)
    for server in fresh_redis_cluster.servers:
        with server.client() as client:
            held = client.execute_command("PUBSUB", "SHARDCHANNELS")
        assert held and all(fresh_redis_cluster.server_of(key_slot(c)) is server for c in held)
    counts = await asyncio.gather(*(connection.command("SPUBLISH", c, c) for c in channels))
    assert counts == [1] * 300
    subscriber.unsubscribe(*channels[1:])
    assert await subscriber.ping()
    # Unsubscribed and asked again a turn later, before Redis answered: no drop is seen.
    subscriber.unsubscribe(channels[0])
    await asyncio.sleep(0)
    subscriber.subscribe(channels[0])
    assert await subscriber.ping()
    counts = await asyncio.gather(*(connection.command("SPUBLISH", c, b"x") for c in channels))
    assert counts == [1] + [0] * 299
    await until(lambda: len(got.messages) == 301)
    assert got.messages[-1] == (channels[0], b"x") and got.moved == []


async def test_a_moved_slot_is_followed_by_commands_and_subscriptions(
    fresh_redis_cluster, connection, heard
):
    subscriber, got = heard
    source, target = fresh_redis_cluster.servers[0], fresh_redis_cluster.servers[1]
    tag = tag_on(fresh_redis_cluster, source)
    slot, key, route = key_slot(tag), b"tp:{" + tag + b"}:s", b"tp/{" + tag + b"}"
    await connection.command("SET", key, "before")
    subscriber.subscribe(route)
    assert await subscriber.ping()
    fresh_redis_cluster.begin_move(slot, target)
    fresh_redis_cluster.end_move(slot, target)
    try:
        assert await connection.command("GET", key) == b"before"  # MOVED, sent on
        await until(lambda: got.moved == [route])  # Redis dropped it; asked of the target
        assert await subscriber.ping()
        redirected = moved_count(source)
        assert await connection.command("SPUBLISH", route, "after") == 1
        assert await connection.command("INCR", b"tp:{" + tag + b"}:n") == 1
        assert moved_count(source) == redirected  # the map was read again
        await until(lambda: (route, b"after") in got.messages)
        with target.client() as client:
            assert client.execute_command("PUBSUB", "SHARDCHANNELS") == [route]
    finally:
        fresh_redis_cluster.begin_move(slot, source)
        fresh_redis_cluster.end_move(slot, source)


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


async def test_a_master_that_appears_is_connected_with_the_scripts(
    fresh_redis_cluster, connection, heard, tmp_path
):
    subscriber, got = heard
    first = fresh_redis_cluster.servers[0]
    bus = free_port()
    options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    options += ["--cluster-port", str(bus), "--dir", str(tmp_path)]
    fourth = RedisServer(first.executable, free_port(), tmp_path / "redis.log", options)
    fourth.start()
    try:
        sha = await connection.command("SCRIPT", "LOAD", SCRIPT)
        with first.client() as client:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", fourth.port, bus)
        fresh_redis_cluster.servers.append(fourth)  # to be moved to, and seen whole
        tag = tag_on(fresh_redis_cluster, first)
        route = b"tp/{" + tag + b"}"
        subscriber.subscribe(route)
        assert await subscriber.ping()
        fresh_redis_cluster.wait_ok()
        fresh_redis_cluster.begin_move(key_slot(tag), fourth)
        fresh_redis_cluster.end_move(key_slot(tag), fourth)
        keys = (b"tp:{" + tag + b"}:h", b"tp:{" + tag + b"}:s")
        await until(lambda: got.moved == [route])
        assert await subscriber.ping()
        assert await connection.evalsha(sha, 2, *keys, route, "new") == [1, 1]
        await until(lambda: got.messages == [(route, b"new")])
        with fourth.client() as client:
            assert client.get(keys[0]) == b"new"
    finally:
        fourth.stop(signal.SIGKILL)
        fresh_redis_cluster.servers.remove(fourth)  # heal makes the cluster anew


async def test_a_killed_master_fails_the_connection_at_once(fresh_redis_cluster, connection, heard):
    subscriber, _ = heard
    victim = fresh_redis_cluster.servers[1]
    key = b"tp:{" + tag_on(fresh_redis_cluster, victim) + b"}:s"
    other = b"tp:{" + tag_on(fresh_redis_cluster, fresh_redis_cluster.servers[0]) + b"}:s"
    assert await connection.command("SET", key, 1)
    held = connection.command("EVAL", BUSY, 1, key)
    await asyncio.sleep(0.2)
    start = time.monotonic()
    victim.stop(signal.SIGKILL)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(connection.lost(), TIMEOUT)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(subscriber.lost(), TIMEOUT)
    assert time.monotonic() - start < TIMEOUT
    with pytest.raises(ConnectionError):
        await held
    with pytest.raises(ConnectionError):
        connection.command("GET", other)  # every master's: at once
    with pytest.raises(ConnectionError):
        subscriber.ping()
    # Opening again fails while the master is away (refused, with the others' map).
    seeds = [address(url) for url in fresh_redis_cluster.urls]
    with pytest.raises(FAILURES):
        await ClusterConnection.open(*seeds)


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


async def test_a_command_on_keys_half_moved_is_tried_again_until_the_move_ends(
    fresh_redis_cluster, connection
):
    """Two keys of one tag, one of them moved already: Redis answers the command on
    both TRYAGAIN; it is sent again until the move ends, then answered."""
    cluster = fresh_redis_cluster
    source, target = cluster.servers[1], cluster.servers[2]
    tag = tag_on(cluster, source)
    slot, first, second = key_slot(tag), b"{" + tag + b"}a", b"{" + tag + b"}b"
    await connection.command("SET", first, "1")
    await connection.command("SET", second, "2")
    with source.client() as from_, target.client() as to:
        to.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_id(source))
        from_.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(target))
        from_.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", first)
    try:
        answer = asyncio.ensure_future(connection.command("MGET", first, second))
        await asyncio.sleep(0.3)
        assert not answer.done()  # TRYAGAIN, sent again and again
        with source.client() as from_:
            from_.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", second)
        cluster.end_move(slot, target)
        assert await asyncio.wait_for(answer, 5) == [b"1", b"2"]  # then MOVED, sent on
    finally:
        cluster.begin_move(slot, source)
        cluster.end_move(slot, source)
