"""Closing every session in batches, so that clients move to other nodes smoothly.

Closing ten thousand sessions at once sends ten thousand clients to
reconnect at once: a thundering herd at whatever nodes remain, or at this
one once it is back.  ``drain`` spreads the closes evenly over ``seconds``, a
batch every ``STEP``, each with a close code clients reconnect on (9010), and
closes whatever is left at once when ``hurry`` is set (a second signal)::

    await drain(service, seconds=5.0)   # the server's ``WebSocketService``
"""

from __future__ import annotations

import asyncio
import math
from itertools import islice
from typing import TYPE_CHECKING

from thunderpush.core import protocol

if TYPE_CHECKING:
    from thunderpush.transports.websocket.service import WebSocketService

# Time between two batches, in seconds.
STEP = 0.1


async def drain(
    service: WebSocketService,
    seconds: float,
    close: protocol.Close = protocol.SERVER_SHUTDOWN,
    hurry: asyncio.Event | None = None,
) -> None:
    """Close ``service``'s open sessions (SockJS's, Pusher's) with ``close`` in
    batches over ``seconds``.

    Sessions opened meanwhile (over connections already open) are closed too:
    when it returns, none is open.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    hurry = hurry or asyncio.Event()
    while service.live_sessions:
        batches_left = math.floor((deadline - loop.time()) / STEP) + 1
        if hurry.is_set() or batches_left <= 1:
            break
        sessions = service.live_sessions
        batch = math.ceil(len(sessions) / batches_left)
        for session in list(islice(sessions, batch)):
            session.close(*close)
        try:
            await asyncio.wait_for(hurry.wait(), STEP)
        except asyncio.TimeoutError:
            pass
    service.close_all(*close)
