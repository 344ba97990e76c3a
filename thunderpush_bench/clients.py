"""The bench's websocket sessions: SockJS and Pusher, in one epoll set.

Why they are hand-written: a load generator that is slower than the server
measures itself, and Tornado's clients are far too heavy for that
(``AsyncHTTPClient``: 331 us of CPU per publish).  The sessions here are
driven by plain callbacks, with no task or future per connection; the HTTP API
connection is ``api_client``'s.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from thunderpush.transports.websocket.frames import TEXT
from thunderpush_bench import BenchError
from thunderpush_bench.measure import Tally
from thunderpush_bench.wire import ServerFrames, client_frame, upgrade_request

# A delivery's sequence number, inside its payload string (so its quotes are escaped).
SEQ = re.compile(rb'\\"seq\\": ?(\d+)')

# How every Pusher delivery of a publish through Thunderpush's API starts (its
# data is a JSON string, so this cannot occur inside it), and the answer to a ping.
PUSHER_MARKER = b'{"event":"message",'
PUSHER_PONG = client_frame(TEXT, b'{"event":"pusher:pong","data":{}}')


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
            raise BenchError("thunderpush-bench needs Linux (epoll, /proc)")
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


class WSClient(ServerFrames):
    """A websocket session: the socket, the upgrade, one hello, then counting.

    The frames themselves are read by ``ServerFrames``; this is the socket,
    the sampling and the bookkeeping every kind of session shares.  What the
    server's messages mean, and when the session is open, is its subclass's:
    ``SockJSClient`` (Thunderpush's own protocol) or ``PusherClient``.
    """

    __slots__ = (
        "receiver",
        "sock",
        "request",
        "hello",
        "sampled",
        "on_open",
        "is_open",
        "index",
        "target",
        "seen",
        "on_close",
        "moving",
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
        index: int = 0,
        target: int = 0,
        seen: set[int] | None = None,
    ) -> None:
        super().__init__(tally)
        self.receiver = receiver
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.request = upgrade_request(host, path, self.key)
        # Sent when the server greets the session (SockJS ``o``, Pusher
        # ``connection_established``): CONNECT + SUBSCRIBE, or pusher:subscribe.
        self.hello = client_frame(TEXT, hello)
        self.sampled = sampled
        # Called once: (self, None) when the session is open (subscribed, for
        # Pusher), (self, reason) when it could not open.
        self.on_open: Callable[[WSClient, str | None], None] | None = on_open
        self.is_open = False
        # Which connection of the run this is, and the index of its --url.
        self.index = index
        self.target = target
        # Sequence numbers this connection's user has received, across moves
        # (the rolling scenario): every delivery is read, none only counted.
        self.seen = seen
        # Called once when the server ends an open session: the session moves.
        self.on_close: Callable[[WSClient], None] | None = None
        self.moving = False

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
        """The server closed the connection (a close frame, or the socket), or it broke."""
        if not self.is_open:
            self._report_open(str(error or "closed before the session opened"))
        elif not self.closing and not self._ended_by_server():
            self.tally.unexpected_closes += 1
        self.close()

    def _ended_by_server(self) -> bool:
        callback, self.on_close = self.on_close, None
        if callback is not None:
            self.moving = True
            self.receiver.loop.call_soon(callback, self)
        return self.moving

    def _opened(self) -> None:
        """The session is ready for deliveries: from now on, count them fast."""
        self.is_open = True
        self.fast = not self.sampled and self.seen is None
        self._report_open(None)

    def _deliveries(self, text: bytes) -> int:
        """A message that holds deliveries, read the slow way: how many."""
        if self.sampled:
            self._sample(text)
        if self.seen is not None:
            self._record(text)
        return text.count(self.marker)

    def _payloads(self, text: bytes) -> list[str]:
        """The published bodies in a message of deliveries."""
        raise NotImplementedError

    def _record(self, text: bytes) -> None:
        """Each delivery's sequence number; one already seen is a duplicate."""
        seen = self.seen
        for match in SEQ.findall(text):
            seq = int(match)
            if seq in seen:  # type: ignore[operator]
                self.tally.duplicates += 1
            else:
                seen.add(seq)  # type: ignore[union-attr]

    def _sample(self, text: bytes) -> None:
        """Publish-to-receive latency of each delivery, from its ``t`` field."""
        now = time.perf_counter()
        latencies = self.tally.latencies
        try:
            for payload in self._payloads(text):
                latencies.append(now - json.loads(payload)["t"])
        except (ValueError, KeyError, TypeError):
            self.tally.errors["unparsable delivery"] += 1

    # closing

    def _fail(self, reason: str) -> None:
        if self.is_open:
            self.tally.errors[reason] += 1
        else:
            self._report_open(reason)
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


class SockJSClient(WSClient):
    """A SockJS session (``/connect/.../websocket``): ``o``, the hello, then ``a[...]`` frames."""

    __slots__ = ()

    def _message(self, text: bytes) -> int:
        """One SockJS frame: ``o``, ``h``, ``a[...]`` or ``c[code,"reason"]``."""
        kind = text[:1]
        if kind == b"a":
            return self._deliveries(text)
        if kind == b"o" and not self.is_open:
            self.send(self.hello)
            self._opened()
        elif kind == b"c":
            try:
                code = json.loads(text[1:])[0]
            except (ValueError, IndexError, TypeError):
                code = "?"
            self.tally.close_codes[f"sockjs {code}"] += 1
            self._ended_by_server()
        return 0

    def _payloads(self, text: bytes) -> list[str]:
        return [element["payload"] for element in json.loads(text[1:])]


class PusherClient(WSClient):
    """A Pusher Channels session (``/app/<key>?protocol=7``), as pusher-js opens one.

    ``connection_established``, then the hello (``pusher:subscribe``); open
    once ``subscription_succeeded`` arrives.  Every delivery is a frame of its
    own, ``{"event":"message","channel":...,"data":"<payload>"}`` (the event
    name Thunderpush gives a publish through its own API), so ``PUSHER_MARKER``
    counts them; a ``pusher:ping`` (the server's, after a silence) is answered.
    """

    __slots__ = ()

    marker = PUSHER_MARKER

    def _message(self, text: bytes) -> int:
        if text.startswith(PUSHER_MARKER):
            return self._deliveries(text)
        try:
            message = json.loads(text)
            event = message["event"]
        except (ValueError, KeyError, TypeError):
            self.tally.errors["unparsable Pusher frame"] += 1
            return 0
        if event == "pusher:connection_established" and not self.is_open:
            self.send(self.hello)
        elif event == "pusher_internal:subscription_succeeded" and not self.is_open:
            self._opened()
        elif event == "pusher:ping":
            self.send(PUSHER_PONG)
        elif event in ("pusher:error", "pusher:subscription_error"):
            # Codes that close the connection are followed by the websocket close.
            reason = text[:200].decode(errors="replace")
            if self.is_open:
                self.tally.errors[reason] += 1
            else:
                self._fail(reason)
        return 0

    def _payloads(self, text: bytes) -> list[str]:
        return [json.loads(text)["data"]]


def pusher_subscribe(channel: str) -> bytes:
    """The hello of a Pusher session: subscribe to the (public) ``channel``."""
    return json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}).encode()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
