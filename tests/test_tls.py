"""Built-in TLS: HTTPS and WSS on the front door's one port, with a certificate made here.

Every transport is driven over TLS: the websockets the door serves itself, the
polling and streaming transports that it hands to Tornado (through the relay
of ``thunderpush.transports.door.tls``), and the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import tempfile
from pathlib import Path

import pytest
import trustme
from tornado.httpclient import AsyncHTTPClient

from .support import KEY, SECRET
from .support.clients import (
    RawWebSocketClient,
    WebSocketClient,
    XhrPollingClient,
    XhrStreamingClient,
)
from .support.processes import refused_start
from .support.wire import RawClient, request

# The certificate's files, written before any server of this module starts.
CERTS = Path(tempfile.gettempdir()) / f"thunderpush-test-tls-{os.getpid()}"
CERT, PRIVATE_KEY = str(CERTS / "cert.pem"), str(CERTS / "key.pem")
tls = pytest.mark.config(ssl_cert=CERT, ssl_key=PRIVATE_KEY)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module", autouse=True)
def certificate_files(ca):
    CERTS.mkdir(exist_ok=True)
    issued = ca.issue_cert("127.0.0.1", "localhost")
    issued.cert_chain_pems[0].write_to_path(CERT)
    issued.private_key_pem.write_to_path(PRIVATE_KEY)
    yield
    for path in CERTS.iterdir():
        path.unlink()
    CERTS.rmdir()


@pytest.fixture
def trusting(ca) -> ssl.SSLContext:
    """A client context that trusts the test's certificate authority (and only it)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def https(server) -> str:
    return f"https://127.0.0.1:{server.port}"


async def tls_client(server, kind, context, user, *channels):
    """A CONNECTed, SUBSCRIBEd session of transport ``kind`` over TLS."""
    client = await kind(https(server), context).open()
    server.clients.append(client)
    await client.send(f"CONNECT {user}:{KEY}")
    await client.send("SUBSCRIBE " + ":".join(channels))
    await server.settled(lambda: user in server.hub.channel_users(channels[0]))
    return client


@tls
@pytest.mark.parametrize(
    "kind", [WebSocketClient, RawWebSocketClient, XhrPollingClient, XhrStreamingClient]
)
async def test_a_session_over_tls_gets_what_the_api_publishes_over_tls(server, trusting, kind):
    client = await tls_client(server, kind, trusting, "alice", "news")
    response = await AsyncHTTPClient().fetch(
        f"{https(server)}/api/1.0.0/{KEY}/channels/news/",
        method="POST",
        body=json.dumps({"n": 1}),
        headers={"X-Thunder-Secret-Key": SECRET},
        ssl_options=trusting,
    )
    assert response.code == 200
    assert json.loads(response.body) == {"count": 1}
    assert await client.message() == {"payload": '{"n": 1}', "channel": "news"}
    await client.send("UNSUBSCRIBE news")  # client to server, after the first answer
    await server.settled(lambda: "alice" not in server.hub.channel_users("news"))


@tls
async def test_tornado_names_the_tls_client_by_its_address(server, trusting):
    """Tornado reads a relayed connection from a socketpair: the client is still named."""
    await tls_client(server, XhrPollingClient, trusting, "alice", "news")
    (session,) = server.router.live_sessions
    assert session.conn_info.ip == "127.0.0.1"


@tls
async def test_the_api_and_info_over_tls(server, trusting):
    fetch = AsyncHTTPClient().fetch
    users = await fetch(
        f"{https(server)}/api/1.0.0/{KEY}/users/",
        headers={"X-Thunder-Secret-Key": SECRET},
        ssl_options=trusting,
    )
    assert json.loads(users.body) == {"count": 0}
    info = await fetch(f"{https(server)}/connect/info", ssl_options=trusting)
    assert json.loads(info.body)["websocket"] is True
    script = await fetch(f"{https(server)}/thunderpush.js", ssl_options=trusting)
    assert b"Thunder" in script.body


@tls
async def test_plain_http_to_the_tls_port_is_closed_and_the_port_still_serves(
    server, trusting, caplog
):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request("GET", f"/api/1.0.0/{KEY}/users/"))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # no answer in clear text
    writer.close()
    # A plain websocket handshake as well.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(RawClient.handshake("/connect/websocket"))
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    client = await tls_client(server, WebSocketClient, trusting, "alice", "news")
    assert client.close_code is None
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.config(ssl_cert=CERT, ssl_key=PRIVATE_KEY, head_timeout=0.2)
async def test_a_silent_client_is_cut_off_during_the_tls_handshake(server):
    """The head timeout bounds the handshake too: a client that says nothing is closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


@tls
async def test_a_relayed_connection_ends_for_tornado_when_the_client_leaves(server, trusting):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=trusting)
    writer.write(request("POST", "/connect/0/s1/xhr_streaming", ""))
    await asyncio.wait_for(reader.readuntil(b"h" * 2048 + b"\n"), 5)  # the stream's prelude
    (session,) = server.router.live_sessions
    assert session.handler is not None
    writer.close()
    # Tornado sees its end of the relay close: the session loses its stream.
    await server.settled(lambda: session.handler is None)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arguments, reason",
    [
        (["--ssl-cert", "/nonexistent/cert.pem"], "cannot read /nonexistent/cert.pem"),
        (["--ssl-cert", CERT, "--ssl-key", "/nonexistent/key.pem"], "cannot read"),
        (["--ssl-cert", sys.executable], "not a PEM certificate chain"),
        (["--ssl-cert", CERT, "--ssl-key", CERT], "not a PEM certificate chain"),
        (["--ssl-key", PRIVATE_KEY], "--ssl-key was given without --ssl-cert"),
    ],
    ids=["no certificate", "no key", "not PEM", "key is a certificate", "key alone"],
)
def test_unusable_certificate_files_stop_the_server_with_one_clear_line(
    tmp_path, arguments, reason
):
    status, output = refused_start(tmp_path, *arguments)
    assert status == 2
    assert "Traceback" not in output
    assert output.startswith("Thunderpush cannot start: "), output
    assert reason in output, output


@pytest.mark.config(ssl_cert=CERT, ssl_key=PRIVATE_KEY, max_connections=1)
async def test_a_connection_over_the_limit_is_answered_503_over_tls_too(server, trusting):
    """TLS cannot half-close: the refusal closes once its answer is out, with no traceback."""
    _, first = await asyncio.open_connection("127.0.0.1", server.port, ssl=trusting)
    await server.settled(lambda: server.door.open.total == 1)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=trusting)
    writer.write(f"GET /api/1.0.0/{KEY}/users/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:100]
    assert b'\r\n\r\n{"message": "Too many connections.", "status": 503}' in answer
    writer.close()
    first.close()
