"""``AsyncClient``: the HTTP API from asyncio (FastAPI, aiohttp, Starlette...).

The same methods as ``Client``, awaited, over one kept connection of
asyncio's own streams (no dependency), calls in the order they were made::

    from thunderpush_client import AsyncClient

    async with AsyncClient("http://localhost:8000", "key", "secret") as thunderpush:
        await thunderpush.publish("news", {"title": "Hello"})

Calls made at once (``asyncio.gather``) share the connection: each waits for
the one before it to be answered.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from thunderpush_client import calls
from thunderpush_client.calls import Call, History
from thunderpush_client.errors import ThunderpushError, Unreachable, reason

T = TypeVar("T")

_MAX_HEAD = 64 * 1024
# What else ends a call with no answer: the network, the timeout, a head too long,
# a peer that does not speak HTTP.
_FAILURES = (OSError, asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError, ThunderpushError)


class AsyncClient:
    """``Client``'s methods as coroutines: same arguments, values and errors."""

    def __init__(self, url: str, key: str, secret: str, timeout: float = 10.0) -> None:
        self.target = calls.target(url, key)
        self.secret = secret
        self.timeout = timeout
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._turn = asyncio.Lock()

    async def publish(self, channel: str, message: Any) -> int:
        return await self.call(calls.publish(channel, message))

    async def send_to_user(self, user: str, message: Any) -> int:
        return await self.call(calls.send_to_user(user, message))

    async def batch(self, items: Iterable[Mapping[str, Any]]) -> list[int]:
        return await self.call(calls.batch(items))

    async def disconnect(self, user: str) -> None:
        return await self.call(calls.disconnect(user))

    async def user_count(self) -> int:
        return await self.call(calls.user_count())

    async def is_online(self, user: str) -> bool:
        return await self.call(calls.is_online(user))

    async def channel_users(self, channel: str) -> list[str]:
        return await self.call(calls.channel_users(channel))

    async def channel_counts(self, prefix: str = "") -> dict[str, int]:
        return await self.call(calls.channel_counts(prefix))

    async def user_channels(self, user: str) -> list[str]:
        return await self.call(calls.user_channels(user))

    async def history(self, channel: str, since: int | None = None) -> History:
        return await self.call(calls.history(channel, since))

    async def call(self, call: Call[T]) -> T:
        """Sends ``call`` on the kept connection (opened if need be); its value.

        A kept connection the server closed meanwhile (its idle timeout) fails
        before any answer: the call is sent once more, on a new connection.
        """
        async with self._turn:
            reused = self._streams is not None
            try:
                status, body = await asyncio.wait_for(self._exchange(call), self.timeout)
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                await self.close()
                if not reused:
                    raise Unreachable(self.target.url, reason(error)) from None
                status, body = await self._again(call)
            except _FAILURES as error:
                await self.close()
                raise Unreachable(self.target.url, reason(error)) from None
        return calls.answer(call, status, body)

    async def _again(self, call: Call[Any]) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._exchange(call), self.timeout)
        except (*_FAILURES, ConnectionError, asyncio.IncompleteReadError) as error:
            await self.close()
            raise Unreachable(self.target.url, reason(error)) from None

    async def _exchange(self, call: Call[Any]) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await self._connect()
        reader, writer = self._streams
        writer.write(self._request(call))
        await writer.drain()
        status, fields = await _head(reader)
        if call.method == "HEAD" or status in (204, 304):
            body = b""
        elif "content-length" in fields:
            body = await reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            body = await _chunks(reader)
        else:
            body = await reader.read()  # ends with the connection
            fields["connection"] = "close"
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    def _request(self, call: Call[Any]) -> bytes:
        target = self.target
        lines = [
            f"{call.method} {target.prefix}{call.path} HTTP/1.1",
            f"Host: {target.host}:{target.port}",
            *(f"{name}: {value}" for name, value in calls.headers(self.secret, call).items()),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + (call.body or b"")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        secure = ssl.create_default_context() if self.target.scheme == "https" else None
        return await asyncio.open_connection(
            self.target.host, self.target.port, ssl=secure, limit=_MAX_HEAD
        )

    async def close(self) -> None:
        """Closes the kept connection; the next call opens another."""
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()
            try:
                await streams[1].wait_closed()
            except OSError:
                pass  # already reset by the server: closed all the same

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status and the header fields (lowercase names) of an answer."""
    status_line = await reader.readuntil(b"\r\n")
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ThunderpushError(None, f"Not an HTTP answer: {status_line[:80]!r}")
    fields: dict[str, str] = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(parts[1]), fields


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (a proxy may send one), trailers skipped."""
    body = bytearray()
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass
    return bytes(body)
