"""The documentation builds cleanly and says what the code does.

The README's first two commands are the project's promise to a new machine
(.ci/run runs the second one), so they are checked word for word.  Close codes
and command-line options are checked against the code, because those are what
goes stale first when the code moves on.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from thunderpush.core import protocol
from thunderpush.server import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

START_COMMAND = (
    "apt-get update && apt-get install -y python3-venv && python3 -m venv .venv "
    "&& .venv/bin/pip install . "
    "&& .venv/bin/thunderpush -p 8000 --pid-path thunderpush-8000.pid key secret"
)
TEST_COMMAND = "bash .ci/install && bash .ci/test"


def readme_code_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```[^\n]*\n(.*?)\n```$", readme, re.MULTILINE | re.DOTALL)


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", DOCS, tmp_path],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_starts_with_the_start_and_test_commands():
    assert readme_code_blocks()[:2] == [START_COMMAND, TEST_COMMAND]


def test_ci_runs_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert TEST_COMMAND in ci_lines


def test_every_close_code_is_documented():
    page = (DOCS / "protocol.rst").read_text(encoding="utf-8")
    closes = [value for value in vars(protocol).values() if isinstance(value, protocol.Close)]
    assert closes
    for code, reason in closes:
        raw = protocol.raw_websocket_close_code(code)
        assert re.search(rf"^{code} +{raw} +``{re.escape(reason)}``", page, re.MULTILINE), code
    for code in protocol.FINAL_CLOSE_CODES:
        assert re.search(rf"^{code} .* no$", page, re.MULTILINE), code


def test_every_command_line_option_is_documented(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["-h"])
    options = set(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", capsys.readouterr().out))
    documented = set(re.findall(r"``(--?[\w-]+)``", (DOCS / "quickstart.rst").read_text()))
    # -h/--help explains itself; everything else gets its own paragraph.
    assert options - {"-h", "--help"} <= documented


def test_the_yes_no_settings_are_listed():
    """configuration.rst names every setting that is a flag without a value."""
    page = (DOCS / "configuration.rst").read_text(encoding="utf-8")
    listed = re.search(r"Yes/no settings \(([^)]*)\)", page)
    assert listed, "configuration.rst lost its yes/no list"
    yes_no = {name for name, rule in cli.rules(cli.build_parser()).items() if rule is None}
    assert set(re.findall(r"``(\w+)``", listed[1])) == yes_no


def server_commands() -> list[str]:
    """Every ``thunderpush ... key secret`` in the README and docs, continuation lines joined."""
    texts = [(ROOT / "README.md").read_text(encoding="utf-8")]
    texts += [path.read_text(encoding="utf-8") for path in sorted(DOCS.glob("*.rst"))]
    texts += [path.read_text(encoding="utf-8") for path in sorted((ROOT / "deploy").iterdir())]
    joined = re.sub(r"\\\n\s*|\n# ", " ", "\n".join(texts))
    return re.findall(r"thunderpush((?: [^\n`]*?)?) key secret", joined)


def test_every_server_command_has_a_pid_file_named_after_its_port():
    """Two servers cannot share a port, so PID files named after it cannot collide."""
    commands = server_commands()
    assert len(commands) >= 8, commands
    for command in commands:
        port = re.search(r"-p (\d+)", command)
        pid_path = re.search(r"--pid-path (\S+)", command)
        assert port and pid_path, command
        assert f"-{port[1]}.pid" in pid_path[1], command


def test_the_configuration_reference_lists_every_option():
    page = DOCS / "configuration.rst"
    assert ".. thunderpush-options::" in page.read_text(encoding="utf-8")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import optionref
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    parser = cli.build_parser()
    names = " ".join(names for names, _ in optionref.reference_entries(parser))
    parser_options = {name for action in parser._actions for name in action.option_strings}
    assert parser_options - {"-h", "--help"} <= set(re.findall(r"(?<![\w-])--?[\w-]+", names))
    assert "clientkey" in names and "apikey" in names


def test_the_token_pages_show_the_one_page_snippet_the_example_runs():
    """client.rst and security.rst show the example's tokens.js, which Chromium runs."""
    include = ".. literalinclude:: ../examples/flask/static/tokens.js\n"
    for name in ("client.rst", "security.rst"):
        page = (DOCS / name).read_text(encoding="utf-8")
        assert include in page, name
        assert "/push/channel-token" not in page, name
    assert '"/push/token"' in (ROOT / "examples/flask/static/tokens.js").read_text()
