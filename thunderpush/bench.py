"""``thunderpush bench``: a load generator for sizing a Thunderpush deployment.

It opens N SockJS websocket connections (``CONNECT`` + ``SUBSCRIBE``),
publishes through the HTTP API and reports deliveries per second, messages
lost, publish-to-receive latency (at full speed and at a fixed rate),
connection setup rate and, given the server's PID, server CPU per delivery and
memory per idle connection.  It only talks to the one address it is given.

Why it is written the way it is: a load generator that is slower than the
server measures itself, and on a 2-core machine it has one core.  Tornado's
clients are far too heavy for that (``AsyncHTTPClient``: 331 us of CPU per
publish), so both clients parse the wire format themselves.  The websocket
sessions are plain sockets in an epoll set that a single asyncio reader drains
(``Receiver``); deliveries are counted with ``bytes.count`` of a marker in each
frame, and JSON is parsed only on a sample of connections, where latency is
measured.  Opening and publishing are driven by callbacks (``Opener``,
``Publisher``), with no task or future per connection or request.  On the
machine of bench/RESULTS.md it opens about 20,000 connections/s, receives about
200,000 deliveries/s sent one frame each, and publishes about 68,000 requests/s,
on one core.  It reports its own CPU beside the server's and warns when it was
near 100%.

Example::

    thunderpush bench --url http://127.0.0.1:8080 --key key --secret secret \\
        --scenario fanout --connections 2000 --messages 100 --server-pid 1234
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import errno
import gc
import hashlib
import json
import math
import os
import random
import re
import resource
import select
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

SCENARIOS = ("fanout", "users", "publish", "idle")

# Every delivery element starts with this; inside the payload string every
# quote is escaped, so the marker cannot occur there.  Counting it is far
# cheaper than parsing the frame.
MARKER = b'{"payload":'

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT_FIN = 0x81  # FIN + text opcode: the frame almost every delivery comes in
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING = 0, 1, 2, 8, 9

# The bench CPU share above which its figures may describe the bench itself.
SATURATED_PERCENT = 90.0
PROGRESS_SECONDS = 2.0
POLL_SECONDS = 0.002
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A run that cannot go on: unreachable server, refused key, timeout."""


# -- websocket client ---------------------------------------------------------


class Tally:
    """What every websocket client reports to: deliveries, latencies, closes.

    One shared object rather than per-connection counters, so that reading
    the total while draining costs the same for 10 or 10,000 connections.
    """

    __slots__ = ("received", "latencies", "unexpected_closes", "close_codes", "errors")

    def __init__(self) -> None:
        self.received = 0
        self.latencies: list[float] = []
        self.unexpected_closes = 0
        self.close_codes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()


def ws_frame(payload: bytes, opcode: int = _OP_TEXT) -> bytes:
    """One masked client frame (RFC 6455 requires clients to mask)."""
    mask = random.randbytes(4)  # a load generator needs no unpredictable mask
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return header + mask + masked


def _accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())


class Receiver:
    """Every websocket socket in one epoll set, drained by one asyncio reader.

    A readable socket costs one dict lookup, one ``recv`` and the frame walk,
    instead of asyncio's selector key, Handle, transport and protocol calls.
    Receive cost per delivery, one frame per read (measured on the 2-core
    machine of bench/RESULTS.md, sender's send included): asyncio Protocol
    18.7 us, of which 12 us is its 256 KiB ``recv`` (see ``RECV_SIZE``); with
    64 KiB reads 5.9 us; this receiver 4.3 us.
    """

    # Sockets handled per callback: bounded so that the publisher and the
    # timers get their turn on a busy loop.
    BATCH = 1024
    # How many unsampled sockets may be read before the sampled ones are
    # checked again: what bounds the bench's own share of measured latency.
    CHUNK = 32
    # Not asyncio's 256 KiB: a bytes object that large is above glibc's mmap
    # threshold, and the mmap/munmap around every recv cost 12 us (measured).
    RECV_SIZE = 65536

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        if not hasattr(select, "epoll"):
            raise BenchError("thunderpush bench needs Linux (epoll, /proc)")
        self.loop = loop
        self.readers: dict[int, tuple[Callable[[int], bytes], WSClient]] = {}
        # Sampled sockets (latency) live in their own set, read first and
        # between chunks of the others, so that they never wait behind a
        # thousand sockets whose only job is to be counted.
        self.sampled = select.epoll()
        self.others = select.epoll()
        loop.add_reader(self.sampled.fileno(), self._ready_sampled)
        loop.add_reader(self.others.fileno(), self._ready)

    def add(self, client: WSClient, connecting: bool) -> None:
        """Watches a socket; ``connecting``: also for writability (connect done)."""
        fd = client.sock.fileno()
        self.readers[fd] = (client.sock.recv, client)
        events = select.EPOLLIN | (select.EPOLLOUT if connecting else 0)
        (self.sampled if client.sampled else self.others).register(fd, events)

    def connected(self, client: WSClient) -> None:
        """The connect has finished: from now on, only reads matter."""
        epoll = self.sampled if client.sampled else self.others
        epoll.modify(client.sock.fileno(), select.EPOLLIN)

    def remove(self, client: WSClient) -> None:
        fd = client.sock.fileno()
        if self.readers.pop(fd, None) is not None:
            (self.sampled if client.sampled else self.others).unregister(fd)

    def _ready_sampled(self) -> None:
        self._read(self.sampled.poll(0, self.BATCH))

    def _ready(self) -> None:
        events = self.others.poll(0, self.BATCH)
        chunk = self.CHUNK
        for start in range(0, len(events), chunk):
            self._read(self.sampled.poll(0, self.BATCH))
            self._read(events[start : start + chunk])

    def _read(self, events: list[tuple[int, int]]) -> None:
        readers = self.readers
        size = self.RECV_SIZE
        for fd, flags in events:
            reader = readers.get(fd)
            if reader is None:
                continue
            if flags & select.EPOLLOUT:
                reader[1].writable()
                continue
            try:
                data = reader[0](size)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as error:
                reader[1].lost(error)
                continue
            if data:
                reader[1].feed(data)
            else:
                reader[1].lost(None)

    def close(self) -> None:
        for epoll in (self.sampled, self.others):
            self.loop.remove_reader(epoll.fileno())
        for _, client in list(self.readers.values()):
            client.close()
        self.sampled.close()
        self.others.close()


class WSClient:
    """A SockJS websocket session: handshake, ``o``, one hello, then counting.

    Server frames are unmasked; the parser walks them by index without copying
    and only leaves the fast path for control frames, fragments, SockJS
    frames other than ``a[...]``, and sampled connections.
    """

    __slots__ = (
        "tally",
        "receiver",
        "sock",
        "request",
        "key",
        "hello",
        "sampled",
        "on_open",
        "is_open",
        "head",
        "upgraded",
        "fast",
        "pending",
        "pending_size",
        "need",
        "fragments",
        "closing",
    )

    def __init__(
        self,
        tally: Tally,
        receiver: Receiver,
        host: str,
        path: str,
        hello: bytes,
        sampled: bool,
        on_open: Callable[[WSClient, str | None], None],
    ) -> None:
        self.tally = tally
        self.receiver = receiver
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.key = base64.b64encode(random.randbytes(16))
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.hello = ws_frame(hello)
        self.sampled = sampled
        # Called once: (self, None) when the session is open and the hello
        # sent, (self, reason) when it could not open.
        self.on_open: Callable[[WSClient, str | None], None] | None = on_open
        self.is_open = False
        self.head = b""
        self.upgraded = False
        self.fast = False
        self.pending: list[bytes] | None = None
        self.pending_size = 0
        self.need = 0
        self.fragments: list[bytes] | None = None
        self.closing = False

    def connect(self, address: tuple[str, int]) -> None:
        """Starts connecting; the receiver calls ``writable`` when it is done."""
        error = self.sock.connect_ex(address)
        if error not in (0, errno.EINPROGRESS):
            raise OSError(error, os.strerror(error))
        self.receiver.add(self, connecting=error != 0)
        if error == 0:
            self.send(self.request)

    def writable(self) -> None:
        """The connect finished (or failed): send the upgrade request."""
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._fail(f"connect: {os.strerror(error)}")
            return
        self.receiver.connected(self)
        self.send(self.request)

    def _report_open(self, error: str | None) -> None:
        callback, self.on_open = self.on_open, None
        if callback is not None:
            callback(self, error)

    def send(self, data: bytes) -> None:
        """Writes a small frame; the rare partial write finishes in the background."""
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            self.lost(error)
            return
        if sent < len(data):
            task = asyncio.ensure_future(self.receiver.loop.sock_sendall(self.sock, data[sent:]))
            task.add_done_callback(_retrieve)

    def lost(self, error: Exception | None) -> None:
        """The server closed the socket (or it broke)."""
        if not self.is_open:
            self._report_open(str(error or "closed before the session opened"))
        elif not self.closing:
            self.tally.unexpected_closes += 1
        self.close()

    def feed(self, data: bytes) -> None:
        """Everything ``recv`` returned, in order."""
        if self.pending is not None:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size < self.need:
                return
            data = b"".join(self.pending)
            self.pending = None
        if self.upgraded:
            self._frames(data)
        else:
            self._handshake(data)

    # parsing

    def _handshake(self, data: bytes) -> None:
        head = self.head + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > 65536:
                self._fail("handshake response too long")
            self.head = head
            return
        self.head = b""
        lines = head[:end].split(b"\r\n")
        accept = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                accept = value.strip()
        if lines[0][9:12] != b"101" or accept != _accept_key(self.key):
            self._fail(f"handshake refused: {lines[0][:60].decode('latin-1')}")
            return
        self.upgraded = True
        if len(head) > end + 4:
            self._frames(head[end + 4 :])

    def _frames(self, data: bytes) -> None:
        """Walks the complete frames in ``data``; keeps a partial one for later."""
        size = len(data)
        pos = 0
        count = 0
        need = 0
        while pos < size:
            if size - pos < 2:
                need = 2
                break
            first = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length > 125:
                if length > 127:
                    self._fail("masked frame from the server")
                    return
                start = pos + (4 if length == 126 else 10)
                if start > size:
                    need = start - pos
                    break
                length = int.from_bytes(data[pos + 2 : start], "big")
            end = start + length
            if end > size:
                need = end - pos
                break
            if first == _TEXT_FIN and self.fast:
                count += data.count(MARKER, start, end)
            else:
                count += self._frame(first, data[start:end])
                if self.closing:
                    break
            pos = end
        if count:
            self.tally.received += count
        if pos < size and need:
            self.pending = [data[pos:]]
            self.pending_size = size - pos
            self.need = need

    def _frame(self, first: int, payload: bytes) -> int:
        """The slow path: any frame but an unfragmented text frame when counting."""
        opcode = first & 0x0F
        fin = first & 0x80
        if opcode == _OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.tally.close_codes[f"ws {code}"] += 1
            self._close_with(ws_frame(payload[:2], _OP_CLOSE))
            return 0
        if opcode == _OP_PING:
            self.send(ws_frame(payload, 0xA))
            return 0
        if opcode in (_OP_TEXT, _OP_BINARY):
            if not fin:
                self.fragments = [payload]
                return 0
            return self._message(payload)
        if opcode == _OP_CONT and self.fragments is not None:
            self.fragments.append(payload)
            if not fin:
                return 0
            message = b"".join(self.fragments)
            self.fragments = None
            return self._message(message)
        return 0  # pong, or a stray continuation: nothing to count

    def _message(self, text: bytes) -> int:
        """One SockJS frame: ``o``, ``h``, ``a[...]`` or ``c[code,"reason"]``."""
        kind = text[:1]
        if kind == b"a":
            if self.sampled:
                self._sample(text)
            return text.count(MARKER)
        if kind == b"o" and not self.is_open:
            self.send(self.hello)
            self.is_open = True
            self.fast = not self.sampled
            self._report_open(None)
        elif kind == b"c":
            try:
                code = json.loads(text[1:])[0]
            except (ValueError, IndexError, TypeError):
                code = "?"
            self.tally.close_codes[f"sockjs {code}"] += 1
        return 0

    def _sample(self, text: bytes) -> None:
        """Publish-to-receive latency of each delivery, from its ``t`` field."""
        now = time.perf_counter()
        latencies = self.tally.latencies
        try:
            for element in json.loads(text[1:]):
                latencies.append(now - json.loads(element["payload"])["t"])
        except (ValueError, KeyError, TypeError):
            self.tally.errors["unparsable delivery"] += 1

    # closing

    def _fail(self, reason: str) -> None:
        if self.is_open:
            self.tally.errors[reason] += 1
        else:
            self._report_open(reason)
        self.close()

    def _close_with(self, frame: bytes) -> None:
        self.send(frame)
        self.close()

    def fail(self, reason: str) -> None:
        """Gives up on this connection (a timeout, say)."""
        self._fail(reason)

    def close(self) -> None:
        """Ends the connection (when the bench does it, not counted as unexpected).

        The fd is closed on the next loop turn: closed now, its number could be
        reused by a new socket while events for the old one are still being
        dispatched.
        """
        if self.closing:
            return
        self.closing = True
        self.receiver.remove(self)
        self.receiver.loop.call_soon(self.sock.close)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


# -- HTTP client --------------------------------------------------------------


Answer = Callable[[int, bytes], None]


class HTTPClient(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection to the API, one request at a time.

    Much cheaper per request than ``AsyncHTTPClient``: the request head is a
    format string, the response parser handles only what the API sends (a
    status line, headers, a ``Content-Length`` body), and the answer goes to a
    plain callback, so that a publisher can send its next request from there
    without a Future or a task switch.  It reads into a reused buffer
    (``BufferedProtocol``) because asyncio's plain ``recv`` of 256 KiB costs an
    mmap per response.
    """

    __slots__ = ("host", "secret", "transport", "buffer", "view", "answer", "started", "lost")

    def __init__(self, host: str, secret: str) -> None:
        self.host = host
        self.secret = secret
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.view = memoryview(bytearray(65536))
        self.answer: Answer | None = None
        self.started = 0.0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._answer(0, b"API connection closed")

    def head(self, method: str, path: str, length: int | None) -> bytes:
        """The request head; ``length`` None means no body."""
        body = (
            ""
            if length is None
            else f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        )
        return (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"X-Thunder-Secret-Key: {self.secret}\r\n{body}\r\n"
        ).encode()

    def send(self, data: bytes, answer: Answer) -> None:
        """Sends a whole request; ``answer(status, body)`` gets the response.

        A failure (connection lost, timeout) is answered with status 0 and the
        reason as body.
        """
        if self.lost:
            answer(0, b"API connection closed")
            return
        self.answer = answer
        self.started = time.monotonic()
        self.transport.write(data)  # type: ignore[union-attr]

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """``send`` for code that awaits: (status, body), or ConnectionError."""
        future = asyncio.get_running_loop().create_future()

        def answer(status: int, body: bytes) -> None:
            if future.done():
                return
            if status:
                future.set_result((status, body))
            else:
                future.set_exception(ConnectionError(body.decode()))

        self.send(data, answer)
        return future

    def _answer(self, status: int, body: bytes) -> None:
        answer, self.answer = self.answer, None
        if answer is not None:
            answer(status, body)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self.view[:nbytes])
        buffer = self.buffer + data if self.buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return
        head = buffer[:end].lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(buffer) < total:
            self.buffer = buffer
            return
        self.buffer = buffer[total:]
        self._answer(int(buffer[9:12]), buffer[end + 4 : total])

    def expire(self, timeout: float) -> None:
        """Fails a request that has waited longer than ``timeout`` seconds."""
        if self.answer is not None and time.monotonic() - self.started > timeout:
            self._answer(0, b"API request timed out")
            self.transport.abort()  # type: ignore[union-attr]


def api_count(body: bytes) -> int:
    """``count`` of a publish answer; the API's own format is read without json."""
    if body.startswith(b'{"count": '):
        end = body.find(b"}")
        if body[10:end].isdigit():
            return int(body[10:end])
    return int(json.loads(body)["count"])


# -- measurements -------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB, from ``/proc/PID/status``."""
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, Any]:
    """p50/p95/p99/max (nearest rank), scaled (seconds to ms by default)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "samples": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * scale, 3)

    return {
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "max": round(ordered[-1] * scale, 3),
        "samples": len(ordered),
    }


class Meter:
    """Wall time and CPU (ours, and the server's when its PID is known) of a phase."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.wall = time.perf_counter()
        self.own = own_cpu_seconds()
        self.server = self._server_cpu()

    def _server_cpu(self) -> float | None:
        if self.server_pid is None:
            return None
        try:
            return proc_cpu_seconds(self.server_pid)
        except OSError:
            return None

    def stop(self, work: int, unit: str, end: float | None = None) -> dict[str, Any]:
        """CPU figures for ``work`` units (deliveries or requests) done in the phase."""
        seconds = max((end or time.perf_counter()) - self.wall, 1e-9)
        own = own_cpu_seconds() - self.own
        result: dict[str, Any] = {
            "seconds": round(seconds, 4),
            "bench_cpu_s": round(own, 3),
            "bench_cpu_percent": round(100 * own / seconds, 1),
        }
        server = self._server_cpu()
        if server is not None and self.server is not None:
            used = server - self.server
            result["server_cpu_s"] = round(used, 3)
            result["server_cpu_percent"] = round(100 * used / seconds, 1)
            result[f"server_cpu_us_per_{unit}"] = round(1e6 * used / work, 2) if work else None
        return result


# -- opening and publishing ------------------------------------------------------


class Opener:
    """Opens N sessions with at most ``concurrency`` handshakes in flight.

    Each finished handshake starts the next one from its callback: no task and
    no future per connection, which matters at 10,000 connections/s.  Limiting
    handshakes in flight keeps the server's accept backlog from overflowing (a
    1 s SYN retry measures nothing useful).
    """

    def __init__(self, bench: Bench, receiver: Receiver, n: int, sample: int) -> None:
        self.bench = bench
        self.receiver = receiver
        self.indices = iter(range(n))
        self.step = max(1, n // sample) if sample > 0 else 0
        self.sample = sample
        self.in_flight: dict[WSClient, float] = {}
        self.failures: Counter[str] = Counter()
        self.failed = 0
        self.max_failures = max(10, n // 100)
        self.done: asyncio.Future[None] = receiver.loop.create_future()

    def start(self, concurrency: int) -> asyncio.Future[None]:
        for _ in range(concurrency):
            self._next()
        return self.done

    def _next(self) -> None:
        if self.failed < self.max_failures:
            index = next(self.indices, None)
            if index is not None:
                self._open(index)
                return
        if not self.in_flight and not self.done.done():
            self.done.set_result(None)

    def _open(self, index: int) -> None:
        bench = self.bench
        sampled = self.step > 0 and index % self.step == 0 and index // self.step < self.sample
        path = f"/connect/{index % 1000:03d}/{bench.user_prefix}{index}/websocket"
        client = WSClient(
            bench.tally,
            self.receiver,
            bench.host_header,
            path,
            bench.hello(index),
            sampled,
            self._opened,
        )
        self.in_flight[client] = time.monotonic()
        try:
            client.connect((bench.host, bench.port))
        except OSError as error:
            # Reported on the next turn: refusals can come in a row, and
            # handling them here would recurse once per connection.
            self.receiver.loop.call_soon(self._opened, client, str(error))

    def _opened(self, client: WSClient, error: str | None) -> None:
        if self.in_flight.pop(client, None) is None:
            return
        if error is None:
            self.bench.clients.append(client)
        else:
            self.failures[error] += 1
            self.failed += 1
            client.close()
        self._next()

    def expire(self, timeout: float) -> None:
        """Fails the handshakes that have taken longer than ``timeout`` seconds."""
        now = time.monotonic()
        for client, started in list(self.in_flight.items()):
            if now - started > timeout:
                client.fail("timed out opening")


class Publisher:
    """Publishes on one API connection: each answer sends the next request.

    Callbacks rather than a coroutine, so that a request costs no Future and
    no task switch; ``pace(seq)`` says how long to wait first (None: stop).
    """

    def __init__(
        self,
        bench: Bench,
        client: HTTPClient,
        seqs: Iterator[int],
        phase: Phase,
        pace: Callable[[int], float | None],
    ) -> None:
        self.bench = bench
        self.client = client
        self.seqs = seqs
        self.phase = phase
        self.pace = pace
        self.expected = 0
        self.started = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def next(self) -> None:
        """Sends the next message now or after its pause, or finishes."""
        seq = next(self.seqs, None)
        wait = None if seq is None else self.pace(seq)
        if wait is None:
            if not self.done.done():
                self.done.set_result(None)
        elif wait > 0:
            self.done.get_loop().call_later(wait, self.send, seq)
        else:
            self.send(seq)  # type: ignore[arg-type]

    def send(self, seq: int) -> None:
        bench = self.bench
        path, self.expected = bench.target(seq)
        body = bench.body(seq)
        head = self.client.head("POST", bench.api_prefix + path, len(body))
        self.started = time.perf_counter()
        self.client.send(head + body, self.answered)

    def answered(self, status: int, body: bytes) -> None:
        phase = self.phase
        if not status:
            phase.failed += 1
            self.bench.tally.errors[f"publish: {body.decode()}"] += 1
            if not self.done.done():
                self.done.set_result(None)
            return
        phase.request_times.append(time.perf_counter() - self.started)
        phase.statuses[status] += 1
        if status == 200:
            phase.published += 1
            phase.expected += self.expected
            phase.api_count += api_count(body)
        else:
            phase.failed += 1
        self.next()


# -- the run --------------------------------------------------------------------


@dataclass
class Phase:
    """Counters of one publishing phase."""

    name: str
    published: int = 0
    failed: int = 0
    api_count: int = 0
    expected: int = 0
    request_times: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)


class Bench:
    """One run of one scenario against one server."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        url = urlsplit(args.url)
        if url.scheme != "http" or not url.hostname:
            raise BenchError(f"--url must be http://HOST:PORT, not {args.url!r}")
        self.host = url.hostname
        self.port = url.port or 80
        self.host_header = url.netloc
        self.api_prefix = f"/api/1.0.0/{quote(args.key, safe='')}/"
        token = os.urandom(3).hex()
        self.channel = f"{args.channel}-{token}"
        self.user_prefix = f"bench-{token}-"
        self.tally = Tally()
        self.clients: list[WSClient] = []
        self.receiver: Receiver | None = None
        self.opener: Opener | None = None
        self.http: list[HTTPClient] = []
        self.warnings: list[str] = []
        self.status: Callable[[], str] = lambda: "starting"
        self.report: dict[str, Any] = {
            "scenario": args.scenario,
            "url": args.url,
            "connections": 0 if args.scenario == "publish" else args.connections,
        }

    # progress

    def say(self, text: str) -> None:
        if not self.args.quiet:
            print(f"[bench] {text}", file=sys.stderr, flush=True)

    async def progress(self) -> None:
        """Prints the current status every few seconds until cancelled."""
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            self.say(self.status())

    # API

    async def api_connect(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            _, client = await asyncio.wait_for(
                loop.create_connection(
                    lambda: HTTPClient(self.host_header, self.args.secret), self.host, self.port
                ),
                self.args.request_timeout,
            )
            self.http.append(client)

    async def api(self, method: str, path: str) -> tuple[int, Any]:
        """One small API call on the first HTTP connection (setup checks only)."""
        client = self.http[0]
        status, body = await asyncio.wait_for(
            client.request(client.head(method, self.api_prefix + path, None)),
            self.args.request_timeout,
        )
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, None

    async def watchdog(self) -> None:
        """Bounds every API request and handshake without a timer for each."""
        while True:
            await asyncio.sleep(0.5)
            for client in self.http:
                client.expire(self.args.request_timeout)
            if self.opener is not None:
                self.opener.expire(self.args.request_timeout)

    # connections

    def hello(self, index: int) -> bytes:
        user = f"{self.user_prefix}{index}"
        commands = [f"CONNECT {user}:{self.args.key}"]
        if self.args.scenario in ("fanout", "idle"):
            commands.append(f"SUBSCRIBE {self.channel}")
        return json.dumps(commands).encode()

    async def open_connections(self) -> None:
        """Opens N sessions (see ``Opener``); every one of them, or says why not."""
        n = self.args.connections
        self.receiver = Receiver(asyncio.get_running_loop())
        sample = 100 if self.args.sample is None else self.args.sample
        opener = self.opener = Opener(self, self.receiver, n, sample)
        self.status = lambda: f"opening: {len(self.clients)}/{n} open"
        await opener.start(min(self.args.open_concurrency, n))
        self.opener = None
        detail = ", ".join(f"{why} ({count})" for why, count in opener.failures.most_common(3))
        if opener.failed:
            self.warnings.append(f"{opener.failed} connections failed: {detail}")
        if not self.clients:
            raise BenchError(f"no connection could be opened: {detail}")

    async def verify_connections(self) -> bool:
        """Polls the API until the server lists every opened session (bounded)."""
        n = len(self.clients)
        deadline = time.monotonic() + 10 + n / 200
        count = 0
        while time.monotonic() < deadline:
            status, body = await self.api("GET", "users/")
            if status != 200:
                raise BenchError(f"GET users/ answered {status}: {body} (wrong key or secret?)")
            count = body["count"]
            if count >= n:
                break
            self.status = lambda count=count: f"waiting for the server: {count}/{n} users online"
            await asyncio.sleep(0.02)
        else:
            self.warnings.append(f"only {count} of {n} users online on the server")
            return False
        if self.args.scenario in ("fanout", "idle"):
            status, body = await self.api("GET", f"channels/{self.channel}/")
            listed = len(body["users"]) if status == 200 else 0
            if listed < n:
                self.warnings.append(f"only {listed} of {n} connections in {self.channel}")
                return False
        return True

    async def setup(self) -> None:
        """Opens the connections, checks them with the API, measures memory."""
        pid = self.args.server_pid
        rss_before = proc_rss_kib(pid) if pid else None
        meter = Meter(pid)
        await self.open_connections()
        verified = await self.verify_connections()
        figures = meter.stop(len(self.clients), "connection")
        self.report["setup"] = {
            "opened": len(self.clients),
            "verified": verified,
            "connections_per_s": round(len(self.clients) / figures["seconds"], 1),
            **figures,
        }
        self.say(
            f"setup: {len(self.clients)} connections in {figures['seconds']:.2f} s"
            f" ({self.report['setup']['connections_per_s']:.0f}/s)"
        )
        self.status = lambda: "setup done"
        if pid:
            await asyncio.sleep(self.args.settle)
            rss_after = proc_rss_kib(pid)
            self.report["memory"] = {
                "rss_before_kib": rss_before,
                "rss_after_kib": rss_after,
                "rss_per_connection_kib": round((rss_after - rss_before) / len(self.clients), 2),
            }
        # The connections live until the end: keep the cyclic GC off them.
        gc.collect()
        gc.freeze()

    # publishing

    def target(self, seq: int) -> tuple[str, int]:
        """API path of publish ``seq`` and how many deliveries it should make."""
        if self.args.scenario == "users":
            index = seq % len(self.clients)
            return f"users/{self.user_prefix}{index}/", 1
        if self.args.scenario == "fanout":
            return f"channels/{self.channel}/", len(self.clients)
        return f"channels/{self.channel}/", 0

    def body(self, seq: int) -> bytes:
        """The published JSON: sequence number, send time, optional padding."""
        body = b'{"seq": %d, "t": %.6f}' % (seq, time.perf_counter())
        short = self.args.size - len(body)
        if short > 10:
            body = b'{"seq": %d, "pad": "%s", "t": %.6f}' % (
                seq,
                b"x" * (short - 10),
                time.perf_counter(),
            )
        return body

    async def publish_phase(self, name: str, messages: int, rate: float | None) -> dict[str, Any]:
        """Publishes ``messages`` (at ``rate`` per second, or flat out), then drains."""
        phase = Phase(name)
        received_before = self.tally.received
        self.tally.latencies = []
        duration = self.args.duration if rate is None else None
        started = time.perf_counter()

        def pace(seq: int) -> float | None:
            now = time.perf_counter()
            if duration is not None and now - started > duration:
                return None
            return 0.0 if rate is None else started + seq / rate - now

        def status() -> str:
            got = self.tally.received - received_before
            return f"{name}: {phase.published}/{messages} published, {got} delivered"

        self.status = status
        meter = Meter(self.args.server_pid)
        seqs = iter(range(messages))
        publishers = [Publisher(self, client, seqs, phase, pace) for client in self.http]
        for publisher in publishers:
            publisher.next()
        await asyncio.gather(*(publisher.done for publisher in publishers))
        end = await self.drain(phase, received_before)
        delivered = self.tally.received - received_before
        unit = "request" if self.args.scenario == "publish" else "delivery"
        figures = meter.stop(phase.published if unit == "request" else delivered, unit, end)
        result = self.phase_report(phase, delivered, figures)
        if rate is not None:
            result["rate_target"] = rate
        return result

    async def drain(self, phase: Phase, received_before: int) -> float:
        """Waits for outstanding deliveries; returns when the last one arrived.

        Bounded: gives up once nothing has arrived for ``--drain`` seconds.
        """
        target = received_before + phase.expected
        last = self.tally.received
        last_change = time.perf_counter()
        while self.tally.received < target:
            await asyncio.sleep(POLL_SECONDS)
            now = time.perf_counter()
            if self.tally.received != last:
                last, last_change = self.tally.received, now
            elif now - last_change > self.args.drain:
                break
        return last_change if self.tally.received < target else time.perf_counter()

    def phase_report(self, phase: Phase, delivered: int, figures: dict[str, Any]) -> dict[str, Any]:
        seconds = figures["seconds"]
        result: dict[str, Any] = {
            "published": phase.published,
            "failed": phase.failed,
            "publish_per_s": round(phase.published / seconds, 1),
        }
        if self.args.scenario != "publish":
            result.update(
                expected=phase.expected,
                api_count=phase.api_count,
                delivered=delivered,
                lost=phase.expected - delivered,
                deliveries_per_s=round(delivered / seconds, 1),
                latency_ms=percentiles(self.tally.latencies),
            )
            if delivered > phase.expected:
                self.warnings.append(
                    f"{phase.name}: {delivered - phase.expected} more deliveries than expected"
                    " (duplicates?)"
                )
            if phase.api_count != phase.expected:
                self.warnings.append(
                    f"{phase.name}: the API reported {phase.api_count} deliveries,"
                    f" {phase.expected} expected"
                )
        result["request_ms"] = percentiles(phase.request_times)
        result.update(figures)
        if phase.statuses.keys() - {200}:
            result["statuses"] = {str(k): v for k, v in sorted(phase.statuses.items())}
        if figures["bench_cpu_percent"] >= SATURATED_PERCENT:
            self.warnings.append(
                f"{phase.name}: the bench used {figures['bench_cpu_percent']:.0f}% of a core;"
                " it may have been the bottleneck, so its figures are lower bounds"
            )
        return result

    async def idle_phase(self) -> dict[str, Any]:
        """Holds the connections open, idle, and measures what the server spends."""
        seconds = self.args.idle_seconds
        self.status = lambda: f"idle: holding {len(self.clients)} connections for {seconds} s"
        meter = Meter(self.args.server_pid)
        await asyncio.sleep(seconds)
        figures = meter.stop(len(self.clients), "connection")
        figures["unexpected_closes"] = self.tally.unexpected_closes
        return figures

    # the whole run

    async def run(self) -> dict[str, Any]:
        progress = asyncio.ensure_future(self.progress())
        watchdog = asyncio.ensure_future(self.watchdog())
        try:
            await self.api_connect(self.args.concurrency)
            await self.scenario()
        finally:
            progress.cancel()
            watchdog.cancel()
            gc.unfreeze()
            if self.receiver is not None:
                self.receiver.close()
            for http in self.http:
                if http.transport is not None:
                    http.transport.close()
        return self.finish()

    async def scenario(self) -> None:
        args = self.args
        name = args.scenario
        if name != "publish":
            await self.setup()
        if name == "idle":
            self.report["idle"] = await self.idle_phase()
            return
        messages = args.messages
        self.say(f"{name}: publishing {messages} messages flat out")
        self.report["full"] = await self.publish_phase("full speed", messages, None)
        if name != "publish" and args.rate > 0 and args.rate_messages > 0:
            self.say(f"{name}: publishing {args.rate_messages} messages at {args.rate}/s")
            self.report["rate"] = await self.publish_phase(
                f"{args.rate}/s", args.rate_messages, args.rate
            )

    def finish(self) -> dict[str, Any]:
        report = self.report
        lost = sum(abs(report.get(p, {}).get("lost", 0)) for p in ("full", "rate"))
        miscounted = any(
            report[p]["api_count"] != report[p]["expected"]
            for p in ("full", "rate")
            if "api_count" in report.get(p, {})
        )
        failed = sum(report.get(p, {}).get("failed", 0) for p in ("full", "rate"))
        setup = report.get("setup", {"verified": True, "opened": 0})
        report["unexpected_closes"] = self.tally.unexpected_closes
        report["close_codes"] = dict(self.tally.close_codes)
        report["errors"] = dict(self.tally.errors)
        if self.tally.unexpected_closes:
            self.warnings.append(f"{self.tally.unexpected_closes} connections closed by the server")
        report["warnings"] = self.warnings
        opened_all = self.args.scenario == "publish" or setup["opened"] == self.args.connections
        report["ok"] = bool(
            setup["verified"]
            and opened_all
            and not lost
            and not miscounted
            and not failed
            and not self.tally.unexpected_closes
        )
        return report


# -- command line ---------------------------------------------------------------


DEFAULT_MESSAGES = {"fanout": 100, "users": 5000, "publish": 5000, "idle": 0}
DEFAULT_CONCURRENCY = {"fanout": 4, "users": 8, "publish": 8, "idle": 1}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="thunderpush bench",
        description="Load generator for Thunderpush: fan-out, user sends, publish API, idle.",
    )
    add = parser.add_argument
    add("--url", default="http://127.0.0.1:8080", help="server address (only target)")
    add("--key", default="key", help="public API key (default: key)")
    add("--secret", default="secret", help="API secret (default: secret)")
    add("--scenario", choices=SCENARIOS, default="fanout")
    add("-n", "--connections", type=int, default=1000, help="websocket connections (default 1000)")
    add(
        "-m",
        "--messages",
        type=int,
        help="messages published flat out (default: fanout 100, users and publish 5000)",
    )
    add("--duration", type=float, help="stop publishing flat out after this many seconds")
    add(
        "--rate",
        type=float,
        default=5.0,
        help="messages/s of the fixed-rate phase; 0 skips it (default 5)",
    )
    add(
        "--rate-messages",
        type=int,
        default=50,
        help="messages of the fixed-rate phase (default 50)",
    )
    add(
        "-c",
        "--concurrency",
        type=int,
        help="API connections publishing at once (default: fanout 4, users and publish 8)",
    )
    add("--size", type=int, default=0, help="pad each published body to this many bytes")
    add(
        "--sample",
        type=int,
        help="connections whose deliveries are timed (default 100)",
    )
    add("--open-concurrency", type=int, default=100, help="handshakes in flight (default 100)")
    add("--channel", default="bench", help="channel name prefix")
    add("--idle-seconds", type=float, default=2.0, help="how long the idle scenario holds")
    add("--settle", type=float, default=0.5, help="seconds before reading the server's RSS")
    add("--drain", type=float, default=5.0, help="give up after this long without a delivery")
    add("--request-timeout", type=float, default=30.0, help="per handshake or API request")
    add("--timeout", type=float, default=900.0, help="whole run")
    add("--server-pid", type=int, help="server PID: CPU per delivery and RSS per connection")
    add("--json", action="store_true", help="print one JSON object on stdout")
    add("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = DEFAULT_MESSAGES[args.scenario]
    if args.concurrency is None:
        args.concurrency = DEFAULT_CONCURRENCY[args.scenario]
    for name in ("connections", "concurrency", "open_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.messages < 0 or args.rate < 0 or args.rate_messages < 0:
        parser.error("--messages, --rate and --rate-messages cannot be negative")
    if not re.fullmatch(r"[a-zA-Z0-9_\-=@,.;]{1,50}", args.channel):
        parser.error("--channel: 1-50 letters, digits or _-=@,.; (a suffix is added)")
    if args.server_pid is not None and not os.path.exists(f"/proc/{args.server_pid}/stat"):
        parser.error(f"no process {args.server_pid} (--server-pid)")
    return args


def raise_fd_limit(wanted: int) -> str | None:
    """Raises RLIMIT_NOFILE's soft limit to the hard one: one fd per socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        return f"the open-file limit ({soft}) is below the {wanted} sockets asked for"
    return None


def format_report(report: dict[str, Any]) -> str:
    """The report for people: one line per figure."""
    lines = [f"thunderpush bench: {report['scenario']} against {report['url']}"]
    setup = report.get("setup")
    if setup:
        lines.append(
            f"  setup       {setup['opened']} connections in {setup['seconds']:.2f} s:"
            f" {setup['connections_per_s']:.0f} connections/s"
            f" ({'verified' if setup['verified'] else 'NOT verified'} with the API)"
        )
    memory = report.get("memory")
    if memory:
        lines.append(
            f"  memory      server RSS {memory['rss_before_kib'] / 1024:.1f} ->"
            f" {memory['rss_after_kib'] / 1024:.1f} MiB:"
            f" {memory['rss_per_connection_kib']:.1f} KiB per connection"
        )
    for key, label in (("full", "full speed"), ("rate", "fixed rate")):
        phase = report.get(key)
        if phase:
            lines.extend(_format_phase(label, phase))
    idle = report.get("idle")
    if idle:
        lines.append(f"  idle        {idle['seconds']:.1f} s: {_cpu(idle)}")
    for warning in report.get("warnings", []):
        lines.append(f"  warning     {warning}")
    for error, count in report.get("errors", {}).items():
        lines.append(f"  error       {error} ({count}x)")
    lines.append(f"  result      {'ok' if report.get('ok') else 'NOT ok'}")
    return "\n".join(lines)


def _cpu(figures: dict[str, Any]) -> str:
    text = f"bench CPU {figures['bench_cpu_percent']:.0f}% of a core"
    if "server_cpu_percent" in figures:
        text = f"server CPU {figures['server_cpu_percent']:.0f}% of a core, " + text
    return text


def _format_phase(label: str, phase: dict[str, Any]) -> list[str]:
    lines = []
    if "delivered" in phase:
        lines.append(
            f"  {label:<11} {phase['published']} published, {phase['delivered']}/"
            f"{phase['expected']} delivered in {phase['seconds']:.2f} s:"
            f" {phase['deliveries_per_s']:.0f} deliveries/s, {phase['lost']} lost"
        )
        latency = phase["latency_ms"]
        if latency["samples"]:
            lines.append(
                f"              latency p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms,"
                f" p99 {latency['p99']:.1f} ms ({latency['samples']} samples)"
            )
        per = phase.get("server_cpu_us_per_delivery")
    else:
        request = phase["request_ms"]
        lines.append(
            f"  {label:<11} {phase['published']} requests in {phase['seconds']:.2f} s:"
            f" {phase['publish_per_s']:.0f} requests/s, p50 {request['p50']:.2f} ms,"
            f" p99 {request['p99']:.2f} ms, {phase['failed']} failed"
        )
        per = phase.get("server_cpu_us_per_request")
    cpu = _cpu(phase)
    if per is not None:
        cpu = (
            f"server CPU {per:.1f} us per {'delivery' if 'delivered' in phase else 'request'}; "
            + cpu
        )
    lines.append(f"              {cpu}")
    return lines


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    try:
        return await asyncio.wait_for(bench.run(), args.timeout)
    except asyncio.TimeoutError:
        raise BenchError(f"the run took longer than --timeout {args.timeout:.0f} s") from None


def main(argv: Sequence[str]) -> int:
    """``thunderpush bench ARGS``; returns 0 when nothing was lost or refused."""
    args = parse_args(argv)
    wanted = (0 if args.scenario == "publish" else args.connections) + args.concurrency + 32
    limit_warning = raise_fd_limit(wanted)
    try:
        report = asyncio.run(_run(args))
    except BenchError as error:
        report = {"scenario": args.scenario, "url": args.url, "ok": False, "error": str(error)}
        print(f"thunderpush bench: {error}", file=sys.stderr)
    except (OSError, asyncio.TimeoutError) as error:
        report = {"scenario": args.scenario, "url": args.url, "ok": False, "error": repr(error)}
        print(f"thunderpush bench: cannot reach {args.url}: {error!r}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    if limit_warning:
        report.setdefault("warnings", []).append(limit_warning)
    if args.json:
        print(json.dumps(report))
    elif "error" not in report:
        print(format_report(report))
    return 0 if report.get("ok") else 1
