"""Pusher's HTTP API, driven by the real ``pusher`` server library (PyPI).

The library is synchronous: each call runs in a thread (``asyncio.to_thread``)
while the in-process server runs in the test's loop.  Receivers are real
Thunderpush SockJS sessions, which get a Pusher event's ``data`` as their
payload, and real Pusher websockets (``tests/test_pusher_ws.py``'s helpers);
the cluster tests run two in-process nodes on a real Redis
(``tests/test_cluster.py``'s ``nodes``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from typing import Any

import pusher
import pytest
from pusher.http import Request
from pusher.signature import sign
from tornado.httpclient import AsyncHTTPClient

from thunderpush.config import AppConfig
from thunderpush.core.protocol import FORCED_DISCONNECT
from thunderpush.pusher.protocol import DEFAULT_EVENT
from thunderpush.pusher.signatures import request_signature

from .support import KEY, SECRET
from .support.clients import WebSocketClient, XhrStreamingClient
from .support.wire import exchange, statuses, undated
from .support.wire import request as wire_request
from .test_channels import presence
from .test_http import tornado_port
from .test_pusher_ws import Pusher as PusherConnection
from .test_pusher_ws import (
    closed_with,
    established,
    opened,
    presence_data,
    receive,
    subscribed,
)
from .test_pusher_ws import send as ws_send

__all__ = ["tornado_port"]  # the fixture

APP_ID = "1"
pytestmark = pytest.mark.config(app_id=APP_ID)


def client_of(server: Any, secret: str = SECRET) -> pusher.Pusher:
    return pusher.Pusher(
        app_id=APP_ID, key=KEY, secret=secret, host="127.0.0.1", port=server.port, ssl=False
    )


def library(server: Any) -> Any:
    """The library's own client under ``pusher.Pusher``, which its ``Request`` signs with."""
    return client_of(server)._pusher_client


async def call(method: Any, *args: Any, **kwargs: Any) -> Any:
    """A call of the synchronous library, in a thread, while the server serves."""
    return await asyncio.to_thread(method, *args, **kwargs)


async def send(server: Any, request: Request) -> Any:
    """``request`` as the library would send it, answered as the library answers."""
    client = client_of(server)
    return await call(client._pusher_client.http.send_request, request)


async def raw(server: Any, method: str, path: str, body: bytes | None = None):
    return await AsyncHTTPClient().fetch(
        f"{server.url}{path}", method=method, body=body, raise_error=False
    )


# -- the signature ----------------------------------------------------------------


def test_the_signature_is_pushers_worked_example():
    # Pusher's HTTP API reference, "Worked authentication example".
    params = {
        "auth_key": "278d425bdf160c739803",
        "auth_timestamp": "1353088179",
        "auth_version": "1.0",
        "body_md5": "ec365a775a4cd0599faeb73354201b6f",
    }
    signature = request_signature("7ad3773142a6692b25b8", "POST", "/apps/3/events", params)
    assert signature == "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    # auth_signature itself is never signed; keys are lower-cased, then sorted.
    more = {**params, "auth_signature": "x"}
    assert request_signature("7ad3773142a6692b25b8", "POST", "/apps/3/events", more) == signature
    upper = {"AUTH_KEY" if key == "auth_key" else key: value for key, value in params.items()}
    assert request_signature("7ad3773142a6692b25b8", "POST", "/apps/3/events", upper) == signature


@pytest.mark.parametrize("secret", ["", "s", "x" * 63, "x" * 64, "x" * 65, "é" * 40, "z" * 200])
def test_the_signature_is_the_librarys_for_any_secret(secret):
    # Each secret's HMAC is made once and copied per signature (signatures._keyed):
    # a secret shorter than, as long as, or longer than SHA-256's block signs as
    # the library does, the first time and from the copy.
    params = {"auth_key": "k", "auth_timestamp": "1", "auth_version": "1.0", "é": "ü"}
    query = "auth_key=k&auth_timestamp=1&auth_version=1.0&é=ü"
    expected = sign(secret, f"POST\n/apps/3/events\n{query}")
    assert request_signature(secret, "POST", "/apps/3/events", params) == expected
    assert request_signature(secret, "POST", "/apps/3/events", params) == expected  # the copy


# -- publishing ---------------------------------------------------------------------


async def test_trigger_reaches_thunderpush_clients_as_their_payload(server):
    ann = await server.client(WebSocketClient, "ann", "news", "sport")
    bob = await server.client(XhrStreamingClient, "bob", "news")
    client = client_of(server)
    assert await call(client.trigger, "news", "greeting", {"hello": "world"}) == {}
    assert await call(client.trigger, ["news", "sport", "empty"], "two", "plain text") == {}
    expected = {"payload": '{"hello": "world"}', "channel": "news"}
    assert await ann.message() == expected
    assert await bob.message() == expected
    assert await ann.message() == {"payload": "plain text", "channel": "news"}
    assert await ann.message() == {"payload": "plain text", "channel": "sport"}
    assert await bob.message() == {"payload": "plain text", "channel": "news"}


async def test_thunderpush_clients_are_never_excluded_by_socket_id(server):
    ann = await server.client(WebSocketClient, "ann", "news")
    client = client_of(server)
    assert await call(client.trigger, "news", "e", "one", socket_id="123.456") == {}
    assert await ann.message() == {"payload": "one", "channel": "news"}


async def test_trigger_batch_sends_in_item_order(server):
    ann = await server.client(WebSocketClient, "ann", "news", "sport")
    client = client_of(server)
    batch = [
        {"channel": "news", "name": "a", "data": "1"},
        {"channel": "sport", "name": "b", "data": {"n": 2}},
        {"channel": "news", "name": "c", "data": "3", "socket_id": "1.2"},
    ]
    assert await call(client.trigger_batch, batch) == {}
    assert [await ann.message() for _ in range(3)] == [
        {"payload": "1", "channel": "news"},
        {"payload": '{"n": 2}', "channel": "sport"},
        {"payload": "3", "channel": "news"},
    ]


async def test_info_on_a_trigger_answers_the_channels_attributes(server):
    await server.client(WebSocketClient, "ann", "news")
    await server.client(WebSocketClient, "bob", "news")
    await presence(server, WebSocketClient, "cid")
    body = {
        "name": "e",
        "data": "x",
        "channels": ["news", "presence-room"],
        "info": "user_count,subscription_count",
    }
    answer = await send(server, Request(library(server), "POST", f"/apps/{APP_ID}/events", body))
    assert answer == {
        "channels": {
            "news": {"subscription_count": 2},
            "presence-room": {"user_count": 1, "subscription_count": 1},
        }
    }
    batch = {"batch": [{"channel": "news", "name": "e", "data": "y", "info": "subscription_count"}]}
    path = f"/apps/{APP_ID}/batch_events"
    answer = await send(server, Request(library(server), "POST", path, batch))
    assert answer == {"batch": [{"subscription_count": 2}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "e", "data": "x"}, "exactly one of channels and channel"),
        ({"name": "e", "data": "x", "channel": "a", "channels": ["b"]}, "exactly one"),
        ({"name": "e", "data": "x", "channels": []}, "1-100"),
        ({"name": "e", "data": "x", "channels": [f"c{n}" for n in range(101)]}, "1-100"),
        ({"name": "e", "data": "x", "channel": "bad channel"}, "Invalid channel name"),
        # Quoted as the standard library reads it, not as orjson (a float).
        ({"name": "e", "data": "x", "channel": 2**70}, f"Invalid channel name: .*: {2**70}$"),
        ({"name": "e", "data": {"an": "object"}, "channel": "a"}, "data must be a string"),
        ({"name": "", "data": "x", "channel": "a"}, "Event name"),
        ({"name": "a\nb", "data": "x", "channel": "a"}, "Event name"),
        ({"name": "e", "data": "x", "channel": "a", "socket_id": "abc"}, "Invalid socket_id"),
        ({"name": "e", "data": "x", "channel": "a", "socket_id": "1" * 21 + ".1"}, "socket_id"),
        ({"name": "e", "data": "x", "channel": "a", "socket_id": "\u0661.1"}, "socket_id"),
        ({"name": "e", "data": "x", "channel": "a", "info": "colour"}, "Unknown info"),
    ],
)
async def test_a_bad_event_is_refused_with_400_and_nothing_is_sent(server, body, message):
    ann = await server.client(WebSocketClient, "ann", "a")
    request = Request(library(server), "POST", f"/apps/{APP_ID}/events", body)
    with pytest.raises(pusher.errors.PusherBadRequest, match=message):
        await send(server, request)
    # Then a good one: the first thing the client gets.
    await call(client_of(server).trigger, "a", "e", "good")
    assert await ann.message() == {"payload": "good", "channel": "a"}


async def test_a_batch_of_more_than_ten_or_with_one_bad_event_sends_nothing(server):
    ann = await server.client(WebSocketClient, "ann", "a")
    client = client_of(server)
    eleven = [{"channel": "a", "name": "e", "data": str(n)} for n in range(11)]
    with pytest.raises(pusher.errors.PusherBadRequest, match="1-10"):
        await call(client.trigger_batch, eleven)
    one_bad = [
        {"channel": "a", "name": "e", "data": "1"},
        {"channel": "a", "name": "", "data": "2"},
    ]
    with pytest.raises(pusher.errors.PusherBadRequest, match="Event name"):
        await call(client.trigger_batch, one_bad, already_encoded=True)
    await call(client.trigger, "a", "e", "good")
    assert await ann.message() == {"payload": "good", "channel": "a"}


# -- reading ---------------------------------------------------------------------------


async def test_channels_info_lists_occupied_channels_with_their_counts(server):
    await server.client(WebSocketClient, "ann", "news", "sport")
    await server.client(XhrStreamingClient, "bob", "news")
    await presence(server, WebSocketClient, "cid")
    await presence(server, WebSocketClient, "cid")
    await presence(server, WebSocketClient, "dan")
    client = client_of(server)
    assert await call(client.channels_info) == {
        "channels": {"news": {}, "presence-room": {}, "sport": {}}
    }
    assert await call(client.channels_info, attributes=["subscription_count"]) == {
        "channels": {
            "news": {"subscription_count": 2},
            "presence-room": {"subscription_count": 3},
            "sport": {"subscription_count": 1},
        }
    }
    assert await call(client.channels_info, "presence-", ["user_count"]) == {
        "channels": {"presence-room": {"user_count": 2}}
    }
    assert await call(client.channels_info, "spo") == {"channels": {"sport": {}}}
    with pytest.raises(pusher.errors.PusherBadRequest, match="presence channels"):
        await call(client.channels_info, attributes=["user_count"])


async def test_channel_info_says_whether_it_is_occupied_and_counts(server):
    await server.client(WebSocketClient, "ann", "news")
    await server.client(WebSocketClient, "ann", "news")
    await presence(server, WebSocketClient, "cid")
    await presence(server, WebSocketClient, "cid")
    client = client_of(server)
    assert await call(client.channel_info, "news") == {"occupied": True}
    assert await call(client.channel_info, "news", ["subscription_count"]) == {
        "occupied": True,
        "subscription_count": 2,
    }
    assert await call(client.channel_info, "empty", ["subscription_count"]) == {
        "occupied": False,
        "subscription_count": 0,
    }
    assert await call(client.channel_info, "presence-room", ["user_count"]) == {
        "occupied": True,
        "user_count": 1,
    }
    with pytest.raises(pusher.errors.PusherBadRequest, match="presence channels"):
        await call(client.channel_info, "news", ["user_count"])


async def test_users_info_lists_a_presence_channels_users(server):
    await presence(server, WebSocketClient, "cid")
    await presence(server, XhrStreamingClient, "dan")
    await presence(server, WebSocketClient, "cid")
    client = client_of(server)
    assert await call(client.users_info, "presence-room") == {
        "users": [{"id": "cid"}, {"id": "dan"}]
    }
    assert await call(client.users_info, "presence-empty") == {"users": []}
    with pytest.raises(pusher.errors.PusherBadRequest, match="Only presence channels"):
        await call(client.users_info, "news")


async def test_terminate_user_connections_closes_every_connection_of_the_user(server):
    ann = await server.client(WebSocketClient, "ann", "news")
    ann2 = await server.client(XhrStreamingClient, "ann")
    bob = await server.client(WebSocketClient, "bob", "news")
    client = client_of(server)
    # pusher-http-python sends this one to /users/ann/terminate_connections.
    assert await call(client.terminate_user_connections, "ann") == {}
    assert await ann.closed() == tuple(FORCED_DISCONNECT)
    assert await ann2.closed() == tuple(FORCED_DISCONNECT)
    # The other libraries' path: /apps/<id>/users/<id>/terminate_connections.
    path = f"/apps/{APP_ID}/users/bob/terminate_connections"
    assert await send(server, Request(library(server), "POST", path, {})) == {}
    assert await bob.closed() == tuple(FORCED_DISCONNECT)
    await server.settled(lambda: server.hub.connection_count() == 0)


# -- refusals ----------------------------------------------------------------------------


async def test_a_wrong_secret_is_refused_and_sends_nothing(server):
    ann = await server.client(WebSocketClient, "ann", "news")
    with pytest.raises(pusher.errors.PusherBadAuth, match="Invalid signature"):
        await call(client_of(server, secret="not the secret").trigger, "news", "e", "x")
    with pytest.raises(pusher.errors.PusherBadAuth, match="Invalid signature"):
        await call(client_of(server, secret="not the secret").channels_info)
    await call(client_of(server).trigger, "news", "e", "good")
    assert await ann.message() == {"payload": "good", "channel": "news"}


def resigned(request: Request, secret: str = SECRET, **changes: str) -> Request:
    """``request`` with its parameters changed and signed again, by the library's ``sign``."""
    params = {k: v for k, v in request.query_params.items() if k != "auth_signature"}
    params.update(changes)
    query = "&".join(f"{key}={value}" for key, value in sorted(params.items()))
    params["auth_signature"] = sign(secret, f"{request.method}\n{request.path}\n{query}")
    request.query_params = params
    return request


@pytest.mark.parametrize("age", [601, -601, 3600])
async def test_a_timestamp_more_than_600_seconds_away_is_refused(server, age):
    old = f"{time.time() - age:.0f}"
    request = Request(library(server), "GET", f"/apps/{APP_ID}/channels", {})
    with pytest.raises(pusher.errors.PusherBadAuth, match="Timestamp expired"):
        await send(server, resigned(request, auth_timestamp=old))
    # Just inside the window is fine.
    recent = f"{time.time() - 590:.0f}"
    request = Request(library(server), "GET", f"/apps/{APP_ID}/channels", {})
    assert await send(server, resigned(request, auth_timestamp=recent)) == {"channels": {}}


async def test_a_body_that_is_not_the_signed_one_is_refused(server):
    request = Request(library(server), "POST", f"/apps/{APP_ID}/events", {"x": 1})
    request.body = json.dumps({"name": "e", "data": "forged", "channel": "news"}).encode()
    with pytest.raises(pusher.errors.PusherBadAuth, match="body_md5"):
        await send(server, request)
    # A body without any body_md5 is refused too.
    params = {k: v for k, v in request.query_params.items() if k != "body_md5"}
    request.query_params = params
    with pytest.raises(pusher.errors.PusherBadAuth, match="Missing authentication parameter"):
        await send(server, resigned(request))


@pytest.mark.parametrize(
    ("changes", "status", "message"),
    [
        ({"auth_key": "other"}, 401, "Unknown auth_key"),
        ({"auth_version": "2.0"}, 401, "auth_version"),
        ({"auth_timestamp": "soon"}, 401, "auth_timestamp"),
    ],
)
async def test_wrong_authentication_parameters_are_refused(server, changes, status, message):
    request = Request(library(server), "GET", f"/apps/{APP_ID}/channels", {})
    response = await raw(server, "GET", resigned(request, **changes).signed_path)
    assert (response.code, response.headers["Content-Type"]) == (
        status,
        "text/plain; charset=UTF-8",
    )
    assert message in response.body.decode()


async def test_unsigned_and_unrouted_requests(server):
    response = await raw(server, "GET", f"/apps/{APP_ID}/channels")
    assert response.code == 401
    assert response.body == b"Missing authentication parameter: auth_key\n"
    request = Request(library(server), "GET", f"/apps/{APP_ID}/events", {})
    response = await raw(server, "GET", request.signed_path)
    assert (response.code, response.body) == (405, b"Method not allowed\n")


OTHER = AppConfig("other-key", "other-secret", app_id="9")


def forgeries(server: Any, app_id: str) -> list[tuple[str, str]]:
    """Requests for ``/apps/<app_id>/channels`` that are not correctly signed, as
    (method, path): what anybody without a secret can send."""
    path = f"/apps/{app_id}/channels"
    signed = Request(library(server), "GET", path, {}).signed_path
    now = f"{time.time():.0f}"
    return [
        ("GET", path),
        ("GET", f"{path}?auth_key={KEY}"),
        ("GET", f"{path}?auth_key=nobody&auth_timestamp={now}&auth_version=1.0&auth_signature=0"),
        ("GET", f"{path}?auth_key={KEY}&auth_timestamp={now}&auth_version=2.0&auth_signature=0"),
        ("GET", f"{path}?auth_key={KEY}&auth_timestamp=1&auth_version=1.0&auth_signature=0"),
        ("GET", f"{path}?auth_key={KEY}&auth_timestamp={now}&auth_version=1.0&auth_signature=0"),
        ("GET", signed.replace("auth_signature=", "auth_signature=0")),
        ("POST", f"/apps/{app_id}/events?auth_key={KEY}"),
    ]


@pytest.mark.config(app_id=APP_ID, apps=(OTHER,))
async def test_an_unknown_app_id_is_answered_as_a_known_one_401(server):
    known, unknown = [], []
    for app_id, answers in ((APP_ID, known), (OTHER.app_id, known), ("2", unknown)):
        for method, path in forgeries(server, app_id):
            body = b"{}" if method == "POST" else None
            response = await raw(server, method, path, body)
            # The server's clock in an expired timestamp's answer may tick between requests.
            answer = re.sub(rb"server time \(\d+\)", b"server time (now)", response.body)
            answers.append((response.code, answer))
    assert {code for code, _ in known} == {401}
    assert known == unknown * 2
    # Only a secret's holder can sign: for another app's id or an unknown one, 401 too.
    for app_id in (OTHER.app_id, "2"):
        response = await raw(
            server,
            "GET",
            Request(library(server), "GET", f"/apps/{app_id}/channels", {}).signed_path,
        )
        assert (response.code, response.body) == (
            401,
            b"auth_key is not the key of the app in the path\n",
        )
    assert await call(client_of(server).channels_info) == {"channels": {}}


@pytest.mark.config(app_id=APP_ID, max_body_size=1000)
async def test_a_body_over_the_servers_limit_is_refused_with_413(server):
    ann = await server.client(WebSocketClient, "ann", "news")
    client = client_of(server)
    with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
        await call(client.trigger, "news", "e", "x" * 2000)
    # A chunked body (no Content-Length) is counted as it comes.
    body = json.dumps({"name": "e", "data": "y" * 2000, "channel": "news"}).encode()
    request = Request(client._pusher_client, "POST", f"/apps/{APP_ID}/events", {})
    resigned(request, body_md5=hashlib.md5(body).hexdigest())

    async def chunks(write):
        for start in range(0, len(body), 100):
            await write(body[start : start + 100])

    response = await AsyncHTTPClient().fetch(
        f"{server.url}{request.signed_path}",
        method="POST",
        body_producer=chunks,
        raise_error=False,
    )
    assert response.code == 413
    await call(client.trigger, "news", "e", "small")
    assert await ann.message() == {"payload": "small", "channel": "news"}


async def test_terminating_a_user_without_connections_answers_at_once(server):
    assert await call(client_of(server).terminate_user_connections, "nobody") == {}


# -- the cluster ----------------------------------------------------------------------------


async def test_a_trigger_on_one_node_reaches_clients_of_both(nodes):
    one, two = await nodes(2, app_id=APP_ID)
    ann = await one.client(WebSocketClient, "ann", "news")
    bob = await two.client(XhrStreamingClient, "bob", "news")
    client = client_of(one)
    assert await call(client.trigger, ["news"], "e", "across") == {}
    assert await ann.message() == {"payload": "across", "channel": "news"}
    assert await bob.message() == {"payload": "across", "channel": "news"}
    assert await call(client.channel_info, "news", ["subscription_count"]) == {
        "occupied": True,
        "subscription_count": 2,
    }


async def test_terminate_and_listings_cover_the_cluster(nodes):
    one, two = await nodes(2, app_id=APP_ID)
    await presence(one, WebSocketClient, "ann")
    bob = await two.client(WebSocketClient, "bob", "news")
    client = client_of(one)
    assert await call(client.users_info, "presence-room") == {"users": [{"id": "ann"}]}
    listed = await call(client.channels_info, attributes=["subscription_count"])
    assert listed == {
        "channels": {"news": {"subscription_count": 1}, "presence-room": {"subscription_count": 1}}
    }
    assert await call(client.terminate_user_connections, "bob") == {}
    assert await bob.closed() == tuple(FORCED_DISCONNECT)


@pytest.mark.parametrize(
    "settings", [{}, {"history_size": 10, "history_ttl": 60.0}], ids=["live", "kept"]
)
async def test_a_pusher_event_crosses_the_cluster_with_its_name_and_exclusion(nodes, settings):
    """The bus carries the event name and the socket id to exclude (kinds ``e`` and ``k``).

    Node two's Pusher connections are plain objects on the hub's connection
    contract (``tests/test_pusher_ws.py``'s), so that what each received is
    known exactly; the test below does it with real websockets.
    """
    one, two = await nodes(2, app_id=APP_ID, **settings)
    thunder = await two.client(WebSocketClient, "ann", "news")
    hub = two.parts.apps.get(KEY).hub
    sender, other = PusherConnection("p1", "1.1"), PusherConnection("p2", "2.2")
    for connection in (sender, other):
        hub.add(connection)
        hub.subscribe(connection, "news")
    try:
        await call(client_of(one).trigger, "news", "update", "hello", socket_id="1.1")
        message = await thunder.message()
        assert (message["payload"], message["channel"]) == ("hello", "news")
        assert ("epoch" in message) == bool(settings)
        # One bus message reached all three: the excluded one got nothing.
        assert [json.loads(frame) for frame in other.received] == [
            {"event": "update", "channel": "news", "data": "hello"}
        ]
        assert sender.received == []
        # A Thunderpush publish reaches them as the default event, nobody excluded.
        response = await one.api("POST", "channels/news/", '"plain"')
        assert json.loads(response.body)["count"] == 3
        assert (await thunder.message())["payload"] == '"plain"'
        await two.settled(lambda: len(sender.received) == 1)
        assert json.loads(sender.received[0])["event"] == DEFAULT_EVENT
    finally:
        for connection in (sender, other):
            hub.remove(connection)


# -- Pusher websockets as receivers ---------------------------------------------------------


async def test_a_trigger_reaches_pusher_websockets_as_the_event_but_the_excluded_one(server):
    thunder = await server.client(WebSocketClient, "t", "news")
    async with opened(server) as sender, opened(server) as other:
        sender_id, _ = await established(sender), await established(other)
        await subscribed(sender, "news")
        await subscribed(other, "news")
        client = client_of(server)
        await call(client.trigger, ["news"], "update", {"n": 1}, socket_id=sender_id)
        assert await receive(other) == {"event": "update", "channel": "news", "data": '{"n": 1}'}
        assert await thunder.message() == {"payload": '{"n": 1}', "channel": "news"}
        assert await call(client.channel_info, "news", ["subscription_count"]) == {
            "occupied": True,
            "subscription_count": 3,
        }
        # The sender got nothing: its next frame is the pong to its ping.
        await ws_send(sender, "pusher:ping")
        assert (await receive(sender))["event"] == "pusher:pong"


async def test_users_info_and_terminate_cover_pusher_connections(server):
    async with opened(server) as ws:
        socket_id = await established(ws)
        await subscribed(ws, "presence-room", **presence_data(socket_id, "presence-room", "42"))
        client = client_of(server)
        assert await call(client.users_info, "presence-room") == {"users": [{"id": "42"}]}
        assert await call(client.terminate_user_connections, "42") == {}
        assert await closed_with(ws) == 4009


async def test_a_trigger_on_one_node_reaches_a_pusher_websocket_on_the_other(nodes):
    one, two = await nodes(2, app_id=APP_ID)
    async with opened(two) as ws, opened(two) as excluded:
        await established(ws)
        excluded_id = await established(excluded)
        await subscribed(ws, "news")
        await subscribed(excluded, "news")
        await call(client_of(one).trigger, "news", "update", "across", socket_id=excluded_id)
        assert await receive(ws) == {"event": "update", "channel": "news", "data": "across"}
        await ws_send(excluded, "pusher:ping")
        assert (await receive(excluded))["event"] == "pusher:pong"


async def test_pusher_requests_are_counted_in_the_api_metrics(server):
    await call(client_of(server).trigger, "news", "e", "1")
    with pytest.raises(pusher.errors.PusherBadAuth):
        await call(client_of(server, secret="wrong").channels_info)
    await raw(server, "PUT", f"/apps/{APP_ID}/events", b"{}")
    requests = server.parts.api.requests
    assert requests[("pusher_trigger", 200)] == 1
    assert requests[("pusher_channels", 401)] == 1
    assert requests[("pusher_other", 405)] == 1


# -- the front door, and Tornado for what it hands off ------------------------------


def recorded_hand_offs(server: Any, monkeypatch: Any) -> list[bytes]:
    """What the front door hands to Tornado from now on (each from a request's first byte)."""
    handed: list[bytes] = []
    hand_off = server.door.hand_off

    def recording(transport: Any, data: bytes) -> None:
        handed.append(data)
        hand_off(transport, data)

    monkeypatch.setattr(server.door, "hand_off", recording)
    return handed


async def test_the_front_door_serves_pushers_api_itself(server, monkeypatch):
    handed = recorded_hand_offs(server, monkeypatch)
    ann = await server.client(WebSocketClient, "ann", "news")
    client = client_of(server)
    assert await call(client.trigger, "news", "e", "fast") == {}
    assert await call(client.trigger_batch, [{"channel": "news", "name": "e", "data": "2"}]) == {}
    assert await call(client.channels_info) == {"channels": {"news": {}}}
    assert await call(client.terminate_user_connections, "nobody") == {}
    assert [await ann.message(), await ann.message()] == [
        {"payload": "fast", "channel": "news"},
        {"payload": "2", "channel": "news"},
    ]
    assert handed == []


async def test_a_handed_off_trigger_is_served_alike_by_tornado(server, monkeypatch):
    handed = recorded_hand_offs(server, monkeypatch)
    ann = await server.client(WebSocketClient, "ann", "news")
    body = json.dumps({"name": "e", "data": "chunked", "channel": "news"}).encode()
    request = Request(library(server), "POST", f"/apps/{APP_ID}/events", {})
    resigned(request, body_md5=hashlib.md5(body).hexdigest())
    head = (
        f"POST {request.signed_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunked = head.encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    # Open both ways: Tornado drops its answer to a client that half-closed first.
    writer.write(chunked)
    answer = await asyncio.wait_for(reader.readuntil(b"{}"), 5)
    writer.close()
    assert statuses(answer) == [200] and b"Content-Type: application/json\r\n" in answer
    assert handed == [chunked]
    assert await ann.message() == {"payload": "chunked", "channel": "news"}
    assert server.parts.api.requests[("pusher_trigger", 200)] == 1


def signed(server: Any, method: str, path: str, body: bytes = b"", **changes: str) -> str:
    """``path`` with the query the library signs for ``body``, then ``changes`` signed too."""
    request = Request(library(server), method, path, {})
    if body:
        changes = {"body_md5": hashlib.md5(body).hexdigest(), **changes}
    return resigned(request, **changes).signed_path if changes else request.signed_path


TRIGGER = f"/apps/{APP_ID}/events"
EVENT = b'{"name": "e", "data": "x", "channel": "news"}'
# name: (request's bytes for a server, the status and (for refusals: plain text) the
# body that Pusher's API answered before the front door served it)
PUSHER_CASES = {
    "trigger": (
        lambda s: wire_request("POST", signed(s, "POST", TRIGGER, EVENT), "", EVENT),
        (200, b"{}"),
    ),
    "bad JSON": (
        lambda s: wire_request("POST", signed(s, "POST", TRIGGER, b"{nope"), "", b"{nope"),
        (400, b"The body is not JSON\n"),
    ),
    "not an object": (
        lambda s: wire_request("POST", signed(s, "POST", TRIGGER, b"[1]"), "", b"[1]"),
        (400, b"The body must be a JSON object\n"),
    ),
    "bad signature": (
        lambda s: wire_request(
            "POST",
            signed(s, "POST", TRIGGER, EVENT).replace("signature=", "signature=0"),
            "",
            EVENT,
        ),
        (401, b"Invalid signature\n"),
    ),
    "body not the signed one": (
        lambda s: wire_request("POST", signed(s, "POST", TRIGGER, EVENT), "", EVENT[:-1] + b" }"),
        (401, b"body_md5 does not match the body\n"),
    ),
    "huge body": (
        lambda s: wire_request(
            "POST", signed(s, "POST", TRIGGER, EVENT), "Content-Length: 2000000\r\n"
        ),
        (413, b"Request body too large\n"),
    ),
    "unsigned": (
        lambda s: wire_request("GET", f"/apps/{APP_ID}/channels", ""),
        (401, b"Missing authentication parameter: auth_key\n"),
    ),
    "wrong method": (
        lambda s: wire_request("GET", signed(s, "GET", TRIGGER), ""),
        (405, b"Method not allowed\n"),
    ),
    "PUT (Tornado's)": (
        lambda s: wire_request("PUT", signed(s, "GET", TRIGGER), ""),
        (405, b"Method not allowed\n"),
    ),
    "another app's id": (
        lambda s: wire_request("GET", signed(s, "GET", "/apps/2/channels"), ""),
        (401, b"auth_key is not the key of the app in the path\n"),
    ),
    "not UTF-8": (
        lambda s: wire_request("GET", "/apps/%FF/channels", ""),
        (400, b"Bad Request\n"),
    ),
    "channels, with an Etag": (
        lambda s: wire_request("GET", signed(s, "GET", "/apps/1/channels"), ""),
        (200, None),
    ),
    "terminate without the app's path": (
        lambda s: wire_request(
            "POST", signed(s, "POST", "/users/bob/terminate_connections"), "", b"{}"
        ),
        (200, b"{}"),
    ),
    "unrouted": (
        lambda s: wire_request("GET", f"/apps/{APP_ID}/nothing", ""),
        (404, b'{"message": "Not found.", "status": 404}\n'),
    ),
}


@pytest.mark.parametrize("case", PUSHER_CASES)
async def test_pushers_api_answers_as_before_and_byte_for_byte_as_tornado(
    server, tornado_port, case
):
    build, before = PUSHER_CASES[case]
    data = build(server)
    ours = await exchange(server.port, data)
    reference = await exchange(tornado_port, data)
    for _ in range(3):
        if reference:
            break
        reference = await exchange(tornado_port, data)  # Tornado's race (see test_http)
    assert undated(ours) == undated(reference)
    status, body = before
    assert statuses(ours) == [status]
    if body is None:
        assert b"Etag: " in ours  # a GET's 200, as Tornado's
    else:
        assert ours.endswith(b"\r\n\r\n" + body)
    if status in (400, 401, 405, 413):
        assert b"Content-Type: text/plain; charset=UTF-8\r\n" in ours
