"""Built-in TLS: the front door's context, and Tornado's share of a TLS connection.

With ``ssl_cert`` (and ``ssl_key``, unless the key is in the same file) the
front door accepts TLS on its one port, and everything it serves itself,
the API and websockets, runs on asyncio's TLS transport unchanged.

A request the door hands to Tornado cannot take its connection along as a
plain connection does (a duplicated descriptor): the TLS session lives in
this process's asyncio transport, not in the socket.  Tornado gets one end of
a socketpair instead, and ``relay`` copies bytes between the other end and the
TLS transport, each way reading only while the other way can write (the
transports' own flow control, so neither side buffers without bound).  A
websocket that Tornado accepts leaves Tornado with that end (``detach``) and
is served through the same relay.  Either side closing closes the other once
what it was sent has gone out::

    context = server_context(config)         # None without a certificate
    connect = relay(tls_transport, our_end)  # the transport is the relay's now
    await connect                            # bytes flow once it returns
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Coroutine
from typing import Any

from thunderpush.config import Config, ConfigError


def server_context(config: Config) -> ssl.SSLContext | None:
    """The TLS context for ``config``'s certificate and key; None when it has none.

    Raises ``ConfigError`` with the reason when the files cannot be used, so
    that a bad path is one line at start, not a traceback.
    """
    if not config.ssl_cert:
        if config.ssl_key:
            raise ConfigError("--ssl-key was given without --ssl-cert")
        return None
    files = config.ssl_cert if not config.ssl_key else f"{config.ssl_cert} and {config.ssl_key}"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # An encrypted key gets an empty password (and is refused), never a prompt.
        context.load_cert_chain(config.ssl_cert, config.ssl_key or None, password=b"")
    except ssl.SSLError as error:
        raise ConfigError(
            f"{files}: not a PEM certificate chain and its unencrypted private key "
            f"({error.reason or error})"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read {error.filename or files}: {error.strerror}") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


class _End(asyncio.Protocol):
    """One side of a relay: what it reads is written to the other side."""

    __slots__ = ("transport", "other", "early")

    def __init__(self) -> None:
        self.transport: Any = None
        self.other: _End | None = None
        # What arrived before the other side was connected: Python 3.10's TLS
        # transport delivers what it has decrypted even while paused.
        self.early: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        other = self.other.transport
        if other is None:
            self.early.append(data)
        elif not other.is_closing():  # (asyncio warns of writes to a closed transport)
            other.write(data)

    def pause_writing(self) -> None:
        if self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other.transport is not None:
            self.other.transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # the transport closes; ``connection_lost`` closes the other side

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        other = self.other.transport
        if other is not None:
            other.close()  # after what it holds for its peer is written


class _PairEnd(_End):
    """The relay's end of the socketpair, connected after the TLS side is taken over."""

    __slots__ = ()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        tls = self.other
        if tls.transport is None or tls.transport.is_closing():
            transport.close()  # the client left during the hand-over
            return
        for data in tls.early:
            transport.write(data)
        tls.early.clear()
        tls.transport.resume_reading()  # paused since the request was handed off


def relay(transport: asyncio.Transport, sock: socket.socket) -> Coroutine[Any, Any, None]:
    """Take over ``transport`` now; the returned coroutine relays it to ``sock``.

    ``transport`` must not be reading (the front door paused it when it
    handed the request off): nothing arrives before ``sock`` can take it.
    """
    tls, pair = _End(), _PairEnd()
    tls.other, pair.other = pair, tls
    tls.transport = transport
    transport.set_protocol(tls)
    transport.set_write_buffer_limits()  # the defaults, whatever the last owner set
    return _connect(pair, sock)


async def _connect(pair: _PairEnd, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    try:
        await loop.connect_accepted_socket(lambda: pair, sock)
    except OSError:
        sock.close()
        if pair.other.transport is not None:
            pair.other.transport.abort()
