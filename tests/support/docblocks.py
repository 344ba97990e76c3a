"""The code blocks of README.md, docs/*.rst and examples/*/README.md, as the docs test runs them.

A block is a ``` fence of a README, or a ``.. code-block:: <lang>`` or
``::`` literal block of a page.  Either the docs test runs it, or the source
says why not right before it: ``<!-- not-run: <reason> -->`` in Markdown,
``.. not-run: <reason>`` (a comment, so Sphinx shows nothing) in
reStructuredText; before a ``::`` block the marker precedes the paragraph
that introduces it.  ``blocks()`` finds them; ``commands()`` splits a shell
block into the commands it shows and the output each is shown to print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_MD_FENCE = re.compile(r"^```(\S*)\s*$")
_MD_MARKER = re.compile(r"^<!-- not-run: (.+?) -->$")
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\. code-block::\s*(\S+)\s*$")
_RST_MARKER = re.compile(r"^\s*\.\. not-run: (.+)$")
# A paragraph ending with "::" (not a directive) introduces a literal block.
_RST_LITERAL = re.compile(r"^(?!\s*\.\. )(\s*).*::\s*$")


@dataclass(frozen=True)
class Block:
    """One code block: where it starts (the fence or directive line), its language and text."""

    path: Path
    line: int
    lang: str
    text: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    """Every code block of README.md, docs/*.rst and the examples' READMEs, in file order."""
    found = markdown_blocks(ROOT / "README.md")
    for page in sorted((ROOT / "docs").glob("*.rst")):
        found += rst_blocks(page)
    for readme in sorted((ROOT / "examples").glob("*/README.md")):
        found += markdown_blocks(readme)
    return found


def markdown_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        fence = _MD_FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        marker = _marker_before(lines, index, _MD_MARKER)
        text = "\n".join(lines[index + 1 : end])
        found.append(Block(path, index + 1, fence[1] or "text", text, marker))
        index = end + 1
    return found


def rst_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        directive = _RST_DIRECTIVE.match(lines[index])
        literal = None if directive else _RST_LITERAL.match(lines[index])
        if directive is None and literal is None:
            index += 1
            continue
        indent = len((directive or literal)[1])
        start = index + 1
        while directive and start < len(lines) and lines[start].strip().startswith(":"):
            start += 1  # the directive's options
        end, body = start, []
        while end < len(lines) and not lines[end].strip():
            end += 1
        # The block is its first line's indent and deeper (blank lines within).
        margin = _indent(lines[end]) if end < len(lines) else 0
        if margin <= indent:
            index += 1  # "::" ending a line that introduces no block (a table's cell)
            continue
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) >= margin):
            body.append(lines[end])
            end += 1
        text = _dedent(body)
        if directive:
            lang, before = directive[2], index
        else:
            lang, before = "literal", _paragraph_start(lines, index)
        marker = _marker_before(lines, before, _RST_MARKER)
        found.append(Block(path, index + 1, lang, text, marker))
        index = end
    return found


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _dedent(body: list[str]) -> str:
    while body and not body[-1].strip():
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    margin = min((_indent(line) for line in body if line.strip()), default=0)
    return "\n".join(line[margin:] for line in body)


def _paragraph_start(lines: list[str], index: int) -> int:
    while index > 0 and lines[index - 1].strip() and not _RST_MARKER.match(lines[index - 1]):
        index -= 1
    return index


def _marker_before(lines: list[str], index: int, marker: re.Pattern) -> str | None:
    """The reason of the not-run marker before line ``index`` (blank lines between allowed)."""
    index -= 1
    while index >= 0 and not lines[index].strip():
        index -= 1
    found = marker.match(lines[index]) if index >= 0 else None
    return found[1] if found else None


@dataclass(frozen=True)
class Command:
    """One command of a shell block (continuation lines joined) and the output shown for it."""

    line: str
    output: str


def commands(block: Block) -> list[Command]:
    """A console block's ``$ `` lines and what follows each; a sh block's every line."""
    prompted = block.lang == "console" or block.text.startswith("$ ")
    found: list[Command] = []
    pending: list[str] = []
    output: list[str] = []
    for raw in block.text.splitlines():
        if pending:
            pending.append(raw.strip())
        elif prompted and not raw.startswith("$ "):
            output.append(raw)
            continue
        elif not raw.strip() or raw.startswith("#"):
            continue
        else:
            _close(found, output)
            pending = [raw[2:] if prompted else raw]
        if pending[-1].endswith("\\"):
            pending[-1] = pending[-1][:-1].strip()
            continue
        found.append(Command(" ".join(pending), ""))
        pending, output = [], []
    _close(found, output)
    return found


def _close(found: list[Command], output: list[str]) -> None:
    if found and output:
        found[-1] = Command(found[-1].line, "\n".join(output).strip())
        output.clear()
