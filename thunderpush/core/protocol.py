"""The wire vocabulary shared by the API, the command language and the hub.

Everything a client can observe byte for byte lives here: close codes and their
reasons, the channel-name rule and the encoding of a delivery.  Keeping it in one
Tornado-free module lets the hub build a delivery once per publish and lets
the tests compare frames against the same definitions.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple


class Close(NamedTuple):
    """A SockJS close frame: ``c[code,"reason"]``."""

    code: int
    reason: str


INVALID_API_KEY = Close(9000, "Invalid API key.")
SUBSCRIBE_BEFORE_CONNECT = Close(9001, "Subscribing before connecting.")
FORCED_DISCONNECT = Close(9002, "Server closed the connection (intentionally).")
# NEW: outside 9000-9003 so that clients reconnect (to this server once it is
# back, or to another one behind the same address).
SERVER_SHUTDOWN = Close(9010, "Server shutting down.")
# NEW: unsent data over ``max_unsent_bytes``; clients reconnect (and catch up).
CLIENT_TOO_SLOW = Close(9011, "Client too slow.")

# Clients must not reconnect after these: retrying cannot succeed.
FINAL_CLOSE_CODES = frozenset({9000, 9001, 9002, 9003})

_CHANNEL_NAME = re.compile(r"[a-zA-Z0-9_\-=@,.;]{1,64}")


def is_valid_channel_name(name: object) -> bool:
    """Channel names are 1-64 ASCII letters, digits or ``_-=@,.;``."""
    return isinstance(name, str) and _CHANNEL_NAME.fullmatch(name) is not None


def raw_websocket_close_code(code: int) -> int:
    """WebSocket close codes stop at 4999, so 9xxx travels as 4xxx there."""
    if 9000 <= code <= 9999:
        return 4000 + (code - 9000)
    return code


def encode_delivery(payload: str, channel: str | None = None) -> str:
    """The JSON element of one delivery, compact and ASCII-only.

    ``payload`` is the publish body as received; it is sent as a JSON string,
    never re-parsed, so the subscriber sees exactly what the backend posted.
    """
    if channel is None:
        return '{"payload":' + json.dumps(payload) + "}"
    return '{"payload":' + json.dumps(payload) + ',"channel":' + json.dumps(channel) + "}"
