"""Connection limits at the front door: how many are open, in total and per address.

Every TCP connection the door accepts is counted until it closes, whoever
serves it by then: an ``HttpConnection`` until it closes or passes the
connection on, a websocket until ``connection_lost`` (``OpenWebSockets``
reports it), a connection handed to Tornado until its stream's file is closed
(``adapter.serve``'s ``on_close``).  Each hand-over is one synchronous step
that releases the old count and takes the new one.

A connection over ``max_connections`` or ``max_connections_per_ip`` is not
counted and not served: its first request head is answered 503 with
``Connection: close`` (``Refusal``).  One WARNING line per limit says so,
until the count drops below that limit again::

    if door.open.admits(ip):
        door.open.opened(ip)
        ...
        door.open.closed(ip)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from thunderpush.transports.door.answers import json_error
from thunderpush.transports.door.messages import closing_response

logger = logging.getLogger(__name__)

TOO_MANY_CONNECTIONS = json_error(503, "Too many connections.")

# A refused request head longer than this is not waited for (Tornado's head limit).
_MAX_HEAD = 64 * 1024
_END_OF_HEAD = b"\r\n\r\n"


class OpenConnections:
    """The open connections, in total and per IP address; 0 for a limit means none."""

    def __init__(self, most: int = 0, most_per_ip: int = 0) -> None:
        self.most = most
        self.most_per_ip = most_per_ip
        self.total = 0
        self._per_ip: dict[str, int] = {}
        # The limits a refusal was logged for, until the count drops below them.
        self._warned = False
        self._warned_ips: set[str] = set()
        # Connections refused, by the limit that refused them (for the metrics).
        self.refused = {"max_connections": 0, "max_connections_per_ip": 0}

    def from_ip(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def admits(self, ip: str) -> bool:
        """Whether one more connection from ``ip`` is within the limits (logged if not)."""
        if self.most and self.total >= self.most:
            self.refused["max_connections"] += 1
            if not self._warned:
                self._warned = True
                logger.warning(
                    "Refusing connections: %d are open (max_connections %d).",
                    self.total,
                    self.most,
                )
            return False
        if self.most_per_ip and self._per_ip.get(ip, 0) >= self.most_per_ip:
            self.refused["max_connections_per_ip"] += 1
            if ip not in self._warned_ips:
                self._warned_ips.add(ip)
                logger.warning(
                    "Refusing connections from %s: %d are open (max_connections_per_ip %d).",
                    ip,
                    self._per_ip[ip],
                    self.most_per_ip,
                    extra={"address": ip},
                )
            return False
        return True

    def opened(self, ip: str) -> None:
        self.total += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1

    def closed(self, ip: str) -> None:
        self.total -= 1
        left = self._per_ip[ip] - 1
        if left:
            self._per_ip[ip] = left
        else:
            del self._per_ip[ip]
        if self._warned and self.total < self.most:
            self._warned = False
        if self._warned_ips and left < self.most_per_ip:
            self._warned_ips.discard(ip)


class Refusal(asyncio.Protocol):
    """A connection over a limit: its first request head is answered 503, then it ends.

    Nothing of the request is served.  After the answer the connection is
    half-closed and what the client still sends is discarded, so that the
    kernel does not reset the connection (and the answer with it) over
    unread bytes; ``timeout`` seconds after it opened, it is cut off whatever
    the client does.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._transport: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._seen = b""
        self._read = 0
        self._answered = False

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        self._read += len(data)
        seen = self._seen + data
        if _END_OF_HEAD in seen:
            self._answered = True
            transport = self._transport
            transport.write(closing_response(TOO_MANY_CONNECTIONS))
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()  # TLS cannot half-close: close once the answer is out
        elif self._read > _MAX_HEAD:
            self._transport.abort()
        else:
            self._seen = seen[-3:]

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
