"""The front door's HTTP/1.1 on raw bytes (``thunderpush.transports.door.http`` and ``frontdoor``).

The API answers are compared byte for byte with Tornado serving the same
application: the front door must be indistinguishable from it, except where
a hostile or broken request gets a documented answer (400, or a close) that
Tornado does not give.  Then the attacks of the issue, with real sockets: each
must cost the server little, leave other clients served, and log at most a line.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
import sys
import time

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from thunderpush.config import Config
from thunderpush.transports.door.heads import MAX_HEAD_SIZE, MAX_HEADERS
from thunderpush.transports.door.http import HttpConnection
from thunderpush.transports.door.messages import BAD_REQUEST
from thunderpush.transports.sockjs.adapter import serve

from .support.processes import start_server_process
from .support.wire import API, AUTH, RawClient, exchange, request, statuses, undated, until_closed

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def tornado_port(server):
    """The same application behind Tornado's own HTTPServer: the reference.

    Its connections are served as the front door hands them over (``serve``),
    so that a request followed at once by the client's end is answered (which
    Tornado's own streams race to drop, on uvloop nearly always): what is
    compared is the answer, not that race.
    """
    http = HTTPServer(server.door.http.request_callback, max_body_size=Config.max_body_size)
    [listener] = bind_sockets(0, "127.0.0.1")
    loop = asyncio.get_running_loop()

    async def accept() -> None:
        while True:
            sock, address = await loop.sock_accept(listener)
            serve(http, sock, address, b"")

    accepting = loop.create_task(accept())
    yield listener.getsockname()[1]
    accepting.cancel()
    listener.close()
    await asyncio.wait_for(http.close_all_connections(), 5)


def pad_head(size: int) -> bytes:
    """An authenticated GET whose head (blank line included) is ``size`` bytes long."""
    unpadded = len(request("GET", f"{API}/users/", AUTH + "X-Pad: \r\n"))
    return request("GET", f"{API}/users/", AUTH + "X-Pad: " + "a" * (size - unpadded) + "\r\n")


SAME_AS_TORNADO = {
    "user count": request("GET", f"{API}/users/"),
    "online, percent-decoded": request("GET", f"{API}/users/caf%C3%A9/"),
    "send to user": request("POST", f"{API}/users/bob/", body=b'{"a": 1}'),
    "send to channel": request("POST", f"{API}/channels/news/", body=b"[1, 2]"),
    "channel users": request("GET", f"{API}/channels/news/"),
    "invalid channel": request("GET", f"{API}/channels/a%20b/"),
    "invalid JSON": request("POST", f"{API}/users/bob/", body=b"{nope"),
    "empty body": request("POST", f"{API}/users/bob/"),
    "delete, connection close": request(
        "DELETE", f"{API}/users/bob/", AUTH + "Connection: close\r\n"
    ),
    "preflight": request("OPTIONS", f"{API}/users/bob/", ""),
    "preflight, unknown path": request("OPTIONS", "/api/nothing", ""),
    "wrong secret": request("GET", f"{API}/users/", "X-Thunder-Secret-Key: no\r\n"),
    "no secret": request("GET", f"{API}/users/", ""),
    "unknown key": request("GET", "/api/1.0.0/other/users/"),
    "405 before 401": request("DELETE", f"{API}/channels/news/", ""),
    "not found": request("GET", f"{API}/nothing/"),
    "401 with a body": request("POST", f"{API}/users/bob/", "", b'{"a": 1}'),
    "413": request("POST", f"{API}/users/bob/", AUTH + "Content-Length: 2000000\r\n"),
    "HEAD": request("HEAD", f"{API}/users/"),
    "PUT": request("PUT", f"{API}/users/bob/", body=b"1"),
    "not UTF-8": request("GET", f"{API}/users/%FF/"),
    "query string": request("GET", f"{API}/users/?x=1"),
    "query names a path argument": request("GET", f"{API}/users/bob/?user=alice&apikey=x"),
    "query not UTF-8": request("GET", f"{API}/users/?x=%FF"),
    "malformed request line": b"GET  /api/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "no Host": b"GET /api/1.0.0/key/users/ HTTP/1.1\r\n\r\n",
    "HTTP/1.0": b"GET /api/1.0.0/key/users/ HTTP/1.0\r\n" + AUTH.encode() + b"\r\n",
    "repeated secret": request("GET", f"{API}/users/", AUTH + AUTH),
    "chunked body": request("POST", f"{API}/users/bob/", AUTH + "Transfer-Encoding: chunked\r\n")
    + b"2\r\n[]\r\n0\r\n\r\n",
    "pipelined": request("GET", f"{API}/users/") + request("POST", f"{API}/users/u/", body=b"1"),
    "pipelined into a handoff": request("GET", f"{API}/users/") + request("GET", "/connect/info"),
    "%2F in a segment": request("GET", f"{API}/users/a%2Fb/"),
    "absolute-form target": request("GET", f"http://127.0.0.1{API}/users/"),
    "an empty line first": b"\r\n" + request("GET", f"{API}/users/"),
    "whitespace around values": request(
        "GET", f"{API}/users/", "X-Thunder-Secret-Key: \tsecret \r\n"
    ),
    "obs-text in a value": request("GET", f"{API}/users/", AUTH + "X-A: caf\xe9\r\n"),
    f"{MAX_HEADERS} header fields": request(
        "GET", f"{API}/users/", AUTH + "".join(f"X-{i}: v\r\n" for i in range(MAX_HEADERS - 2))
    ),
    "Connection: close, then more": request("GET", f"{API}/users/", AUTH + "Connection: close\r\n")
    + request("GET", f"{API}/users/"),
    "Expect": request("POST", f"{API}/users/bob/", AUTH + "Expect: 100-continue\r\n", b"1"),
    "Upgrade on the API": request(
        "GET", f"{API}/users/", AUTH + "Connection: Upgrade\r\nUpgrade: h2c\r\n"
    ),
}


# On uvloop too: a request handed to Tornado followed at once by the client's
# end (exchange half-closes) was left unanswered there (``PrefilledIOStream``).
@pytest.mark.asyncio(loop_factories=["asyncio", "uvloop"])
@pytest.mark.parametrize("case", SAME_AS_TORNADO)
async def test_api_answers_byte_for_byte_as_tornado(server, tornado_port, case):
    data = SAME_AS_TORNADO[case]
    ours = await exchange(server.port, data)
    reference = await exchange(tornado_port, data)
    if case == "pipelined into a handoff":
        # The SockJS info carries random entropy, so its length varies too.
        noise = rb'"entropy":\d+|Etag: "\w+"|Content-Length: \d+(?=\r\n\r\n\{"websocket")'
        ours, reference = (re.sub(noise, b"", r) for r in (ours, reference))
    assert undated(ours) == undated(reference)
    assert ours.startswith(b"HTTP/1.1 ")


async def test_split_reads_and_keep_alive(server):
    data = request("POST", f"{API}/users/bob/", body=b'{"a": 1}') * 2 + request(
        "GET", f"{API}/users/"
    )
    response = await exchange(server.port, data, chunks=len(data))
    assert response.count(b"HTTP/1.1 200 OK") == 3
    assert response.endswith(b'{"count": 0}\n')


async def test_oversized_header_block_closes_without_an_answer(server):
    data = b"GET /api/ HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024)
    assert await exchange(server.port, data) == b""


async def test_a_delivery_through_the_fast_path(server):
    ws = await RawClient.open(server.port, "/connect/0/s1/websocket")
    assert await ws.read() == (0x1, b"o")
    await ws.send(0x1, b'["CONNECT bob:key"]')
    await server.settled(lambda: server.hub.is_online("bob"))
    response = await exchange(server.port, request("POST", f"{API}/users/bob/", body=b"7"))
    assert response.endswith(b'{"count": 1}\n')
    assert await ws.read() == (0x1, b'a[{"payload":"7"}]')


# -- websockets, frame by frame -------------------------------------------------


@pytest.mark.parametrize("version", ["", "Sec-WebSocket-Version: 8\r\n"])
async def test_unusual_handshakes_go_to_tornado(server, tornado_port, version):
    headers = f"Upgrade: websocket\r\nConnection: Upgrade\r\n{version}"
    data = request("GET", "/connect/0/s1/websocket", headers)
    ours = await exchange(server.port, data)
    assert undated(ours) == undated(await exchange(tornado_port, data))


async def test_a_fault_in_the_api_is_a_json_500_as_from_tornado(server, tornado_port, caplog):
    app = server.parts.apps.get("key")

    class FailingBroker(type(app.broker)):
        def send_to_channel(self, app, channel, message):
            raise RuntimeError("the backend is down")

    app.broker = FailingBroker()
    data = request("POST", f"{API}/channels/news/", body=b"1")
    ours = await exchange(server.port, data)
    assert undated(ours) == undated(await exchange(tornado_port, data))
    assert statuses(ours) == [500]
    # The API logs the fault once per request, with its traceback, whoever parsed it.
    faults = [record for record in caplog.records if record.exc_info]
    assert [record.name for record in faults] == ["thunderpush.api.calls"] * 2
    caplog.clear()


# -- hostile and broken requests ------------------------------------------------

USERS = request("GET", f"{API}/users/")


def post(fields: str, body: bytes = b"1234567") -> bytes:
    """A publish to bob with the header ``fields`` (a Content-Length among them)."""
    return f"POST {API}/users/bob/ HTTP/1.1\r\nHost: x\r\n{AUTH}{fields}\r\n".encode() + body


# Each: the bytes sent, the statuses answered before the server closes.  A 400
# is Tornado's bare "HTTP/1.1 400 Bad Request".  Where Tornado answers
# differently, the comment says what it does.
HOSTILE = {
    "Content-Length and Transfer-Encoding": (
        post("Content-Length: 7\r\nTransfer-Encoding: chunked\r\n"),
        [400],
    ),
    "Transfer-Encoding and Content-Length": (
        post("Transfer-Encoding: chunked\r\nContent-Length: 7\r\n"),
        [400],
    ),
    # Tornado joins the two into "7,7", which the API refuses with 413.
    "two equal Content-Lengths": (post("Content-Length: 7\r\nContent-Length: 7\r\n"), [400]),
    "two different Content-Lengths": (post("Content-Length: 7\r\nContent-Length: 8\r\n"), [400]),
    # Tornado serving this application lets the API refuse these with 413 "too
    # large" (the original Thunderpush, on plain Tornado, answered 400 too).
    "Content-Length ²": (post("Content-Length: \xb2\r\n"), [400]),
    "Content-Length +7": (post("Content-Length: +7\r\n"), [400]),
    "Content-Length -1": (post("Content-Length: -1\r\n"), [400]),
    "Content-Length 0x7": (post("Content-Length: 0x7\r\n"), [400]),
    "Content-Length 7, 7": (post("Content-Length: 7, 7\r\n"), [400]),
    "Content-Length of 20 digits": (post("Content-Length: 99999999999999999999\r\n"), [400]),
    # A length that parses but is over the limit: the API's 413, as Tornado.
    "Content-Length over the limit": (post("Content-Length: 10000000000000000000\r\n"), [413]),
    "obs-fold": (request("GET", f"{API}/users/", AUTH + "X-A: a\r\n b\r\n"), [400]),
    # Tornado 6.6 still reads bare LF (deprecated; 6.7 refuses it).
    "bare LF": (USERS.replace(b"\r\n", b"\n"), [400]),
    "a head ending LF CR LF": (USERS[:-4] + b"\n\r\n", [400]),
    "NUL in a value": (request("GET", f"{API}/users/", AUTH + "X-A: a\x00b\r\n"), [400]),
    "a control byte in the target": (b"GET /api/\x01 HTTP/1.1\r\nHost: x\r\n\r\n", [400]),
    # Tornado serves these three: raw non-ASCII in a target, any token as a
    # method (405), any HTTP/1.x version.
    "non-ASCII in the target": (USERS.replace(b"users/", b"users/\xc3\xa9/"), [400]),
    "a lower-case method": (USERS.replace(b"GET", b"get", 1), [400]),
    "HTTP/1.2": (USERS.replace(b"HTTP/1.1", b"HTTP/1.2", 1), [400]),
    # Tornado has no limit on the number of fields, only on the head's size.
    "too many header fields": (
        request(
            "GET", f"{API}/users/", AUTH + "".join(f"X-{i}: v\r\n" for i in range(MAX_HEADERS))
        ),
        [400],
    ),
    "a bad request between two good ones": (
        USERS + b"GET /x HTTP/1.1\r\nX: \x01\r\n\r\n" + USERS,
        [200, 400],
    ),
    # As Tornado: a head over 64 KiB is closed without an answer.
    "a head of 65,540 bytes": (pad_head(65_540), []),
    "a request line over 64 KiB": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", []),
    "a header over 64 KiB, unfinished": (b"GET /api/ HTTP/1.1\r\nX-Big: " + b"a" * 70_000, []),
}


@pytest.mark.parametrize("case", HOSTILE)
async def test_hostile_request_gets_its_answer_and_a_close(server, case):
    data, expected = HOSTILE[case]
    received = await until_closed(server.port, data)
    assert statuses(received) == expected
    if 400 in expected:
        assert received.endswith(BAD_REQUEST)
    # Everyone else is still served.
    assert statuses(await exchange(server.port, USERS)) == [200]


async def test_a_head_of_exactly_64_kib_is_served(server):
    assert statuses(await exchange(server.port, pad_head(MAX_HEAD_SIZE))) == [200]


@pytest.mark.parametrize("spaces", [40_000, 60_000])
async def test_a_long_value_with_a_control_byte_is_refused_at_once(server, spaces):
    # The hand-written parser's regular expression took 7 s (14 s) on this.
    data = request("GET", f"{API}/users/", AUTH + "X-A: " + " " * spaces + "\x01\r\n")
    started = time.monotonic()
    hostile = asyncio.create_task(until_closed(server.port, data))
    assert statuses(await asyncio.wait_for(exchange(server.port, USERS), 2)) == [200]
    assert await hostile == BAD_REQUEST
    assert time.monotonic() - started < 2


# -- flow control ---------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident memory (the server runs in it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.slow
async def test_a_client_that_never_reads_its_answers_is_not_read_either(server, caplog):
    caplog.set_level(logging.WARNING, logger="tornado.access")  # not one line per answer
    loop = asyncio.get_running_loop()
    before = rss_bytes()
    client = socket.socket()
    client.setblocking(False)
    await loop.sock_connect(client, ("127.0.0.1", server.port))
    sent = 0

    async def flood() -> None:
        nonlocal sent
        while True:
            await loop.sock_sendall(client, USERS * 100)
            sent += 100

    flooding = asyncio.create_task(flood())
    try:
        await server.settled(
            lambda: any(not c.transport.is_reading() for c in server.door.connections)
        )
        # Kernel buffers fill; the server's memory does not grow with them.
        assert rss_bytes() - before < 64 * 1024 * 1024
        assert statuses(await asyncio.wait_for(exchange(server.port, USERS), 2)) == [200]
    finally:
        flooding.cancel()
    # Once the client reads, every request it sent in full is answered.
    answered = 0
    received = b""
    while answered < sent:
        received += await asyncio.wait_for(loop.sock_recv(client, 1 << 20), 5)
        answered = received.count(b"HTTP/1.1 200 OK")
    client.close()


async def test_a_reset_after_2000_pipelined_requests_logs_at_most_a_line(server, caplog):
    caplog.set_level(logging.WARNING, logger="tornado.access")  # one INFO line per answer
    client = socket.create_connection(("127.0.0.1", server.port))
    client.setblocking(False)
    data = USERS * 2000
    assert client.send(data) == len(data)  # all in the server's queue before it reads
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset
    await server.settled(lambda: not server.door.connections)
    assert statuses(await exchange(server.port, USERS)) == [200]
    lines = [record for record in caplog.records if record.levelno >= logging.INFO]
    assert len(lines) <= 1, [record.getMessage() for record in lines]


async def test_a_hand_off_waits_for_the_answers_before_it(server):
    # Small socket buffers on both sides, and a client that reads nothing yet:
    # most of the API answers are still queued when the request for Tornado
    # is reached.  (Handing over then logged an asyncio ERROR, two tracebacks.)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", server.port))
    client.setblocking(False)
    await server.settled(lambda: server.door.connections)
    (connection,) = server.door.connections
    connection.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
    )
    count = 150  # answers of about 50 KB: more than the kernel holds, less than a pause
    client.send(USERS * count + request("GET", "/connect/info"))
    await server.settled(lambda: connection.transport.get_write_buffer_size() > 0)
    loop = asyncio.get_running_loop()
    received = b""
    while not received.endswith(b"}"):
        received += await asyncio.wait_for(loop.sock_recv(client, 65536), 5)
    client.close()
    assert statuses(received) == [200] * (count + 1)
    assert b'"websocket":true' in received.rsplit(b"\r\n\r\n", 1)[1]


# -- answers that come later ----------------------------------------------------


async def test_an_awaitable_answer_keeps_pipelined_answers_in_order(server):
    """A request answered later (a cluster's publish) holds back the ones pipelined
    after it; a client that keeps sending meanwhile is no longer read, so what
    waits is bounded by one read, however much it sends."""
    app = server.parts.apps.get("key")
    called, release = asyncio.Event(), asyncio.Event()
    broker = app.broker

    class LaterBroker(type(broker)):
        async def send_to_channel(self, app, channel, message):
            called.set()
            await release.wait()
            return broker.send_to_channel(app, channel, message)

    app.broker = LaterBroker()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request("POST", f"{API}/channels/news/", body=b"1") + USERS)
    await asyncio.wait_for(called.wait(), 5)
    # Nothing is paused for a client that waits, as most do.
    (connection,) = server.door.connections
    assert connection.transport.is_reading()
    more = USERS * 20000  # about 2 MB of pipelined requests
    writer.write(more)
    await server.settled(lambda: not connection.transport.is_reading())
    assert len(connection._raw) < 2 * 1024 * 1024 // 4
    release.set()
    first = await asyncio.wait_for(reader.readuntil(b'{"count": 0}\n'), 5)
    second = await asyncio.wait_for(reader.readuntil(b'{"count": 0}\n'), 5)
    writer.close()
    assert b"Etag" not in first  # the POST's answer
    assert b"Etag" in second  # then the GET's


# -- timeouts -------------------------------------------------------------------


async def trickle(writer: asyncio.StreamWriter, data: bytes, interval: float) -> None:
    """Sends ``data`` a byte at a time, as a slow (or hostile) client does."""
    for byte in data:
        writer.write(bytes([byte]))
        await asyncio.sleep(interval)


async def closed_after(reader: asyncio.StreamReader, started: float) -> float:
    """Seconds from ``started`` until the server closes (bounded).

    The server starts its clock a moment before or after the client's, so the
    tests allow a timeout to look 0.05 s shorter.
    """
    try:
        while await asyncio.wait_for(reader.read(65536), 5):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


@pytest.mark.config(head_timeout=0.3, body_timeout=0.6)
@pytest.mark.parametrize(
    ("sent", "trickled", "timeout"),
    [(b"", USERS, 0.3), (post("Content-Length: 100\r\n", b""), b"1" * 100, 0.6)],
    ids=["head", "body"],
)
async def test_a_slow_request_is_cut_off(server, sent, trickled, timeout):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(sent)
    started = time.monotonic()
    sending = asyncio.create_task(trickle(writer, trickled, 0.02))
    assert statuses(await asyncio.wait_for(exchange(server.port, USERS), 2)) == [200]
    assert timeout - 0.05 <= await closed_after(reader, started) < timeout + 1.5
    sending.cancel()
    writer.close()


@pytest.mark.config(head_timeout=0.3)
async def test_a_connection_that_sends_nothing_is_cut_off(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert 0.25 <= await closed_after(reader, time.monotonic()) < 2
    writer.close()


@pytest.mark.config(idle_timeout=0.3)
async def test_an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for _ in range(6):  # 0.5 s of requests, one every 0.1 s: never idle for long
        await asyncio.sleep(0.1)
        writer.write(USERS)
        await asyncio.wait_for(reader.readuntil(b'{"count": 0}\n'), 2)
    assert 0.25 <= await closed_after(reader, time.monotonic()) < 2
    writer.close()


# -- out of file descriptors ----------------------------------------------------

# The server, with room for about fifty connections.
FEW_DESCRIPTORS = (
    sys.executable,
    "-c",
    "import resource, sys\n"
    "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
    "from thunderpush.server.cli import main\n"
    "main(sys.argv[1:])",
)


@pytest.mark.slow
def test_running_out_of_descriptors_is_one_line_and_passes(tmp_path):
    running = start_server_process(tmp_path, command=FEW_DESCRIPTORS)
    try:
        clients = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(100)]
        deadline = time.monotonic() + 10
        while "Cannot accept connections" not in running.log():
            assert time.monotonic() < deadline, running.log()
            time.sleep(0.05)
        for client in clients:
            client.close()
        # Accepting resumes (it is retried every second) once descriptors are free.
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as client:
            client.sendall(USERS)
            assert client.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        running.stop()
    log = running.log()
    assert "Traceback" not in log
    # Besides the start-up and shut-down lines, one: not one per attempt to accept.
    (line,) = [line for line in log.splitlines() if " INFO " not in line]
    assert "Cannot accept connections (Too many open files)" in line


# -- any bytes at all -----------------------------------------------------------


class FakeTransport:
    """Records what a connection writes; delivers nothing while paused or closed."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after the close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 4321) if name == "peername" else default


class RecordingDoor:
    """The server's door for the API; upgrades and hand-offs only recorded."""

    def __init__(self, door) -> None:
        self.config = door.config
        self.connections: set = set()
        self.start = door.start
        self.handed: bytes | None = None
        self.written_before = 0

    def upgrade(self, transport, request, rest: bytes) -> bool:
        return False

    def hand_off(self, transport, data: bytes) -> None:
        self.handed = data
        self.written_before = len(transport.written)


PIECES = [
    USERS,
    request("POST", f"{API}/channels/news/", body=b'{"a": 1}'),
    request("GET", "/connect/info"),
    request("DELETE", f"{API}/users/bob/", AUTH + "Connection: close\r\n"),
    b"GET ",
    b"POST ",
    f"{API}/users/bob/ HTTP/1.1\r\n".encode(),
    b"Host: x\r\n",
    AUTH.encode(),
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: Upgrade\r\nUpgrade: websocket\r\n",
    b"\r\n",
    b"\n",
    b" ",
    b"[1]",
]


class ResponseCounter:
    def __init__(self) -> None:
        self.complete = 0

    def on_message_complete(self) -> None:
        self.complete += 1


async def test_any_bytes_in_any_pieces_get_http_responses_then_a_close(server):
    door = server.door

    @settings(max_examples=300, deadline=None)
    @given(
        pieces=st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=16)), max_size=24),
        cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
    )
    def feed(pieces: list[bytes], cuts: list[int]) -> None:
        data = b"".join(pieces)
        bounds = [0, *sorted(cut for cut in cuts if cut < len(data)), len(data)]
        recording, transport = RecordingDoor(door), FakeTransport()
        connection = HttpConnection(recording)
        connection.connection_made(transport)
        delivered = b""
        for start, end in zip(bounds, bounds[1:], strict=False):
            if not transport.reading or transport.closed or recording.handed is not None:
                break
            connection.get_buffer(-1)[: end - start] = data[start:end]
            connection.buffer_updated(end - start)
            delivered += data[start:end]
        connection.connection_lost(None)

        written = bytes(transport.written)
        counter = ResponseCounter()
        httptools.HttpResponseParser(counter).feed_data(written)  # raises if not HTTP
        if written.endswith(BAD_REQUEST):
            assert transport.closed
        if recording.handed is not None:
            # From the first byte of a request on, and nothing written after.
            assert delivered.endswith(recording.handed)
            assert re.match(rb"[A-Z]", recording.handed)
            assert len(written) == recording.written_before

    feed()
