"""Every code block of README.md and docs/ is run, or says why it is not.

A reader copies the blocks; a block that drifts from the code sends them
wrong.  So each block is either run here, one test per block named
``file:line`` (curl lines against a real server, Python beside it, TOML and
``thunderpush`` command lines through the server's configuration loader: see
``support/docruns.py``; HTML pages in Chromium, which must show what the docs
publish: ``support/docpages.py``), or carries a ``not-run`` marker with its
reason right before it (``support/docblocks.py``).  A block with neither fails
``test_every_block_is_run_or_marked``, which names it.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from collections.abc import Iterator

import pytest

from thunderpush.server import cli

from .support.docblocks import Block, blocks
from .support.docruns import (
    config_files,
    load_toml,
    needs_server,
    run_python,
    run_shell,
)
from .support.processes import ServerProcess, bad_log_lines, start_server_process

SHELLS = {"console", "sh", "bash", "shell"}
# In a --help text: an option's name, and a default it states.
OPTION = re.compile(r"(?<![\w-])--?[a-zA-Z][\w-]*")
DEFAULT = re.compile(r"\(default: [^)]*\)")
BLOCKS = blocks()
FILES = config_files(BLOCKS)


def kind(block: Block) -> str | None:
    """How the test runs ``block``; None: it cannot, and needs a marker."""
    if block.lang in SHELLS or (
        block.lang == "literal" and block.text.startswith(("$ ", "thunderpush "))
    ):
        return "shell"
    if block.lang == "text" and block.text.startswith("usage: thunderpush "):
        return "help"
    return block.lang if block.lang in {"python", "toml", "html"} else None


def runnable() -> Iterator[object]:
    for block in BLOCKS:
        if block.not_run is None and kind(block):
            marks = [pytest.mark.slow] if needs_server(block) else []
            yield pytest.param(block, id=block.where, marks=marks)


def test_the_extractor_finds_the_blocks():
    """Enough blocks of each kind that a broken extractor cannot pass for a clean page."""
    kinds = [kind(block) for block in BLOCKS]
    assert kinds.count("shell") >= 20 and kinds.count("toml") >= 3, kinds
    assert kinds.count("html") >= 4, kinds
    readme = [block for block in BLOCKS if block.where.startswith("README.md:")]
    assert [block.text.split()[0] for block in readme][:3] == ["apt-get", "bash", "curl"]


def test_every_block_is_run_or_marked():
    unmarked = [
        f"{block.where} ({block.lang})"
        for block in BLOCKS
        if kind(block) is None and block.not_run is None
    ]
    assert not unmarked, (
        "blocks neither run nor marked; add `.. not-run: <why>` (rst) or "
        "`<!-- not-run: <why> -->` (md) before each, or make it runnable:\n" + "\n".join(unmarked)
    )


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """The server the docs talk to: ``key``/``secret``, and Pusher's app id ``1``."""
    server = start_server_process(tmp_path_factory.mktemp("docs"), "--app-id", "1")
    yield server
    server.stop()
    assert not bad_log_lines(server), server.log()


@pytest.mark.parametrize("block", list(runnable()))
def test_block(block: Block, request, tmp_path):
    port = request.getfixturevalue("docs_server").port if needs_server(block) else None
    match kind(block):
        case "shell":
            run_shell(block, port, tmp_path, FILES)
        case "python":
            run_python(block, port, tmp_path)
        case "toml":
            load_toml(block, tmp_path)
        case "html":
            pytest.importorskip("playwright", reason="the browser runs where tox.ini installs it")
            from .support.docpages import run_page

            before = [b for b in BLOCKS if b.path == block.path and b.line < block.line]
            run_page(block, port, before)
        case "help":
            # argparse wraps to the terminal's width; the page shows 80 columns.
            request.getfixturevalue("monkeypatch").setenv("COLUMNS", "80")
            shown = cli.build_parser().format_help().rstrip()
            if sys.version_info < (3, 13):
                assert block.text == shown
            else:
                # Python 3.13's argparse writes "-p, --port PORT" where earlier ones
                # (Debian's 3.11, whose output the page shows) write "-p PORT, --port
                # PORT", and wraps accordingly: the same options, words and defaults.
                page, ours = " ".join(block.text.split()), " ".join(shown.split())
                assert re.findall(OPTION, page) == re.findall(OPTION, ours)
                assert re.findall(DEFAULT, page) == re.findall(DEFAULT, ours)


@pytest.mark.parametrize(
    "block", [pytest.param(b, id=b.where) for b in BLOCKS if b.lang == "python"]
)
def test_python_blocks_import_what_exists(block: Block):
    """Even a block that is not run names only modules and names Thunderpush has."""
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = compile(block.text, block.where, "exec", flags=flags)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("thunderpush"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"
                ), f"{block.where}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("thunderpush"):
                    importlib.import_module(alias.name)
