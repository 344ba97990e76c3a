"""The HTTP API of PROTOCOL.md section 2, through a real server."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thunderpush.api.answers import ApiError
from thunderpush.api.bodies import decoded, validated
from thunderpush.config import Config

from .support import KEY
from .support.clients import WebSocketClient

JSON_TYPE = "application/json; charset=UTF-8"


def body_of(response) -> dict:
    assert response.headers["Content-Type"] == JSON_TYPE
    assert response.body.endswith(b"\n")
    return json.loads(response.body)


def assert_error(response, status: int, message: str) -> None:
    assert response.code == status
    assert response.body == (json.dumps({"message": message, "status": status}) + "\n").encode()
    assert response.headers["Content-Type"] == JSON_TYPE


async def test_user_count_counts_distinct_users(server):
    assert body_of(await server.api("GET", "users/")) == {"count": 0}
    await server.client(WebSocketClient, "alice")
    await server.client(WebSocketClient, "alice")
    await server.client(WebSocketClient, "bob")
    response = await server.api("GET", "users/")
    assert response.code == 200
    assert response.body == b'{"count": 2}\n'


async def test_user_online(server):
    assert (await server.api("GET", "users/alice/")).body == b'{"online": false}\n'
    await server.client(WebSocketClient, "alice")
    assert (await server.api("GET", "users/alice/")).body == b'{"online": true}\n'


async def test_post_to_user_counts_connections(server):
    first = await server.client(WebSocketClient, "alice")
    second = await server.client(WebSocketClient, "alice")
    response = await server.api("POST", "users/alice/", '{"hello": "world"}')
    assert response.body == b'{"count": 2}\n'
    for client in (first, second):
        assert await client.message() == {"payload": '{"hello": "world"}'}
    assert (await server.api("POST", "users/nobody/", "1")).body == b'{"count": 0}\n'


async def test_channel_users_are_listed_once_in_order_of_first_subscription(server):
    await server.client(WebSocketClient, "bob", "news")
    await server.client(WebSocketClient, "alice", "news")
    await server.client(WebSocketClient, "bob", "news")
    response = await server.api("GET", "channels/news/")
    assert response.body == b'{"users": ["bob", "alice"]}\n'
    assert (await server.api("GET", "channels/empty/")).body == b'{"users": []}\n'


async def test_delete_is_204_even_for_unknown_users(server):
    response = await server.api("DELETE", "users/nobody/")
    assert response.code == 204
    assert response.body == b""


async def test_segments_named_users_are_reachable(server):
    """FIX: the original's greedy patterns swallowed a user or channel named `users`."""
    client = await server.client(WebSocketClient, "users", "users")
    assert (await server.api("GET", "users/users/")).body == b'{"online": true}\n'
    assert (await server.api("POST", "channels/users/", "1")).body == b'{"count": 1}\n'
    assert await client.message() == {"payload": "1", "channel": "users"}


async def test_segments_are_percent_decoded(server):
    # User ids have no spaces (docs/protocol.rst), so a percent sign stands in.
    client = await server.client(WebSocketClient, "a%b/c\u00e9")
    response = await server.api("POST", "users/a%25b%2Fc%C3%A9/", '"x"')
    assert response.body == b'{"count": 1}\n'
    assert await client.message() == {"payload": '"x"'}


@pytest.mark.parametrize(
    "key, secret",
    [(KEY, "wrong"), ("wrongkey", "secret"), (KEY, None), (KEY, "")],
    ids=["wrong-secret", "wrong-key", "no-secret", "empty-secret"],
)
@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "users/"),
        ("GET", "users/u/"),
        ("POST", "users/u/"),
        ("DELETE", "users/u/"),
        ("GET", "channels/c/"),
        ("POST", "channels/c/"),
    ],
)
async def test_authentication_is_required_everywhere(server, method, path, key, secret):
    response = await server.api(method, path, "not json", key=key, secret=secret)
    assert_error(response, 401, "Wrong API key/secret.")


async def test_secret_header_name_is_case_insensitive(server):
    response = await server.api(
        "GET", "users/", secret=None, headers={"x-thunder-secret-key": "secret"}
    )
    assert response.code == 200


async def test_authentication_comes_before_the_body(server):
    response = await server.api("POST", "channels/c/", "{broken", secret="wrong")
    assert response.code == 401


# A body orjson reads and the standard library of Python 3.10 and 3.11 does not.
ORJSON_ONLY = b"[" * 1020 + b"]" * 1020


def _json_reads(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{broken",
        b"NaN",
        b"[Infinity]",
        b"-Infinity",
        b'{"a": 1} trailing',
        b"[1] [2]",
        b'"\xff"',
        '"é"'.encode("utf-16"),
        b"[" * 100_000 + b"]" * 100_000,
        # Deeper than the standard library reads (before 3.12), not than orjson
        # (1,024): refused, as the standard library decides.
        pytest.param(
            ORJSON_ONLY,
            marks=pytest.mark.skipif(
                _json_reads(ORJSON_ONLY),
                reason="this Python's json reads 1,020 levels (3.12 and later), as deep as "
                "orjson: no body lies between their limits",
            ),
        ),
    ],
    ids=[
        "empty",
        "broken",
        "nan",
        "infinity",
        "minus-infinity",
        "trailing",
        "two-documents",
        "invalid-utf8",
        "utf16",
        "deep-nesting",
        "nesting-orjson-reads",
    ],
)
@pytest.mark.parametrize("path", ["channels/news/", "users/alice/"])
async def test_invalid_json_is_400_and_delivers_nothing(server, path, body):
    client = await server.client(WebSocketClient, "alice", "news")
    response = await server.api("POST", path, body)
    assert_error(response, 400, "Request body is not valid JSON.")
    # The valid publish that follows must be the first thing the client sees.
    await server.api("POST", path, '"after"')
    assert (await client.message())["payload"] == '"after"'


# Pieces of bodies, valid and not, where orjson and the standard library could differ.
_PIECES = [
    *(b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"u", b"0", b"1", b"-", b"+", b"."),
    *(b"e", b" ", b"\n", b"\t", b"true", b"null", b"NaN", b"Infinity", b"\xc3\xa9", b"\xff"),
    *(b"\x01", b'"a"', b'"\\ud800"', b"00", b"9" * 20, b"\xef\xbb\xbf", b"\xed\xa0\x80"),
]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12).map(b"".join))
def test_a_body_is_valid_json_as_the_standard_library_says(body):
    # ``validated`` asks orjson first (api/bodies.py); ``decoded`` is the standard library.
    try:
        expected = decoded(body)[0]
    except ApiError:
        expected = None
    try:
        assert validated(body) == expected
    except ApiError:
        assert expected is None


_VALUES = {
    "number": "1",
    "null": "null",
    "bool": "true",
    "string": '"text"',
    "array": "[]",
    "whitespace": " \r\n {} \t",
    "bom": "\ufeff[1]",
    "big": "1e400",
    "lone-surrogate": '"\\ud800"',
    "big-integer": str(2**70),
    "nested": "[" * 200 + "]" * 200,
}


@pytest.mark.parametrize("body", _VALUES.values(), ids=_VALUES.keys())
async def test_any_json_value_is_accepted_and_delivered_as_received(server, body):
    client = await server.client(WebSocketClient, "alice", "news")
    response = await server.api("POST", "channels/news/", body.encode("utf-8"))
    assert response.body == b'{"count": 1}\n'
    assert await client.message() == {"payload": body, "channel": "news"}


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "caf\u00e9", "a/b", "a:b", "a%00"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_invalid_channel_names_are_400(server, method, name):
    from urllib.parse import quote

    path = f"channels/{quote(name, safe='')}/"
    response = await server.api(method, path, "1")
    if name == "":
        assert_error(response, 404, "Not found.")  # an empty segment matches no route
    else:
        assert_error(response, 400, "Invalid channel name.")


async def test_longest_valid_channel_name_works(server):
    name = "aZ09_-=@,.;" + "x" * 53
    client = await server.client(WebSocketClient, "alice", name)
    assert (await server.api("POST", f"channels/{name}/", "1")).body == b'{"count": 1}\n'
    assert await client.message() == {"payload": "1", "channel": name}


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "nothing/"),
        ("GET", "users"),
        ("GET", "users/a/b/"),
        ("POST", "batch"),
    ],
)
async def test_unknown_paths_are_json_404(server, method, path):
    assert_error(await server.api(method, path, "1"), 404, "Not found.")


async def test_unknown_paths_outside_the_api_are_json_404(server):
    from tornado.httpclient import AsyncHTTPClient

    response = await AsyncHTTPClient().fetch(server.url + "/favicon.ico", raise_error=False)
    assert_error(response, 404, "Not found.")


@pytest.mark.parametrize(
    "method, path",
    [
        ("PUT", "users/u/"),
        ("PATCH", "channels/c/"),
        ("DELETE", "channels/c/"),
        ("POST", "users/"),
        ("POST", "channels/"),
        ("GET", "batch/"),
    ],
)
@pytest.mark.parametrize("secret", ["secret", None])
async def test_unsupported_methods_are_json_405(server, method, path, secret):
    """405 comes before the key check, as in the original."""
    response = await server.api(method, path, "1", secret=secret)
    assert_error(response, 405, "Method not allowed.")


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("DELETE", "channels/c/", "GET, HEAD, POST, OPTIONS"),  # the front door's 405
        ("PUT", "users/u/", "GET, HEAD, POST, DELETE, OPTIONS"),  # Tornado's
        ("TRACE", "users/", "GET, HEAD, OPTIONS"),
    ],
)
async def test_405_says_which_methods_are_allowed(server, method, path, allowed):
    """RFC 9110: a 405 answer must carry Allow."""
    response = await server.api(method, path)
    assert response.code == 405
    assert response.headers["Allow"] == allowed


async def test_body_over_the_limit_is_413_and_not_delivered(server):
    client = await server.client(WebSocketClient, "alice", "news")
    body = '"' + "x" * Config.max_body_size + '"'
    response = await server.api("POST", "channels/news/", body)
    assert_error(response, 413, "Request body is too large.")
    await server.api("POST", "channels/news/", '"after"')
    assert (await client.message())["payload"] == '"after"'


async def test_chunked_body_over_the_limit_is_413(server):
    from tornado.httpclient import AsyncHTTPClient

    chunk = b"[" + b"0," * 65536

    async def producer(write):
        for _ in range(20):  # 2.5 MiB, more than MAX_BODY_SIZE
            await write(chunk)

    response = await AsyncHTTPClient().fetch(
        f"{server.url}/api/1.0.0/{KEY}/channels/news/",
        method="POST",
        body_producer=producer,
        headers={"X-Thunder-Secret-Key": "secret"},
        raise_error=False,
    )
    assert_error(response, 413, "Request body is too large.")


async def test_body_at_the_limit_is_accepted(server):
    body = '"' + "x" * (Config.max_body_size - 2) + '"'
    response = await server.api("POST", "channels/news/", body)
    assert response.body == b'{"count": 0}\n'


CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE",
}


def assert_cors(response) -> None:
    for name, value in CORS.items():
        assert response.headers[name] == value
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"x-thunder-secret-key", "content-type"} <= allowed


@pytest.mark.parametrize(
    "method, path, secret",
    [
        ("GET", "users/", "secret"),
        ("POST", "channels/c/", "secret"),
        ("DELETE", "users/u/", "secret"),
        ("GET", "users/", "wrong"),
        ("POST", "channels/bad name/", "secret"),
        ("GET", "nothing/", "secret"),
        ("PUT", "users/u/", "secret"),
    ],
)
async def test_every_response_carries_cors_headers(server, method, path, secret):
    response = await server.api(method, path.replace(" ", "%20"), "1", secret=secret)
    assert_cors(response)


@pytest.mark.parametrize("path", ["users/", "users/u/", "channels/c/", "nothing/here/"])
async def test_options_preflight_needs_no_authentication(server, path):
    response = await server.api("OPTIONS", path, secret=None)
    assert response.code == 200
    assert response.body == b""
    assert_cors(response)


async def test_client_script_is_served(server):
    from pathlib import Path

    from tornado.httpclient import AsyncHTTPClient

    response = await AsyncHTTPClient().fetch(server.url + "/thunderpush.js")
    source = Path(__file__).resolve().parent.parent / "client" / "thunderpush.js"
    assert response.body == source.read_bytes()
    assert response.headers["Content-Type"].startswith("application/javascript")
