"""The wire vocabulary shared by the API, the command language and the hub.

Everything a client can observe byte for byte lives here: close codes and their
reasons, the user-id and channel-name rules, the encoding of a delivery and
of the events the server sends about subscriptions and presence.  Keeping it in one
Tornado-free module lets the hub build a delivery once per publish and lets
the tests compare frames against the same definitions.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import NamedTuple

from thunderpush.config import LONGEST_CHANNEL_NAME


class Close(NamedTuple):
    """A SockJS close frame: ``c[code,"reason"]``."""

    code: int
    reason: str


INVALID_API_KEY = Close(9000, "Invalid API key.")
SUBSCRIBE_BEFORE_CONNECT = Close(9001, "Subscribing before connecting.")
FORCED_DISCONNECT = Close(9002, "Server closed the connection (intentionally).")
# A CONNECT whose user token is missing (where the app requires one), wrong or expired.
INVALID_SIGNATURE = Close(9003, "Invalid signature.")
# NEW: outside 9000-9003 so that clients reconnect (to this server once it is
# back, or to another one behind the same address).
SERVER_SHUTDOWN = Close(9010, "Server shutting down.")
# Unsent data over the server's limit: the client reads too slowly to keep up.
CLIENT_TOO_SLOW = Close(9011, "Client too slow.")
TOO_MANY_COMMANDS = Close(9012, "Too many commands.")
# A cluster node that was away from Redis: messages may have been missed; the
# client reconnects and recovers (``since=``).  Pusher clients get 4200.
MISSED = Close(9013, "Reconnect: messages may have been missed.")

# Clients must not reconnect after these: retrying cannot succeed.
FINAL_CLOSE_CODES = frozenset({9000, 9001, 9002, 9003})

_CHANNEL_NAME = re.compile(r"[a-zA-Z0-9_\-=@,.;]{1,64}")


def is_valid_channel_name(name: object) -> bool:
    """Channel names are 1-64 ASCII letters, digits or ``_-=@,.;``."""
    return isinstance(name, str) and _CHANNEL_NAME.fullmatch(name) is not None


_CHANNEL_CHARACTERS = re.compile(r"[a-zA-Z0-9_\-=@,.;]+")


def is_channel_name(name: object, longest: int = LONGEST_CHANNEL_NAME) -> bool:
    """The same characters, up to ``longest`` of them: Pusher's rule is Thunderpush's
    with 164 (an app's ``max_channel_name_length``), so the hub takes names up to
    the longest any app may allow, and each door applies its own length."""
    return (
        isinstance(name, str)
        and len(name) <= longest
        and _CHANNEL_CHARACTERS.fullmatch(name) is not None
    )


MAX_USER_ID_LENGTH = 128


def is_valid_user_id(userid: str) -> bool:
    """User ids are 1-128 characters, none of them whitespace or a control character.

    They appear in logs, in API answers and in other users' presence events,
    so nothing invisible or line-breaking may hide in one.
    """
    if not 0 < len(userid) <= MAX_USER_ID_LENGTH:
        return False
    if userid.isascii():  # the usual id, checked at C speed: the same answer
        return userid.isprintable() and " " not in userid
    return not any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in userid)


# Channels whose names start so need a channel token; presence ones also
# tell their subscribers who else is there.
PRIVATE_PREFIXES = ("private-", "presence-")
PRESENCE_PREFIX = "presence-"


def needs_channel_token(channel: str) -> bool:
    return channel.startswith(PRIVATE_PREFIXES)


def is_presence_channel(channel: str) -> bool:
    return channel.startswith(PRESENCE_PREFIX)


def raw_websocket_close_code(code: int) -> int:
    """WebSocket close codes stop at 4999, so 9xxx travels as 4xxx there."""
    if 9000 <= code <= 9999:
        return 4000 + (code - 9000)
    return code


def encode_delivery(
    payload: str, channel: str | None = None, position: tuple[str, int] | None = None
) -> str:
    """The JSON element of one delivery, compact and ASCII-only.

    ``payload`` is the publish body as received; it is sent as a JSON string,
    never re-parsed, so the subscriber sees exactly what the backend posted.
    ``position`` (epoch, offset) is the message's place in a channel that
    keeps history; without one the element is what it always was.
    """
    if channel is None:
        return '{"payload":' + json.dumps(payload) + "}"
    element = '{"payload":' + json.dumps(payload) + ',"channel":' + json.dumps(channel)
    if position is None:
        return element + "}"
    epoch, offset = position
    return element + ',"epoch":' + json.dumps(epoch) + ',"offset":' + str(offset) + "}"


# ``since=<epoch>/<offset>``, the last word of a SUBSCRIBE item that asks for
# the messages missed since that position (an epoch is 16 hex digits).
_SINCE = re.compile(r"since=([0-9a-f]{16})/([0-9]{1,20})")


def parse_since(word: str) -> tuple[str, int] | None:
    """The (epoch, offset) of a ``since=`` word; None if it is malformed."""
    match = _SINCE.fullmatch(word)
    if match is None:
        return None
    return match[1], int(match[2])


# The reasons a subscription_error gives.
INVALID_CHANNEL_TOKEN = "Invalid channel token."
TOO_MANY_CHANNELS = "Too many channels."
# A presence channel has ``--max-presence-members`` users already, this one not among them.
TOO_MANY_MEMBERS = "Too many members."


def subscription_error(channel: str, message: str) -> str:
    return _event("subscription_error", channel=channel, message=message)


def subscription_succeeded(channel: str, members: list[str] | None = None) -> str:
    """The answer to a private subscription; a presence one lists who is there."""
    if members is None:
        return _event("subscription_succeeded", channel=channel)
    return _event("subscription_succeeded", channel=channel, members=members)


def member_added(channel: str, user: str) -> str:
    return _event("member_added", channel=channel, user=user)


def member_removed(channel: str, user: str) -> str:
    return _event("member_removed", channel=channel, user=user)


def recovered(channel: str, complete: bool, epoch: str, offset: int) -> str:
    """The end of a recovery: ``complete`` when every missed message was sent,
    and the stream's position either way (``""``, 0 when it has none)."""
    return _event("recovered", channel=channel, complete=complete, epoch=epoch, offset=offset)


def _event(name: str, **fields: object) -> str:
    """An event element: ``"event"`` first and never a ``"payload"``, so no old
    client takes it for a delivery; compact and ASCII-only like a delivery."""
    return json.dumps({"event": name, **fields}, separators=(",", ":"))
