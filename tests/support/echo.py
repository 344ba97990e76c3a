"""An echo websocket on the front door, for conformance tests (never a production path).

Autobahn's fuzzing client (``bench/autobahn.py``) and the byte-exact tests in
``tests/test_websocket_conformance.py`` need a server that sends every
message back; Thunderpush's own endpoints answer commands instead.  This
serves ``ECHO_PATH`` through the same parts as every websocket of the server:
the front door parses the request and hands it to the upgrade for
``ECHO_PATH`` it is given before the server's own, the handshake is
answered by ``thunderpush.transports.websocket.handshake.serve_upgrade`` (origins included),
and frames are read and written by ``thunderpush.transports.websocket.socket.WebSocket``.
Only ``on_message`` differs: the message goes back as it came, an empty one
included.  Every other request is served as by the real server::

    async with echo_server() as door:
        ...  # ws://127.0.0.1:{door.port}/echo
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from thunderpush.config import Config
from thunderpush.server.application import build
from thunderpush.transports.door.frontdoor import FrontDoor
from thunderpush.transports.door.messages import Request
from thunderpush.transports.sockjs.websockets import RAW_FRAMES
from thunderpush.transports.websocket.handshake import serve_upgrade
from thunderpush.transports.websocket.socket import WebSocket

from . import KEY, SECRET

ECHO_PATH = "/echo"


class EchoWebSocket(WebSocket):
    """Sends each message back, text as text and binary as binary; has no session."""

    __slots__ = ()

    name = "echo"
    frames = RAW_FRAMES

    def open_session(self) -> None:
        pass

    def on_message(self, message: str | bytes) -> None:
        self.send_pack(message, isinstance(message, bytes))


def echo_upgrade(router: Any) -> Callable[[Any, Request, bytes], bool]:
    """The upgrade that serves ``ECHO_PATH`` with an ``EchoWebSocket``."""

    service = router.service

    def upgrade(transport: Any, request: Request, rest: bytes) -> bool:
        handshake = serve_upgrade(
            service, transport, request, rest, lambda h, rest: EchoWebSocket(service, h, rest)
        )
        return handshake is not None and handshake.accepted

    return upgrade


@asynccontextmanager
async def echo_server(port: int = 0, **settings: Any) -> AsyncIterator[FrontDoor]:
    """The server ``build`` makes, behind a door with ``ECHO_PATH`` on ``port`` of 127.0.0.1."""
    config = replace(Config(apikey=KEY, apisecret=SECRET), **settings)
    built = build(config)
    door = FrontDoor(
        config,
        built.door.http,
        built.door.endpoints,
        [(re.compile(f"{ECHO_PATH}$"), echo_upgrade(built.router)), *built.door.upgrades],
        built.router.service.sockets,
    )
    await door.listen(port, "127.0.0.1")
    try:
        yield door
    finally:
        door.stop()
        built.router.close_all(3000, "Over.")
        for socket in list(door.sockets):
            socket._abort()
        await door.close_all_connections()
        built.apps.disconnect_all()
        await built.stop()
