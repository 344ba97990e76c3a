"""A deliberately minimal server speaking just enough of Thunderpush's protocol.

Why it exists: to measure the load generator itself.  ``thunderpush-bench``
must not be the bottleneck, and the only way to show that is to point it at a
server faster than any real one.  This one does nothing but the happy path:
websocket upgrade, SockJS ``o``, ``CONNECT``/``SUBSCRIBE``, ``GET users/``,
``GET channels/<c>/`` and ``POST channels|users``, writing one pre-built frame
per delivery with ``transport.write``.  It checks no key, no secret, no channel
name, and must never be used for anything but calibration.

    python bench/ceiling_server.py -p 8090
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import resource
from typing import Any

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

users: dict[str, list[Connection]] = {}
channels: dict[str, list[Connection]] = {}


def text_frame(payload: bytes) -> bytes:
    """An unmasked server text frame."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + length.to_bytes(8, "big") + payload


def unmask(data: bytes, start: int, end: int, mask: bytes) -> bytes:
    length = end - start
    key = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
    return (int.from_bytes(data[start:end], "big") ^ key).to_bytes(length, "big")


def respond(status: int, body: Any) -> bytes:
    text = b"" if body is None else json.dumps(body).encode() + b"\n"
    return (
        f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(text)}\r\n\r\n"
    ).encode() + text


def deliver(targets: list[Connection], element: dict[str, str]) -> int:
    frame = text_frame(b"a" + json.dumps([element], separators=(",", ":")).encode())
    for connection in targets:
        connection.transport.write(frame)
    return len(targets)


_READ_BUFFER = memoryview(bytearray(65536))


class Connection(asyncio.BufferedProtocol):
    """An HTTP connection that either becomes a websocket or serves API calls.

    It reads into one shared buffer: asyncio's plain reads of 256 KiB each
    cost an mmap and a munmap (glibc), more than this server's real work.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.websocket = False
        self.userid = ""
        self.transport: Any = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_BUFFER[:nbytes]))

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.userid:
            users.pop(self.userid, None)
            for members in channels.values():
                if self in members:
                    members.remove(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer:
            used = self.websocket_frame() if self.websocket else self.http_request()
            if not used:
                return
            self.buffer = self.buffer[used:]

    def http_request(self) -> int:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return 0
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        length = int(headers.get("content-length", 0))
        if len(self.buffer) < end + 4 + length:
            return 0
        body = self.buffer[end + 4 : end + 4 + length]
        method, path = lines[0].split(" ")[:2]
        if path.endswith("/websocket"):
            accept = base64.b64encode(
                hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest()
            )
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + text_frame(b"o")
            )
            self.websocket = True
        else:
            self.transport.write(self.api(method, path.split("/")[4:-1], body))
        return end + 4 + length

    def api(self, method: str, parts: list[str], body: bytes) -> bytes:
        if parts == ["users"]:
            return respond(200, {"count": len(users)})
        kind, name = parts
        if method == "GET":
            return respond(200, {"users": [c.userid for c in channels.get(name, [])]})
        element = {"payload": body.decode()}
        if kind == "channels":
            element["channel"] = name
            return respond(200, {"count": deliver(channels.get(name, []), element)})
        return respond(200, {"count": deliver(users.get(name, []), element)})

    def websocket_frame(self) -> int:
        data = self.buffer
        if len(data) < 6:
            return 0
        length, start = data[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        end = start + 4 + length
        if len(data) < end:
            return 0
        if data[0] & 0x0F == 8:
            self.transport.close()
            return end
        for command in json.loads(unmask(data, start + 4, end, data[start : start + 4])):
            verb, _, argument = command.partition(" ")
            if verb == "CONNECT":
                self.userid = argument.split(":")[0]
                users.setdefault(self.userid, []).append(self)
            elif verb == "SUBSCRIBE":
                for channel in argument.split(":"):
                    channels.setdefault(channel, []).append(self)
        return end


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Connection, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--port", type=int, default=8090)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
