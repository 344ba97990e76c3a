"""One webhook POST over asyncio streams: the status line is all it reads.

Its own few lines rather than an HTTP client library so that a POST cancelled
at shutdown is simply gone (its socket closed in ``finally``), leaving no
request behind that would finish, or fail, after the loop stops.  Each POST
has a connection of its own (``Connection: close``).  ``user:password@`` in the
URL is sent as basic authentication.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from urllib.parse import unquote, urlsplit

# The longest status line read; a receiver's longer line is a failure.
MAX_STATUS_LINE = 1024


async def post(url: str, headers: dict[str, str], body: bytes, timeout: float) -> str | None:
    """POSTs ``body`` to the http(s) ``url``; None if answered 2xx within ``timeout``
    seconds, else why not, in a few words."""
    try:
        status = await asyncio.wait_for(_exchange(url, headers, body), timeout)
    except asyncio.TimeoutError:
        return f"no answer within {timeout:g} s"
    except (OSError, ValueError, UnicodeError) as error:
        return str(error) or type(error).__name__
    if status is None:
        return "not an HTTP answer"
    return None if 200 <= status < 300 else f"status {status}"


async def _exchange(url: str, headers: dict[str, str], body: bytes) -> int | None:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {parts.netloc.rpartition('@')[2]}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        lines.append(f"Authorization: Basic {base64.b64encode(credentials.encode()).decode()}")
    reader, writer = await asyncio.open_connection(
        host,
        parts.port or (443 if secure else 80),
        ssl=ssl.create_default_context() if secure else None,
        limit=MAX_STATUS_LINE,
    )
    try:
        writer.write("\r\n".join([*lines, "", ""]).encode("latin-1") + body)
        await writer.drain()
        return _status(await reader.readline())
    finally:
        writer.close()


def _status(line: bytes) -> int | None:
    """The code of a status line such as ``HTTP/1.1 204 No Content``."""
    words = line.split(None, 2)
    if len(words) >= 2 and words[0].startswith(b"HTTP/") and words[1].isdigit():
        return int(words[1])
    return None
