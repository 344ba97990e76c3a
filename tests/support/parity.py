"""Machinery for the side-by-side comparison with the original Thunderpush 1.0.1.

``tests/test_parity.py`` holds the script (a list of steps) and the table of
expected differences; this module runs one script against one server process
and writes down what a client can notice, as a ``Transcript``:

* for each HTTP request: status, body and the headers a client can notice
  (``Content-Type``, ``Access-Control-*``, on SockJS URLs ``Cache-Control``);
* for each SockJS session: every frame, one entry per message (an ``a[...]``
  frame holding several messages is split, since how messages are batched into
  one xhr poll depends on timing); for the raw websocket, every message and the
  close code and reason.

Only what is random is normalised: session ids (never recorded), the entropy of
``/connect/info``, ``Date``/``Etag``/``Content-Length`` (never recorded) and
heartbeat frames (``h``, timing).

Waits are bounded.  To know that everything sent to a connection has arrived,
``drain`` posts a marker message to the connection's user and reads up to it
(messages on one connection arrive in publish order); markers never appear in a
transcript.  Commands sent over a websocket are known to be processed once a
probe ``SUBSCRIBE`` sent after them shows in the API (``sync``); xhr_send
returns only once the server has processed the commands.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

from .api import api_headers
from .processes import ServerProcess

KEY, SECRET = "key", "secret"
ROOT = Path(__file__).resolve().parents[2]
ORIGINAL_COMMAND = ROOT / ".venv-original" / "bin" / "thunderpush"

# How long a marker may take to come back; only a server that lost the
# connection without closing it ever makes a drain wait this long.
MARKER_WAIT = 3.0
# Commands and publishes on loopback are handled in well under a millisecond;
# a window this long only matters where nothing can prove that nothing came.
QUIET_WINDOW = 0.5

ABSENT = "<absent>"
API_HEADERS = (
    "Content-Type",
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
)
SOCKJS_HEADERS = (*API_HEADERS, "Access-Control-Allow-Credentials", "Cache-Control")


# -- transcript ---------------------------------------------------------------


class Transcript:
    """``step -> label -> value``, in the order things happened."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, str]] = {}

    def record(self, step: str, label: str, value: str) -> None:
        entries = self.steps.setdefault(step, {})
        unique, n = label, 1
        while unique in entries:
            n += 1
            unique = f"{label} #{n}"
        entries[unique] = value

    def text(self) -> str:
        lines = []
        for step, entries in self.steps.items():
            lines.append(f"== {step}")
            for label, value in entries.items():
                lines.append(f"  {label}: {shorten(value, 400)}")
        return "\n".join(lines) + "\n"


def shorten(value: str, limit: int = 160) -> str:
    value = value.replace("\n", "\n      ")
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... ({len(value)} chars)"


@dataclass
class Expected:
    """One difference the comparison expects, and the PROTOCOL.md item behind it.

    ``label`` is a regular expression over observation labels (fullmatch).
    ``original``/``ours``, when given, are the exact values each side must show.
    """

    label: str
    why: str
    ours: str | None = None
    original: str | None = None

    def matches(self, label: str) -> bool:
        """Matches the label without the `` #2`` a repeated request gets."""
        return re.fullmatch(self.label, re.sub(r" #\d+$", "", label)) is not None

    def values_ok(self, original: str, ours: str) -> bool:
        return (self.original is None or self.original == original) and (
            self.ours is None or self.ours == ours
        )


@dataclass
class Difference:
    step: str
    label: str
    original: str
    ours: str
    expected: Expected | None = None


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)
    unexpected: list[Difference] = field(default_factory=list)
    wrong_value: list[Difference] = field(default_factory=list)
    stale: list[tuple[str, Expected]] = field(default_factory=list)
    missing_steps: list[str] = field(default_factory=list)
    # Steps that raised: on both sides alike they would compare equal unseen.
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.unexpected or self.wrong_value or self.stale or self.missing_steps or self.errors
        )


def compare(
    original: Transcript,
    ours: Transcript,
    expected: dict[str, list[Expected]],
    everywhere: list[Expected],
    steps: Sequence[str],
) -> Comparison:
    """Step-by-step comparison; every difference must be expected, and vice versa."""
    result = Comparison()
    used: set[int] = set()
    for step in steps:
        theirs_entries = original.steps.get(step)
        our_entries = ours.steps.get(step)
        if theirs_entries is None or our_entries is None:
            result.missing_steps.append(step)
            continue
        labels = list(dict.fromkeys([*theirs_entries, *our_entries]))
        for side, entries in (("original", theirs_entries), ("ours", our_entries)):
            if "exception" in entries:
                result.errors.append(f"[{step}] on {side}: {entries['exception']}")
        for label in labels:
            a = theirs_entries.get(label, ABSENT)
            b = our_entries.get(label, ABSENT)
            if a == b:
                continue
            diff = Difference(step, label, a, b)
            result.differences.append(diff)
            for rule in [*expected.get(step, []), *everywhere]:
                if rule.matches(label):
                    diff.expected = rule
                    used.add(id(rule))
                    if not rule.values_ok(a, b):
                        result.wrong_value.append(diff)
                    break
            else:
                result.unexpected.append(diff)
    for step, rules in expected.items():
        for rule in rules:
            if id(rule) not in used:
                result.stale.append((step, rule))
    for rule in everywhere:
        if id(rule) not in used:
            result.stale.append(("*", rule))
    return result


def summary(result: Comparison) -> str:
    """The readable diff summary, grouped: unexpected first, then expected."""
    out: list[str] = []

    def show(diff: Difference) -> None:
        out.append(f"  [{diff.step}] {diff.label}")
        out.append(f"      original: {shorten(diff.original)}")
        out.append(f"      ours:     {shorten(diff.ours)}")
        if diff.expected is not None:
            out.append(f"      because:  {diff.expected.why}")
            if diff.expected.ours is not None and diff.expected.ours != diff.ours:
                out.append(f"      ours should be: {shorten(diff.expected.ours)}")

    if result.errors:
        out.append(f"STEPS THAT RAISED ({len(result.errors)}): fix the script")
        out.extend(f"  {error}" for error in result.errors)
    if result.missing_steps:
        out.append(f"STEPS MISSING FROM A TRANSCRIPT: {result.missing_steps}")
    if result.unexpected:
        out.append(f"UNEXPECTED DIFFERENCES ({len(result.unexpected)}): not in PROTOCOL.md")
        for diff in result.unexpected:
            show(diff)
    if result.wrong_value:
        out.append(f"EXPECTED DIFFERENCES WITH THE WRONG VALUE ({len(result.wrong_value)})")
        for diff in result.wrong_value:
            show(diff)
    if result.stale:
        out.append(f"EXPECTED DIFFERENCES THAT DID NOT OCCUR ({len(result.stale)})")
        for step, rule in result.stale:
            out.append(f"  [{step}] {rule.label}: {rule.why}")
    expected = [d for d in result.differences if d.expected and d not in result.wrong_value]
    out.append(f"EXPECTED DIFFERENCES ({len(expected)})")
    by_reason: dict[str, list[Difference]] = {}
    for diff in expected:
        by_reason.setdefault(diff.expected.why, []).append(diff)
    for why, diffs in by_reason.items():
        out.append(f"  {why}")
        for diff in diffs[:3]:
            out.append(f"    [{diff.step}] {diff.label}")
            out.append(f"        original: {shorten(diff.original, 120)}")
            out.append(f"        ours:     {shorten(diff.ours, 120)}")
        if len(diffs) > 3:
            steps = ", ".join(dict.fromkeys(d.step for d in diffs[3:]))
            out.append(f"    ... and {len(diffs) - 3} more, in: {steps}")
    return "\n".join(out) + "\n"


# -- clients ------------------------------------------------------------------


def split_frame(frame: str) -> list[str]:
    """One entry per SockJS message: ``a[x,y]`` becomes ``a[x]``, ``a[y]``.

    The elements keep their exact text.  Heartbeats are dropped (timing).
    """
    if frame == "h":
        return []
    if not (frame.startswith("a[") and frame.endswith("]")):
        return [frame]
    inner, decoder, items, index = frame[2:-1], json.JSONDecoder(), [], 0
    try:
        while index < len(inner):
            _, end = decoder.raw_decode(inner, index)
            items.append(f"a[{inner[index:end]}]")
            index = end + 1 if end < len(inner) and inner[end] == "," else end
            if end < len(inner) and inner[end] != ",":
                return [frame]
    except ValueError:
        return [frame]
    return items


class Client:
    """A session that keeps every message it receives (``items``) in order."""

    kind = ""

    def __init__(self, name: str, base_url: str, http: AsyncHTTPClient) -> None:
        self.name = name
        self.base_url = base_url
        self.http = http
        self.user: str | None = None
        self.items: list[str] = []
        self.cursor = 0
        self.closed = False
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    def _add(self, item: str) -> None:
        self.items.append(item)
        self._changed.set()

    def _end(self, item: str) -> None:
        if not self.closed:
            self.items.append(item)
            self.closed = True
            self._changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Waits (bounded) until ``condition()``; False on timeout."""
        deadline = time.monotonic() + timeout
        while not condition():
            self._changed.clear()
            if condition():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return condition()
        return True

    def take(self, upto: int | None = None) -> list[str]:
        end = len(self.items) if upto is None else upto
        taken, self.cursor = self.items[self.cursor : end], end
        return taken

    async def open(self) -> Client:
        self._reader = asyncio.ensure_future(self._read())
        if not await self.wait_for(lambda: bool(self.items), 5):
            raise AssertionError(f"{self.name}: session did not open")
        return self

    async def _read(self) -> None:
        raise NotImplementedError

    async def send(self, *messages: Any) -> str:
        """Sends SockJS messages; returns what the transport said (xhr: status)."""
        raise NotImplementedError

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass


class WebSocketClient(Client):
    kind = "websocket"
    ws: WebSocketClientConnection

    async def _read(self) -> None:
        session = f"{self.base_url}/connect/000/{uuid.uuid4().hex}/websocket"
        self.ws = await websocket_connect(session.replace("http", "ws", 1))
        while True:
            frame = await self.ws.read_message()
            if frame is None:
                code, reason = self.ws.close_code, self.ws.close_reason
                self._end(f"<websocket closed: code={code} reason={reason!r}>")
                return
            for item in split_frame(frame):
                self._add(item)

    async def send(self, *messages: Any) -> str:
        return await self.send_raw(json.dumps(list(messages)))

    async def send_raw(self, text: str) -> str:
        try:
            await self.ws.write_message(text)
        except Exception as error:  # the server may have dropped the socket
            return f"<send failed: {type(error).__name__}>"
        return "sent"

    async def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        await super().close()


class RawWebSocketClient(WebSocketClient):
    """``/connect/websocket``: one text message per SockJS message, no framing."""

    kind = "raw websocket"

    async def _read(self) -> None:
        url = f"{self.base_url}/connect/websocket".replace("http", "ws", 1)
        self.ws = await websocket_connect(url)
        self._add("<open>")
        while True:
            message = await self.ws.read_message()
            if message is None:
                code, reason = self.ws.close_code, self.ws.close_reason
                self._end(f"<closed: code={code} reason={reason!r}>")
                return
            self._add(message)

    async def send(self, *messages: Any) -> str:
        results = [await self.send_raw(message) for message in messages]
        return results[-1]


class XhrPollingClient(Client):
    kind = "xhr-polling"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.session_url = f"{self.base_url}/connect/000/{uuid.uuid4().hex}"

    async def _read(self) -> None:
        while True:
            try:
                response = await self.http.fetch(
                    self.session_url + "/xhr",
                    method="POST",
                    body=b"",
                    request_timeout=60,
                    raise_error=False,
                )
            except Exception as error:
                self._end(f"<poll failed: {type(error).__name__}>")
                return
            body = (response.body or b"").decode("utf-8", "replace")
            if response.code != 200:
                self._end(f"<poll answered {response.code}: {body}>")
                return
            frame = body[:-1] if body.endswith("\n") else body
            for item in split_frame(frame):
                self._add(item)
            if frame.startswith("c"):
                self.closed = True
                self._changed.set()
                return

    async def send(self, *messages: Any) -> str:
        response = await self.http.fetch(
            self.session_url + "/xhr_send",
            method="POST",
            body=json.dumps(list(messages)),
            raise_error=False,
        )
        body = (response.body or b"").decode("utf-8", "replace")
        return f"{response.code} {body}".strip()


# -- one run of the script ----------------------------------------------------

_markers = itertools.count(1)


class Session:
    """What a step works with: one server, its clients, and the transcript.

    Steps keep clients that later steps use as attributes (``s.alice``).
    """

    def __init__(self, server: ServerProcess, transcript: Transcript) -> None:
        self.server = server
        self.url = server.url
        self.transcript = transcript
        self.step = ""
        self.http = AsyncHTTPClient(force_instance=True, max_clients=200)
        self.clients: list[Client] = []
        self._probes = itertools.count(1)

    def record(self, label: str, value: str) -> None:
        self.transcript.record(self.step, label, value)

    # -- HTTP ---------------------------------------------------------

    async def fetch(
        self, method: str, path: str, body: bytes | str | None = None, headers: Any = None
    ) -> HTTPResponse:
        if body is None and method in ("POST", "PUT"):
            body = b""
        return await self.http.fetch(
            self.url + path,
            method=method,
            body=body,
            headers=headers or {},
            raise_error=False,
            allow_nonstandard_methods=True,
            request_timeout=10,
        )

    async def api(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        *,
        secret: str | None = SECRET,
        key: str = KEY,
        headers: dict[str, str] | None = None,
        label: str | None = None,
    ) -> HTTPResponse:
        """An API request (``path`` after ``/api/1.0.0/<key>/``), recorded."""
        return await self.http_request(
            method,
            f"/api/1.0.0/{key}/{path}",
            body,
            headers=api_headers(secret, headers),
            label=label or f"{method} {path}",
        )

    async def http_request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        *,
        headers: dict[str, str] | None = None,
        label: str | None = None,
        record_headers: Sequence[str] = API_HEADERS,
        normalise: Callable[[str], str] = lambda body: body,
        record_body: bool = True,
    ) -> HTTPResponse:
        label = label or f"{method} {path}"
        response = await self.fetch(method, path, body, headers)
        self.record(f"{label} status", str(response.code))
        if record_body:
            text = (response.body or b"").decode("utf-8", "replace")
            self.record(f"{label} body", normalise(text))
        for name in record_headers:
            self.record(f"{label} {name}", response.headers.get(name, ABSENT))
        for name in sorted(response.headers):
            if name.lower().startswith("access-control-") and name not in record_headers:
                self.record(f"{label} {name}", response.headers[name])
        return response

    async def unrecorded_api(self, method: str, path: str, body: Any = None) -> HTTPResponse:
        headers = {"X-Thunder-Secret-Key": SECRET}
        return await self.fetch(method, f"/api/1.0.0/{KEY}/{path}", body, headers)

    # -- clients ------------------------------------------------------

    async def open(self, kind: type[Client], name: str) -> Client:
        client = await kind(name, self.url, self.http).open()
        self.clients.append(client)
        return client

    async def send(self, client: Client, *messages: Any) -> None:
        """Sends and records what the transport answered (xhr_send's status)."""
        result = await client.send(*messages)
        if isinstance(client, XhrPollingClient):
            self.record(f"{client.name} xhr_send {json.dumps(list(messages))[:60]}", result)
        elif result != "sent":
            self.record(f"{client.name} send {json.dumps(list(messages))[:60]}", result)

    async def connect(self, client: Client, user: str, *channels: str) -> None:
        """CONNECT and SUBSCRIBE, then wait until the server has processed both."""
        client.user = user
        await self.send(client, f"CONNECT {user}:{KEY}")
        if channels:
            await self.send(client, "SUBSCRIBE " + ":".join(channels))
        await self.sync(client)

    async def sync(self, client: Client) -> None:
        """Returns once the server has processed every command ``client`` sent.

        xhr_send answers after processing; on a websocket, a probe SUBSCRIBE
        sent last shows in the API once everything before it was processed.
        Ends early if the session closes (a closed session processes nothing).
        """
        if isinstance(client, XhrPollingClient) or client.closed or client.user is None:
            return
        probe = f"probe-{next(self._probes)}"
        await client.send(f"SUBSCRIBE {probe}")
        deadline = time.monotonic() + 5
        while not client.closed:
            response = await self.unrecorded_api("GET", f"channels/{probe}/")
            if response.code == 200 and client.user in json.loads(response.body)["users"]:
                return
            if time.monotonic() > deadline:
                self.record(f"{client.name} sync", "<commands not processed within 5 s>")
                return
            await client.wait_for(lambda: client.closed, 0.01)

    async def wait_offline(self, user: str) -> None:
        """Waits (bounded) until the API says ``user`` is offline."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            response = await self.unrecorded_api("GET", f"users/{quote(user, safe='')}/")
            if response.code == 200 and not json.loads(response.body)["online"]:
                return
            await asyncio.sleep(0.01)
        self.record(f"{user} offline", "<still online after 5 s>")

    def _record_items(self, client: Client, items: list[str]) -> None:
        items = [item for item in items if "~mark-" not in item]
        self.record(f"{client.name} frames", "\n".join(items) if items else "(nothing)")

    async def drain(self, *clients: Client) -> None:
        """Records everything each client received, proved complete by a marker.

        A marker is posted to each client's user; messages on one connection
        arrive in publish order, so once it is there everything sent before it
        is too.  A closed session records up to its close.
        """
        marker = f"~mark-{next(_markers)}~"
        users = dict.fromkeys(c.user for c in clients if c.user is not None and not c.closed)
        for user in users:
            await self.unrecorded_api("POST", f"users/{quote(user, safe='')}/", json.dumps(marker))
        for client in clients:
            if client.user is None and not client.closed:
                await self.quiet(client, "it has no user, so no marker can reach it")
                continue

            def arrived(client: Client = client) -> bool:
                return client.closed or any(marker in i for i in client.items[client.cursor :])

            if not await client.wait_for(arrived, MARKER_WAIT):
                self._record_items(client, client.take())
                self.record(f"{client.name} marker", f"<not delivered within {MARKER_WAIT} s>")
                continue
            upto = next(
                (n + 1 for n, i in enumerate(client.items) if n >= client.cursor and marker in i),
                None,
            )
            self._record_items(client, client.take(upto))

    async def quiet(self, client: Client, why: str, within: float = QUIET_WINDOW) -> None:
        """Records what arrives within a short window (or until the session closes).

        Only for sessions where no marker can prove completeness; ``why`` says
        why not, and the window is far longer than loopback delivery takes.
        """
        await client.wait_for(lambda: client.closed, within)
        self._record_items(client, client.take())

    async def closed(self, client: Client, timeout: float = MARKER_WAIT) -> None:
        """Records everything up to the end of a session that should close."""
        if not await client.wait_for(lambda: client.closed, timeout):
            self.record(f"{client.name} close", f"<session still open after {timeout} s>")
        self._record_items(client, client.take())

    async def finish(self) -> None:
        for client in self.clients:
            await client.close()
        self.http.close()


Step = Callable[[Session], Awaitable[None]]


async def run_script(server: ServerProcess, script: Sequence[tuple[str, Step]]) -> Transcript:
    """Runs every step against ``server``; an exception is recorded, not raised."""
    transcript = Transcript()
    session = Session(server, transcript)
    try:
        for name, step in script:
            session.step = name
            transcript.steps.setdefault(name, {})
            try:
                await asyncio.wait_for(step(session), 15)
            except Exception as error:
                session.record("exception", f"{type(error).__name__}: {error}")
    finally:
        await session.finish()
    return transcript
