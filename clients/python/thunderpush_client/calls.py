"""What each API call sends and how its answer is read, with no I/O.

``Client`` and ``AsyncClient`` differ only in how bytes cross the network;
everything else lives here once: every endpoint is a function returning a
``Call`` (method, path under ``/api/1.0.0/<key>/``, body, and ``read``, which
turns a 2xx JSON answer into the method's value), and ``answer`` turns any
answer into that value or a ``ThunderpushError`` with the server's message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from thunderpush_client.errors import ThunderpushError

T = TypeVar("T")

API_PREFIX = "/api/1.0.0/"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request: ``method`` on ``path`` (below the app's prefix) with ``body``."""

    method: str
    path: str
    body: bytes | None
    read: Callable[[Any], T]


class Message(NamedTuple):
    """One kept message of a channel's history: its offset, and its body as it was posted."""

    offset: int
    payload: str


class History(NamedTuple):
    """A channel's history: its stream's ``epoch``, the ``offset`` of its last
    message, and the kept ``messages``, oldest first (empty for a channel that
    keeps no history)."""

    epoch: str
    offset: int
    messages: list[Message]


class Target(NamedTuple):
    """Where a client sends its requests, read from its URL once."""

    scheme: str
    host: str
    port: int
    prefix: str  # the URL's own path, then /api/1.0.0/<key>/
    url: str


def target(url: str, key: str) -> Target:
    """The server at ``url`` (``http://host:port``, maybe with a path, or https);
    ``ValueError`` naming the URL when it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Not an http:// or https:// URL: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"Not a valid port in the URL: {url!r}") from None
    prefix = parts.path.rstrip("/") + API_PREFIX + _segment(key) + "/"
    return Target(parts.scheme, parts.hostname, port, prefix, url)


def headers(secret: str, call: Call[Any]) -> dict[str, str]:
    """The header fields of ``call``: the secret, and the body's type and length."""
    fields = {"X-Thunder-Secret-Key": secret}
    if call.body is not None:
        fields["Content-Type"] = "application/json"
        fields["Content-Length"] = str(len(call.body))
    return fields


def answer(call: Call[T], status: int, body: bytes) -> T:
    """The value of ``call``'s answer, or ``ThunderpushError`` with the server's message."""
    if 200 <= status < 300:
        try:
            return call.read(json.loads(body) if body.strip() else None)
        except (ValueError, KeyError, TypeError):
            # Something else answers at that URL (a proxy's page, another service).
            raise ThunderpushError(status, f"Not a Thunderpush answer: {body[:200]!r}") from None
    raise ThunderpushError(status, _message(status, body))


def _message(status: int, body: bytes) -> str:
    """The ``message`` of the API's JSON error; another body (a proxy's page) as text."""
    try:
        message = json.loads(body)["message"]
        if isinstance(message, str):
            return message
    except (ValueError, TypeError, KeyError):
        pass
    text = body.decode("utf-8", "replace").strip()
    return text[:200] or f"HTTP {status}"


def _segment(name: str) -> str:
    """A user id, channel or key as one path segment (``/`` and spaces escaped)."""
    return quote(name, safe="")


def _json(message: Any) -> bytes:
    """A message as the body: bytes as they are (already JSON), anything else encoded."""
    if isinstance(message, (bytes, bytearray)):
        return bytes(message)
    return json.dumps(message, ensure_ascii=False).encode("utf-8")


# -- the endpoints (docs/api.rst) ------------------------------------------------


def publish(channel: str, message: Any) -> Call[int]:
    return Call("POST", f"channels/{_segment(channel)}/", _json(message), _count)


def send_to_user(user: str, message: Any) -> Call[int]:
    return Call("POST", f"users/{_segment(user)}/", _json(message), _count)


def batch(items: Iterable[Mapping[str, Any]]) -> Call[list[int]]:
    body = json.dumps([dict(item) for item in items], ensure_ascii=False).encode("utf-8")
    return Call("POST", "batch/", body, lambda data: list(data["counts"]))


def user_count() -> Call[int]:
    return Call("GET", "users/", None, _count)


def is_online(user: str) -> Call[bool]:
    return Call("GET", f"users/{_segment(user)}/", None, lambda data: bool(data["online"]))


def disconnect(user: str) -> Call[None]:
    return Call("DELETE", f"users/{_segment(user)}/", None, lambda data: None)


def channel_users(channel: str) -> Call[list[str]]:
    return Call("GET", f"channels/{_segment(channel)}/", None, lambda data: list(data["users"]))


def channel_counts(prefix: str = "") -> Call[dict[str, int]]:
    query = "?" + urlencode({"prefix": prefix}) if prefix else ""
    return Call("GET", "channels/" + query, None, lambda data: dict(data["channels"]))


def user_channels(user: str) -> Call[list[str]]:
    path = f"users/{_segment(user)}/channels/"
    return Call("GET", path, None, lambda data: list(data["channels"]))


def history(channel: str, since: int | None = None) -> Call[History]:
    query = "" if since is None else "?" + urlencode({"since": since})
    return Call("GET", f"channels/{_segment(channel)}/history/{query}", None, _history)


def _count(data: Any) -> int:
    return int(data["count"])


def _history(data: Any) -> History:
    messages = [Message(item["offset"], item["payload"]) for item in data["messages"]]
    return History(data["epoch"], data["offset"], messages)
