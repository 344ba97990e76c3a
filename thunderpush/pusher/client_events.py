"""A Pusher client's ``client-*`` events: checked, sent to the channel, told the webhooks.

A client event goes to the channel's other Pusher subscribers through the
app's broker, so across the cluster, and never to Thunderpush clients nor into
a channel's history: they could not tell a client's words from the backend's.
It is refused with a ``pusher:error`` 4301 (the connection stays) unless the
app enables client events (``--client-events``), the channel needs a token
(private or presence, not encrypted: ``thunderpush.pusher.limits``), the sender
is subscribed to it, its name is an event name (``protocol.is_event_name``),
and it fits the app's Pusher limits.

Apart from ``thunderpush.pusher.connection`` because it is one message's
checks and sending and none of the connection's life: the connection hands it
itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from thunderpush.core import protocol as thunder
from thunderpush.core.broker import BackendUnavailable, PublishOptions
from thunderpush.core.listener import CLIENT_EVENT
from thunderpush.pusher import protocol

if TYPE_CHECKING:
    from thunderpush.pusher.connection import PusherConnection

logger = logging.getLogger(__name__)


def client_event(connection: PusherConnection, name: str, channel: Any, data: Any) -> None:
    """``connection``'s event ``name`` on ``channel``: refused, or sent and told."""
    app = connection.app
    if not app.client_events:
        connection.refuse(protocol.CLIENT_EVENTS_DISABLED, name)
        return
    if (
        not isinstance(channel, str)
        or not thunder.needs_channel_token(channel)
        or not app.hub.is_subscribed(connection, channel)
        or not protocol.is_event_name(name)
    ):
        connection.refuse(protocol.CLIENT_EVENT_REJECTED, name)
        return
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    refused = connection.client_events.refusal(channel, payload, app.pusher_limits)
    if refused is not None:
        connection.refuse(refused, name)
        return
    # In a presence channel the others learn who sent it, as Pusher tells them.
    sender = connection.user if thunder.is_presence_channel(channel) else None
    options = PublishOptions(name, connection.socket_id, sender, from_client=True)
    result = app.broker.send_to_channel(app, channel, payload, options)
    if isinstance(result, Awaitable):
        asyncio.ensure_future(result).add_done_callback(_sent)
    if app.hub.on_transition is not None:
        _told(connection, channel, name, payload, sender)


def _told(
    connection: PusherConnection, channel: str, name: str, payload: str, sender: str | None
) -> None:
    """The app's webhooks hear of the client event (Pusher's ``client_event``), on
    the node the client sent it to: once in a cluster."""
    detail = {"event": name, "data": payload, "socket_id": connection.socket_id}
    if sender is not None:
        detail["user_id"] = sender
    connection.app.hub.on_transition(CLIENT_EVENT, channel, detail)


def _sent(future: asyncio.Future[Any]) -> None:
    """A client event's send through the cluster: lost if Redis is away (as Pusher may)."""
    error = future.exception()
    if error is not None and not isinstance(error, BackendUnavailable):
        logger.error("A client event could not be sent.", exc_info=error)
