"""The read buffer every front-door connection shares, HTTP and websocket alike.

``thunderpush.transports.door.http`` and ``thunderpush.transports.websocket.reading``
both receive through it; it lives above both so that neither imports the other.
"""

from __future__ import annotations

import asyncio


class SharedReadBuffer(asyncio.BufferedProtocol):
    """Receives into one buffer that every connection of the process shares.

    A plain ``asyncio.Protocol`` gets each read in a fresh 256 KiB buffer, above
    glibc's mmap threshold: an mmap, a munmap and two page faults per read
    (20,004 faults for 10,000 publish requests on a fresh server).  The loop
    runs one read at a time and ``data_received`` copies what it keeps, so a
    single 64 KiB buffer serves every connection.
    """

    __slots__ = ()
    _view = memoryview(bytearray(64 * 1024))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._view[:nbytes]))
