"""The ``thunderpush`` command as supervisord and systemd run it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from thunderpush import __version__
from thunderpush.config import Config
from thunderpush.server.application import build
from thunderpush.server.cli import config_from, parse_args

from .support import KEY
from .support.api import call_api
from .support.clients import RawWebSocketClient, WebSocketClient, XhrPollingClient
from .support.processes import start_server_process

pytestmark = pytest.mark.slow


def test_parse_args_defaults():
    config = config_from(parse_args(["client", "secret"]))
    assert config == Config(apikey="client", apisecret="secret")
    assert (config.port, config.host, config.verbose, config.debug) == (8080, "", False, False)
    assert config.pid_path == "/tmp/thunderpush.pid"


def test_parse_args_every_option():
    config = config_from(
        parse_args(
            ["-p", "9000", "-H", "127.0.0.1", "-v", "-d", "--pid-path", "/run/t.pid"]
            + ["--sockjs-url", "/s.js", "pub", "priv"]
        )
    )
    assert config.port == 9000 and config.host == "127.0.0.1"
    assert config.verbose and config.debug
    assert config.pid_path == "/run/t.pid" and config.sockjs_url == "/s.js"
    assert (config.apikey, config.apisecret) == ("pub", "priv")


@pytest.mark.parametrize(
    "argv",
    [[], ["only-one"], ["-p", "x", "a", "b"], ["--idle-timeout", "0", "a", "b"]]
    + [["--head-timeout", value, "a", "b"] for value in ("-1", "nan", "inf", "soon")],
)
def test_bad_arguments_exit_2_with_one_line(argv):
    result = subprocess.run(
        [sys.executable, "-m", "thunderpush", *argv], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("thunderpush: error: ")
    assert result.stderr.count("\n") == 1


def test_an_empty_secret_is_refused_at_start():
    """The issue's case: ``thunderpush key ""`` served requests without a secret."""
    result = subprocess.run(
        [sys.executable, "-m", "thunderpush", "key", ""], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == (
        "thunderpush: error: argument apikey: the secret must not be empty or only whitespace\n"
    )


@pytest.mark.parametrize("blank", ["", " ", "\t", " \n\u00a0"])
@pytest.mark.parametrize(
    "position, what", [(0, "clientkey: the public key"), (1, "apikey: the secret")]
)
def test_blank_keys_and_secrets_are_usage_errors(capsys, blank, position, what):
    argv = ["key", "secret"]
    argv[position] = blank
    with pytest.raises(SystemExit) as exit:
        parse_args(argv)
    assert exit.value.code == 2
    assert f"argument {what} must not be empty or only whitespace" in capsys.readouterr().err


@pytest.mark.parametrize(
    "fields, what",
    [
        ({"apikey": "key", "apisecret": ""}, "secret"),
        ({"apikey": "key", "apisecret": " \t"}, "secret"),
        ({"apikey": "", "apisecret": "secret"}, "public key"),
        ({"apikey": "\n", "apisecret": "secret"}, "public key"),
    ],
)
def test_build_refuses_a_blank_key_or_secret(fields, what):
    with pytest.raises(ValueError, match=f"^the {what} must not be empty or only whitespace$"):
        build(Config(**fields))


@pytest.mark.parametrize("padded", [" secret", "secret\t", "\u00a0secret"])
def test_a_secret_with_whitespace_at_an_end_is_refused(capsys, padded):
    """HTTP trims header values: such a secret could never be sent; every backend would get 401."""
    with pytest.raises(SystemExit):
        parse_args(["key", padded])
    assert "argument apikey: the secret must not begin or end with whitespace" in (
        capsys.readouterr().err
    )


def test_version():
    result = subprocess.run(
        [sys.executable, "-m", "thunderpush", "-V"], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout.strip()) == (0, __version__)


def test_console_script_is_installed():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlib.metadata import entry_points as e;"
            "print(e(group='console_scripts')['thunderpush'].value)",
        ],
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "thunderpush.server.cli:main"


def test_start_up_line_and_pid_file(server_process):
    assert server_process.pid_path.read_text().strip() == str(server_process.proc.pid)
    log = server_process.log()
    assert f"Thunderpush {__version__} listening on 127.0.0.1:{server_process.port}" in log
    assert server_process.stop() == 0
    assert not server_process.pid_path.exists()


def test_second_instance_on_the_same_pid_file_is_refused(server_process, tmp_path):
    command = [sys.executable, "-m", "thunderpush", "-p", "1", "-H", "127.0.0.1"]
    command += ["--pid-path", str(server_process.pid_path), KEY, "s"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "already running" in result.stderr
    # The running server's PID file is untouched.
    assert server_process.pid_path.read_text().strip() == str(server_process.proc.pid)


def test_stale_pid_file_is_reused(tmp_path):
    stale = tmp_path / "thunderpush-stale.pid"
    stale.write_text("999999\n")
    running = start_server_process(tmp_path, "--pid-path", str(stale))
    try:
        assert stale.read_text().strip() == str(running.proc.pid)
    finally:
        assert running.stop() == 0
    assert not stale.exists()


async def test_a_client_key_named_bench_starts_a_server(tmp_path):
    """``thunderpush bench secret`` is a server with key ``bench``, not the load generator."""
    running = start_server_process(tmp_path, key="bench")
    try:
        assert running.proc.poll() is None
        response = await call_api(running.url, "GET", "users/", key="bench")
        assert (response.code, response.body) == (200, b'{"count": 0}\n')
        response = await call_api(running.url, "GET", "users/", key=KEY)
        assert response.code == 401  # the one application is "bench"
    finally:
        assert running.stop() == 0
    assert "listening on 127.0.0.1" in running.log()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_closes_every_session_with_a_reconnect_code(tmp_path, signum):
    running = start_server_process(tmp_path)
    try:
        clients = {}
        for kind in (WebSocketClient, RawWebSocketClient, XhrPollingClient):
            client = await kind(running.url).open()
            await client.send(f"CONNECT u:{KEY}")
            clients[kind] = client
        for _ in range(100):  # all three registered (bounded)
            response = await call_api(running.url, "GET", "users/u/")
            if response.body == b'{"online": true}\n':
                break
        running.proc.send_signal(signum)
        reason = "Server shutting down."
        assert await clients[WebSocketClient].closed() == (9010, reason)
        assert await clients[RawWebSocketClient].closed() == (4010, reason)
        assert await clients[XhrPollingClient].closed() == (9010, reason)
        assert await asyncio.get_running_loop().run_in_executor(None, running.proc.wait, 10) == 0
    finally:
        running.stop()
    assert not running.pid_path.exists()
    log = running.log()
    assert "Traceback" not in log and "ERROR" not in log


async def test_verbose_logs_debug_lines(tmp_path):
    running = start_server_process(tmp_path, "-v")
    try:
        client = await WebSocketClient(running.url).open()
        await client.send(f"CONNECT u:{KEY}", "SUBSCRIBE news")
        for _ in range(100):
            if (
                await call_api(running.url, "POST", "channels/news/", "1")
            ).body != b'{"count": 0}\n':
                break
        await client.message()
    finally:
        running.stop()
    assert "DEBUG" in running.log() and "subscribed to news" in running.log()


async def test_default_log_is_quiet(server_process):
    client = await WebSocketClient(server_process.url).open()
    await client.send(f"CONNECT u:{KEY}", "SUBSCRIBE news", "BOGUS")
    await call_api(server_process.url, "GET", "users/")
    server_process.stop()
    lines = server_process.log().splitlines()
    assert [line for line in lines if " INFO " in line and "listening" not in line] == [
        line for line in lines if "Shutting down" in line
    ]
    assert not [line for line in lines if "DEBUG" in line]
    assert any("WARNING" in line and "BOGUS" in line for line in lines)
