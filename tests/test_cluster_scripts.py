"""The Lua scripts touch only the keys they declare, each script one name's.

Read as text, every key a ``redis.call`` names comes from the script's
``KEYS`` (no key is built in Lua), and every route it publishes on from its
``ARGV``; each ``KEYS[n]`` it uses is in its header.  Run on a real Redis,
each script of a cluster's life (``fresh_redis``, tests/support/cluster.py) is run by
a Redis user allowed only the keys it is given and its name's route, so a key
it touched without declaring it would be refused.  The files are package data:
loaded through ``importlib.resources`` and listed among the sources a build
ships.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from thunderpush.cluster import keys, scripts

pytestmark = pytest.mark.slow

LUA = Path(scripts.__file__).parent / "lua"
ROOT = Path(__file__).resolve().parent.parent

# Where each command used takes keys: the indexes of its arguments after the
# command's name (1 is the first), or "all".  A command not listed fails the
# test: add it, with its keys.
KEY_ARGUMENTS: dict[str, tuple[int, ...] | str] = {
    **dict.fromkeys(
        "GET SET INCR PERSIST EXPIRE PEXPIRE HGET HSET HDEL HEXISTS HLEN HMGET HKEYS HGETALL"
        " LRANGE RPUSH LTRIM ZADD ZREM ZSCORE ZMSCORE ZCARD ZRANGE ZRANGEBYSCORE"
        " ZREMRANGEBYSCORE".split(),
        (1,),
    ),
    "EXISTS": "all",
    "DEL": "all",
    "TIME": (),
    "PUBLISH": (),
}
_KEY = re.compile(r"KEYS\[(\d+)\]")
_FROM_ARGV = re.compile(r"ARGV\[\d+\]")
_LOCAL = re.compile(r"^\s*local\s+([\w\s,]+?)\s*=\s*(.+)$", re.MULTILINE)


def arguments(text: str, start: int) -> list[str]:
    """The comma-separated arguments of the call whose "(" is at ``start``."""
    out, depth, current, at, quote = [], 0, "", start + 1, None
    while True:
        char = text[at]
        if quote:
            current += char
            if char == "\\":
                current += text[at + 1]
                at += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            current += char
        elif char in "([{":
            depth += 1
            current += char
        elif char in ")]}" and depth:
            depth -= 1
            current += char
        elif char == ")":
            return [*out, current.strip()] if current.strip() else out
        elif char == "," and not depth:
            out.append(current.strip())
            current = ""
        else:
            current += char
        at += 1


def bound(text: str, pattern: re.Pattern) -> set[str]:
    """The local names bound (``local a, b = x, y``) to an expression ``pattern`` matches."""
    names = set()
    for targets, values in _LOCAL.findall(text):
        values = values.split("--")[0]
        pairs = zip(targets.split(","), split_top(values), strict=False)
        names |= {name.strip() for name, value in pairs if pattern.fullmatch(value.strip())}
    return names


def split_top(expression: str) -> list[str]:
    return arguments(f"({expression})", 0)


def calls(text: str) -> Iterator[tuple[str, list[str]]]:
    """Each ``redis.call``/``redis.pcall``: its command and its other arguments."""
    for found in re.finditer(r"redis\.p?call\(", text):
        command, *rest = arguments(text, found.end() - 1)
        assert re.fullmatch(r"'[A-Z]+'", command), f"a command named in Lua: {command}"
        yield command.strip("'"), rest


def lua_files() -> list[Path]:
    return sorted(LUA.glob("*.lua"))


@pytest.mark.parametrize("path", lua_files(), ids=lambda path: path.name)
def test_every_key_a_script_touches_comes_from_its_keys(path):
    text = path.read_text()
    code = "\n".join(line.split("--")[0] for line in text.splitlines())
    key_names, argv_names = bound(code, _KEY), bound(code, _FROM_ARGV)
    used = set()
    for command, rest in calls(code):
        assert command in KEY_ARGUMENTS, f"{path.name}: where does {command} take keys?"
        where = KEY_ARGUMENTS[command]
        positions = range(1, len(rest) + 1) if where == "all" else where
        for position in positions:
            key = rest[position - 1]
            assert _KEY.fullmatch(key) or key in key_names, f"{path.name}: {command} {key}"
            used.add(key)
        if command == "PUBLISH":
            route = rest[0]
            assert _FROM_ARGV.fullmatch(route) or route in argv_names, f"{path.name}: {route}"
    if path.name == "common.lua":
        assert not used and "KEYS" not in code, "the helpers touch no key"
        return
    declared = {int(n) for n in re.findall(r"^-- KEYS\[(\d+)\]", text, re.MULTILINE)}
    indexes = {int(n) for n in _KEY.findall(code)}
    assert indexes == declared == set(range(1, len(declared) + 1)), path.name
    assert re.search(r"^-- ARGV\[1\]", text, re.MULTILINE), f"{path.name}: its ARGV"


def test_every_file_is_a_script_loaded_from_the_package():
    names = {path.stem.upper() for path in lua_files()} - {"COMMON"}
    assert {script.name for script in scripts.ALL} == names
    common = (LUA / "common.lua").read_text()
    for script in scripts.ALL:
        assert script.text.startswith(common)


def test_a_build_ships_the_lua_files(tmp_path):
    """setup.py's package data names them: egg_info lists them among the sources."""
    subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (sources,) = tmp_path.glob("*.egg-info/SOURCES.txt")
    listed = set(sources.read_text().split())
    for path in lua_files():
        assert str(path.relative_to(ROOT)) in listed


def _glob(name: bytes) -> bytes:
    """``name`` as an ACL pattern that matches it alone."""
    return re.sub(rb"([*?\[\]\\])", rb"\\\1", name)


class Probe:
    """Runs each script as a Redis user allowed only the keys it is given and the
    routes of their tag (the tag of its first key): anything else is refused."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.admin = backend.client()
        self.ran: set[str] = set()

    def run(self, script: scripts.Script, names: tuple[bytes, ...], *args) -> object:
        user = f"probe-{len(self.ran)}"
        first = names[0]
        tag = first[first.index(b"{") : first.index(b"}") + 1]
        routes = (b"tp/" + tag, b"tp/" + tag + b"w")  # the route, a user's watch route
        rules = [b"~" + _glob(name) for name in names] + [b"&" + _glob(r) for r in routes]
        self.admin.execute_command("ACL", "SETUSER", user, "reset", "on", ">pw", "+@all", *rules)
        try:
            with redis.Redis(
                port=self.backend.port, username=user, password="pw", socket_timeout=1
            ) as client:
                answer = client.eval(script.text, len(names), *names, *args)
        finally:
            self.admin.execute_command("ACL", "DELUSER", user)
        self.ran.add(script.name)
        return answer


def test_each_script_runs_with_only_the_keys_it_declares(fresh_redis):
    probe = Probe(fresh_redis)
    run, admin = probe.run, probe.admin
    try:
        listed = (keys.NODES, keys.GONE)
        for node in ("n1", "n2", "n3"):
            run(scripts.BEAT, listed, node, 30, keys.NODES_ROUTE)
        admin.zadd(keys.NODES, {"n3": 1})  # n3 stopped beating long ago
        forgotten, live, dead = run(scripts.BEAT, listed, "n1", 30, keys.NODES_ROUTE)
        assert (forgotten, sorted(live), dead) == (0, [b"n1", b"n2"], [b"n3"])
        assert sorted(run(scripts.LIVE, (keys.NODES,), 30)) == [b"n1", b"n2"]

        channel = "presence-room"
        tag = keys.tag("app", "c", channel)
        route = keys.route_of(tag)
        counts = keys.key(tag, keys.COUNTS)
        members = tuple(keys.key(tag, part) for part in (keys.MEMBERS, keys.INFOS, keys.SEQ))
        assert run(scripts.COUNT, (counts,), "n1", 2) == 1
        assert run(scripts.COUNT, (counts,), "n3", 1) == 0

        def member(node: str, user: str, score: str, info: str = "", cap: int = 0) -> object:
            others = [other for other in ("n1", "n2") if other != node]
            args = (node, user, score, "1", info, cap, channel, route, *others)
            return run(scripts.MEMBER, members, *args)

        # 2: announced (the webhooks' member_added); 1: recorded, not announced.
        assert member("n1", "ann", "1", '{"a": 1}', cap=2) == 2
        assert member("n2", "bob", "2", cap=2) == 2
        assert member("n2", "cat", "3", cap=2) == -1  # the cap: two users already
        assert member("n3", "ann", "4") == 1
        assert run(scripts.CHANNEL_USERS, members, "1", "n1", "n2") == [
            2,
            b"ann",
            b'{"a": 1}',
            b"bob",
            None,
        ]
        assert run(scripts.SEND, (counts,), route, b"c4:newsx", "n2", "n3") == 1
        stream = (counts, keys.key(tag, keys.KEPT), keys.key(tag, keys.STREAM))
        assert run(scripts.SEND_KEPT, stream, route, b"c4:news", "x", 10, 60, "abc", "n3") == 1
        assert run(scripts.HISTORY, stream[1:], 60, "")[1:] == [1, 1, b"x"]
        last = (counts, keys.key(tag, keys.LAST))
        assert run(scripts.SEND_LAST, last, route, b"c4:news", "y", b"0:", 60000, "n3") == 1
        assert run(scripts.SEND_LAST, last, b"", b"c4:news", "z", b"0:", 60000, "n3") == 0
        told = (counts, keys.key(tag, keys.TOLD))
        assert run(scripts.TELL_COUNT, told, 1000, channel, route, "n1", "n2") == [1, 2]
        assert run(scripts.TELL_COUNT, told, 1000, channel, route, "n1", "n2")[0] == 2  # wait
        assert run(scripts.TELL_COUNT, told, 0, channel, route, "n1", "n2") == [0, 2]  # told
        # A channel with no count told (or whose 0 told expired) has nothing to say at 0.
        empty = keys.tag("app", "c", "empty")
        nothing = (keys.key(empty, keys.COUNTS), keys.key(empty, keys.TOLD))
        assert run(scripts.TELL_COUNT, nothing, 1000, "empty", b"", "n1", "n2") == [0, 0]
        # n3 is forgotten: ann is still on n1, so nobody is announced gone.
        forget = (counts, *members)
        assert run(scripts.FORGET, forget, "n3", route, channel, 2, "n1", "n2", "ann") == [0]
        run(scripts.DROP, listed, "n3", keys.NODES_ROUTE, "1")
        bob = keys.tag("app", "u", "bob")
        users, watchers = (keys.key(bob, keys.COUNTS),), keys.watch_route(bob)
        assert run(scripts.COUNT, users, "n2", 1, watchers, "bob") == 1
        assert run(scripts.FORGET, users, "n2", watchers, "bob") == [1]
        assert member("n2", "bob", "") == 2
        assert member("n1", "ann", "", "-") == 2
        assert run(scripts.BEAT, listed, "n3", 30, keys.NODES_ROUTE)[0] == 1
    finally:
        admin.close()
    assert probe.ran == {script.name for script in scripts.ALL}


def test_each_sharded_variant_publishes_with_spublish_and_differs_in_nothing_else():
    """On Redis Cluster a link runs the variants: a bare PUBLISH left in one would
    go to no sharded subscriber."""
    for script in scripts.ALL:
        assert "'PUBLISH'" not in script.sharded_text, script.name
        assert script.sharded_text.replace(scripts.SPUBLISH, scripts.PUBLISH) == script.text
        assert (script.sharded_sha == script.sha) == (scripts.PUBLISH not in script.text)
