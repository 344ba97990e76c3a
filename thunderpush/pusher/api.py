"""What each route of Pusher's HTTP API does: a checked request in, a JSON answer out.

Like Thunderpush's own API (``thunderpush.api.actions``) the actions reach
connections through the app's broker and read counts from its presence, so
they serve one process or a cluster alike and cover every kind of connection
(Thunderpush's and Pusher's).  A local backend answers at once, a cluster
later (``thunderpush.core.results``).  Each action takes the app, the path's
arguments, the query's parameters and the body, and is only called once
``thunderpush.pusher.authentication`` has accepted the request.

Every part of a request is checked before anything is sent, so a request that
is refused delivered nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from thunderpush.api.bodies import fast_value
from thunderpush.config import PusherLimits
from thunderpush.core.apps import App
from thunderpush.core.broker import PublishOptions
from thunderpush.core.protocol import is_presence_channel, is_valid_user_id
from thunderpush.core.results import Result, in_order, then
from thunderpush.pusher.limits import channel_name_error, check_event_size
from thunderpush.pusher.protocol import MAX_EVENT_NAME, is_event_name, is_socket_id
from thunderpush.transports.door.answers import ApiError
from thunderpush.transports.door.endpoints import Routes

Checked = TypeVar("Checked")
Action = Callable[[App, Mapping[str, str], Mapping[str, str], bytes], Result[dict[str, Any]]]

USER_COUNT = "user_count"
SUBSCRIPTION_COUNT = "subscription_count"
_ATTRIBUTES = frozenset((USER_COUNT, SUBSCRIPTION_COUNT))


# -- checking what a request asks for --------------------------------------------


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def _body(body: bytes) -> dict[str, Any]:
    """The body's object as the standard library reads it (NaN and Infinity too)."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        raise bad_request("The body is not JSON") from None
    if not isinstance(value, dict):
        raise bad_request("The body must be a JSON object")
    return value


def _read(body: bytes, check: Callable[[dict[str, Any]], Checked]) -> Checked:
    """``check`` of the body's object, read by orjson where it can
    (``thunderpush.api.bodies``: a trigger's body 3.7 -> 0.5 us); but a refusal
    is always the one of the standard library's reading, as orjson reads an
    integer past 64 bits as a float, which a refusal may quote (a channel name)."""
    value = fast_value(body)
    if type(value) is dict:
        try:
            return check(value)
        except ApiError:
            pass
    return check(_body(body))


def _channel(name: Any, limits: PusherLimits) -> str:
    """A channel name by Pusher's rule, up to the app's ``max_channel_name_length``."""
    invalid = channel_name_error(name, limits)
    if invalid is not None:
        raise bad_request(f"{invalid}: {json.dumps(name)[:80]}")
    return name


def _event_name(name: Any) -> str:
    if not is_event_name(name):
        raise bad_request(f"Event name must be 1-{MAX_EVENT_NAME} printable characters")
    return name


def _data(data: Any) -> str:
    if not isinstance(data, str):
        raise bad_request("data must be a string (JSON-encode objects first)")
    return data


def _socket_id(socket_id: Any) -> str | None:
    if socket_id is None:
        return None
    if not is_socket_id(socket_id):
        raise bad_request("Invalid socket_id")
    return socket_id


def _info(info: Any) -> frozenset[str]:
    """The attributes asked for in ``info`` ("user_count,subscription_count")."""
    if info is None or info == "":
        return frozenset()
    if not isinstance(info, str):
        raise bad_request("info must be a comma-separated string")
    asked = frozenset(info.split(","))
    unknown = asked - _ATTRIBUTES
    if unknown:
        raise bad_request(f"Unknown info attribute: {sorted(unknown)[0][:40]}")
    return asked


def _channels(body: Mapping[str, Any], limits: PusherLimits) -> list[str]:
    """The channels of an event: ``channels`` (1-``max_trigger_channels`` names) or
    ``channel`` (one)."""
    if ("channels" in body) == ("channel" in body):
        raise bad_request("Give exactly one of channels and channel")
    if "channel" in body:
        return [_channel(body["channel"], limits)]
    channels = _listed(body["channels"], limits.max_trigger_channels, "channels", "channel names")
    if len(channels) == 1:  # what server libraries send for one channel
        return [_channel(channels[0], limits)]
    # A channel named twice gets the event once.
    return list(dict.fromkeys([_channel(channel, limits) for channel in channels]))


def _listed(value: Any, most: int, name: str, items: str) -> list[Any]:
    """``value`` if it is a list of 1 to ``most`` items (0: any number), else 400."""
    if not isinstance(value, list) or not value or (most and len(value) > most):
        bound = f"1-{most}" if most else "one or more"
        raise bad_request(f"{name} must be a list of {bound} {items}")
    return value


class _Event:
    """One event to send: checked whole before anything is sent."""

    __slots__ = ("channels", "data", "exclude", "info", "name")

    def __init__(self, item: Mapping[str, Any], channels: list[str], limits: PusherLimits) -> None:
        self.channels = channels
        self.name = _event_name(item.get("name"))
        self.data = _data(item.get("data"))
        check_event_size(self.data, limits)
        self.exclude = _socket_id(item.get("socket_id"))
        self.info = _info(item.get("info"))

    def sends(self, app: App) -> list[Callable[[], Result[int]]]:
        options = PublishOptions(self.name, self.exclude)
        send = app.broker.send_to_channel
        return [partial(send, app, channel, self.data, options) for channel in self.channels]

    def send(self, app: App) -> Result[Any]:
        """Sends to every channel in order; one channel (most triggers) without the
        ``in_order`` machinery."""
        if len(self.channels) == 1:
            options = PublishOptions(self.name, self.exclude)
            return app.broker.send_to_channel(app, self.channels[0], self.data, options)
        return in_order(self.sends(app))


def _event(item: Mapping[str, Any], limits: PusherLimits) -> _Event:
    """A trigger's event."""
    return _Event(item, _channels(item, limits), limits)


def _batch(body: Mapping[str, Any], limits: PusherLimits) -> list[_Event]:
    """A batch's events, each to one channel."""
    batch = _listed(body.get("batch"), limits.max_batch_events, "batch", "events")
    events = []
    for item in batch:
        if not isinstance(item, dict):
            raise bad_request("Each event of a batch must be an object")
        events.append(_Event(item, [_channel(item.get("channel"), limits)], limits))
    return events


# -- what the API reads -------------------------------------------------------------


def _subscription_count(app: App, channel: str) -> Result[int]:
    return then(app.presence.channel_counts(app, channel), lambda counts: counts.get(channel, 0))


def _user_count(app: App, channel: str) -> Result[int]:
    return then(app.presence.channel_users(app, channel), len)


def _attributes(app: App, channel: str, info: frozenset[str]) -> Result[dict[str, int]]:
    """The attributes of ``info`` that apply to ``channel`` (``user_count``: presence only)."""
    reads = {}
    if USER_COUNT in info and is_presence_channel(channel):
        reads[USER_COUNT] = partial(_user_count, app, channel)
    if SUBSCRIPTION_COUNT in info:
        reads[SUBSCRIPTION_COUNT] = partial(_subscription_count, app, channel)
    return then(in_order(reads.values()), lambda values: dict(zip(reads, values, strict=True)))


# -- the actions ---------------------------------------------------------------------


def _nothing(_: object) -> dict[str, Any]:
    """What a trigger answers when it asks for no ``info``."""
    return {}


def trigger(
    app: App, args: Mapping[str, str], params: Mapping[str, str], body: bytes
) -> Result[dict[str, Any]]:
    """``POST events``: one event to 1-100 channels, none to the ``socket_id`` given."""
    event = _read(body, partial(_event, limits=app.pusher_limits))
    sent = event.send(app)
    if not event.info:
        return then(sent, _nothing)
    reads = [partial(_attributes, app, channel, event.info) for channel in event.channels]
    return then(
        sent,
        lambda _: then(
            in_order(reads),
            lambda found: {"channels": dict(zip(event.channels, found, strict=True))},
        ),
    )


def trigger_batch(
    app: App, args: Mapping[str, str], params: Mapping[str, str], body: bytes
) -> Result[dict[str, Any]]:
    """``POST batch_events``: 1-10 events, each to one channel, sent in their order."""
    events = _read(body, partial(_batch, limits=app.pusher_limits))
    sent = in_order([send for event in events for send in event.sends(app)])
    if not any(event.info for event in events):
        return then(sent, _nothing)
    reads = [partial(_attributes, app, event.channels[0], event.info) for event in events]
    return then(sent, lambda _: then(in_order(reads), lambda found: {"batch": found}))


def channels(
    app: App, args: Mapping[str, str], params: Mapping[str, str], body: bytes
) -> Result[dict[str, Any]]:
    """``GET channels``: the occupied channels, ``filter_by_prefix``, with ``info``."""
    prefix = params.get("filter_by_prefix", "")
    info = _info(params.get("info"))
    if USER_COUNT in info and not is_presence_channel(prefix):
        raise bad_request(
            "user_count may only be requested for presence channels: add filter_by_prefix=presence-"
        )

    def listed(counts: dict[str, int]) -> Result[dict[str, Any]]:
        names = sorted(counts)
        if USER_COUNT not in info:
            found = [{SUBSCRIPTION_COUNT: counts[name]} if info else {} for name in names]
            return {"channels": dict(zip(names, found, strict=True))}
        reads = [partial(_user_count, app, name) for name in names]

        def with_users(users: list[int]) -> dict[str, Any]:
            found = {}
            for name, user_count in zip(names, users, strict=True):
                found[name] = {USER_COUNT: user_count}
                if SUBSCRIPTION_COUNT in info:
                    found[name][SUBSCRIPTION_COUNT] = counts[name]
            return {"channels": found}

        return then(in_order(reads), with_users)

    return then(app.presence.channel_counts(app, prefix), listed)


def channel(
    app: App, args: Mapping[str, str], params: Mapping[str, str], body: bytes
) -> Result[dict[str, Any]]:
    """``GET channels/<name>``: whether it is occupied, with the attributes of ``info``."""
    name = _channel(args["channel"], app.pusher_limits)
    info = _info(params.get("info"))
    if USER_COUNT in info and not is_presence_channel(name):
        raise bad_request("user_count is only available for presence channels")

    def described(attributes: dict[str, int]) -> dict[str, Any]:
        count = attributes[SUBSCRIPTION_COUNT]
        found: dict[str, Any] = {"occupied": count > 0}
        if USER_COUNT in info:
            found[USER_COUNT] = attributes[USER_COUNT]
        if SUBSCRIPTION_COUNT in info:
            found[SUBSCRIPTION_COUNT] = count
        return found

    return then(_attributes(app, name, info | {SUBSCRIPTION_COUNT}), described)


def users(
    app: App, args: Mapping[str, str], params: Mapping[str, str], body: bytes
) -> Result[dict[str, Any]]:
    """``GET channels/<presence-name>/users``: the ids of the users in it."""
    name = _channel(args["channel"], app.pusher_limits)
    if not is_presence_channel(name):
        raise bad_request("Only presence channels list their users")
    found = app.presence.channel_users(app, name)
    return then(found, lambda ids: {"users": [{"id": userid} for userid in ids]})


def terminate_connections(
    app: App, args: Mapping[str, str], params: Mapping[str, str], body: bytes
) -> Result[dict[str, Any]]:
    """``POST users/<id>/terminate_connections``: closes every connection of the user,
    Thunderpush's (code 9002) and Pusher's alike."""
    userid = args["user"]
    if not is_valid_user_id(userid):
        raise bad_request("Invalid user id")
    return then(app.broker.disconnect_user(app, userid), lambda _: {})


# -- the routes ------------------------------------------------------------------------

_SEGMENT = r"(?P<{}>[^/]+)"
_APP = r"/apps/" + _SEGMENT.format("app_id")

# (Tornado-style pattern, {method: action}), matched by ``endpoint.PusherApi``.
ROUTES: list[tuple[str, Mapping[str, Action]]] = [
    (_APP + r"/events", {"POST": trigger}),
    (_APP + r"/batch_events", {"POST": trigger_batch}),
    (_APP + r"/channels", {"GET": channels}),
    (_APP + r"/channels/" + _SEGMENT.format("channel"), {"GET": channel}),
    (_APP + r"/channels/" + _SEGMENT.format("channel") + r"/users", {"GET": users}),
    (
        _APP + r"/users/" + _SEGMENT.format("user") + r"/terminate_connections",
        {"POST": terminate_connections},
    ),
    # pusher-http-python (3.3) sends this one without its /apps/<id> prefix;
    # its auth_key names the app.
    (
        r"/users/" + _SEGMENT.format("user") + r"/terminate_connections",
        {"POST": terminate_connections},
    ),
]

routes = Routes(ROUTES)
