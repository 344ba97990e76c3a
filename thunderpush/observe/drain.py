"""Closing every session in batches, so that clients move to other nodes smoothly.

Closing ten thousand sessions at once sends ten thousand clients to
reconnect at once: a thundering herd at whatever nodes remain, or at this
one once it is back.  ``drain`` spreads the closes evenly over ``seconds``, a
batch every ``STEP``, each with a close code clients reconnect on (9010), and
closes whatever is left at once when ``hurry`` is set (a second signal)::

    await drain(router, seconds=5.0)
"""

from __future__ import annotations

import asyncio
import math
from itertools import islice
from typing import TYPE_CHECKING

from thunderpush.core import protocol

if TYPE_CHECKING:
    from thunderpush.transports.sockjs.router import SockJSRouter

# Time between two batches, in seconds.
STEP = 0.1


async def drain(
    router: SockJSRouter,
    seconds: float,
    close: protocol.Close = protocol.SERVER_SHUTDOWN,
    hurry: asyncio.Event | None = None,
) -> None:
    """Close ``router``'s open sessions with ``close`` in batches over ``seconds``.

    Sessions opened meanwhile (over connections already open) are closed too:
    when it returns, none is open.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    hurry = hurry or asyncio.Event()
    while router.live_sessions:
        batches_left = math.floor((deadline - loop.time()) / STEP) + 1
        if hurry.is_set() or batches_left <= 1:
            break
        sessions = router.live_sessions
        batch = math.ceil(len(sessions) / batches_left)
        for session in list(islice(sessions, batch)):
            session.close(*close)
        try:
            await asyncio.wait_for(hurry.wait(), STEP)
        except asyncio.TimeoutError:
            pass
    router.close_all(*close)
