"""SIGTERM on a real server with a thousand clients: a smooth drain, then a clean exit.

Every client must get a close frame with the reconnect code within the drain
time, spread over it (not all at once: that would send them all back at the
same moment), ``/ready`` must say 503 meanwhile, and the process must remove
its PID file and exit 0.  Raw websockets are the cheapest clients.
"""

from __future__ import annotations

import asyncio
import signal
import struct

import pytest
from tornado.httpclient import AsyncHTTPClient

from thunderpush.core.protocol import SERVER_SHUTDOWN, raw_websocket_close_code

from .support.processes import bad_log_lines, free_port, start_server_process
from .support.wire import RawClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

CLIENTS = 1000
DRAIN_SECONDS = 2.0
CLOSE = 0x8


async def open_clients(port: int) -> list[RawClient]:
    clients: list[RawClient] = []
    while len(clients) < CLIENTS:
        batch = min(100, CLIENTS - len(clients))
        opening = (RawClient.open(port, "/connect/websocket") for _ in range(batch))
        clients += await asyncio.gather(*opening)
    return clients


async def metric(url: str, sample: str) -> float | None:
    """The value of ``sample`` (name and labels, as written) in ``url``'s metrics."""
    body = (await AsyncHTTPClient().fetch(url + "/metrics")).body.decode()
    values = dict(line.rsplit(" ", 1) for line in body.splitlines() if not line.startswith("#"))
    return float(values[sample]) if sample in values else None


async def close_frame(client: RawClient, loop: asyncio.AbstractEventLoop) -> tuple[int, float]:
    """The close code the client gets and when, then the client's end of the close."""
    while True:
        opcode, payload = await client.read()
        if opcode == CLOSE:
            client.writer.close()
            return struct.unpack("!H", payload[:2])[0], loop.time()


async def test_sigterm_closes_a_thousand_clients_over_the_drain_time(tmp_path):
    metrics_url = f"http://127.0.0.1:{free_port()}"
    running = start_server_process(
        tmp_path,
        "--drain-seconds",
        str(DRAIN_SECONDS),
        "--metrics-port",
        metrics_url.rsplit(":", 1)[1],
    )
    try:
        clients = await open_clients(running.port)
        open_sessions = 'thunderpush_connections{transport="rawwebsocket"}'
        deadline = asyncio.get_running_loop().time() + 10
        while await metric(metrics_url, open_sessions) != CLIENTS:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)

        loop = asyncio.get_running_loop()
        closes = asyncio.gather(*(close_frame(client, loop) for client in clients))
        signalled = loop.time()
        running.proc.send_signal(signal.SIGTERM)
        # While it drains, the metrics port still answers: not ready.
        ready = await AsyncHTTPClient().fetch(metrics_url + "/ready", raise_error=False)
        assert (ready.code, ready.body) == (
            503,
            b'{"ready": false, "draining": true, "cluster": null}\n',
        )
        assert await metric(metrics_url, "thunderpush_draining") == 1
        received = await asyncio.wait_for(closes, DRAIN_SECONDS + 5)

        assert {code for code, _ in received} == {raw_websocket_close_code(SERVER_SHUTDOWN.code)}
        times = sorted(at - signalled for _, at in received)
        assert times[-1] < DRAIN_SECONDS + 0.5, times[-1]
        # Spread out: a few at first, the last ones near the end of the drain.
        assert times[CLIENTS // 10] < DRAIN_SECONDS / 2, times[CLIENTS // 10]
        assert times[-CLIENTS // 10] > DRAIN_SECONDS / 2, times[-CLIENTS // 10]
        assert await asyncio.get_running_loop().run_in_executor(None, running.proc.wait, 10) == 0
        assert not running.pid_path.exists()
        assert not bad_log_lines(running)
    finally:
        RawClient.close_all()
        if running.proc.poll() is None:
            running.stop(signal.SIGKILL)
