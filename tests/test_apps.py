"""Several apps in one server: each sees only its own users and channels.

And what the log says about a client: which app, user, address and session.
"""

from __future__ import annotations

import json
import logging

import pytest

from thunderpush import auth
from thunderpush.config import AppConfig
from thunderpush.server.logs import JsonFormatter, TextFormatter

from .support import KEY, SECRET
from .support.clients import WebSocketClient, XhrPollingClient

OTHER, OTHER_SECRET = "other", "other-secret"
two_apps = pytest.mark.config(apps=(AppConfig(OTHER, OTHER_SECRET),))


async def api(server, method, path, body=None, key=KEY):
    secret = SECRET if key == KEY else OTHER_SECRET
    response = await server.api(method, path, body, key=key, secret=secret)
    return response.code, json.loads(response.body) if response.body else None


@two_apps
async def test_a_key_never_reads_or_writes_the_other_apps_users_or_channels(server, transport):
    alice = await server.client(transport, "alice", "news")
    bob = await server.client(XhrPollingClient)  # the other app's
    await bob.send(f"CONNECT bob:{OTHER}", "SUBSCRIBE news")
    await server.settled(lambda: server.door.open.total >= 2)
    for _ in range(500):  # bounded: until the other app lists bob in news
        if (await api(server, "GET", "channels/news/", key=OTHER))[1] == {"users": ["bob"]}:
            break
    # Reads: each app counts and lists only its own.
    assert await api(server, "GET", "users/") == (200, {"count": 1})
    assert await api(server, "GET", "users/", key=OTHER) == (200, {"count": 1})
    assert await api(server, "GET", "channels/news/") == (200, {"users": ["alice"]})
    assert await api(server, "GET", "channels/news/", key=OTHER) == (200, {"users": ["bob"]})
    assert await api(server, "GET", "users/bob/") == (200, {"online": False})
    assert await api(server, "GET", "users/alice/", key=OTHER) == (200, {"online": False})
    # Writes: a publish, a send to a user and a disconnect reach only the app's own.
    assert await api(server, "POST", "channels/news/", '{"to": "alice"}') == (200, {"count": 1})
    assert await api(server, "POST", "users/bob/", '{"to": "bob"}') == (200, {"count": 0})
    assert await api(server, "DELETE", "users/bob/") == (204, None)
    assert await alice.message() == {"channel": "news", "payload": '{"to": "alice"}'}
    assert await api(server, "POST", "channels/news/", '{"b": 1}', key=OTHER) == (
        200,
        {"count": 1},
    )
    assert await bob.message() == {"channel": "news", "payload": '{"b": 1}'}
    await alice.no_message()
    assert await api(server, "GET", "users/bob/", key=OTHER) == (200, {"online": True})
    # One app's secret opens nothing of the other's.
    other_with_ours = await server.api("GET", "users/", key=OTHER, secret=SECRET)
    ours_with_other = await server.api("GET", "users/", key=KEY, secret=OTHER_SECRET)
    assert (other_with_ours.code, ours_with_other.code) == (401, 401)


@pytest.mark.config(
    require_signature=True, apps=(AppConfig(OTHER, OTHER_SECRET, require_signature=True),)
)
async def test_a_token_signed_with_one_apps_secret_opens_no_other_app(server):
    client = await WebSocketClient(server.url).open()
    server.clients.append(client)
    token = auth.user_token(OTHER, SECRET, "mallory")  # our secret, their key
    await client.send(f"CONNECT mallory:{OTHER}:{token}")
    assert await client.closed() == (9003, "Invalid signature.")


async def test_client_lines_say_which_app_user_address_and_session(server, caplog):
    client = await server.client(WebSocketClient, "u", "news")
    await client.send("BOGUS")
    await server.settled(lambda: any("BOGUS" in r.getMessage() for r in caplog.records))
    record = next(r for r in caplog.records if "BOGUS" in r.getMessage())
    assert (record.levelno, record.app, record.user, record.address) == (
        logging.WARNING,
        KEY,
        "u",
        "127.0.0.1",
    )
    assert record.session
    line = TextFormatter().format(record)
    assert line.endswith(f"[app={KEY} user=u address=127.0.0.1 session={record.session}]")
    entry = json.loads(JsonFormatter().format(record))
    assert {entry[name] for name in ("app", "user", "address")} == {KEY, "u", "127.0.0.1"}
