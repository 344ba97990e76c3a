"""The cluster's own Redis connections (``thunderpush.cluster.connection`` and
``subscriber``), against a real ``redis-server``: answers in order, one write per
loop turn, errors, a Redis that hangs, dies mid-pipeline and comes back,
logins, databases and TLS as the URL says, and pub/sub in batches."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from urllib.parse import quote

import pytest
import trustme

from thunderpush.cluster.connection import (
    TIMEOUT,
    Connection,
    ReplyError,
    address,
)
from thunderpush.cluster.subscriber import Subscriber
from thunderpush.core.protocol import MISSED

from .support.clients import WebSocketClient
from .support.cluster import redis_executable
from .support.processes import free_port
from .support.served import eventually, serving

pytestmark = pytest.mark.slow

# Holds Redis for ARGV[1] milliseconds, by Redis's clock.
BUSY = """
local function ms() local t = redis.call('TIME') return t[1] * 1000 + t[2] / 1000 end
local start = ms()
while ms() - start < tonumber(ARGV[1]) do end
return 1
"""


def count_writes(connection: Connection) -> list[bytes]:
    """The writes ``connection`` makes from now on, recorded as they pass."""
    writes: list[bytes] = []
    write = connection._transport.write

    def recorded(data: bytes) -> None:
        writes.append(data)
        write(data)

    connection._transport.write = recorded
    return writes


async def test_every_command_of_a_turn_goes_in_one_write_and_answers_in_order(fresh_redis):
    connection = await Connection.open(address(fresh_redis.url))
    try:
        writes = count_writes(connection)
        answers = [connection.command("INCR", "n") for _ in range(300)]
        assert await asyncio.gather(*answers) == list(range(1, 301))
        assert len(writes) == 1
        # The next turn's commands are the next write.
        assert await connection.command("GET", "n") == b"300"
        assert len(writes) == 2
    finally:
        connection.close()


async def test_an_error_answers_its_own_command_only(fresh_redis):
    connection = await Connection.open(address(fresh_redis.url))
    try:
        before = connection.command("SET", "k", "v")
        wrong = connection.command("INCR", "k")
        after = connection.command("GET", "k")
        assert await before == b"OK"
        with pytest.raises(ReplyError, match="not an integer"):
            await wrong
        assert await after == b"v"
        pipe = connection.pipeline()
        pipe.command("HSET", "h", "f", 1)
        pipe.evalsha(b"0" * 40, 0)  # no such script
        pipe.command("HDEL", "h", "f")
        with pytest.raises(ReplyError, match="NOSCRIPT"):
            await pipe.execute()
        # The pipeline's other commands were run all the same.
        assert await connection.command("HEXISTS", "h", "f") == 0
    finally:
        connection.close()


async def test_a_redis_that_hangs_fails_the_call_after_the_timeout(fresh_redis):
    connection = await Connection.open(address(fresh_redis.url))
    fresh_redis.proc.send_signal(signal.SIGSTOP)
    try:
        start = time.monotonic()
        first = connection.command("PING")
        await asyncio.sleep(TIMEOUT / 2)
        second = connection.command("PING")  # half a timeout later, failed with it
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(first, TIMEOUT * 3)
        assert TIMEOUT * 0.9 < time.monotonic() - start < TIMEOUT * 2
        with pytest.raises(asyncio.TimeoutError):
            await second
        with pytest.raises(asyncio.TimeoutError):
            await connection.lost()
        with pytest.raises(ConnectionError):
            connection.command("PING")
    finally:
        fresh_redis.proc.send_signal(signal.SIGCONT)
        connection.close()


async def test_a_redis_that_dies_mid_pipeline_fails_what_waits_and_serves_once_back(fresh_redis):
    connection = await Connection.open(address(fresh_redis.url))
    answered = [connection.command("INCR", "n") for _ in range(5)]
    held = connection.command("EVAL", BUSY, 0, 3000)
    behind = [connection.command("INCR", "n") for _ in range(2000)]
    await asyncio.sleep(0.3)  # all went in one write; Redis is inside the script
    assert not held.done()
    fresh_redis.stop(signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(connection.lost(), TIMEOUT)
    assert time.monotonic() - start < TIMEOUT / 2  # at once, not at the timeout
    for future in [held, *behind]:
        assert isinstance(future.exception(), ConnectionError)
    for future in answered:  # before the script: answered, or failed; never left waiting
        assert future.done()
    fresh_redis.start()
    again = await Connection.open(address(fresh_redis.url))
    try:
        answers = [again.command("INCR", "n") for _ in range(3)]
        assert await asyncio.gather(*answers) == [1, 2, 3]  # an empty Redis: a crash
    finally:
        again.close()


async def test_a_refused_connection_and_a_wrong_password_fail_at_once(fresh_redis):
    with pytest.raises(OSError):
        await Connection.open(address(f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(ReplyError, match="AUTH|WRONGPASS|password"):
        await Connection.open(address(f"redis://:nope@127.0.0.1:{fresh_redis.port}/0"))


async def test_a_user_password_and_database_from_the_url(fresh_redis):
    password = "s3:cr@t/pw"
    with fresh_redis.client() as admin:
        admin.acl_setuser(
            "bob",
            enabled=True,
            passwords=[f"+{password}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all"],
        )
    url = f"redis://bob:{quote(password, safe='')}@127.0.0.1:{fresh_redis.port}/3"
    try:
        connection = await Connection.open(address(url))
        try:
            assert await connection.command("ACL", "WHOAMI") == b"bob"
            await connection.command("SET", "where", "db 3")
        finally:
            connection.close()
        with fresh_redis.client() as admin:
            assert admin.get("where") is None
            admin.select(3)
            assert admin.get("where") == b"db 3"
        wrong = url.replace(quote(password, safe=""), "wrong")
        with pytest.raises(ReplyError, match="WRONGPASS"):
            await Connection.open(address(wrong))
    finally:
        with fresh_redis.client() as admin:
            admin.acl_deluser("bob")
            admin.flushall()


def test_urls_read_as_redis_py_reads_them():
    where = address("redis://:pa%40ss@h:7/2")
    assert (where.host, where.port, where.password, where.username, where.db) == (
        "h",
        7,
        "pa@ss",
        None,
        2,
    )
    assert address("redis://h").port == 6379 and address("redis://h").db == 0
    unix = address("unix:///run/redis.sock?db=4&password=pw")
    assert (unix.path, unix.db, unix.password) == ("/run/redis.sock", 4, "pw")
    assert address("redis://h").tls is None
    assert address("rediss://h").tls.check_hostname  # certificates checked by default
    assert address("redis://h/x").db == 0  # redis-py ignores a path that is no number
    for wrong in ("http://h", "h:6379", "rediss://h?ssl_cert_reqs=maybe"):
        with pytest.raises(ValueError):
            address(wrong)


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server that speaks only TLS, with a certificate for 127.0.0.1; its
    (port, CA file)."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    command = [redis_executable(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    command += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    command += ["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.skip(f"this redis-server has no TLS: {proc.stdout.read()[-300:]!r}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the TLS redis-server did not start"
                time.sleep(0.05)
        yield port, ca_file
    finally:
        proc.kill()
        proc.wait(5)


async def test_rediss_checks_the_certificate_as_redis_py_does(tls_redis):
    port, ca_file = tls_redis
    trusted = await Connection.open(address(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_file}"))
    try:
        assert await trusted.command("PING") == b"PONG"
    finally:
        trusted.close()
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
        await Connection.open(address(f"rediss://127.0.0.1:{port}/0"))
    unchecked = await Connection.open(address(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none"))
    try:
        assert await unchecked.command("PING") == b"PONG"
    finally:
        unchecked.close()


async def test_subscriptions_change_in_one_command_per_turn(fresh_redis):
    got: list[tuple[bytes, bytes]] = []
    subscriber = await Subscriber.open(address(fresh_redis.url), lambda c, d: got.append((c, d)))
    publisher = await Connection.open(address(fresh_redis.url))
    try:
        writes = count_writes(subscriber)
        names = [f"c{n}" for n in range(100)]
        subscriber.subscribe(*names)
        subscriber.subscribe("gone")
        subscriber.unsubscribe("gone")  # in the same turn: never asked
        subscriber.subscribe("s", sharded=True)
        assert await subscriber.ping()
        assert len(writes) == 1
        assert writes[0].count(b"SUBSCRIBE") == 2  # one SUBSCRIBE, one SSUBSCRIBE
        channels = await publisher.command("PUBSUB", "CHANNELS")
        assert sorted(channels) == sorted(name.encode() for name in names)
        assert await publisher.command("PUBLISH", "c7", "seven") == 1
        assert await publisher.command("PUBLISH", "gone", "never") == 0
        assert await publisher.command("SPUBLISH", "s", "sharded") == 1
        subscriber.unsubscribe(*names[1:])
        subscriber.subscribe("c1")  # back before the turn ends: stays
        assert await subscriber.ping()
        channels = await publisher.command("PUBSUB", "CHANNELS")
        assert sorted(channels) == [b"c0", b"c1"]
        assert await publisher.command("PUBLISH", "c1", "one") == 1
        assert await publisher.command("PUBLISH", "c9", "nine") == 0
        assert await subscriber.ping()
        assert got == [(b"c7", b"seven"), (b"s", b"sharded"), (b"c1", b"one")]
    finally:
        subscriber.close()
        publisher.close()


async def test_a_subscriber_whose_redis_dies_says_so_and_a_new_one_serves_once_back(
    fresh_redis,
):
    got: list[bytes] = []
    subscriber = await Subscriber.open(address(fresh_redis.url), lambda c, d: got.append(d))
    subscriber.subscribe("bus")
    assert await subscriber.ping()
    fresh_redis.stop(signal.SIGKILL)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(subscriber.lost(), TIMEOUT)
    with pytest.raises(ConnectionError):
        subscriber.ping()
    fresh_redis.start()
    again = await Subscriber.open(address(fresh_redis.url), lambda c, d: got.append(d))
    publisher = await Connection.open(address(fresh_redis.url))
    try:
        again.subscribe("bus")
        assert await again.ping()
        assert await publisher.command("PUBLISH", "bus", "back") == 1
        assert await again.ping()
        assert got == [b"back"]
    finally:
        again.close()
        publisher.close()


async def test_a_node_whose_redis_hangs_answers_503_in_time_and_comes_back(fresh_redis):
    async with serving({"redis_url": fresh_redis.url, "presence_ttl": 3}) as server:

        async def publish(text: str) -> tuple[int, bytes]:
            response = await server.api("POST", "channels/news/", text)
            return response.code, response.body

        client = await server.client(WebSocketClient, "ann", "news")
        await eventually(lambda: publish("0"), (200, b'{"count": 1}\n'))
        assert await client.message() == {"payload": "0", "channel": "news"}
        fresh_redis.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            answers = await asyncio.gather(*(publish(str(n)) for n in range(20)))
            assert {code for code, _ in answers} == {503}
            assert time.monotonic() - started < TIMEOUT * 2
            assert not server.parts.node.up
        finally:
            fresh_redis.proc.send_signal(signal.SIGCONT)
        # Back, the node asks its clients to reconnect and recover; they are served again.
        assert (await client.closed(timeout=10))[0] == MISSED.code
        client = await server.client(WebSocketClient, "ann", "news")
        await eventually(lambda: publish("1"), (200, b'{"count": 1}\n'), timeout=10)
        assert await client.message() == {"payload": "1", "channel": "news"}
