"""``/metrics``, scraped with prometheus-client's own parser, after traffic whose figures are known.

Each test makes the traffic through real clients (every transport, the API on
the wire) and then reads the metrics the way Prometheus does, so a figure that
the server counts wrong, or a text the parser cannot read, fails here.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient

from thunderpush.observe.snapshot import snapshot

from .support import KEY
from .support.clients import (
    RawWebSocketClient,
    WebSocketClient,
    XhrPollingClient,
    XhrStreamingClient,
)
from .support.wire import RawClient, exchange, request, statuses
from .test_dashboard import SNAPSHOT_KEYS
from .test_slow_clients import slow_socket

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    """Every sample of ``url``'s ``/metrics``, by name and labels, as Prometheus reads it."""
    response = await AsyncHTTPClient().fetch(url + "/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(response.body.decode())
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def labelled(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The samples of ``name`` by the value of their one label ``label``."""
    return {dict(key)[label]: v for (n, key), v in samples.items() if n == name}


async def publish(server, path: str, bodies: Iterable[str]) -> list[int]:
    return [(await server.api("POST", path, body)).code for body in bodies]


async def test_the_figures_match_the_traffic(server):
    # Sessions on every transport; "ann" twice, so users < connections.
    await server.client(WebSocketClient, "ann", "news", "sport")
    await server.client(WebSocketClient, "ann", "news")
    await server.client(RawWebSocketClient, "bob", "news")
    await server.client(XhrPollingClient, "cid", "sport")
    await server.client(XhrStreamingClient, "dan")
    await server.client(WebSocketClient)  # open, never CONNECTed

    assert await publish(server, "channels/news/", ["1", "2", "3"]) == [200] * 3
    assert await publish(server, "channels/sport/", ['{"n": 4}']) == [200]
    assert await publish(server, "channels/empty/", ['{"n": 5}']) == [200]
    assert await publish(server, "users/ann/", ['"hi"', '"again"']) == [200] * 2
    assert await publish(server, "users/nobody/", ['"hi"']) == [200]
    # API errors: a wrong secret, a body that is not JSON, a path that is no route.
    assert (await server.api("POST", "channels/news/", "{}", secret="wrong")).code == 401
    assert await publish(server, "channels/news/", ["not json"]) == [400]
    assert (await server.api("GET", "nowhere/")).code == 404
    assert (await server.api("GET", "users/")).code == 200

    samples = await scrape(server.url)
    assert labelled(samples, "thunderpush_connections", "transport") == {
        "websocket": 3,
        "rawwebsocket": 1,
        "xhr": 1,
        "xhr_streaming": 1,
    }
    assert value(samples, "thunderpush_users") == 4
    assert value(samples, "thunderpush_channels") == 2  # news, sport; "empty" has nobody
    assert labelled(samples, "thunderpush_messages_published_total", "kind") == {
        "channel": 5,
        "user": 3,
    }
    # news: 3 messages x 3 connections; sport: 1 x 2; ann: 2 x 2 connections.
    assert labelled(samples, "thunderpush_messages_delivered_total", "kind") == {
        "channel": 11,
        "user": 4,
    }
    requests = {
        (dict(key)["endpoint"], dict(key)["status"]): v
        for (name, key), v in samples.items()
        if name == "thunderpush_api_requests_total"
    }
    assert requests == {
        ("send_to_channel", "200"): 5,
        ("send_to_channel", "401"): 1,
        ("send_to_channel", "400"): 1,
        ("send_to_user", "200"): 3,
        ("user_count", "200"): 1,
        ("other", "404"): 1,
    }
    # Every send that was answered 200 was timed, once.
    assert value(samples, "thunderpush_publish_latency_seconds_count") == 8
    assert value(samples, "thunderpush_publish_latency_seconds_bucket", le="+Inf") == 8
    assert 0 < value(samples, "thunderpush_publish_latency_seconds_sum") < 8
    assert value(samples, "thunderpush_ready") == 1
    assert value(samples, "thunderpush_draining") == 0
    assert value(samples, "process_open_fds") > 0


async def test_the_snapshot_has_the_same_figures(server):
    await server.client(WebSocketClient, "ann", "news", "sport")
    await server.client(RawWebSocketClient, "bob", "news")
    await server.client(XhrPollingClient, "cid", "news")
    assert await publish(server, "channels/news/", ['{"n": 1}']) == [200]
    assert await publish(server, "users/bob/", ['"hi"']) == [200]

    figures = snapshot(server.parts.figures)
    assert json.loads(json.dumps(figures)) == figures  # the dashboard serves it as JSON
    # What the dashboard serves, but how many nodes it sums (``cluster_snapshot``'s).
    assert set(figures) == SNAPSHOT_KEYS - {"summed_nodes"}
    assert figures["connections"] == 3
    assert figures["connections_by_transport"] == {"websocket": 1, "rawwebsocket": 1, "xhr": 1}
    assert (figures["users"], figures["channels"]) == (3, 2)
    assert (figures["messages_published"], figures["messages_delivered"]) == (2, 4)
    assert figures["busiest_channels"] == [
        {"channel": "news", "connections": 3},
        {"channel": "sport", "connections": 1},
    ]
    assert figures["nodes"] == []


@pytest.mark.config(max_unsent_bytes=64 * 1024)
async def test_a_slow_client_close_is_counted(server):
    reader, writer = await slow_socket(server.port, RawClient.handshake("/connect/websocket"))
    slow = RawClient(reader, writer)
    await slow.send(0x1, f"CONNECT slow:{KEY}".encode())
    await slow.send(0x1, b"SUBSCRIBE news")
    await server.settled(lambda: "slow" in server.hub.channel_users("news"))
    body = json.dumps("x" * 10_000)
    for _ in range(1000):  # 10 MB: far past what the kernel buffers and the limit
        server.hub.send_to_channel("news", body)
        if not server.hub.is_online("slow"):
            break
        await asyncio.sleep(0)
    await server.settled(lambda: not server.hub.is_online("slow"))

    samples = await scrape(server.url)
    closed = labelled(samples, "thunderpush_sessions_closed_total", "reason")
    assert closed == {"client_too_slow": 1}


@pytest.mark.config(max_connections_per_ip=2)
async def test_a_refused_connection_is_counted(server):
    first = await RawClient.open(server.port, "/connect/websocket")
    await RawClient.open(server.port, "/connect/websocket")
    # The third from the same address is refused before it is served.
    assert statuses(await exchange(server.port, request("GET", "/health", ""))) == [503]
    RawClient.close_all()
    await server.settled(lambda: server.door.open.total == 0)
    assert await first.closed()

    samples = await scrape(server.url)
    refused = labelled(samples, "thunderpush_connections_refused_total", "limit")
    assert refused == {"max_connections": 0, "max_connections_per_ip": 1}
    closed = labelled(samples, "thunderpush_sessions_closed_total", "reason")
    assert closed == {"ended": 2}


async def test_every_metric_is_documented(server):
    response = await AsyncHTTPClient().fetch(server.url + "/metrics")
    served = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(response.body.decode())
        if family.name.startswith("thunderpush_")
    }
    page = (Path(__file__).parent.parent / "docs" / "metrics.rst").read_text(encoding="utf-8")
    documented = set(re.findall(r"^``(thunderpush_\w+)``", page, re.MULTILINE))
    # The cluster's two are served only with a cluster (tests/test_health.py).
    assert documented == served | {"thunderpush_cluster_up", "thunderpush_cluster_nodes"}
