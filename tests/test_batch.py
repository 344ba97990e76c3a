"""``POST batch/``: many messages in one request, all or nothing, in item order.

Real servers and real SockJS clients: the in-process server for one process,
two in-process nodes on a real Redis (``tests/test_cluster.py``'s ``nodes``)
for the cluster.
"""

from __future__ import annotations

import json
import re

import pytest

from thunderpush.api.batch import MAX_BATCH_ITEMS

from .support.clients import WebSocketClient, XhrPollingClient, XhrStreamingClient
from .support.served import eventually
from .test_api import assert_error
from .test_cluster import listed, online
from .test_metrics import labelled, scrape, value
from .test_openapi import described


def batch(*items: dict) -> str:
    return json.dumps(list(items))


def counts(response) -> list[int]:
    assert response.code == 200, response.body
    return json.loads(response.body)["counts"]


async def test_items_are_counted_and_delivered_in_item_order(server):
    ann = await server.client(WebSocketClient, "ann", "news", "sport")
    bob = await server.client(XhrStreamingClient, "bob", "news")
    cid = await server.client(XhrPollingClient, "cid")
    response = await server.api(
        "POST",
        "batch/",
        batch(
            {"channel": "news", "message": {"n": 1, "list": [1, 2]}},
            {"user": "ann", "message": "to ann"},
            {"channel": "sport", "message": 3},
            {"channel": "empty", "message": None},
            {"user": "nobody", "message": True},
            {"channel": "news", "message": "café ☕"},
            {"user": "bob", "message": []},
        ),
    )
    assert counts(response) == [2, 1, 1, 0, 0, 2, 1]
    # Each message as compact JSON, non-ASCII characters as they are.
    assert [await ann.message() for _ in range(4)] == [
        {"payload": '{"n":1,"list":[1,2]}', "channel": "news"},
        {"payload": '"to ann"'},
        {"payload": "3", "channel": "sport"},
        {"payload": '"café ☕"', "channel": "news"},
    ]
    assert [await bob.message() for _ in range(3)] == [
        {"payload": '{"n":1,"list":[1,2]}', "channel": "news"},
        {"payload": '"café ☕"', "channel": "news"},
        {"payload": "[]"},
    ]
    await ann.no_message()
    await cid.no_message()


async def test_a_lone_surrogate_is_delivered_escaped(server):
    # JSON may escape half a surrogate pair; UTF-8 cannot carry one, so it stays escaped.
    ann = await server.client(WebSocketClient, "ann", "news")
    body = '[{"channel": "news", "message": ["\\ud800", "é"]}]'
    assert counts(await server.api("POST", "batch/", body)) == [1]
    assert await ann.message() == {"payload": '["\\ud800","\\u00e9"]', "channel": "news"}


INVALID_ITEMS = [
    ("not an object", '"news"'),
    ("not an object", '["news", 1]'),
    ("unknown member", '{"channel": "news", "message": 1, "extra": 2}'),
    ("needs exactly one of channel and user", '{"message": 1}'),
    ("needs exactly one of channel and user", '{"channel": "news", "user": "ann", "message": 1}'),
    ("no message", '{"channel": "news"}'),
    ("no message", '{"user": "ann"}'),
    ("invalid channel name", '{"channel": "bad name", "message": 1}'),
    ("invalid channel name", '{"channel": "", "message": 1}'),
    ("invalid channel name", '{"channel": ["news"], "message": 1}'),
    ("invalid channel name", '{"channel": "' + "x" * 65 + '", "message": 1}'),
    ("invalid user id", '{"user": "", "message": 1}'),
    ("invalid user id", '{"user": 7, "message": 1}'),
]


@pytest.mark.parametrize("problem, item", INVALID_ITEMS)
async def test_one_invalid_item_rejects_the_batch_and_delivers_nothing(server, problem, item):
    ann = await server.client(WebSocketClient, "ann", "news")
    valid = '{"channel": "news", "message": "before"}, {"user": "ann", "message": "before"}'
    after = '{"channel": "news", "message": "after"}'
    response = await server.api("POST", "batch/", f"[{valid}, {item}, {after}]")
    assert_error(response, 400, f"Item 2: {problem}.")
    # Nothing of the batch arrived: the next message is the first the client sees.
    assert counts(await server.api("POST", "batch/", f"[{after}]")) == [1]
    assert await ann.message() == {"payload": '"after"', "channel": "news"}


@pytest.mark.parametrize(
    "body, message",
    [
        ("[]", "Request body must be a non-empty JSON array of items."),
        (
            '{"channel": "news", "message": 1}',
            "Request body must be a non-empty JSON array of items.",
        ),
        ('"news"', "Request body must be a non-empty JSON array of items."),
        ("null", "Request body must be a non-empty JSON array of items."),
        ("", "Request body is not valid JSON."),
        ('[{"channel": "news", "message": NaN}]', "Request body is not valid JSON."),
        ('[{"channel": "news", "message": 1}] x', "Request body is not valid JSON."),
    ],
)
async def test_a_body_that_is_no_batch_is_400(server, body, message):
    ann = await server.client(WebSocketClient, "ann", "news")
    assert_error(await server.api("POST", "batch/", body), 400, message)
    await ann.no_message()


async def test_at_most_the_item_limit(server):
    ann = await server.client(WebSocketClient, "ann", "news")
    items = [{"channel": "news", "message": n} for n in range(MAX_BATCH_ITEMS + 1)]
    response = await server.api("POST", "batch/", json.dumps(items))
    assert_error(response, 400, f"Too many items: at most {MAX_BATCH_ITEMS}.")
    await ann.no_message()
    assert counts(await server.api("POST", "batch/", json.dumps(items[:-1]))) == [1] * 1000
    assert [(await ann.message())["payload"] for _ in range(1000)] == [str(n) for n in range(1000)]


@pytest.mark.config(max_body_size=200)
async def test_the_body_limit_applies(server):
    ann = await server.client(WebSocketClient, "ann", "news")
    text = "x" * (200 - len('[{"channel": "news", "message": ""}]'))
    at_limit = json.dumps([{"channel": "news", "message": text}])
    assert len(at_limit) == 200
    assert counts(await server.api("POST", "batch/", at_limit)) == [1]
    assert (await ann.message())["payload"] == f'"{text}"'
    over = at_limit.replace('"x', '"xx')
    assert_error(await server.api("POST", "batch/", over), 413, "Request body is too large.")
    await ann.no_message()


async def test_every_batch_error_is_described(server):
    """The description's pattern for a batch's 400 messages matches each one the server gives."""
    operation = described()["paths"]["/api/1.0.0/{apikey}/batch/"]["post"]
    schema = operation["responses"]["400"]["content"]["application/json"]["schema"]
    pattern = re.compile(schema["properties"]["message"]["pattern"])
    given = [f"Item 2: {problem}." for problem, _ in INVALID_ITEMS]
    given += ["Request body must be a non-empty JSON array of items.", "Bad Request"]
    given += [f"Too many items: at most {MAX_BATCH_ITEMS}.", "Request body is not valid JSON."]
    for message in given:
        assert pattern.fullmatch(message), message
    assert not pattern.fullmatch("Item 2: anything else.")


async def test_the_metrics_count_a_batch_as_a_send_of_each_item(server):
    await server.client(WebSocketClient, "ann", "news", "sport")
    await server.client(WebSocketClient, "bob", "news")
    items = [
        {"channel": "news", "message": 1},
        {"channel": "sport", "message": 2},
        {"user": "ann", "message": 3},
        {"user": "nobody", "message": 4},
    ]
    assert counts(await server.api("POST", "batch/", json.dumps(items))) == [2, 1, 1, 0]
    assert (await server.api("POST", "batch/", "[]")).code == 400
    assert (await server.api("POST", "channels/news/", "5")).code == 200
    samples = await scrape(server.url)
    # Published: each item of the batch, and the single send.
    assert labelled(samples, "thunderpush_messages_published_total", "kind") == {
        "channel": 3,
        "user": 2,
    }
    assert labelled(samples, "thunderpush_messages_delivered_total", "kind") == {
        "channel": 5,
        "user": 1,
    }
    requests = {
        (dict(key)["endpoint"], dict(key)["status"]): v
        for (name, key), v in samples.items()
        if name == "thunderpush_api_requests_total"
    }
    assert requests == {("batch", "200"): 1, ("batch", "400"): 1, ("send_to_channel", "200"): 1}
    # The batch was timed once, as one send.
    assert value(samples, "thunderpush_publish_latency_seconds_count") == 2


async def test_a_batch_in_a_cluster_reaches_both_nodes_in_item_order(nodes):
    a, b = await nodes(2)
    ann = await a.client(WebSocketClient, "ann", "news")
    bob = await b.client(XhrStreamingClient, "bob", "news", "sport")
    await eventually(lambda: listed(a, "news"), ["ann", "bob"])
    await eventually(lambda: online(a, "bob"), True)
    items = [{"channel": "news", "message": n} for n in range(20)]
    items[5:5] = [{"user": "bob", "message": "to bob"}, {"channel": "sport", "message": "s"}]
    items.append({"user": "ann", "message": "to ann"})
    assert counts(await a.api("POST", "batch/", json.dumps(items))) == [2] * 5 + [1, 1] + [
        2
    ] * 15 + [1]
    news = [{"payload": str(n), "channel": "news"} for n in range(20)]
    assert [await ann.message() for _ in range(21)] == [*news, {"payload": '"to ann"'}]
    assert [await bob.message() for _ in range(22)] == [
        *news[:5],
        {"payload": '"to bob"'},
        {"payload": '"s"', "channel": "sport"},
        *news[5:],
    ]
    # One bad item: nothing reaches either node.
    items[3] = {"channel": "news"}
    assert_error(await b.api("POST", "batch/", json.dumps(items)), 400, "Item 3: no message.")
    await ann.no_message()
    await bob.no_message()
