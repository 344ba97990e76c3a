"""deploy/nginx.conf, run for real by Debian's nginx in front of two Thunderpush processes.

Most tests put it in front of two independent servers (no Redis): a request
that reached the wrong node would then fail visibly (a poll would open a new
session, a send would get 404), and each node's API tells which one holds a
user.  The last test runs it in front of a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

from .support import KEY
from .support.api import call_api
from .support.clients import CLIENTS, SockJSClient, XhrPollingClient
from .support.cluster import cluster_nodes
from .support.processes import ServerProcess, free_port, start_server_process

CONF = Path(__file__).parent.parent / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(NGINX).is_file(), reason="nginx is not installed (.ci/install installs it)"
    ),
]


def rendered(listen: int, upstreams: list[int]) -> str:
    """deploy/nginx.conf with the test's ports in place of 80, 8001 and 8002."""
    text = CONF.read_text()
    replacements = {"listen 80;": f"listen 127.0.0.1:{listen};"}
    for shipped, port in zip((8001, 8002), upstreams, strict=True):
        replacements[f"server 127.0.0.1:{shipped};"] = f"server 127.0.0.1:{port};"
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def nginx_in_front_of(tmp_path: Path, nodes: list[ServerProcess]) -> Iterator[str]:
    """nginx with deploy/nginx.conf on a free port, in the foreground; yields its URL.

    Started as the file's header says (``-p <prefix>/ -e logs/error.log``): its
    own PID file and logs land under the prefix, which the test checks.
    """
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    port = free_port()
    conf.write_text(rendered(port, [node.port for node in nodes]))
    command = [NGINX, "-c", str(conf), "-p", f"{prefix}/", "-e", "logs/error.log"]
    command += ["-g", "daemon off;"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {proc.stderr.read()}") from None
                time.sleep(0.05)
        assert (prefix / "logs" / "nginx.pid").read_text().strip() == str(proc.pid)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def two_nodes(tmp_path) -> Iterator[list[ServerProcess]]:
    """Two independent servers: what reaches the wrong one fails."""
    nodes = [start_server_process(tmp_path) for _ in range(2)]
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture
def front(tmp_path, two_nodes) -> Iterator[str]:
    with nginx_in_front_of(tmp_path, two_nodes) as url:
        yield url


def session_client(kind: type[SockJSClient], url: str, server: str) -> SockJSClient:
    """A client whose session URL has ``server`` as its <server> segment, as a browser's."""
    client = kind(url)
    client.session_url = f"{client.base_url}/connect/{server}/{uuid.uuid4().hex}"
    return client


async def holder(nodes: list[ServerProcess], user: str, channel: str = "") -> ServerProcess:
    """The one node on which ``user`` is online (and in ``channel``, if given)."""
    online = []
    for node in nodes:
        if channel:
            response = await call_api(node.url, "GET", f"channels/{channel}/")
            if user in json.loads(response.body)["users"]:
                online.append(node)
        else:
            response = await call_api(node.url, "GET", f"users/{user}/")
            if json.loads(response.body)["online"]:
                online.append(node)
    assert len(online) == 1, [node.port for node in online]
    return online[0]


async def connected(client: SockJSClient, user: str, *channels: str) -> SockJSClient:
    await client.open()
    await client.send(f"CONNECT {user}:{KEY}")
    if channels:
        await client.send("SUBSCRIBE " + ":".join(channels))
    return client


async def disconnected(node: ServerProcess, user: str, client: SockJSClient) -> None:
    """Ends the session from the server (which the client sees), so it ends cleanly."""
    response = await call_api(node.url, "DELETE", f"users/{user}/")
    assert response.code == 204, response.body
    await client.closed()
    await client.close()


async def until_online(nodes: list[ServerProcess], user: str, channel: str = "") -> ServerProcess:
    deadline = time.monotonic() + 5
    while True:
        try:
            return await holder(nodes, user, channel)
        except AssertionError:
            assert time.monotonic() < deadline, f"{user} never came online"
            await asyncio.sleep(0.02)


async def polling_sessions_on_both_nodes(
    front: str, nodes: list[ServerProcess], each: int = 3
) -> tuple[dict[str, SockJSClient], dict[str, ServerProcess]]:
    """``each`` xhr-polling sessions held by each node, with the node holding each.

    Found by trying <server> segments in turn (as sockjs-client picks them, at
    random from 000 to 999): deploy/nginx.conf's consistent hash places a segment
    by the nodes' addresses, and the nodes listen on free ports that change
    from run to run, so no fixed segments spread for certain.  A session that
    lands on a node that already holds enough is ended.  (At most seven
    sessions at once: the test's HTTP client runs at most ten requests at once,
    polls included.)
    """
    clients: dict[str, SockJSClient] = {}
    holders: dict[str, ServerProcess] = {}
    for number in range(100):
        user = f"user{number}"
        client = await connected(session_client(XhrPollingClient, front, f"{number:03d}"), user)
        node = await until_online(nodes, user)
        if list(holders.values()).count(node) == each:
            await disconnected(node, user, client)
            continue
        clients[user], holders[user] = client, node
        if len(clients) == each * len(nodes):
            return clients, holders
    raise AssertionError(f"100 <server> segments spread as {holders}")


async def test_xhr_polling_sessions_stay_on_their_node_across_many_polls(front, two_nodes):
    clients, holders = await polling_sessions_on_both_nodes(front, two_nodes)
    for round in range(15):  # each message ends one poll; the next poll is a new request
        for user, client in clients.items():
            response = await call_api(
                holders[user].url, "POST", f"users/{user}/", f'{{"n": {round}}}'
            )
            assert json.loads(response.body) == {"count": 1}
            assert await client.message() == {"payload": f'{{"n": {round}}}'}
    # Still one session each: no poll opened a new one on the other node.
    for user, client in clients.items():
        assert client.frames.count("o") == 1
        assert (await holder(two_nodes, user)).port == holders[user].port
        await disconnected(holders[user], user, client)


@pytest.mark.parametrize("kind", CLIENTS, ids=lambda kind: kind.transport)
async def test_every_transport_works_through_nginx(front, two_nodes, kind):
    client = await connected(session_client(kind, front, "123"), "alice", "news")
    node = await until_online(two_nodes, "alice", "news")
    for number in range(3):
        response = await call_api(node.url, "POST", "channels/news/", f'{{"n": {number}}}')
        assert json.loads(response.body) == {"count": 1}
        assert await client.message() == {"payload": f'{{"n": {number}}}', "channel": "news"}
    await disconnected(node, "alice", client)


async def test_the_api_and_the_script_answer_through_nginx(front):
    response = await call_api(front, "POST", "channels/news/", '{"n": 1}')
    assert (response.code, json.loads(response.body)) == (200, {"count": 0})
    assert (await call_api(front, "GET", "users/", secret="wrong")).code == 401
    fetch = AsyncHTTPClient().fetch
    info = await fetch(f"{front}/connect/info")
    assert json.loads(info.body)["websocket"] is True
    script = await fetch(f"{front}/thunderpush.js")
    assert b"Thunder" in script.body


async def test_cross_node_delivery_through_nginx(tmp_path, fresh_redis):
    with (
        cluster_nodes(tmp_path, fresh_redis, 2) as nodes,
        nginx_in_front_of(tmp_path, nodes) as front,
    ):
        clients = [
            await connected(session_client(kind, front, f"{number:03d}"), f"u{number}", "news")
            for number, kind in enumerate(CLIENTS * 2)
        ]
        deadline = time.monotonic() + 5
        while True:
            response = await call_api(front, "GET", "channels/news/")
            if len(json.loads(response.body)["users"]) == len(clients):
                break
            assert time.monotonic() < deadline, response.body
            await asyncio.sleep(0.02)
        for number in range(3):
            response = await call_api(front, "POST", "channels/news/", f'{{"n": {number}}}')
            assert json.loads(response.body) == {"count": len(clients)}
            for client in clients:
                assert await client.message() == {
                    "payload": f'{{"n": {number}}}',
                    "channel": "news",
                }
        # Ended from the server, across nodes, so that no poll is left hanging.
        for number, client in enumerate(clients):
            response = await call_api(front, "DELETE", f"users/u{number}/")
            assert response.code == 204, response.body
            await client.closed()
            await client.close()
