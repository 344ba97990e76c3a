"""The command language a browser speaks, and the state of one browser connection.

A client sends ``CONNECT <user>:<key>[:<token>]``, then ``SUBSCRIBE c1:c2``
(``private-`` and ``presence-`` channels as ``<channel> <token>``, and any
item may end with `` since=<epoch>/<offset>`` to recover what it missed) and
``UNSUBSCRIBE c1:c2`` (PROTOCOL.md section 4, extended in docs/protocol.rst).
``Client`` turns those into hub calls and holds what a connection is to the
hub (its app and user id).  It knows no transport:
``thunderpush.transports.sockjs.connection`` mixes it into a SockJS connection,
which provides ``close`` and ``send_delivery``.

Nothing a client sends can raise out of here: bad input is ignored (one
warning line per connection, debug lines after that, so no client can fill
the log), refused with a ``subscription_error`` event, or closes the
connection where the protocol says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from time import monotonic_ns
from typing import Any

from thunderpush_client import auth

from thunderpush.core import protocol
from thunderpush.core.apps import App, Apps
from thunderpush.core.dialect import THUNDERPUSH, Dialect
from thunderpush.core.throttle import Throttle

logger = logging.getLogger(__name__)

# Long enough to recognise a bad command in the log, short enough that a
# client cannot fill the log with its garbage.
_LOGGED_CHARS = 120
_SECOND_NS = 1_000_000_000


def shown(message: Any) -> str:
    """``message`` as a log line may show it: repr'd, and cut short."""
    text = repr(message)
    return text if len(text) <= _LOGGED_CHARS else text[:_LOGGED_CHARS] + "..."


@dataclass(frozen=True)
class Limits:
    """What one connection may do; the server makes one from its ``Config``.

    Two token buckets, each kept as the time it would be full again (generic
    cell rate algorithm), so that taking from one is a subtraction and a
    comparison: commands, whose rate and capacity are both
    ``max_commands_per_second``; and the *items* of SUBSCRIBE and UNSUBSCRIBE
    (their distinct channels), refilled at the same rate and holding
    ``max(max_channels, max_commands_per_second)``, so that a page may still
    subscribe its whole channel limit at once but no client gets more
    channels' worth of work per second than commands; a command of more
    items than that, repeats included, is over it whatever it holds
    (docs/security.rst, "What a client's input can cost").
    """

    max_channels: int = 1000
    # The rate and capacity of the command bucket, the rate of the item bucket (> 0).
    max_commands_per_second: int = 100
    # Derived once: the time one token stands for, and each bucket's capacity as time.
    command_interval_ns: int = field(init=False)
    burst_ns: int = field(init=False)
    item_burst_ns: int = field(init=False)

    def __post_init__(self) -> None:
        interval = _SECOND_NS // self.max_commands_per_second
        object.__setattr__(self, "command_interval_ns", interval)
        object.__setattr__(self, "burst_ns", interval * self.max_commands_per_second)
        object.__setattr__(self, "item_burst_ns", interval * self.item_capacity)

    @property
    def item_capacity(self) -> int:
        """How many items the item bucket holds when full."""
        return max(self.max_channels, self.max_commands_per_second)

    def take(self, full_at: int) -> int | None:
        """One command from the command bucket, full again at ``full_at``: the new
        time, None if it is empty."""
        return take_tokens(full_at, self.command_interval_ns, self.burst_ns)

    def take_items(self, full_at: int, count: int) -> int | None:
        """``count`` items from the item bucket, full again at ``full_at``: the new
        time, None if it holds fewer (then nothing is taken)."""
        return take_tokens(full_at, count * self.command_interval_ns, self.item_burst_ns)


def take_tokens(full_at: int, cost_ns: int, burst_ns: int) -> int | None:
    """``cost_ns`` worth of tokens from a bucket full again at ``full_at`` and holding
    ``burst_ns`` worth: when it will be full again, None if it holds less.  A
    bucket is kept as that one time (the commands', the Pusher client events')."""
    now = monotonic_ns()
    full_at = (full_at if full_at > now else now) + cost_ns
    return None if full_at - now > burst_ns else full_at


class Client:
    """A browser connection: a user id once connected, then subscriptions.

    Subclasses provide ``apps`` (where CONNECT finds the app of a key),
    ``limits``, ``close(code, reason)`` and ``send_delivery(element)``, and
    set ``closed`` once the connection takes nothing more (closed, or being
    closed as too slow while a command was building its answers): a command
    stops there, and so does a recovery (``Hub.send_recovery``).
    """

    apps: Apps
    limits: Limits = Limits()
    # When a refused CONNECT is next logged, per client address: once a minute,
    # not once per attempt of a client retrying with a wrong key (None: never).
    refusals: Throttle | None = None
    app: App | None = None
    userid: str | None = None
    closed: bool = False
    # How the hub frames deliveries here (``thunderpush.core.dialect``), and the
    # name a publish's ``skip`` would give this connection: none.
    dialect: Dialect = THUNDERPUSH
    id: str | None = None
    # The command rate and the item rate, as token buckets kept in one number
    # each (``Limits.take``, ``Limits.take_items``).
    _bucket_full_at: int = 0
    _items_full_at: int = 0
    _warned: bool = False

    def handle(self, message: Any) -> None:
        """Run one client command."""
        if self.closed:
            return
        full_at = self.limits.take(self._bucket_full_at)
        if full_at is None:
            self._flood()
            return
        self._bucket_full_at = full_at
        if not isinstance(message, str):
            self._ignored("Ignored a non-string message: %s.", shown(message))
            return
        command, space, argument = message.partition(" ")
        action = self._commands.get(command)
        if action is None or not space:
            self._ignored("Received invalid message: %s.", shown(message))
            return
        action(self, argument)

    def leave(self) -> None:
        """The connection ended: it is no longer online anywhere."""
        if self.app is not None:
            self.app.hub.remove(self)
            self.app = None
        self.log(logging.DEBUG, "User %s has disconnected.", self.userid)

    @property
    def connected(self) -> bool:
        return self.app is not None

    def force_disconnect(self) -> None:
        self.close(*protocol.FORCED_DISCONNECT)

    def close(self, code: int, reason: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def send_delivery(self, element: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def log_context(self) -> dict[str, Any]:
        """Who this connection is, for a log line's context (``thunderpush.server.logs``).

        A transport adds the client's address and session.
        """
        return {"app": self.app.key if self.app is not None else None, "user": self.userid}

    def log(self, level: int, message: str, *args: Any) -> None:
        """A log line about this connection, with its context."""
        if logger.isEnabledFor(level):
            logger.log(level, message, *args, extra=self.log_context())

    def _ignored(self, message: str, *args: Any) -> None:
        """Logs ignored input: the connection's first at WARNING, the rest at DEBUG."""
        self.log(logging.DEBUG if self._warned else logging.WARNING, message, *args)
        self._warned = True

    def _refused(self, message: str, userid: str, key: str) -> None:
        """Logs a refused CONNECT at INFO, if one from this address is due."""
        refusals = self.refusals
        address = self.log_context().get("address")
        if refusals is not None and refusals.due(address):
            self.log(
                logging.INFO,
                message + "; this address's next refusals go unlogged for %g s.",
                shown(userid),
                shown(key),
                refusals.window,
            )

    def _flood(self, what: str = "commands") -> None:
        # Logged once: the session delivers nothing more once it is closed.
        self.log(
            logging.WARNING,
            "Closing the connection of user %s: over %d %s per second.",
            self.userid,
            self.limits.max_commands_per_second,
            what,
        )
        self.close(*protocol.TOO_MANY_COMMANDS)

    def _items(self, argument: str) -> dict[str, str] | None:
        """The items of a SUBSCRIBE or UNSUBSCRIBE by channel name (the first item of
        each channel), once taken from the item bucket; None, and the connection
        closed with 9012, if the bucket holds fewer.

        A command of more items than the bucket can ever hold, repeats
        included, is over it before anything else is done: the separators are
        counted (one C scan of the bytes), so no command gets split into more
        than ``item_capacity`` items.  Then identical items collapse in one C
        call and only the distinct ones are looked at.
        """
        if argument.count(":") >= self.limits.item_capacity:
            self._flood("channel items")
            return None
        items: dict[str, str] = {}
        for item in dict.fromkeys(argument.split(":")):
            if item:
                items.setdefault(item.partition(" ")[0], item)
        full_at = self.limits.take_items(self._items_full_at, len(items))
        if full_at is None:
            self._flood("channel items")
            return None
        self._items_full_at = full_at
        return items

    # -- commands ---------------------------------------------------------

    def _connect(self, argument: str) -> None:
        if self.connected:
            self._ignored("Ignored a second CONNECT from user %s.", self.userid)
            return
        parts = argument.split(":")
        if len(parts) not in (2, 3):
            self._ignored("Ignored a malformed CONNECT: %s.", shown(argument))
            return
        userid, key = parts[0], parts[1]
        app = self.apps.get(key)
        if app is None:
            self._refused("Refused a CONNECT of user %s: unknown app key %s", userid, key)
            self.close(*protocol.INVALID_API_KEY)
            return
        if not protocol.is_valid_user_id(userid):
            self._ignored("Ignored a CONNECT with an invalid user id: %s.", shown(userid))
            return
        if len(parts) == 3:
            signed = auth.check_user_token(key, app.secret, userid, parts[2])
        else:
            signed = not app.require_signature
        if not signed:
            self._refused("Refused user %s of app %s: invalid signature", userid, key)
            self.close(*protocol.INVALID_SIGNATURE)
            return
        self.userid = userid
        self.app = app
        app.hub.add(self)

    def _subscribe(self, argument: str) -> None:
        if not self._connected_or_closed():
            return
        items = self._items(argument)
        if items is None:
            return
        invalid = []
        full = False  # "Too many channels." was answered: once per command
        for item in items.values():
            if self.closed:
                return  # e.g. over the unsent cap: nothing more is built for it
            parsed = _subscription(item)
            if parsed is None:
                invalid.append(item)
            elif not self._join(*parsed, answer_full=not full):
                full = True
        if invalid:
            self._ignored("Skipped invalid channel names: %s.", shown(invalid))

    def _join(
        self, channel: str, token: str, since: tuple[str, int] | None, answer_full: bool = True
    ) -> bool:
        """Subscribes to ``channel``, or tells the client why not; then, if the
        client gave the last position it saw, sends it what it missed.

        Returns False if it was refused as one channel too many (answered
        only if ``answer_full``), else True.
        """
        app = self.app
        hub = app.hub
        private = protocol.needs_channel_token(channel)
        if private and not auth.check_channel_token(
            app.key, app.secret, self.userid, channel, token
        ):
            refusal = protocol.INVALID_CHANNEL_TOKEN
        elif hub.subscription_count(self) >= self.limits.max_channels and not hub.is_subscribed(
            self, channel
        ):
            if answer_full:
                self.log(logging.DEBUG, "Refused user %s on %s: too many.", self.userid, channel)
                self.send_delivery(protocol.subscription_error(channel, protocol.TOO_MANY_CHANNELS))
            return False
        else:
            # A presence channel full of other users refuses in the welcome.
            joined = hub.subscribe(self, channel)
            if protocol.is_presence_channel(channel):
                hub.welcome(self, channel)
            elif private:
                answer = protocol.subscription_succeeded(channel)
                hub.when_routed(self, channel, lambda: self.send_delivery(answer))
            if since is not None and joined:
                hub.recover(self, channel, since, app.history.keep(channel))
            return True
        self.log(logging.DEBUG, "Refused user %s on %s: %s", self.userid, channel, refusal)
        self.send_delivery(protocol.subscription_error(channel, refusal))
        return True

    def _unsubscribe(self, argument: str) -> None:
        if not self._connected_or_closed():
            return
        items = self._items(argument)
        if items is None:
            return
        invalid = []
        for channel, item in items.items():
            if protocol.is_valid_channel_name(channel):
                self.app.hub.unsubscribe(self, channel)
            else:
                invalid.append(item)
        if invalid:
            self._ignored("Skipped invalid channel names: %s.", shown(invalid))

    def _connected_or_closed(self) -> bool:
        """Whether the connection may (un)subscribe; closes it with 9001 if not."""
        if self.connected:
            return True
        self.log(logging.WARNING, "Closing a connection that subscribed before CONNECT.")
        self.close(*protocol.SUBSCRIBE_BEFORE_CONNECT)
        return False

    _commands = {
        "CONNECT": _connect,
        "SUBSCRIBE": _subscribe,
        "UNSUBSCRIBE": _unsubscribe,
    }


def _subscription(item: str) -> tuple[str, str, tuple[str, int] | None] | None:
    """A SUBSCRIBE item's channel, token ("" if none) and ``since=`` position
    (None if none); None for an item that is malformed."""
    since = None
    rest, space, last = item.rpartition(" ")
    if space and last.startswith("since="):
        since = protocol.parse_since(last)
        if since is None:
            return None
        item = rest
    channel, space, token = item.partition(" ")
    if not (space and protocol.needs_channel_token(channel)):
        channel, token = item, ""  # only a token-bearing channel takes a space
    if not protocol.is_valid_channel_name(channel):
        return None
    return channel, token, since


def log_context(connection: object) -> dict[str, Any]:
    """``connection``'s log context if it is a client (a SockJS connection may be another)."""
    return connection.log_context() if isinstance(connection, Client) else {}
