"""Sphinx configuration for the Thunderpush documentation.

Build with ``python -m sphinx -b html docs docs/_build/html``; the test suite
builds it with warnings as errors (tests/test_docs.py).
"""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
# _ext/optionref.py reads the command line from the package (its own checkout's),
# which imports the checkout's thunderpush_client (clients/python/).
sys.path[:0] = [str(_here / "_ext"), str(_here.parent), str(_here.parent / "clients" / "python")]

# The version, read from the checkout's package file.
_about: dict[str, str] = {}
exec((_here.parent / "thunderpush" / "__init__.py").read_text(), _about)

project = "Thunderpush"
author = "the Thunderpush developers"
copyright = "2026, the Thunderpush developers"
release = _about["__version__"]
version = ".".join(release.split(".")[:2])

extensions = ["optionref"]
exclude_patterns = ["_build", "_ext"]
# Every code block names its language; plain text stays plain.
highlight_language = "none"

html_theme = "alabaster"
html_theme_options = {
    "description": "A self-hosted real-time push server",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
