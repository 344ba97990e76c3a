"""Webhook POSTs: which HTTP client the sender should use, measured.

    python bench/webhook_post.py [--posts 1000] [--only aiohttp ...]

Starts a receiver in a child process (Tornado, keep-alive, answering 200 at
once) on 127.0.0.1, over plain HTTP and over TLS with a certificate from a
``trustme`` CA, then for each client POSTs ``--posts`` webhook bodies of 100
events one after the other, as the sender does (one POST at a time per app),
and prints a Markdown table: POSTs per second, the client process's CPU
(user + system) per POST, and how many TCP connections the receiver saw.

The clients: ``streams``, the sender before this measurement (its own HTTP
over asyncio streams, one connection per POST, kept here for comparison);
``tornado-simple``, Tornado's ``SimpleAsyncHTTPClient`` (no keep-alive);
``tornado-curl``, Tornado's ``CurlAsyncHTTPClient`` (pycurl, keep-alive);
``aiohttp`` and ``httpx`` (keep-alive); ``sender``, the sender's ``Poster``
(``thunderpush/webhooks/post.py``, on aiohttp: what the server runs).  A
client that is not installed is skipped.  Needs ``trustme``
(requirements-test.txt).  Why in a child process: the CPU measured is the
client's alone, the receiver's is not in it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import urlsplit

import trustme

from thunderpush.core.listener import CHANNEL_OCCUPIED
from thunderpush.webhooks.events import payload

Post = Callable[[str, dict[str, str], bytes], Awaitable[int]]

HEADERS = {"Content-Type": "application/json", "X-Thunder-Key": "key", "X-Thunder-Signature": "0"}
BODY = payload([(CHANNEL_OCCUPIED, f"channel-{number:04}", None) for number in range(100)], 0)


def receive(port: int, certfile: str | None, ready: multiprocessing.Event, opened) -> None:
    """The receiver (child process): 200 to every POST; counts TCP connections in ``opened``."""
    import tornado.ioloop
    import tornado.web
    from tornado.httpserver import HTTPServer

    class Hook(tornado.web.RequestHandler):
        def post(self) -> None:
            self.set_status(200)

    class Counting(HTTPServer):
        def handle_stream(self, stream, address) -> None:
            with opened.get_lock():
                opened.value += 1
            super().handle_stream(stream, address)

    context = None
    if certfile is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile)
    application = tornado.web.Application([(r"/hook", Hook)], log_function=lambda _: None)
    Counting(application, ssl_options=context).listen(port, "127.0.0.1")
    ready.set()
    tornado.ioloop.IOLoop.current().start()


# -- the clients: each returns a POST function and a closer ------------------------


def streams(context: ssl.SSLContext) -> tuple[Post, Callable[[], Awaitable[None]]]:
    """The sender before: HTTP/1.1 by hand over asyncio streams, ``Connection: close``."""

    async def post(url: str, headers: dict[str, str], body: bytes) -> int:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        lines = [
            f"POST {parts.path} HTTP/1.1",
            f"Host: {parts.netloc}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        reader, writer = await asyncio.open_connection(
            parts.hostname, parts.port, ssl=context if secure else None, limit=1024
        )
        try:
            writer.write("\r\n".join([*lines, "", ""]).encode("latin-1") + body)
            await writer.drain()
            return int((await reader.readline()).split()[1])
        finally:
            writer.close()

    async def close() -> None:
        pass

    return post, close


def tornado_client(kind: str, context: ssl.SSLContext, cafile: str):
    from tornado.httpclient import HTTPRequest

    if kind == "curl":
        from tornado.curl_httpclient import CurlAsyncHTTPClient as Client
    else:
        from tornado.simple_httpclient import SimpleAsyncHTTPClient as Client
    client = Client(force_instance=True)

    async def post(url: str, headers: dict[str, str], body: bytes) -> int:
        options = {"ca_certs": cafile} if kind == "curl" else {"ssl_options": context}
        request = HTTPRequest(url, "POST", headers=headers, body=body, **options)
        return (await client.fetch(request, raise_error=False)).code

    async def close() -> None:
        client.close()

    return post, close


def aiohttp_client(context: ssl.SSLContext, cafile: str):
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))

    async def post(url: str, headers: dict[str, str], body: bytes) -> int:
        async with session.post(url, headers=headers, data=body) as response:
            await response.read()
            return response.status

    return post, session.close


def httpx_client(context: ssl.SSLContext, cafile: str):
    import httpx

    client = httpx.AsyncClient(verify=context)

    async def post(url: str, headers: dict[str, str], body: bytes) -> int:
        return (await client.post(url, headers=headers, content=body)).status_code

    return post, client.aclose


def sender_client(context: ssl.SSLContext, cafile: str):
    """The sender's own ``Poster`` (aiohttp), trusting the CA through ``SSL_CERT_FILE``."""
    from thunderpush.webhooks.post import Poster

    os.environ["SSL_CERT_FILE"] = cafile
    poster = Poster()

    async def post(url: str, headers: dict[str, str], body: bytes) -> int:
        failure = await poster.post(url, headers, body, 5.0)
        return 200 if failure is None else 0

    return post, poster.close


# name: (the module it needs, the function that makes it from an SSL context and a CA file)
CLIENTS = {
    "streams": (None, lambda context, cafile: streams(context)),
    "tornado-simple": ("tornado", partial(tornado_client, "simple")),
    "tornado-curl": ("pycurl", partial(tornado_client, "curl")),
    "aiohttp": ("aiohttp", aiohttp_client),
    "httpx": ("httpx", httpx_client),
    "sender": ("aiohttp", sender_client),
}


async def measure(name: str, url: str, context: ssl.SSLContext, cafile: str, posts: int):
    post, close = CLIENTS[name][1](context, cafile)
    try:
        assert await post(url, HEADERS, BODY) == 200  # warm up: imports, first connection
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(posts):
            status = await post(url, HEADERS, BODY)
            assert status == 200, status
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--only", nargs="*", choices=list(CLIENTS))
    args = parser.parse_args()
    names = [
        name
        for name, (module, _) in CLIENTS.items()
        if (not args.only or name in args.only)
        and (module is None or importlib.util.find_spec(module) is not None)
    ]
    authority = trustme.CA()
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with tempfile.TemporaryDirectory() as folder:
        certfile, cafile = os.path.join(folder, "server.pem"), os.path.join(folder, "ca.pem")
        authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(certfile)
        authority.cert_pem.write_to_path(cafile)
        print(f"{args.posts} POSTs of {len(BODY)} bytes each, one at a time, to 127.0.0.1\n")
        print("| client | scheme | POSTs/s | CPU per POST (ms) | connections |")
        print("| --- | --- | ---: | ---: | ---: |")
        for scheme in ("https", "http"):
            for name in names:
                ready, opened = multiprocessing.Event(), multiprocessing.Value("i", 0)
                port = _free_port()
                child = multiprocessing.Process(
                    target=receive,
                    args=(port, certfile if scheme == "https" else None, ready, opened),
                    daemon=True,
                )
                child.start()
                try:
                    ready.wait(10)
                    url = f"{scheme}://127.0.0.1:{port}/hook"
                    wall, cpu = asyncio.run(measure(name, url, context, cafile, args.posts))
                finally:
                    child.kill()
                    child.join()
                print(
                    f"| {name} | {scheme} | {args.posts / wall:,.0f} | "
                    f"{cpu / args.posts * 1000:.3f} | {opened.value} |",
                    flush=True,
                )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    main()
