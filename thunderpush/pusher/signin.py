"""Who a Pusher client says it is: its sign-in, its watchlist, a presence member's id.

pusher-js signs a connection in (``pusher:signin``) with ``user_data`` the
backend signed for its socket id (``signatures.signin_auth``); a presence
subscription names its member in ``channel_data`` the same way.  Both carry a
user id that makes the connection that user (``PusherConnection.become``), so
both are read here by one rule (``member``): a string, or a number taken as its
JSON text, that is a valid Thunderpush user id.

A sign-in may carry a ``watchlist``: the users whose coming online and going
the connection is told (``thunderpush.core.watchlist``), at most
``MAX_WATCHED``.  A bad signature or user id closes the connection with 4009,
as Pusher does; a bad watchlist is a ``pusher:error`` 4300 that keeps it, and
the sign-in does not happen.

Apart from ``thunderpush.pusher.connection`` because it is one message's
checks and none of the connection's life: the connection hands it itself.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from thunderpush.core import protocol as thunder
from thunderpush.core.watchlist import MAX_WATCHED
from thunderpush.pusher import protocol
from thunderpush.pusher.protocol import PusherError
from thunderpush.pusher.signatures import matches, signin_auth

if TYPE_CHECKING:
    from thunderpush.pusher.connection import PusherConnection


def sign_in(connection: PusherConnection, data: dict[str, Any]) -> None:
    """``pusher:signin``: ``connection`` becomes its user and watches its watchlist."""
    app = connection.app
    user_data = data.get("user_data")
    if not isinstance(user_data, str) or not matches(
        signin_auth(app.key, app.secret, connection.socket_id, user_data), data.get("auth")
    ):
        connection.log(logging.INFO, "Refused a Pusher sign-in: invalid signature.")
        connection.fail(protocol.UNAUTHORIZED)
        return
    parsed = _object(user_data)
    signed = None if parsed is None else _member_of(parsed, "id")
    if (
        parsed is None
        or signed is None
        or (connection.user is not None and connection.user != signed[0])
    ):
        connection.log(logging.INFO, "Refused a Pusher sign-in: no or another user id.")
        connection.fail(protocol.UNAUTHORIZED)
        return
    watchlist = _watchlist(parsed)
    if isinstance(watchlist, PusherError):
        connection.refuse(watchlist, user_data)
        return
    connection.become(signed[0])
    connection.signed_in = True
    connection.socket.send_pack(protocol.signin_success(user_data))
    if watchlist:
        app.hub.watch(connection, watchlist)


def member(data: str, field: str = "user_id") -> tuple[str, Any] | None:
    """The user id (a string or a number, as a string) and ``user_info`` in a presence
    subscription's ``channel_data`` (or a sign-in's ``user_data``, whose id is ``id``)."""
    parsed = _object(data)
    return None if parsed is None else _member_of(parsed, field)


def _object(data: str) -> dict[str, Any] | None:
    """``data`` read as a JSON object, or None."""
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _member_of(parsed: dict[str, Any], field: str) -> tuple[str, Any] | None:
    userid = _user_id(parsed.get(field))
    return None if userid is None else (userid, parsed.get("user_info"))


def _user_id(value: Any) -> str | None:
    """A user id as Pusher's clients give it (a string, or a number as its JSON), or
    None if ``value`` is none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = json.dumps(value)
    return value if isinstance(value, str) and thunder.is_valid_user_id(value) else None


def _watchlist(user_data: dict[str, Any]) -> list[str] | PusherError:
    """The user ids of a sign-in's ``watchlist`` (none: an empty list), or why it is
    refused: not a list, more than ``MAX_WATCHED`` ids, or an id that is not one."""
    watchlist = user_data.get("watchlist")
    if watchlist is None:
        return []
    if not isinstance(watchlist, list):
        return PusherError(4300, "Invalid watchlist: it must be a list of user ids")
    if len(watchlist) > MAX_WATCHED:
        return PusherError(
            4300, f"Watchlist too long: {len(watchlist)} user ids, at most {MAX_WATCHED}"
        )
    users = []
    for entry in watchlist:
        user = _user_id(entry)
        if user is None:
            return PusherError(4300, "Invalid watchlist: an entry is not a user id")
        users.append(user)
    return users
