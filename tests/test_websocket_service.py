"""The websocket service alone: a Pusher socket needs no SockJS router.

``thunderpush.transports.websocket.service`` is what a server's websockets
share; here one is made by hand, with an app, and ``PusherUpgrade`` is served
behind the smallest door there is (a head read, then the upgrade target), so
nothing of sockjs-tornado is built.  The drain reaches the Pusher session
through the service alone.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from thunderpush.core.apps import Apps
from thunderpush.core.commands import Limits
from thunderpush.observe.drain import drain
from thunderpush.pusher.websocket import PusherUpgrade
from thunderpush.transports.door.messages import Request
from thunderpush.transports.websocket.service import ConnectionCounts, WebSocketService

from .support import KEY, SECRET

WAIT = 5.0


class _HeadOnly(asyncio.Protocol):
    """Reads one request head and hands the connection to ``upgrade``, as the front door does."""

    def __init__(self, upgrade: PusherUpgrade) -> None:
        self._upgrade = upgrade
        self._data = b""

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._data += data
        head, found, rest = self._data.partition(b"\r\n\r\n")
        if not found:
            return
        line, *lines = head.split(b"\r\n")
        method, target, _ = line.decode("latin-1").split(" ")
        values = dict(field.split(b":", 1) for field in lines)
        values = {name.strip().lower(): value.strip() for name, value in values.items()}
        peer = self._transport.get_extra_info("peername")
        assert PusherUpgrade.PATH.match(target.partition("?")[0])
        request = Request(method, target, values, peer)
        assert self._upgrade(self._transport, request, rest) is True


async def test_a_pusher_socket_is_served_and_drained_with_no_sockjs_router():
    service = WebSocketService()
    apps = Apps()
    apps.add(KEY, SECRET)
    upgrade = PusherUpgrade(service, apps, Limits())
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: _HeadOnly(upgrade), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    url = f"ws://127.0.0.1:{port}/app/{KEY}?protocol=7&client=js&version=8.4.0"
    try:
        async with connect(url) as ws:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert welcome["event"] == "pusher:connection_established"
            assert len(service.live_sessions) == 1 and len(service.sockets) == 1
            await ws.send(json.dumps({"event": "pusher:ping", "data": {}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["event"] == "pusher:pong"
            await drain(service, 0.0)
            error = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert error["event"] == "pusher:error" and error["data"]["code"] == 4200
            await asyncio.wait_for(ws.wait_closed(), WAIT)
            assert ws.close_code == 4200
        assert not service.live_sessions
        while service.sockets:
            await asyncio.sleep(0.01)
        stats = service.stats
        assert isinstance(stats, ConnectionCounts) and (stats.opened, stats.closed) == (1, 1)
        assert not apps.get(KEY).hub.is_online(welcome_user(welcome))
    finally:
        service.sockets.stop()
        listener.close()
        await listener.wait_closed()


def welcome_user(welcome: dict[str, Any]) -> str:
    """An anonymous Pusher connection is its socket id in the hub."""
    return json.loads(welcome["data"])["socket_id"]
