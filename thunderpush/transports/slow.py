"""Clients too slow for what they are sent: one rule for every transport.

A client that stops reading would otherwise make the server keep everything
published to its channels.  Each transport notices in its own way when a
connection holds more than ``max_unsent_bytes`` (the websocket's transport
calls ``pause_writing``; a SockJS session counts its queue and the response
in flight), frees that memory itself, and then calls ``too_slow``: one
WARNING line that says who and why, and the session closed with 9011, which
clients reconnect on.
"""

from __future__ import annotations

import logging
from typing import Any

from thunderpush.core.commands import log_context
from thunderpush.core.protocol import CLIENT_TOO_SLOW

logger = logging.getLogger(__name__)


def describe(session: Any, ip: str) -> str:
    """Who a session is, for a log line: its user id (once connected) and address."""
    user = getattr(session.conn, "userid", None) if session is not None else None
    who = f"user {user}" if user is not None else "an anonymous client"
    return f"{who} from {ip or 'an unknown address'}"


def log_too_slow(session: Any, ip: str, limit: int) -> None:
    """The one line logged for a connection closed as too slow, with the connection's context."""
    context = log_context(getattr(session, "conn", None))
    logger.warning(
        "Closing the connection of %s: client too slow (more than %d bytes unsent).",
        describe(session, ip),
        limit,
        extra={**context, "address": ip or context.get("address")},
    )


def close_too_slow(session: Any) -> None:
    """Close ``session`` as too slow, once its unsent data has been let go.

    A session closes once: if it has closed meanwhile, this does nothing.
    """
    session.close(*CLIENT_TOO_SLOW)
