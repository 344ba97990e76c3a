"""The server as a process: start-up mistakes, the bound port, SIGHUP, the log.

Each start-up mistake of the operations issue runs the real command and checks
what an operator sees: one line, the documented exit status (2: a setting is
wrong, 3: the host refuses it), no traceback, and no PID file left behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pusher
import pytest

from .support import KEY, SECRET
from .support.api import call_api
from .support.clients import WebSocketClient
from .support.processes import OURS, free_port, start_server_process

pytestmark = pytest.mark.slow

AS_ROOT = os.geteuid() == 0


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder like /tmp: anyone may write, only owners remove."""
    path = Path(tempfile.mkdtemp(prefix="thunderpush-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path)


def start(*argv: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Our server with ``argv``, which must stop it at start (bounded)."""
    command = [*prefix, *OURS, *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def assert_one_line(result: subprocess.CompletedProcess, status: int, reason: str) -> None:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and reason in result.stderr, result.stderr


@pytest.mark.parametrize(
    "argv, status, reason",
    [
        (["-p", "-5"], 2, "argument -p/--port: not a port (0 to 65535): '-5'"),
        (["-p", "99999"], 2, "argument -p/--port: not a port (0 to 65535): '99999'"),
        (["-H", "203.0.113.77"], 3, "this host has no address 203.0.113.77"),
    ],
    ids=["-p -5", "-p 99999", "an address the host does not have"],
)
def test_a_bad_port_or_address_is_one_line(tmp_path, argv, status, reason):
    pid_path = tmp_path / "thunderpush.pid"
    result = start("-p", str(free_port()), "--pid-path", str(pid_path), *argv, KEY, SECRET)
    assert_one_line(result, status, reason)
    assert not pid_path.exists()


def test_a_port_in_use_is_one_line(tmp_path):
    pid_path = tmp_path / "thunderpush.pid"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start("-p", str(port), "-H", "127.0.0.1", "--pid-path", str(pid_path), KEY, SECRET)
    assert_one_line(result, 3, f"Thunderpush cannot start: port {port} on 127.0.0.1 is in use")
    assert not pid_path.exists()


def test_pid_paths_that_cannot_be_used_are_one_line(tmp_path):
    port = str(free_port())
    cases = [
        (tmp_path / "missing" / "t.pid", f"the folder {tmp_path / 'missing'} of the PID file"),
        (tmp_path, f"the PID path {tmp_path} is a folder"),
    ]
    for pid_path, reason in cases:
        result = start("-p", port, "-H", "127.0.0.1", "--pid-path", str(pid_path), KEY, SECRET)
        assert_one_line(result, 3, reason)
    assert list(tmp_path.iterdir()) == []


# Root may write any file: as root, the server runs without the capabilities that
# let it, so that file permissions apply to it as to any other user.
POWERLESS = ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner") if AS_ROOT else ()
needs_setpriv = pytest.mark.skipif(
    AS_ROOT and shutil.which("setpriv") is None, reason="root without setpriv"
)


def start_powerless(pid_path: Path) -> subprocess.CompletedProcess:
    """The server started as nobody, with its PID file at ``pid_path``."""
    return start(
        "-p",
        str(free_port()),
        "-H",
        "127.0.0.1",
        "--pid-path",
        str(pid_path),
        KEY,
        SECRET,
        prefix=POWERLESS,
    )


@needs_setpriv
def test_a_pid_folder_that_is_not_writable_is_one_line(shared_dir):
    folder = shared_dir / "locked"
    folder.mkdir(mode=0o555)
    folder.chmod(0o555)
    pid_path = folder / "t.pid"
    result = start_powerless(pid_path)
    assert_one_line(result, 3, f"cannot create the PID file {pid_path}: {folder} is not writable")
    assert not pid_path.exists()


@needs_setpriv
@pytest.mark.skipif(not AS_ROOT, reason="needs a file owned by another user")
def test_a_stale_pid_file_of_another_user_is_one_line(shared_dir):
    stale = shared_dir / "thunderpush.pid"
    stale.write_text("999999\n")
    stale.chmod(0o644)
    os.chown(stale, 65534, 65534)  # nobody's, as a server run as nobody would leave it
    result = start_powerless(stale)
    owner = f"user {pwd.getpwuid(65534).pw_name}"
    assert_one_line(result, 3, f"cannot write the PID file {stale}, which belongs to {owner}")
    assert stale.read_text() == "999999\n"  # not ours to remove or rewrite


def test_an_unwritable_log_file_is_one_line(tmp_path):
    pid_path = tmp_path / "t.pid"
    log_file = tmp_path / "missing" / "t.log"
    result = start(
        "-p", str(free_port()), "--pid-path", str(pid_path), "--log-file", str(log_file), KEY, "s"
    )
    assert_one_line(result, 3, f"cannot open the log file {log_file}: No such file or directory")
    assert not pid_path.exists()


async def test_port_0_listens_on_a_port_the_system_picks_and_logs_it(tmp_path):
    log_path = tmp_path / "t.log"
    pid_path = tmp_path / "t.pid"
    argv = ["-p", "0", "-H", "127.0.0.1", "--pid-path", str(pid_path), "--log-file", str(log_path)]
    proc = subprocess.Popen([*OURS, *argv, KEY, SECRET])
    try:
        pattern = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
        until(lambda: log_path.exists() and pattern.search(log_path.read_text()))
        port = int(pattern.search(log_path.read_text()).group(1))
        assert port != 0
        response = await call_api(f"http://127.0.0.1:{port}", "GET", "users/")
        assert response.code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not pid_path.exists()


async def test_sighup_reopens_the_log_reloads_apps_and_never_kills(tmp_path):
    config = tmp_path / "thunderpush.toml"
    config.write_text('[[apps]]\nkey = "a"\nsecret = "sa"\n')
    log_file = tmp_path / "server.log"
    running = start_server_process(tmp_path, "--config", str(config), "--log-file", str(log_file))

    async def answers(key: str, secret: str) -> int:
        return (await call_api(running.url, "GET", "users/", key=key, secret=secret)).code

    try:
        assert (await answers("a", "sa"), await answers("b", "sb")) == (200, 401)
        log_file.rename(tmp_path / "server.log.1")  # as logrotate does
        config.write_text(
            "max_channels_per_connection = 1\nhead_timeout = 3.0\n"
            '[[apps]]\nkey = "b"\nsecret = "sb"\n[[apps]]\nkey = "c"\nsecret = "sc"\n'
        )
        running.proc.send_signal(signal.SIGHUP)
        until(
            lambda: (
                log_file.exists()
                and "Configuration reloaded: 3 apps, changed: a, b, c." in log_file.read_text()
            )
        )
        assert (await answers("a", "sa"), await answers("b", "sb")) == (401, 200)
        assert await answers(KEY, SECRET) == 200  # the command line's app stays
        assert "need a restart: head_timeout." in log_file.read_text()
        client = await WebSocketClient(running.url).open()  # a limit, reloaded
        await client.send(f"CONNECT u:{KEY}", "SUBSCRIBE one:two")
        assert await client.message() == {
            "event": "subscription_error",
            "channel": "two",
            "message": "Too many channels.",
        }
        config.write_text("port = \n")
        for times in range(1, 4):
            running.proc.send_signal(signal.SIGHUP)
            until(lambda n=times: log_file.read_text().count("Configuration not reloaded") == n)
        assert running.proc.poll() is None
        assert await answers("b", "sb") == 200
    finally:
        assert running.stop() == 0
    assert not running.pid_path.exists()
    assert "listening on" in (tmp_path / "server.log.1").read_text()
    assert "listening on" not in log_file.read_text()
    assert "Traceback" not in log_file.read_text() + running.log()


async def test_sighup_names_every_change_applied_and_waiting_and_applies_app_ids(tmp_path):
    config = tmp_path / "thunderpush.toml"
    apps = '[[apps]]\nkey = "a"\nsecret = "sa"\napp_id = "{a}"\n{hook}'
    apps += '[[apps]]\nkey = "b"\nsecret = "{secret}"\napp_id = "{b}"\n'
    config.write_text(apps.format(a="1", b="2", secret="sb", hook=""))
    log_file = tmp_path / "server.log"
    running = start_server_process(tmp_path, "--config", str(config), "--log-file", str(log_file))

    def channels(app_id: str, key: str, secret: str) -> int:
        """The status of Pusher's channels_info for ``/apps/<app_id>/``, signed as ``key``."""
        client = pusher.Pusher(app_id, key, secret, host="127.0.0.1", port=running.port, ssl=False)
        try:
            client.channels_info()
        except pusher.errors.PusherBadAuth:
            return 401
        return 200

    def answers() -> list[int]:
        return [
            channels(app_id, key, secret)
            for app_id, key, secret in (("1", "a", "sa"), ("2", "a", "sa"), ("1", "b", "sb2"))
        ]

    try:
        assert await asyncio.to_thread(answers) == [200, 401, 401]
        # The two apps swap their ids, b gets a new secret, a a webhook (with a token
        # in its query), a limit changes and a setting that needs a restart.
        hook = 'webhook_url = "https://hooks.example.com/in?token=t0ken"\n'
        config.write_text(
            "max_commands_per_second = 5\nhead_timeout = 3.0\n"
            + apps.format(a="2", b="1", secret="sb2", hook=hook)
        )
        running.proc.send_signal(signal.SIGHUP)
        until(lambda: "Configuration reloaded: 3 apps, changed: a, b." in log_file.read_text())
        log = log_file.read_text()
        reloaded = [
            line.split("Reloaded: ", 1)[1] for line in log.splitlines() if "Reloaded: " in line
        ]
        assert reloaded == [  # each line about an app carries it in its context too
            "app a: webhook_url none -> https://hooks.example.com/in?token=********. [app=a]",
            "app a: app_id 1 -> 2. [app=a]",
            "app b: a new secret (tokens, Pusher signatures and dashboard sessions made with"
            " the old one are refused from now on). [app=b]",
            "app b: app_id 2 -> 1. [app=b]",
            "max_commands_per_second 100 -> 5.",
        ]
        assert "Changed settings that need a restart: head_timeout." in log
        assert "t0ken" not in log and "sb2" not in log
        assert await asyncio.to_thread(answers) == [401, 200, 200]
    finally:
        assert running.stop() == 0
    assert "Traceback" not in log_file.read_text() + running.log()


async def test_json_log_with_client_context_statistics_and_no_secret(tmp_path):
    config = tmp_path / "thunderpush.toml"
    config.write_text('[[apps]]\nkey = "a"\nsecret = "app-secret-a"\n')
    running = start_server_process(
        tmp_path, "--config", str(config), "--log-format", "json", "--stats-interval", "0.2"
    )
    try:
        client = await WebSocketClient(running.url).open()
        await client.send(f"CONNECT u:{KEY}", "SUBSCRIBE news", "BOGUS")
        until(lambda: "BOGUS" in running.log())
        assert (await call_api(running.url, "POST", "channels/news/", "{}")).body == (
            b'{"count": 1}\n'
        )
        await client.message()
        await call_api(running.url, "GET", "users/", key="a", secret="wrong")

        def statistics() -> list[dict]:
            entries = [json.loads(line) for line in running.log().splitlines()]
            return [entry["statistics"] for entry in entries if "statistics" in entry]

        until(lambda: any(figures["messages_in_period"] == 1 for figures in statistics()))
        figures = next(f for f in statistics() if f["messages_in_period"] == 1)
        assert figures["connections"] == figures["users"] == figures["channels"] == 1
        assert figures["messages_out_period"] == 1
    finally:
        assert running.stop() == 0
    entries = [json.loads(line) for line in running.log().splitlines()]
    assert {entry["level"] for entry in entries} <= {"INFO", "WARNING"}
    warning = next(entry for entry in entries if "BOGUS" in entry["message"])
    assert (warning["level"], warning["app"], warning["user"]) == ("WARNING", KEY, "u")
    assert warning["address"] == "127.0.0.1" and warning["session"]
    assert SECRET not in running.log() and "app-secret-a" not in running.log()


async def test_the_environment_keeps_the_secret_out_of_ps(tmp_path, monkeypatch):
    """The issue's case: a secret on the command line is shown by ``ps`` to every local user."""
    monkeypatch.setenv("THUNDERPUSH_APIKEY", "env-key")
    monkeypatch.setenv("THUNDERPUSH_APISECRET", "hidden-secret")
    port = free_port()
    pid_path = tmp_path / "t.pid"
    argv = ["-p", str(port), "-H", "127.0.0.1", "--pid-path", str(pid_path)]
    proc = subprocess.Popen([*OURS, *argv], stderr=subprocess.DEVNULL)
    try:
        until(lambda: pid_path.exists() and pid_path.read_text().strip())
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):  # bounded: the PID file is written just before it listens
            try:
                response = await call_api(url, "GET", "users/", "", "hidden-secret", "env-key")
                break
            except OSError:
                await asyncio.sleep(0.05)
        assert response.code == 200
        assert b"hidden-secret" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
