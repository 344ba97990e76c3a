"""What each API route does: path arguments and body in, an ``Answer`` out.

Actions reach connections through the app's broker and ask the app's
presence for counts, never the hub directly, so the same action serves one
process or a cluster.  A local backend answers at once and the action returns
an ``Answer``; a cluster backend answers later and the action returns an
awaitable of one (``then``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import resources

from thunderpush.api import batch as batches
from thunderpush.api.answers import (
    INVALID_CHANNEL,
    INVALID_SINCE,
    NO_CONTENT,
    Answer,
    count_answer,
    fixed,
    ok,
)
from thunderpush.api.bodies import validated
from thunderpush.core.apps import App
from thunderpush.core.protocol import is_valid_channel_name
from thunderpush.core.results import Result, then
from thunderpush.core.streams import Stream
from thunderpush.transports.door.endpoints import Routes

Action = Callable[[App, Mapping[str, str], bytes], Result[Answer]]
# What a route does for one method: an action, or a fixed answer that is public
# (no key, no secret, no body read).
Handling = Action | Answer


def _channel(name: str) -> str:
    if not is_valid_channel_name(name):
        raise INVALID_CHANNEL
    return name


def _count(count: int) -> Answer:
    return ok({"count": count})


_ONE_TO_A_USER = (("user", 1),)
_ONE_TO_A_CHANNEL = (("channel", 1),)


def _sent_to_user(count: int) -> Answer:
    return count_answer(count, _ONE_TO_A_USER)


def _sent_to_channel(count: int) -> Answer:
    return count_answer(count, _ONE_TO_A_CHANNEL)


def user_count(app: App, args: Mapping[str, str], body: bytes) -> Result[Answer]:
    return then(app.presence.user_count(app), _count)


def user_online(app: App, args: Mapping[str, str], body: bytes) -> Result[Answer]:
    return then(app.presence.is_online(app, args["user"]), lambda online: ok({"online": online}))


def send_to_user(app: App, args: Mapping[str, str], body: bytes) -> Result[Answer]:
    return then(app.broker.send_to_user(app, args["user"], validated(body)), _sent_to_user)


def disconnect_user(app: App, args: Mapping[str, str], body: bytes) -> Result[Answer]:
    return then(app.broker.disconnect_user(app, args["user"]), lambda _: NO_CONTENT)


def channel_users(app: App, args: Mapping[str, str], body: bytes) -> Result[Answer]:
    users = app.presence.channel_users(app, _channel(args["channel"]))
    return then(users, lambda users: ok({"users": users}))


def send_to_channel(app: App, args: Mapping[str, str], body: bytes) -> Result[Answer]:
    channel = _channel(args["channel"])
    return then(app.broker.send_to_channel(app, channel, validated(body)), _sent_to_channel)


def batch(app: App, args: Mapping[str, str], body: bytes) -> Result[Answer]:
    items = batches.items(body)
    published = batches.published(items)
    return then(batches.send(app, items), lambda counts: ok({"counts": counts}, published))


def channel_counts(app: App, args: Mapping[str, str], body: bytes) -> Result[Answer]:
    counts = app.presence.channel_counts(app, args.get("prefix", ""))
    return then(counts, lambda counts: ok({"channels": dict(sorted(counts.items()))}))


def user_channels(app: App, args: Mapping[str, str], body: bytes) -> Result[Answer]:
    channels = app.presence.user_channels(app, args["user"])
    return then(channels, lambda channels: ok({"channels": sorted(channels)}))


def channel_history(app: App, args: Mapping[str, str], body: bytes) -> Result[Answer]:
    channel = _channel(args["channel"])
    since = args.get("since")
    return then(app.recall.read(app, channel, None if since is None else _offset(since)), _history)


def _offset(text: str) -> int:
    """A stream offset given in the query: a whole number, in ASCII digits."""
    try:
        if text.isascii() and text.isdigit():
            return int(text)
    except ValueError:  # more digits than int() reads: no stream gets there
        pass
    raise INVALID_SINCE


def _history(stream: Stream) -> Answer:
    messages = [{"offset": offset, "payload": payload} for offset, payload in stream.messages]
    return ok({"epoch": stream.epoch, "offset": stream.offset, "messages": messages})


# The API's own OpenAPI 3 description, served as the file that ships in the package.
DESCRIPTION = fixed(200, resources.files(__package__).joinpath("openapi.json").read_bytes())

# -- the routes -----------------------------------------------------------------

_SEGMENT = r"(?P<{}>[^/]+)"
_PREFIX = r"/api/1\.0\.0/" + _SEGMENT.format("apikey")

# (Tornado-style pattern, {method: handling}); Tornado adds the final ``$``.
ROUTES: list[tuple[str, Mapping[str, Handling]]] = [
    (r"/api/1\.0\.0/openapi\.json", {"GET": DESCRIPTION}),
    (_PREFIX + r"/users/", {"GET": user_count}),
    (
        _PREFIX + r"/users/" + _SEGMENT.format("user") + "/",
        {"GET": user_online, "POST": send_to_user, "DELETE": disconnect_user},
    ),
    (
        _PREFIX + r"/channels/" + _SEGMENT.format("channel") + "/",
        {"GET": channel_users, "POST": send_to_channel},
    ),
    (
        _PREFIX + r"/channels/" + _SEGMENT.format("channel") + "/history/",
        {"GET": channel_history},
    ),
    # Batch publish and introspection: fixed paths the patterns above do not match.
    (_PREFIX + r"/batch/", {"POST": batch}),
    (_PREFIX + r"/channels/", {"GET": channel_counts}),
    (_PREFIX + r"/users/" + _SEGMENT.format("user") + r"/channels/", {"GET": user_channels}),
]

# The same routes, matched by ``Api.start``.
routes = Routes(ROUTES)
