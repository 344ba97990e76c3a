"""``.. thunderpush-options::``: every command-line option, read from the code itself.

The reference is built from ``thunderpush.server.cli.build_parser()`` (the
parser the ``thunderpush`` command uses) at documentation build time, so it
cannot fall behind the code: a new option, a changed default or help text
appears in the next build.  Help texts are shown as they are, never parsed
as reStructuredText.
"""

from __future__ import annotations

import argparse

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from thunderpush.server import cli


def _names(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar or action.dest
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    if action.choices is not None:
        argument = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        argument = action.metavar or action.dest.upper()
    return ", ".join(f"{name} {argument}" for name in action.option_strings)


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
        text += f" (default: {default})"
    return text


def reference_entries(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """(names with argument, help) per option, in ``--help`` order."""
    return [
        (_names(action), _text(parser, action))
        for action in parser._actions  # argparse keeps the order only here
        if not isinstance(action, argparse._HelpAction)
    ]


class OptionsDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        items = nodes.definition_list()
        for names, text in reference_entries(cli.build_parser()):
            term = nodes.term("", "", nodes.literal(text=names))
            items += nodes.definition_list_item(
                "", term, nodes.definition("", nodes.paragraph(text=text))
            )
        return [items]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("thunderpush-options", OptionsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
