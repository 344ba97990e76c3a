"""``thunderpush --workers N``: one process to supervise, N servers on consecutive ports."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import time
from pathlib import Path

import pytest

from thunderpush.config import Config, ConfigError
from thunderpush.server.workers import checked, worker_pid_path

from .support.api import call_api
from .support.processes import (
    ServerProcess,
    bad_log_lines,
    refused_start,
    start_server_process,
)

pytestmark = pytest.mark.slow


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` free ports in a row.

    Looked for below the kernel's ephemeral range, which outgoing connections
    (the other tests', a benchmark's thousands) take from: a run of free ports
    there is the rule, not the luck it is among the ephemeral ones.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        first = random.randrange(10000, low - count)
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no consecutive free ports")


def pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def until(condition, timeout: float = 10.0, log: ServerProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, log.log() if log else "condition not reached in time"
        time.sleep(0.05)


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
    except OSError:
        return False
    return True


def two_workers(tmp_path: Path, redis_url: str, *extra: str) -> ServerProcess:
    """``--workers 2`` with ``extra`` arguments, once every worker listens."""
    port = consecutive_free_ports(2)
    parent = start_server_process(
        tmp_path, "--workers", "2", "--redis-url", redis_url, *extra, port=port
    )
    # Once every worker listens, a worker's death is a crash, not a failed start.
    until(lambda: "Every worker is listening." in parent.log(), log=parent)
    return parent


@pytest.fixture
def workers(tmp_path, fresh_redis):
    """``--workers 2`` as users run it: the parent process, serving on ``ports(parent)``."""
    parent = two_workers(tmp_path, fresh_redis.url)
    yield parent
    if parent.proc.poll() is None:
        parent.stop()
    assert bad_log_lines(parent) == []


def ports(parent: ServerProcess) -> tuple[int, int]:
    return parent.port, parent.port + 1


def worker_pids(parent: ServerProcess) -> list[int | None]:
    return [pid_in(Path(worker_pid_path(str(parent.pid_path), port))) for port in ports(parent)]


async def test_two_workers_serve_on_consecutive_ports(workers):
    for port in ports(workers):
        response = await call_api(f"http://127.0.0.1:{port}", "GET", "users/")
        assert (response.code, response.body) == (200, b'{"count": 0}\n')
    # The parent's PID file at --pid-path, each worker's beside it.
    assert pid_in(workers.pid_path) == workers.proc.pid
    pids = worker_pids(workers)
    assert len(set(pids)) == 2 and workers.proc.pid not in pids
    assert all(pid and alive(pid) for pid in pids)


def test_sigterm_stops_every_worker_and_removes_the_pid_files(workers):
    pids = worker_pids(workers)
    assert workers.stop(signal.SIGTERM) == 0
    assert not any(alive(pid) for pid in pids)
    assert not any(answers(port) for port in ports(workers))
    assert list(workers.pid_path.parent.glob("*.pid")) == []
    assert workers.log().count("Shutting down...") == 2
    assert "Every worker has stopped." in workers.log()


def test_a_killed_worker_is_started_again(workers):
    first, second = worker_pids(workers)
    os.kill(second, signal.SIGKILL)
    until(
        lambda: worker_pids(workers)[1] not in (None, second) and answers(ports(workers)[1]),
        log=workers,
    )
    assert worker_pids(workers)[0] == first  # the other one was left alone
    assert (
        f"The worker on port {ports(workers)[1]} (PID {second}) was killed by SIGKILL; "
        "starting it again in 0.5 s." in workers.log()
    )
    assert workers.proc.poll() is None


def test_killing_the_parent_stops_the_workers(workers):
    pids = worker_pids(workers)
    workers.stop(signal.SIGKILL)
    until(lambda: not any(alive(pid) for pid in pids))


def test_a_worker_that_cannot_start_stops_them_all(tmp_path, fresh_redis):
    port = consecutive_free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))  # bound, so the worker's bind fails
        status, stderr = refused_start(
            tmp_path, "--workers", "2", "--redis-url", fresh_redis.url, port=port
        )
    assert status == 3, stderr
    assert stderr.endswith(
        f"Thunderpush cannot start: the worker on port {port + 1} exited with status 3.\n"
    )
    assert not answers(port)


def test_workers_without_redis_are_refused_in_one_line(tmp_path):
    status, stderr = refused_start(tmp_path, "--workers", "2")
    assert status == 2
    assert stderr == (
        "Thunderpush cannot start: --workers 2 needs --redis-url: without it every worker "
        "would serve only its own clients, with no messages or presence shared.\n"
    )


@pytest.mark.parametrize(
    "settings, reason",
    [
        ({"debug": True}, "--debug reloads the code"),
        ({"port": 65535}, "ports 65535 to 65536 are not all valid"),
        ({"port": 0}, "ports 0 to 1 are not all valid"),
    ],
)
def test_settings_workers_cannot_run_with(settings, reason):
    config = Config(workers=2, redis_url="redis://127.0.0.1:6379/0", **settings)
    with pytest.raises(ConfigError, match=reason):
        checked(config)


def test_worker_pid_files_sit_beside_the_parents():
    assert worker_pid_path("/run/thunderpush.pid", 8001) == "/run/thunderpush-8001.pid"
    assert worker_pid_path("/run/thunderpush", 8001) == "/run/thunderpush-8001"


async def test_sighup_reaches_every_worker_and_stops_none(tmp_path, fresh_redis):
    """Each worker reads the configuration file again; the parent only passes the signal on."""
    config = tmp_path / "thunderpush.toml"
    config.write_text("")
    parent = two_workers(tmp_path, fresh_redis.url, "--config", str(config))
    try:
        config.write_text('head_timeout = 3.0\n[[apps]]\nkey = "new"\nsecret = "new-secret"\n')
        parent.proc.send_signal(signal.SIGHUP)
        until(
            lambda: parent.log().count("Configuration reloaded: 2 apps, changed: new.") == 2,
            log=parent,
        )
        # Each worker names what changed in the file, and nothing it runs differently
        # from the file (its port, PID file) as a change.
        warnings = [line for line in parent.log().splitlines() if "need a restart" in line]
        assert len(warnings) == 2
        assert all(line.endswith("need a restart: head_timeout.") for line in warnings)
        for each in ports(parent):
            url = f"http://127.0.0.1:{each}"
            response = await call_api(url, "GET", "users/", key="new", secret="new-secret")
            assert response.code == 200
        assert parent.proc.poll() is None and all(map(alive, worker_pids(parent)))
    finally:
        assert parent.stop() == 0
    assert bad_log_lines(parent) == []


def test_every_line_of_a_worker_names_it(workers):
    # The parent's own lines name no worker; each worker's, its number, whose port its
    # "listening" line gives.
    lines = workers.log().splitlines()
    for number, port in enumerate(ports(workers), 1):
        assert any(
            f" thunderpush: worker {number}: Thunderpush" in line and line.endswith(f":{port}")
            for line in lines
        ), lines
    assert any(line.endswith("INFO thunderpush: Every worker is listening.") for line in lines)
    workers.stop(signal.SIGTERM)
    shutting = [line for line in workers.log().splitlines() if "Shutting down..." in line]
    assert sorted(line.split(": ")[1] for line in shutting) == ["worker 1", "worker 2"]


def test_a_json_log_names_the_worker_in_a_field(tmp_path, fresh_redis):
    parent = two_workers(tmp_path, fresh_redis.url, "--log-format", "json")
    port = parent.port
    assert parent.stop() == 0
    entries = [json.loads(line) for line in parent.log().splitlines() if line.startswith("{")]
    listening = {e["worker"]: e["message"] for e in entries if "listening on" in e["message"]}
    assert {number: text.rsplit(":", 1)[1] for number, text in listening.items()} == {
        1: str(port),
        2: str(port + 1),
    }
    assert all("worker" in e for e in entries if e["message"] == "Shutting down...")
    assert all("worker" not in e for e in entries if "Every worker" in e["message"])
