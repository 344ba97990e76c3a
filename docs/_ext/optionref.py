"""``.. thunderpush-options::``: every command-line option, read from the code itself.

The reference is built from the parser of ``thunderpush.server.cli`` at
documentation build time, so it cannot fall behind the code: a new option,
a changed default or help text appears in the next build.
"""

from __future__ import annotations

import argparse
from unittest import mock

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from thunderpush.server import cli


class _Built(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def command_line_parser() -> argparse.ArgumentParser:
    """The parser ``cli.parse_args`` builds, taken as it starts to parse.

    Catching it there relies on nothing but ``parse_args`` itself, the
    function the ``thunderpush`` command calls.
    """

    def built(parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Built(parser)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", built):
        try:
            cli.parse_args([])
        except _Built as taken:
            return taken.parser
    raise RuntimeError("thunderpush.server.cli.parse_args built no parser")


def _names(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"``{action.metavar or action.dest}``"
    if action.nargs == 0:
        return ", ".join(f"``{name}``" for name in action.option_strings)
    if action.choices is not None:
        argument = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        argument = action.metavar or action.dest.upper()
    return ", ".join(f"``{name} {argument}``" for name in action.option_strings)


def _text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help as ``--help`` prints it, with the default where it does not say it."""
    text = (action.help or "") % {**vars(action), "prog": parser.prog}
    default = action.default
    if (
        action.option_strings
        and action.nargs != 0
        and default not in (None, argparse.SUPPRESS, "", ())
        and "default:" not in text
    ):
        text += f" (default: ``{default}``)"
    return text.replace("*", r"\*")


def reference_lines(parser: argparse.ArgumentParser) -> list[str]:
    """The reference as reStructuredText: one definition per option, in ``--help`` order."""
    lines: list[str] = []
    for action in parser._actions:  # argparse keeps the order only here
        if isinstance(action, argparse._HelpAction):
            continue
        lines += [_names(action), f"    {_text(parser, action)}", ""]
    return lines


class OptionsDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        lines = StringList(reference_lines(command_line_parser()), "thunderpush.server.cli")
        self.state.nested_parse(lines, self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("thunderpush-options", OptionsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
