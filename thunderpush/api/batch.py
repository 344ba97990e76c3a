"""A batch: many messages in one request, checked whole before any is sent.

``POST batch/`` takes a JSON array of items, ``{"channel": c, "message": m}``
or ``{"user": u, "message": m}``.  Every item is checked before the first is
sent, so that a request with one bad item delivers nothing.  The items then
go out one after the other, each through the broker like a single send (so a
channel's history and webhooks see no difference), and a cluster broker's
answer to one is awaited before the next is sent: receivers get them in item
order on every node.

A message is only part of the body, so its posted bytes cannot be kept as a
single send keeps them: each is sent as its compact JSON text.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, NamedTuple

from thunderpush.api.answers import ApiError
from thunderpush.api.bodies import decoded
from thunderpush.core.apps import App
from thunderpush.core.protocol import is_valid_channel_name
from thunderpush.core.results import Result, in_order

MAX_BATCH_ITEMS = 1000

NOT_A_BATCH = ApiError(400, "Request body must be a non-empty JSON array of items.")
TOO_MANY_ITEMS = ApiError(400, f"Too many items: at most {MAX_BATCH_ITEMS}.")

_MEMBERS = frozenset(("channel", "user", "message"))


class Item(NamedTuple):
    """One message of a batch: to a ``"channel"`` or a ``"user"``, as JSON text."""

    kind: str
    name: str
    message: str


def items(body: bytes) -> list[Item]:
    """The batch in ``body``, every item checked; ``ApiError`` names the first bad one."""
    _, value = decoded(body)
    if not isinstance(value, list) or not value:
        raise NOT_A_BATCH
    if len(value) > MAX_BATCH_ITEMS:
        raise TOO_MANY_ITEMS
    return [_item(index, item) for index, item in enumerate(value)]


def _item(index: int, item: Any) -> Item:
    if not isinstance(item, dict):
        raise _invalid(index, "not an object")
    if not item.keys() <= _MEMBERS:
        raise _invalid(index, "unknown member")
    if ("channel" in item) == ("user" in item):
        raise _invalid(index, "needs exactly one of channel and user")
    if "message" not in item:
        raise _invalid(index, "no message")
    if "channel" in item:
        kind, name = "channel", item["channel"]
        if not is_valid_channel_name(name):
            raise _invalid(index, "invalid channel name")
    else:
        kind, name = "user", item["user"]
        if not isinstance(name, str) or not name:
            raise _invalid(index, "invalid user id")
    return Item(kind, name, _text(item["message"]))


def _invalid(index: int, problem: str) -> ApiError:
    return ApiError(400, f"Item {index}: {problem}.")


def _text(message: Any) -> str:
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate, posted as a \ud800 escape: UTF-8 cannot carry it, an escape can.
        return json.dumps(message, separators=(",", ":"))
    return text


def send(app: App, batch: list[Item]) -> Result[list[int]]:
    """Sends the items in order; their counts, now, or once the backend took the last."""
    return in_order([partial(_send, app, item) for item in batch])


def _send(app: App, item: Item) -> Result[int]:
    if item.kind == "channel":
        return app.broker.send_to_channel(app, item.name, item.message)
    return app.broker.send_to_user(app, item.name, item.message)


def published(batch: list[Item]) -> tuple[tuple[str, int], ...]:
    """How many messages of each kind the batch sent, for the metrics."""
    channels = sum(item.kind == "channel" for item in batch)
    return (("channel", channels), ("user", len(batch) - channels))
