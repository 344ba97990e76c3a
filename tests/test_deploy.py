"""deploy/: the systemd unit, the supervisord program and the logrotate file.

docs/deployment.rst shows these files as they are (``literalinclude``), so
checking them checks the docs.  Each is read by its own tool where this machine
has it (``systemd-analyze verify``, ``logrotate``), and every server command
in them must be one the server accepts.  deploy/nginx.conf is run by
tests/test_nginx.py.
"""

from __future__ import annotations

import configparser
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thunderpush.server import cli

from .support.processes import start_server_process

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
INSTALLED = "/srv/thunderpush/.venv/bin/thunderpush"


def read_ini(path: Path) -> configparser.ConfigParser:
    """The file as an ini file, keys in their own case and ``$`` left alone."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


def server_arguments(command: str) -> list[str]:
    """The arguments of a ``thunderpush`` command line, checked by the server's own parser."""
    words = shlex.split(command.replace("\\\n", " "))
    assert words[0] == INSTALLED, words
    cli.parse_args(words[1:])  # exits (and fails the test) on an unknown option
    return words[1:]


def test_the_systemd_unit_raises_the_file_limit_and_reloads_with_sighup():
    service = read_ini(DEPLOY / "thunderpush.service")["Service"]
    assert service["LimitNOFILE"] == "65536"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    arguments = server_arguments(service["ExecStart"])
    assert "/run/thunderpush/thunderpush-8000.pid" in arguments  # in RuntimeDirectory=
    assert service["RuntimeDirectory"] == "thunderpush"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is missing")
def test_systemd_accepts_the_unit(tmp_path):
    # verify checks that ExecStart's program exists: point it at this one.
    unit = tmp_path / "thunderpush.service"
    program = Path(sys.executable).with_name("thunderpush")
    assert program.is_file(), program
    text = (DEPLOY / "thunderpush.service").read_text(encoding="utf-8")
    unit.write_text(text.replace(INSTALLED, str(program)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in done.stderr.splitlines() if "thunderpush.service" in line]
    assert done.returncode == 0 and not complaints, done.stderr


def test_the_supervisord_program_raises_the_file_limit_and_waits_for_the_drain():
    conf = read_ini(DEPLOY / "supervisord.conf")
    assert int(conf["supervisord"]["minfds"]) >= 65536
    program = conf["program:thunderpush"]
    server_arguments(program["command"])
    assert program["stopsignal"] == "TERM"
    drain = cli.parse_args([]).drain_seconds or 5
    assert int(program["stopwaitsecs"]) > drain


LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"


@pytest.mark.slow
@pytest.mark.skipif(not Path(LOGROTATE).is_file(), reason="logrotate is missing")
def test_logrotate_rotates_a_running_servers_log(tmp_path):
    """deploy/logrotate, run by logrotate on a live server: the server writes a new file."""
    log_path = tmp_path / "thunderpush.log"
    node = start_server_process(tmp_path, "--log-file", str(log_path))
    try:
        owner = pwd.getpwuid(os.getuid()).pw_name
        group = os.getgid()
        text = (DEPLOY / "logrotate").read_text(encoding="utf-8")
        replacements = {
            "/var/log/thunderpush/thunderpush.log": str(log_path),
            "/run/thunderpush/thunderpush-8000.pid": str(node.pid_path),
            "su thunderpush thunderpush": f"su {owner} {group}",
            "create 0640 thunderpush thunderpush": f"create 0640 {owner} {group}",
        }
        for old, new in replacements.items():
            assert old in text, f"deploy/logrotate no longer has {old!r}"
            text = text.replace(old, new)
        conf = tmp_path / "logrotate.conf"
        conf.write_text(text)
        conf.chmod(0o644)
        tmp_path.chmod(0o755)  # logrotate refuses a directory others may write to
        wait_for(lambda: log_path.is_file() and log_path.stat().st_size > 0)
        state = tmp_path / "logrotate.state"
        done = subprocess.run(
            [LOGROTATE, "-f", "-s", str(state), str(conf)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        rotated = tmp_path / "thunderpush.log.1"
        assert rotated.is_file()
        # SIGHUP through the PID file: the server says so in a new file.
        wait_for(lambda: "SIGHUP" in log_path.read_text(errors="replace"))
        assert node.proc.poll() is None
    finally:
        assert node.stop() == 0


def wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_deployment_page_shows_every_file_as_it_is():
    page = (DEPLOY.parent / "docs" / "deployment.rst").read_text(encoding="utf-8")
    for path in sorted(DEPLOY.iterdir()):
        assert f".. literalinclude:: ../deploy/{path.name}\n" in page, path.name
