"""The ``websockets`` library's log, told as this server tells it.

Every ``ServerProtocol`` of the server (the handshake's and each socket's)
logs through ``PROTOCOL_LOG``, the logger
``thunderpush.transports.websocket.socket.frames``: to see the library's
per-frame lines, set that logger to DEBUG::

    logging.getLogger("thunderpush.transports.websocket.socket.frames").setLevel(logging.DEBUG)
"""

from __future__ import annotations

import logging
import sys
from typing import Any


class _ProtocolLog(logging.LoggerAdapter):
    """The library's log, told as this server tells it.

    Its DEBUG and INFO lines are per frame or per connection ("< PING ...",
    "connection open"): a client could flood the log with them, so they are
    written only when ``thunderpush.transports.websocket.socket.frames`` itself is set
    to DEBUG, not when DEBUG is on for everything (``-v``).  A client's
    mistake is one line without a traceback; errors keep theirs.
    """

    def isEnabledFor(self, level: int) -> bool:
        if level < logging.WARNING:
            return logging.NOTSET < self.logger.level <= level
        return self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level < logging.ERROR and kwargs.pop("exc_info", None):
            error = sys.exc_info()[1]
            if error is not None:
                msg, args = f"{msg}: %s", (*args, error)
        super().log(level, msg, *args, **kwargs)


# The logger of every ``ServerProtocol`` here.
PROTOCOL_LOG = _ProtocolLog(logging.getLogger("thunderpush.transports.websocket.socket.frames"), {})
