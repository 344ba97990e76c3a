"""Sphinx configuration for the Thunderpush documentation.

Build with ``python -m sphinx -b html docs docs/_build/html``; the test suite
builds it with warnings as errors (tests/test_docs.py).
"""

from pathlib import Path

# Read the version without importing the package, so that building the docs
# needs nothing but Sphinx.
_about: dict[str, str] = {}
exec((Path(__file__).resolve().parent.parent / "thunderpush" / "__init__.py").read_text(), _about)

project = "Thunderpush"
author = "the Thunderpush developers"
copyright = "2026, the Thunderpush developers"
release = _about["__version__"]
version = ".".join(release.split(".")[:2])

extensions: list[str] = []
exclude_patterns = ["_build"]
# Every code block names its language; plain text stays plain.
highlight_language = "none"

html_theme = "alabaster"
html_theme_options = {
    "description": "A self-hosted real-time push server",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
