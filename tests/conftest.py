"""Fixtures and hooks only: what the tests import is in ``tests/support/``.

The fixtures: a running server (in-process, ``server``, or as a real process,
``server_process``), the transports clients can take, Redis (registered here
from ``support.cluster``), in-loop cluster nodes on it (``nodes``) and a
webhook receiver (``receiver``).  Every test also checks the log: nothing a
client sends may produce a traceback or an ERROR line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from thunderpush.core.apps import Apps

from .support.clients import CLIENTS, SOCKJS_CLIENTS, SockJSClient
from .support.cluster import (  # noqa: F401 - fixtures, registered for every test
    fresh_redis,
    fresh_redis_cluster,
    fresh_shards,
    redis_cluster,
    redis_server,
    second_redis,
)
from .support.processes import start_server_process
from .support.served import nodes, serving  # noqa: F401 - nodes: a fixture, registered
from .support.webhooks import Receiver

# The fixtures that start a process (redis-server, a Redis Cluster, thunderpush):
# a test that takes one, directly or through another fixture, is ``slow``.
PROCESS_FIXTURES = frozenset({"redis_server", "second_redis", "redis_cluster", "server_process"})


def _loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        import uvloop
    except ImportError:  # the ``uvloop`` extra is not installed: its tests are skipped
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


LOOPS = _loop_factories()


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item):
    """asyncio's loop for every test; a test marked
    ``@pytest.mark.asyncio(loop_factories=["asyncio", "uvloop"])`` runs on each
    (skipped on uvloop where it is not installed)."""
    marker = item.get_closest_marker("asyncio")
    if marker is not None and "loop_factories" in marker.kwargs:
        return LOOPS
    return {"asyncio": asyncio.new_event_loop}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "config(**settings): Config fields of the test's ``server`` (e.g. timeouts)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks ``slow`` every test that needs a process started for it (tox.ini: the
    Pythons other than the oldest and the newest run without them)."""
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def apps() -> Apps | None:
    """The apps the ``server`` fixture serves; None: ``KEY``/``SECRET`` on the in-memory backend.

    A test module overrides this fixture to run the server on another backend.
    """
    return None


@pytest.fixture
async def server(request, apps):
    # ``@pytest.mark.config(head_timeout=0.2)`` changes the settings it is built with.
    marker = request.node.get_closest_marker("config")
    async with serving(marker.kwargs if marker is not None else {}, apps) as running:
        yield running


@pytest.fixture(params=CLIENTS, ids=lambda kind: kind.transport)
def transport(request) -> type[SockJSClient]:
    """Every transport a Python client can drive: websocket, raw, xhr, xhr_streaming."""
    return request.param


@pytest.fixture(params=SOCKJS_CLIENTS, ids=lambda kind: kind.transport)
def sockjs_transport(request) -> type[SockJSClient]:
    """The SockJS-framed transports (not the raw websocket)."""
    return request.param


@pytest.fixture(autouse=True)
def no_tracebacks(caplog):
    """Fails a test whose server logged an error or a traceback."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    bad = [
        record
        for record in caplog.get_records("call") + caplog.get_records("teardown")
        if record.exc_info or record.levelno >= logging.ERROR
    ]
    assert not bad, [record.getMessage() for record in bad]


@pytest.fixture
def server_process(tmp_path):
    running = start_server_process(tmp_path)
    yield running
    if running.proc.poll() is None:
        running.stop()


@pytest.fixture
async def receiver():
    """A webhook receiver, listening (``support.webhooks.Receiver``)."""
    receiver = Receiver()
    receiver.listen()
    yield receiver
    await receiver.close()
