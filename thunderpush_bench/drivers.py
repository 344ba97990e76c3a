"""The callback chains that drive the load: sessions opened, requests published.

Why callbacks: at 10,000 connections/s or 60,000 requests/s, a task and a
future per connection or request would cost the bench more than the server
spends on them.  Each finished handshake starts the next one (``Opener``) and
each API answer sends the next request (``Publisher``), so the bench's cost
stays close to the bytes it moves.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from thunderpush_bench.api_client import HTTPClient, api_count
from thunderpush_bench.clients import Receiver, WSClient

if TYPE_CHECKING:
    from thunderpush_bench.scenarios import Bench


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
    # The sequence numbers the API accepted (answered 200), and when each answer came.
    seqs: list[int] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)


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
        # Sessions opened on each --url.
        self.per_url = [0] * len(bench.targets)
        self.max_failures = max(10, n // 100)
        # Wall-clock time of the last session that opened (failures may time out later).
        self.last_open_at: float | None = None
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
        client = bench.session(index, bench.home(index), sampled, self._opened)
        self.in_flight[client] = time.monotonic()
        try:
            client.connect(bench.address(client.target))
        except OSError as error:
            # Reported on the next turn: refusals can come in a row, and
            # handling them here would recurse once per connection.
            self.receiver.loop.call_soon(self._opened, client, str(error))

    def _opened(self, client: WSClient, error: str | None) -> None:
        if self.in_flight.pop(client, None) is None:
            return
        if error is None:
            self.bench.clients.append(client)
            self.per_url[client.target] += 1
            self.last_open_at = time.time()
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
        self.seq = 0
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
        self.seq = seq
        data = bench.signed
        if data is None:
            path, self.expected = bench.target(seq)
            body = bench.body(seq)
            data = self.client.head("POST", bench.api_prefix + path, len(body)) + body
        self.started = time.perf_counter()
        self.client.send(data, self.answered)

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
        if 200 <= status < 300:  # Nchan's publisher: 201 or 202
            phase.published += 1
            phase.seqs.append(self.seq)
            phase.accepted_at.append(time.perf_counter())
            phase.expected += self.expected
            phase.api_count += api_count(body)
        else:
            phase.failed += 1
        self.next()


class Mover:
    """Reopens the sessions a node ended, on the next ``--url``, as a load balancer would.

    A session the server closes (``c[9010,...]`` when a node stops) is opened
    again at once for the same user and channel on the next node; a refused
    attempt tries the node after that ``RETRY`` seconds later, until
    ``timeout`` seconds after the close.  What the session missed meanwhile is
    the rolling scenario's figure, read from the sequence numbers it saw.
    """

    RETRY = 0.05

    def __init__(self, bench: Bench, receiver: Receiver, timeout: float) -> None:
        self.bench = bench
        self.receiver = receiver
        self.timeout = timeout
        # Connections (by index) that a server ended; those still being reopened.
        self.ended: set[int] = set()
        self.closed_at: dict[int, float] = {}
        # Connections (by index) that were reopened elsewhere, at least once.
        self.moved: set[int] = set()
        # Seconds from each close to the reopened session.
        self.times: list[float] = []
        # When the first session was ended and the last one reopened: the move.
        self.first_closed: float | None = None
        self.last_opened: float | None = None
        self.failures: Counter[str] = Counter()

    def closed(self, client: WSClient) -> None:
        """``client``'s server ended it: open its session on the next node."""
        self.ended.add(client.index)
        now = time.perf_counter()
        self.closed_at.setdefault(client.index, now)
        if self.first_closed is None:
            self.first_closed = now
        self._open(client.index, client.target + 1)

    def _open(self, index: int, target: int) -> None:
        bench = self.bench
        client = bench.session(index, target % len(bench.targets), False, self._opened)
        try:
            client.connect(bench.address(client.target))
        except OSError as error:
            self.receiver.loop.call_soon(self._opened, client, str(error))

    def _opened(self, client: WSClient, error: str | None) -> None:
        index = client.index
        if error is None:
            self.last_opened = time.perf_counter()
            self.times.append(self.last_opened - self.closed_at.pop(index))
            self.moved.add(index)
            return
        client.close()
        if time.perf_counter() - self.closed_at[index] > self.timeout:
            del self.closed_at[index]
            self.failures[error] += 1
        else:
            self.receiver.loop.call_later(self.RETRY, self._open, index, client.target + 1)
