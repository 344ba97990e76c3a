"""``thunderpush_client`` against a real server: every call, its errors, its connection.

Each test runs twice, with ``Client`` (blocking, so in a thread beside the
server in the test's loop) and with ``AsyncClient``, through one wrapper whose
methods are awaited either way; what they reach is checked on the server and
on real SockJS subscribers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from thunderpush_client import AsyncClient, Client, History, Message, ThunderpushError, Unreachable
from thunderpush_client.calls import Call

from .support import KEY, SECRET
from .support.clients import WebSocketClient, XhrStreamingClient
from .support.processes import free_port


class Threaded:
    """A ``Client`` whose methods are awaited: each call runs in a thread, so the
    server in this loop answers while the client blocks."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        async def called(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return called


def connect(kind: str, url: str, secret: str = SECRET) -> Any:
    if kind == "sync":
        return Threaded(Client(url, KEY, secret, timeout=5))
    return AsyncClient(url, KEY, secret, timeout=5)


@pytest.fixture(params=["sync", "async"])
def kind(request) -> str:
    return request.param


@pytest.fixture
async def api(server, kind):
    client = connect(kind, server.url)
    yield client
    await client.close()


async def test_publish_counts_the_subscribers_it_reached(server, api):
    ws = await server.client(WebSocketClient, "alice", "news")
    xhr = await server.client(XhrStreamingClient, "bob", "news")
    assert await api.publish("news", {"title": "Hello"}) == 2
    for subscriber in (ws, xhr):
        assert (await subscriber.message())["payload"] == '{"title": "Hello"}'
    assert await api.publish("sport", "nobody") == 0
    # Bytes are JSON text already: sent as they are, spacing included.
    assert await api.publish("news", b'{"a":  1}') == 2
    assert (await ws.message())["payload"] == '{"a":  1}'


async def test_send_to_user_reaches_every_connection_of_the_user(server, api):
    first = await server.client(WebSocketClient, "alice")
    second = await server.client(WebSocketClient, "alice")
    assert await api.send_to_user("alice", "You have mail") == 2
    assert [(await first.message())["payload"], (await second.message())["payload"]] == [
        '"You have mail"',
        '"You have mail"',
    ]
    assert await api.send_to_user("carol", 1) == 0


async def test_batch_answers_each_items_count(server, api):
    ws = await server.client(WebSocketClient, "bob", "news", "sport")
    counts = await api.batch(
        [
            {"channel": "news", "message": {"title": "Hello"}},
            {"user": "bob", "message": "Hi, Bob"},
            {"channel": "empty", "message": 3},
        ]
    )
    assert counts == [1, 1, 0]
    assert [(await ws.message())["payload"] for _ in range(2)] == [
        '{"title":"Hello"}',
        '"Hi, Bob"',
    ]


async def test_every_query(server, api):
    await server.client(WebSocketClient, "alice", "news")
    await server.client(WebSocketClient, "bob", "news", "sport")
    assert await api.user_count() == 2
    assert await api.is_online("alice") is True
    assert await api.is_online("carol") is False
    assert await api.channel_users("news") == ["alice", "bob"]
    assert await api.channel_users("nobody") == []
    assert await api.channel_counts() == {"news": 2, "sport": 1}
    assert await api.channel_counts(prefix="sp") == {"sport": 1}
    assert await api.user_channels("bob") == ["news", "sport"]
    assert await api.user_channels("carol") == []


async def test_a_user_id_with_a_slash_is_one_path_segment(server, api):
    await server.client(WebSocketClient, "a/b?#", "news")
    assert await api.is_online("a/b?#") is True
    assert await api.user_channels("a/b?#") == ["news"]


@pytest.mark.config(history_size=10)
async def test_history(server, api):
    assert await api.publish("news", {"n": 1}) == 0
    assert await api.publish("news", b'{"n": 2}') == 0
    kept = await api.history("news")
    assert isinstance(kept, History) and kept.epoch and kept.offset == 2
    assert kept.messages == [Message(1, '{"n": 1}'), Message(2, '{"n": 2}')]
    since = await api.history("news", since=1)
    assert (since.epoch, since.messages) == (kept.epoch, [Message(2, '{"n": 2}')])
    assert await api.history("quiet") == History("", 0, [])


async def test_disconnect_closes_every_connection_of_the_user(server, api):
    ws = await server.client(WebSocketClient, "alice", "news")
    assert await api.disconnect("alice") is None
    assert (await ws.closed())[0] == 9002
    assert await api.is_online("alice") is False


async def test_one_connection_carries_every_call(server, api):
    """Keep-alive: the server sees the same single connection for every call."""
    seen = []
    for _ in range(5):
        assert await api.user_count() == 0
        assert await api.publish("news", 1) == 0
        seen.append(frozenset(server.door.connections))
    assert len(seen[0]) == 1 and set(seen) == {seen[0]}
    await api.close()
    await server.settled(lambda: not server.door.connections)
    assert await api.user_count() == 0  # a closed client opens a new connection


@pytest.mark.config(idle_timeout=0.2)
async def test_a_connection_the_server_closed_is_replaced(server, api):
    assert await api.user_count() == 0
    await server.settled(lambda: not server.door.connections)  # closed as idle
    assert await api.publish("news", 1) == 0


async def test_refusals_carry_the_servers_status_and_message(server, kind, api):
    wrong = connect(kind, server.url, secret="wrong")
    with pytest.raises(ThunderpushError) as refused:
        await wrong.publish("news", 1)
    assert (refused.value.status, refused.value.message) == (401, "Wrong API key/secret.")
    assert str(refused.value) == "401: Wrong API key/secret."
    await wrong.close()
    with pytest.raises(ThunderpushError) as invalid:
        await api.publish("not a channel", 1)
    assert (invalid.value.status, invalid.value.message) == (400, "Invalid channel name.")
    with pytest.raises(ThunderpushError) as unknown:
        await api.call(Call("GET", "nowhere/", None, lambda data: data))
    assert (unknown.value.status, unknown.value.message) == (404, "Not found.")
    with pytest.raises(ThunderpushError) as bad_batch:
        await api.batch([{"channel": "news"}])
    assert bad_batch.value.message == "Item 0: no message."
    # A refusal leaves the connection usable.
    assert await api.user_count() == 0


async def test_no_server_is_one_clear_error_naming_the_url(kind):
    url = f"http://127.0.0.1:{free_port()}"
    client = connect(kind, url)
    with pytest.raises(Unreachable) as down:
        await client.user_count()
    assert down.value.status is None
    assert str(down.value) == f"Cannot reach the Thunderpush server at {url}: Connection refused"
    await client.close()


def test_a_url_that_is_not_one_is_refused_at_once():
    for url in ("localhost:8000", "ftp://localhost/", "http://:8000"):
        with pytest.raises(ValueError, match="URL"):
            Client(url, KEY, SECRET)
        with pytest.raises(ValueError, match="URL"):
            AsyncClient(url, KEY, SECRET)


async def test_context_managers_close_the_connection(server):
    with Client(server.url, KEY, SECRET) as client:
        assert await asyncio.to_thread(client.user_count) == 0
    assert client._connection is None
    async with AsyncClient(server.url, KEY, SECRET) as aclient:
        assert await aclient.user_count() == 0
    assert aclient._streams is None
    await server.settled(lambda: not server.door.connections)


@pytest.mark.slow
def test_the_client_installs_alone_with_nothing_beyond_the_standard_library(tmp_path):
    """docs/python-client.rst's ``pip install ./clients/python``, in a fresh virtualenv:
    the package alone, no dependency, and neither the server nor its libraries."""
    root = Path(__file__).resolve().parent.parent
    # Nothing of this checkout on the path but what pip installs.
    clean = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    result = subprocess.run(
        [*install, "./clients/python"], cwd=root, capture_output=True, text=True, env=clean
    )
    assert result.returncode == 0, result.stdout + result.stderr
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        env=clean,
    ).stdout
    installed = {line.split("==")[0].lower() for line in listed.split()}
    assert installed - {"pip", "setuptools"} == {"thunderpush-client"}, installed
    check = "import thunderpush_client, thunderpush_client.auth; import importlib.util as u; "
    check += "print(u.find_spec('thunderpush'), u.find_spec('tornado'))"
    result = subprocess.run(
        [str(python), "-c", check], cwd=tmp_path, capture_output=True, text=True, env=clean
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "None"]
