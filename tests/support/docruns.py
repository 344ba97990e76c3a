"""How the docs test runs each kind of block: what a reader would do with it.

* a shell block's ``curl`` lines go to a real server (``localhost:8000`` becomes
  its address); the answer must have the shape the page shows: the same status
  line, the same JSON keys, the same ``message`` and ``status``;
* its ``thunderpush`` lines go through the server's own configuration loader
  (``cli.load``: the flags, the environment its ``export`` lines set, the file
  of ``--config``), which is everything a start does before it serves;
* ``thunderpush-token`` lines run, with the environment the block exported;
* a Python block runs in a subprocess beside that server;
* a TOML block is read as ``--config`` would read it.

Each returns nothing, or fails the test with what the reader would have seen.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from thunderpush.config import ConfigError
from thunderpush.server import cli

from .docblocks import ROOT, Block, commands

SERVER_PROGRAMS = ("thunderpush", ".venv/bin/thunderpush")
TOKEN_PROGRAM = "thunderpush-token"


def on_server(text: str, port: int) -> str:
    """The text as it runs against the test's server, not the reader's on port 8000."""
    text = text.replace("localhost:8000", f"127.0.0.1:{port}")
    return re.sub(r"\bport=8000\b", f"port={port}", text)


def needs_server(block: Block) -> bool:
    if block.lang in {"python", "html"}:
        return True
    return any(command.line.startswith("curl ") for command in commands(block))


def run_shell(block: Block, port: int | None, tmp_path: Path, files: Mapping[str, str]) -> None:
    """Each command of the block, in order, with the environment its ``export`` lines set."""
    environ: dict[str, str] = {}
    for command in commands(block):
        words = shlex.split(command.line)
        if words[0] == "export":
            environ.update(word.split("=", 1) for word in words[1:])
        elif words[0] == "curl":
            assert port is not None
            run_curl(on_server(command.line, port), command.output)
        elif words[0] in SERVER_PROGRAMS:
            load_command(words[1:], environ, tmp_path, files)
        elif words[0] == TOKEN_PROGRAM:
            run_token(words[1:], environ, command.output)
        else:
            pytest.fail(f"cannot run {command.line!r}: mark the block not-run, with why")


def run_curl(line: str, shown: str) -> None:
    done = subprocess.run(
        ["bash", "-c", line.replace("curl ", "curl -sS ", 1)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, f"{line}\n{done.stderr}"
    status = re.match(r"HTTP/1\.1 (\d+)", shown)
    if status:
        assert done.stdout.startswith(f"HTTP/1.1 {status[1]}"), f"{line}\n{done.stdout}"
    expected = [text for text in shown.splitlines() if text.startswith(("{", "["))]
    if expected:
        body = done.stdout.strip().splitlines()[-1]
        assert same_shape(json.loads(expected[-1]), json.loads(body)), f"{line}\n{body}"


def same_shape(shown: Any, answered: Any) -> bool:
    """The same JSON types and keys (values depend on who is connected), the same messages."""
    if isinstance(shown, dict):
        if answered == {} and shown:  # a map by name (channels), empty on a quiet server
            return True
        if not isinstance(answered, dict) or set(shown) != set(answered):
            return False
        for key in ("message", "status"):
            if key in shown and shown[key] != answered[key]:
                return False
        return all(same_shape(shown[key], answered[key]) for key in shown)
    if isinstance(shown, list):
        if not isinstance(answered, list):
            return False
        return not (shown and answered) or same_shape(shown[0], answered[0])
    if isinstance(shown, bool) or isinstance(answered, bool):
        return type(shown) is type(answered)
    if isinstance(shown, int | float):
        return isinstance(answered, int | float)
    return type(shown) is type(answered)


def load_command(
    argv: list[str], environ: Mapping[str, str], tmp_path: Path, files: Mapping[str, str]
) -> None:
    """``cli.load``: a start's every check short of binding; ``--config`` of a file the
    page shows (a TOML block opening with ``# <its path>``) reads that block."""
    for index, word in enumerate(argv[:-1]):
        if word == "--config" and argv[index + 1] in files:
            written = tmp_path / Path(argv[index + 1]).name
            written.write_text(files[argv[index + 1]], encoding="utf-8")
            argv = [*argv[: index + 1], str(written), *argv[index + 2 :]]
    try:
        cli.load(argv, environ)
    except (ConfigError, SystemExit) as error:
        pytest.fail(f"thunderpush {shlex.join(argv)}: {error}")


def run_token(argv: list[str], environ: Mapping[str, str], shown: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from thunderpush.auth_cli import main; main()", *argv],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "PYTHONPATH": str(ROOT), **environ},
    )
    assert done.returncode == 0, done.stderr
    if re.fullmatch(r"\d+\.[0-9a-f]+\.\.\.", shown):
        assert re.fullmatch(r"\d+\.[0-9a-f]+\n", done.stdout), done.stdout


def run_python(block: Block, port: int, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", on_server(block.text, port)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def load_toml(block: Block, tmp_path: Path) -> None:
    """The block as ``--config``; the app of the command line where the block declares none."""
    path = tmp_path / "thunderpush.toml"
    path.write_text(block.text, encoding="utf-8")
    argv = ["--config", str(path)]
    if "[[apps]]" not in block.text:
        argv += ["key", "secret"]
    try:
        cli.load(argv, {})
    except (ConfigError, SystemExit) as error:
        pytest.fail(f"{block.where} as --config: {error}")


def config_files(blocks: list[Block]) -> dict[str, str]:
    """The TOML blocks that say where they are saved (``# /etc/...toml``), by that path."""
    found = {}
    for block in blocks:
        first = block.text.splitlines()[0] if block.text else ""
        if block.lang == "toml" and first.startswith("# /"):
            found[first[2:].split()[0]] = block.text
    return found
