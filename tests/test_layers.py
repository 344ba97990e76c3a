"""The import graph points down: no module of ``thunderpush`` imports a layer above its own.

Every module is parsed (``ast``), and every ``import`` in it counts: at the top,
under ``TYPE_CHECKING``, inside a function.  A type-only import is still a
dependency a reader must follow, and a lazy one is the same edge taken later.

The layers, bottom first (a module may import its own layer's package, or
any layer below):

0. ``thunderpush`` itself (``__version__``), ``config``, ``settings``, ``auth``
   (the alias of ``thunderpush_client.auth``): the configuration everyone reads;
1. ``core``: what Thunderpush is, with no transport, HTTP, dialect or webhooks;
2. the features and the ways in: ``transports``, ``api``, ``pusher``,
   ``cluster``, ``observe``, ``webhooks``, ``dashboard``;
3. ``server``, the composition root;
4. the programs: ``__main__`` (``thunderpush``) and ``auth_cli`` (``thunderpush-token``).

Inside ``transports`` the subpackages are layers too: ``reads`` and ``slow``
(shared by both engines) < ``door`` (the asyncio front door: HTTP, limits,
TLS) < ``websocket`` (the engine, which writes the door's ``Server`` header and
counts in its limits) < ``sockjs`` (the sockjs-tornado layer on the engine).
So the door imports neither engine, and ``SIDEWAYS`` gives it no feature: it
knows the API's answer types, never its routes (``api.actions``) nor Pusher.

Below them all, ``thunderpush_client`` (clients/python/, a distribution of its
own that the server ships too: the core checks tokens with its ``auth``)
imports nothing of ``thunderpush`` and nothing outside the standard library.

The modules of layer 0 may import each other (``settings`` reads ``config``);
between two packages of layer 2 an edge needs a line in ``SIDEWAYS`` that says
why.  ``STILL_TO_REMOVE`` lists the upward edges main has today that the work on
issue 17 is removing; it empties as they go, and an entry whose edge is gone
fails too, so the list never hides a new one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "thunderpush"
CLIENT = Path(__file__).resolve().parent.parent / "clients" / "python" / "thunderpush_client"

LAYERS = {
    "thunderpush": 0,
    "thunderpush.config": 0,
    "thunderpush.settings": 0,
    "thunderpush.auth": 0,
    "thunderpush.core": 1,
    "thunderpush.transports": 2,
    "thunderpush.api": 2,
    "thunderpush.pusher": 2,
    "thunderpush.cluster": 2,
    "thunderpush.observe": 2,
    "thunderpush.webhooks": 2,
    "thunderpush.dashboard": 2,
    "thunderpush.server": 3,
    "thunderpush.__main__": 4,
    "thunderpush.auth_cli": 4,
}

TRANSPORTS = {
    "thunderpush.transports": 0,  # __init__: silences one warning, imports nothing of ours
    "thunderpush.transports.reads": 0,
    "thunderpush.transports.slow": 0,
    "thunderpush.transports.door": 1,
    "thunderpush.transports.websocket": 2,
    "thunderpush.transports.sockjs": 3,
}

# (importer, imported): edges between two packages of layer 2.  The importer is
# a module or any module under it; the imported is that module exactly, or with
# ``.*`` any module under it too.
SIDEWAYS = {
    # The HTTP vocabulary is the API's: the door and the handshake write its
    # answers (``thunderpush.api``'s ``Answer`` and ``Call``, ``error_answer``).
    # Never its routes (``api.actions``): the door is handed its endpoints.
    ("thunderpush.transports", "thunderpush.api"),
    ("thunderpush.transports", "thunderpush.api.answers"),
    # Both HTTP APIs implement the door's endpoint contract and answer in its terms.
    ("thunderpush.api", "thunderpush.transports.door.endpoints"),
    ("thunderpush.api", "thunderpush.transports.door.answers"),
    ("thunderpush.pusher", "thunderpush.transports.door.endpoints"),
    ("thunderpush.pusher", "thunderpush.transports.door.answers"),
    # Pusher's HTTP API is served under the same contract as ours, with our answers.
    ("thunderpush.pusher", "thunderpush.api.*"),
    # The Pusher socket is a websocket of the engine, in the Pusher dialect, and
    # its upgrade target is handed the door's request head.
    ("thunderpush.pusher", "thunderpush.transports.websocket.*"),
    ("thunderpush.pusher.websocket", "thunderpush.transports.door.messages"),
    # The API counts on the hot path in plain ints (``tally`` imports nothing).
    ("thunderpush.api", "thunderpush.observe.tally"),
    # The drain closes the transports' sessions, in batches, on SIGTERM.
    ("thunderpush.observe.drain", "thunderpush.transports.*"),
}

# Upward (or unallowed) edges still on main, each with why it stays for now:
# none.  An edge that must stay a while goes here with its reason.
STILL_TO_REMOVE: set[tuple[str, str]] = set()


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (a package is its ``__init__``)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that module ``name`` imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # ``from a import b``: module a.b if there is one, else a.
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for imported in names:
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported.startswith("thunderpush") and imported != name:
                targets.add(imported)
    return targets


def graph() -> set[tuple[str, str]]:
    known = modules()
    return {(name, target) for name, path in known.items() for target in imports(name, path, known)}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _place(name: str, table: dict[str, int]) -> tuple[str, int]:
    """The longest prefix of ``name`` in ``table``, and its level."""
    prefix = max((key for key in table if _within(name, key)), key=len)
    return prefix, table[prefix]


def _sideways(importer: str, imported: str) -> bool:
    for a, b in SIDEWAYS:
        under = b.endswith(".*")
        b = b.removesuffix(".*")
        if _within(importer, a) and (_within(imported, b) if under else imported == b):
            return True
    return False


def wrong(importer: str, imported: str) -> str | None:
    """Why the edge ``importer -> imported`` points the wrong way, or None."""
    if _sideways(importer, imported):
        return None
    area, level = _place(importer, LAYERS)
    their_area, their_level = _place(imported, LAYERS)
    if their_level > level:
        return f"layer {level} imports layer {their_level}"
    if their_level == level == 2 and their_area != area:
        return f"{area} imports {their_area}, its own layer's, with no SIDEWAYS line"
    if area == their_area == "thunderpush.transports":
        part, sub = _place(importer, TRANSPORTS)
        their_part, their_sub = _place(imported, TRANSPORTS)
        if their_sub > sub or (their_sub == sub and their_part != part):
            return (
                f"{part} imports {their_part} (transports: reads, slow < door < websocket < sockjs)"
            )
    return None


def test_no_module_imports_a_layer_above_its_own():
    found = [
        f"{importer} -> {imported}: {why}"
        for importer, imported in sorted(graph() - STILL_TO_REMOVE)
        if (why := wrong(importer, imported)) is not None
    ]
    assert not found, "upward edges:\n" + "\n".join(found)


def test_the_door_knows_no_feature_and_no_engine():
    forbidden = (
        "thunderpush.api.actions",
        "thunderpush.pusher",
        "thunderpush.transports.websocket",
        "thunderpush.transports.sockjs",
        "thunderpush.server",
    )
    found = [
        (importer, imported)
        for importer, imported in sorted(graph() - STILL_TO_REMOVE)
        if _within(importer, "thunderpush.transports.door")
        and any(_within(imported, prefix) for prefix in forbidden)
    ]
    assert found == []


def test_every_edge_still_to_remove_is_still_there():
    """An edge removed comes off the list, so that it cannot come back unnoticed."""
    edges = graph()
    assert sorted(STILL_TO_REMOVE - edges) == []
    assert all(wrong(importer, imported) for importer, imported in STILL_TO_REMOVE)


def test_every_module_has_a_layer():
    for name in modules():
        assert _place(name, LAYERS)[0], name


def top_level_imports(path: Path) -> set[str]:
    """The top-level package of every absolute import in the file at ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.partition(".")[0])
    return found


def test_the_client_is_below_everything_and_stdlib_only():
    """``thunderpush_client`` imports itself and the standard library, nothing else:
    not the server (it sits below it) and no third-party package (its promise)."""
    files = sorted(CLIENT.rglob("*.py"))
    assert len(files) >= 5
    found = {
        f"{path.name} imports {name}"
        for path in files
        for name in top_level_imports(path)
        if name not in sys.stdlib_module_names and name not in {"thunderpush_client", "__future__"}
    }
    assert not found, found


def test_the_server_takes_its_tokens_from_the_client():
    """The token code lives once: ``thunderpush.auth`` only re-exports it."""
    assert top_level_imports(PACKAGE / "auth.py") == {"thunderpush_client"}
    assert "thunderpush_client" in top_level_imports(PACKAGE / "core" / "commands.py")
