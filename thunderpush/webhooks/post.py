"""Webhook POSTs on aiohttp's client, whose connections are kept alive between them.

Why aiohttp: measured with ``bench/webhook_post.py`` (docs/webhooks.rst has
the table), a POST of 100 events to a local TLS receiver costs the sender
about 0.3 ms of CPU on aiohttp's kept connection, against 1.7 to 2.2 ms for
our own client before (a connection, so a TLS handshake, per POST), 2.5 to
3.2 ms for Tornado's ``SimpleAsyncHTTPClient`` (no keep-alive either) and
1.2 to 1.4 ms for httpx; Tornado's curl client came close (0.45 to 0.5 ms),
but pycurl's wheel brings 17 MB of its own libraries, and its libcurl looks
for CAs in ``/etc/pki/tls/certs/ca-bundle.crt``, which Debian does not have.
aiohttp is asyncio's own: a POST cancelled at shutdown is simply gone, its
socket closed.

One ``Poster`` per server holds the pool (all apps share it; each app POSTs
one at a time, so an app holds at most one connection per receiver host).
Certificates are checked against the system's CAs (``SSL_CERT_FILE`` names
another bundle, as for any OpenSSL program); ``user:password@`` in the URL is
sent as basic authentication; a redirect is a failure, as any answer but 2xx.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import yarl

from thunderpush import __version__

# Answers longer than this are not read: the connection is closed instead of kept.
MAX_ANSWER = 64 * 1024
# A kept connection unused this long is closed (the receiver may close it sooner).
KEEP_ALIVE = 30.0


class Poster:
    """The HTTP client of a server's webhooks: ``await post(...)``, ``await close()``."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def post(
        self, url: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> str | None:
        """POSTs ``body`` to the http(s) ``url``; None if answered 2xx within ``timeout``
        seconds, else why not, in a few words."""
        try:
            async with self._client().post(
                yarl.URL(url, encoded=True),
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                status = response.status
                length = response.content_length
                if length is not None and length <= MAX_ANSWER:
                    await response.read()  # read to the end: the connection can be kept
        except asyncio.TimeoutError:
            return f"no answer within {timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return str(error) or type(error).__name__
        return None if 200 <= status < 300 else f"status {status}"

    async def close(self) -> None:
        """Closes the kept connections; a later ``post`` opens new ones."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        # Made in the running loop, at the first POST: aiohttp binds a session to its loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=ssl.create_default_context(), keepalive_timeout=KEEP_ALIVE
                ),
                headers={"User-Agent": f"Thunderpush/{__version__} webhooks"},
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session
