"""Client commands, deliveries and closes (PROTOCOL.md sections 4-6) on every transport."""

from __future__ import annotations

import json
import logging

import pytest

from thunderpush.core.protocol import raw_websocket_close_code

from .support import KEY
from .support.clients import Closed, RawWebSocketClient, WebSocketClient, XhrPollingClient
from .support.clock import ManualClock
from .support.wire import Hostile


def close_code(transport, code: int) -> int:
    return raw_websocket_close_code(code) if transport is RawWebSocketClient else code


async def test_channel_and_user_deliveries(server, transport):
    client = await server.client(transport, "alice", "news", "sport")
    assert (await server.api("POST", "channels/news/", '{"a": 1}')).body == b'{"count": 1}\n'
    assert (await server.api("POST", "users/alice/", "[1, 2]")).body == b'{"count": 1}\n'
    assert (await server.api("POST", "channels/sport/", '"go"')).body == b'{"count": 1}\n'
    assert await client.message() == {"payload": '{"a": 1}', "channel": "news"}
    assert await client.message() == {"payload": "[1, 2]"}
    assert await client.message() == {"payload": '"go"', "channel": "sport"}


BODIES = {
    "ascii": '{"a": 1}',
    "unicode": '"caf\u00e9 \u65e5\u672c"',
    "astral": '"\U0001f600 \U00010348"',
    "quotes-backslashes": '{"q": "\\"", "b": "\\\\", "s": "a\'b"}',
    "crlf": '{\r\n  "a": "x\\r\\ny"\r\n}\n',
    "control-escapes": '"\\u0000\\t\\b\\f"',
    "100kb": json.dumps({"data": "\u00e9x" * 50_000}),
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
async def test_delivery_frames_are_exact(server, transport, body):
    client = await server.client(transport, "alice", "news")
    await server.api("POST", "channels/news/", body.encode("utf-8"))
    await server.api("POST", "users/alice/", body.encode("utf-8"))
    channel_element = '{"payload":' + json.dumps(body) + ',"channel":"news"}'
    user_element = '{"payload":' + json.dumps(body) + "}"
    assert await client.message() == {"payload": body, "channel": "news"}
    assert await client.message() == {"payload": body}
    if transport is RawWebSocketClient:
        assert client.frames[-2:] == [channel_element, user_element]
    else:
        frames = [f for f in client.frames if f.startswith("a")]
        if len(frames) == 1:  # a polling response may carry both
            assert frames == [f"a[{channel_element},{user_element}]"]
        else:
            assert frames[-2:] == [f"a[{channel_element}]", f"a[{user_element}]"]
    assert all(ord(ch) < 128 for frame in client.frames for ch in frame)


async def test_documented_example_frame(server):
    client = await server.client(WebSocketClient, "alice", "news")
    await server.api("POST", "channels/news/", '{"a": 1}')
    await client.message()
    assert client.frames[-1] == 'a[{"payload":"{\\"a\\": 1}","channel":"news"}]'


async def test_messages_arrive_in_publish_order(server, transport):
    client = await server.client(transport, "alice", "news")
    for n in range(50):
        await server.api("POST", "channels/news/" if n % 2 else "users/alice/", str(n))
    received = [int((await client.message())["payload"]) for _ in range(50)]
    assert received == list(range(50))


async def test_wrong_api_key_closes_9000(server, transport):
    client = await server.client(transport)
    await client.send("CONNECT alice:wrong")
    assert await client.closed() == (close_code(transport, 9000), "Invalid API key.")
    assert not server.hub.is_online("alice")


async def test_a_refused_connect_is_logged_once_per_address_per_minute(server, caplog):
    clock = ManualClock()
    server.router.get_connection_class().refusals.clock = clock
    caplog.set_level(logging.INFO, logger="thunderpush")

    async def refused(command: str, code: int) -> list[logging.LogRecord]:
        client = await server.client(WebSocketClient)
        await client.send(command)
        assert (await client.closed())[0] == code
        return [r for r in caplog.records if r.getMessage().startswith("Refused ")]

    for _ in range(3):  # a client retrying with a wrong key: one line
        lines = await refused("CONNECT alice:wrong", 9000)
    assert [(r.levelno, r.getMessage(), r.address) for r in lines] == [
        (
            logging.INFO,
            "Refused a CONNECT of user 'alice': unknown app key 'wrong'; this address's"
            " next refusals go unlogged for 60 s.",
            "127.0.0.1",
        )
    ]
    clock.advance(59)
    assert len(await refused(f"CONNECT alice:{KEY}:bad-token", 9003)) == 1
    clock.advance(1)
    lines = await refused(f"CONNECT alice:{KEY}:bad-token", 9003)
    assert lines[-1].getMessage().startswith(f"Refused user 'alice' of app '{KEY}': invalid")


@pytest.mark.parametrize("command", ["SUBSCRIBE news", "UNSUBSCRIBE news"])
async def test_subscribing_before_connect_closes_9001(server, transport, command):
    client = await server.client(transport)
    await client.send(command)
    reason = "Subscribing before connecting."
    assert await client.closed() == (close_code(transport, 9001), reason)


async def test_delete_closes_every_connection_of_the_user(server, transport):
    """FIX: the original skipped every other connection of the user."""
    clients = [await server.client(transport, "alice", "news") for _ in range(3)]
    other = await server.client(transport, "bob", "news")
    response = await server.api("DELETE", "users/alice/")
    assert response.code == 204
    # Offline at once: no wait between the DELETE and these answers.
    assert (await server.api("GET", "users/alice/")).body == b'{"online": false}\n'
    assert (await server.api("GET", "channels/news/")).body == b'{"users": ["bob"]}\n'
    reason = "Server closed the connection (intentionally)."
    for client in clients:
        assert await client.closed() == (close_code(transport, 9002), reason)
    assert (await server.api("POST", "channels/news/", "1")).body == b'{"count": 1}\n'
    assert await other.message() == {"payload": "1", "channel": "news"}


async def test_subscribing_twice_is_one_subscription(server, transport):
    """FIX: the original listed and delivered twice, and left a ghost entry."""
    client = await server.client(transport, "alice", "news")
    await client.send("SUBSCRIBE news:news")
    await server.client(transport, "bob", "probe")  # commands are ordered per session
    await server.api("POST", "channels/news/", "1")
    assert await client.message() == {"payload": "1", "channel": "news"}
    await server.api("POST", "users/alice/", "2")
    assert await client.message() == {"payload": "2"}  # not a second "1"
    assert (await server.api("GET", "channels/news/")).body == b'{"users": ["alice"]}\n'


async def test_unsubscribe_removes_only_this_connection(server, transport):
    """FIX: the original deleted the whole channel while others were still in it."""
    leaving = await server.client(transport, "alice", "news", "sport")
    staying = await server.client(transport, "bob", "news")
    await leaving.send("UNSUBSCRIBE news")
    await server.settled(lambda: len(server.hub.channel_connections("news")) == 1)
    assert (await server.api("POST", "channels/news/", "1")).body == b'{"count": 1}\n'
    assert await staying.message() == {"payload": "1", "channel": "news"}
    await server.api("POST", "channels/sport/", "2")
    assert await leaving.message() == {"payload": "2", "channel": "sport"}


async def test_invalid_channel_names_are_skipped_the_others_apply(server, transport):
    client = await server.client(transport, "alice")
    await client.send("SUBSCRIBE bad name:ok:" + "x" * 65 + "::caf\u00e9:also_ok")
    await server.settled(lambda: len(server.hub.channel_connections("also_ok")) == 1)
    assert set(server.hub.channels) == {"ok", "also_ok"}


async def test_disconnect_cleans_up_everything(server, transport):
    client = await server.client(transport, "alice", "news", "sport")
    await server.api("DELETE", "users/alice/")
    await client.closed()
    assert server.hub.users == {} and server.hub.channels == {}


@pytest.mark.parametrize(
    "messages",
    [
        ["HELLO world"],
        ["CONNECT"],
        ["CONNECT nocolon"],
        ["CONNECT :" + KEY],
        ["CONNECT a:" + KEY + ":c:d"],
        ["connect alice:" + KEY],
        [""],
        [" "],
        ["SUBSCRIBE"],
        ["x" * 10_000],
    ],
    ids=[
        "unknown",
        "no-argument",
        "no-colon",
        "empty-user",
        "three-colons",
        "lowercase",
        "empty",
        "space",
        "subscribe-no-argument",
        "long",
    ],
)
async def test_malformed_commands_are_ignored(server, transport, messages, no_tracebacks):
    client = await server.client(transport)
    await client.send(*messages)
    # The session survives and still works.
    await client.send(f"CONNECT alice:{KEY}", "SUBSCRIBE news")
    await server.settled(lambda: len(server.hub.channel_connections("news")) == 1)
    await server.api("POST", "channels/news/", "1")
    assert await client.message() == {"payload": "1", "channel": "news"}
    assert server.hub.user_count() == 1
    warnings = [r for r in no_tracebacks.records if r.levelname == "WARNING"]
    # A raw websocket drops empty frames before they are messages at all.
    assert warnings or (transport is RawWebSocketClient and messages == [""])
    assert all(len(r.getMessage()) < 300 for r in warnings)


@pytest.mark.parametrize(
    "elements",
    [[5], [None], [{"a": 1}], [["CONNECT alice:key"]], [True, 1.5]],
    ids=["number", "null", "object", "list", "mixed"],
)
@pytest.mark.parametrize("kind", [WebSocketClient, XhrPollingClient], ids=["websocket", "xhr"])
async def test_non_string_elements_are_ignored(server, kind, elements):
    client = await server.client(kind)
    await client.send(*elements, f"CONNECT alice:{KEY}", "SUBSCRIBE news")
    await server.settled(lambda: len(server.hub.channel_connections("news")) == 1)
    await server.api("POST", "channels/news/", "1")
    assert await client.message() == {"payload": "1", "channel": "news"}


async def test_second_connect_is_ignored(server, transport):
    client = await server.client(transport, "alice", "news")
    await client.send(f"CONNECT bob:{KEY}")
    await server.client(transport, "carol")  # a later command has been handled
    assert not server.hub.is_online("bob")
    await server.api("POST", "users/alice/", "1")
    assert await client.message() == {"payload": "1"}


async def test_broken_json_frame_drops_the_websocket_without_traceback(server, no_tracebacks):
    client = await server.client(WebSocketClient, "alice")
    await client.send_raw('["CONNECT')
    with pytest.raises(Closed) as closed:
        await client.message()
    assert closed.value.code == 1006  # dropped, no close frame, as the original
    await server.settled(lambda: not server.hub.is_online("alice"))
    messages = [r.getMessage() for r in no_tracebacks.records if r.levelname == "WARNING"]
    assert any("not valid JSON" in m for m in messages)


async def test_subscribe_with_an_empty_argument_before_connect_closes_9001(server, transport):
    client = await server.client(transport)
    await client.send("SUBSCRIBE ")
    assert (await client.closed())[0] == close_code(transport, 9001)


async def test_oversized_send_over_http_is_413(server):
    from tornado.httpclient import AsyncHTTPClient

    client = await server.client(XhrPollingClient, "alice")
    response = await AsyncHTTPClient().fetch(
        client.session_url + "/xhr_send",
        method="POST",
        body='["' + "x" * (64 * 1024) + '"]',
        raise_error=False,
    )
    assert response.code == 413


@pytest.mark.config(max_client_message_size=100)
async def test_one_configured_message_limit_for_websockets_and_xhr_send(server):
    """The limit is the server's ``Config``, read when the server is built, for every transport."""
    from tornado.httpclient import AsyncHTTPClient

    polling = await server.client(XhrPollingClient, "alice")
    sizes = {}
    for size in (100, 101):
        body = '["' + "x" * (size - 4) + '"]'
        response = await AsyncHTTPClient().fetch(
            polling.session_url + "/xhr_send", method="POST", body=body, raise_error=False
        )
        sizes[size] = response.code
    assert sizes == {100: 204, 101: 413}
    websocket = await server.client(RawWebSocketClient, "bob")
    await websocket.send("x" * 101)
    assert (await websocket.closed())[0] == 1009


@pytest.mark.parametrize("send", ["xhr_send", "jsonp_send"])
async def test_deeply_nested_send_is_refused_with_one_warning(server, no_tracebacks, send):
    from tornado.httpclient import AsyncHTTPClient

    client = await server.client(XhrPollingClient, "alice")
    hostile = Hostile(server, no_tracebacks)
    response = await AsyncHTTPClient().fetch(
        f"{client.session_url}/{send}",
        method="POST",
        body="[" * 30_000 + "]" * 30_000,
        headers={"Content-Type": "text/plain"},
        raise_error=False,
    )
    # What the SockJS protocol answers to a body that is not JSON.
    assert (response.code, response.body) == (500, b"Broken JSON encoding.")
    await hostile.others_answered()
    assert server.hub.is_online("alice")
    (line,) = hostile.lines()
    assert line.startswith(f"500 POST /connect/000/{client.session_url.rsplit('/', 1)[1]}/{send}")
    hostile.check()


async def test_binary_frame_on_raw_websocket_is_ignored(server):
    client = await server.client(RawWebSocketClient, "alice", "news")
    await client.ws.write_message(b"\x00\xff", binary=True)
    await server.api("POST", "channels/news/", "1")
    assert await client.message() == {"payload": "1", "channel": "news"}


async def test_oversized_client_message_closes_the_websocket(server, caplog):
    """One close and at most one log line; another client on the channel is not disturbed."""
    bob = await server.client(WebSocketClient, "bob", "news")
    client = await server.client(WebSocketClient, "alice", "news")
    caplog.clear()
    await client.send("x" * (64 * 1024 + 1))
    with pytest.raises(Closed) as closed:
        await client.message()
    assert closed.value.code == 1009
    await server.settled(lambda: not server.hub.is_online("alice"))
    assert len([record for record in caplog.records if record.levelno >= logging.INFO]) <= 1
    await server.api("POST", "channels/news/", "1")
    assert await bob.message() == {"payload": "1", "channel": "news"}
    assert server.hub.channel_users("news") == ["bob"]


async def test_command_order_within_one_message(server, sockjs_transport):
    """One SockJS message may carry several commands; they apply in order."""
    client = await server.client(sockjs_transport)
    await client.send(f"CONNECT alice:{KEY}", "SUBSCRIBE a:b", "UNSUBSCRIBE a")
    await server.settled(lambda: len(server.hub.channel_connections("b")) == 1)
    assert "a" not in server.hub.channels


@pytest.mark.parametrize("kind", [WebSocketClient, RawWebSocketClient], ids=["websocket", "raw"])
async def test_publish_reaches_everyone_while_one_receiver_is_closing(server, kind):
    """A receiver in the middle of closing must not cost the others the message."""
    clients = [await server.client(kind, f"u{n}", "news") for n in range(4)]
    closing = next(c for c in server.hub.channel_connections("news") if c.userid == "u1")
    closing.session.handler.close()
    # Published in the same loop turn: the close has begun, not finished, so the
    # closing connection is still registered and in the fan-out.
    assert server.hub.send_to_channel("news", '"all"') == 4
    for n, client in enumerate(clients):
        if n != 1:
            assert await client.message() == {"payload": '"all"', "channel": "news"}
