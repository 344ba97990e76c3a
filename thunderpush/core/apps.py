"""The apps a server serves: each an API key, a secret and a hub.

The server builds one ``Apps`` and passes it to everything that needs to find
an app by key (the API, the SockJS connections); nothing is process-wide, so
tests and embedding applications can run several servers in one process.
Every app shares the registry's broker, presence and history, the backend the
server was started with, and gets its hub from the backend's ``hubs`` (a cluster's
hubs also record their connections in the cluster).  Example::

    apps = Apps()                        # in-memory broker, presence and history
    app = apps.add("key", "secret")
    apps.authenticate("key", "secret")   # -> app
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from thunderpush.config import CACHE_TTL, AppConfig, PusherLimits
from thunderpush.core.broker import Broker, LocalBroker
from thunderpush.core.history import History, LocalHistory
from thunderpush.core.hub import Hub
from thunderpush.core.lasts import marker_of
from thunderpush.core.presence import LocalPresence, Presence
from thunderpush.core.retention import HistoryPolicy, declared_policy


@dataclass(eq=False)
class App:
    """One application: its public key, its secret, and its connections here."""

    key: str
    secret: str
    broker: Broker
    presence: Presence
    hub: Hub = field(default_factory=Hub)
    # CONNECT must carry a user token made with the secret (thunderpush.auth).
    require_signature: bool = False
    # What its channels keep for clients that reconnect (none by default).
    history: HistoryPolicy = field(default_factory=HistoryPolicy)
    # Where its channel and user events are POSTed; None: nowhere.
    webhook_url: str | None = None
    # Where the API reads its channels' history (``history`` says what they keep).
    recall: History = field(default_factory=LocalHistory)
    # The app id of Pusher's HTTP API paths (``/apps/<id>/``); the key when not given.
    id: str = ""
    # Pusher clients may send ``client-*`` events on private and presence channels.
    client_events: bool = False
    # How its webhooks are written: "thunderpush" or "pusher" (``thunderpush.webhooks``).
    webhook_format: str = "thunderpush"
    # How long the channels ``last_prefixes`` names keep their last publication
    # (``thunderpush.core.lasts``); the prefixes are the registry's, set by the
    # dialect that promises it (Pusher's cache channels), none by default.
    cache_ttl: float = CACHE_TTL
    last_prefixes: tuple[str, ...] = ()
    # What a publish tests first: a string in every name ``last_prefixes``
    # matches, or None when none does (``thunderpush.core.lasts.marker_of``).
    last_marker: str | None = field(init=False, default=None)
    # Pusher's limits on its Pusher clients and Pusher API requests (Pusher's numbers
    # unless configured); held here as plain values, the core never applies them.
    pusher_limits: PusherLimits = field(default_factory=PusherLimits)

    def __post_init__(self) -> None:
        self.id = self.id or self.key
        self.keep_last(self.last_prefixes)

    def keep_last(self, prefixes: tuple[str, ...]) -> None:
        """The channels whose names start with one of ``prefixes`` keep their last
        publication (``Apps.keep_last`` says it for every app)."""
        self.last_prefixes = prefixes
        self.last_marker = marker_of(prefixes)

    def last_ttl(self, channel: str) -> float | None:
        """How long ``channel`` keeps its last publication; None: it keeps none."""
        marker = self.last_marker
        if marker is None or marker not in channel or not channel.startswith(self.last_prefixes):
            return None
        return self.cache_ttl

    @property
    def max_presence_members(self) -> int:
        """The cap on the users of each presence channel (0: none); the hub holds
        it, as the hub is what refuses a newcomer."""
        return self.hub.max_members

    @max_presence_members.setter
    def max_presence_members(self, cap: int) -> None:
        self.hub.max_members = cap

    @property
    def subscription_count(self) -> bool:
        """Whether non-presence channels' subscribers are told their subscription count
        as it changes (``thunderpush.core.counts``); the hub does it."""
        return self.hub.counts is not None

    @subscription_count.setter
    def subscription_count(self, on: bool) -> None:
        self.hub.count_subscriptions(on)


class Apps:
    """The registry of apps by public key, with the backend they share."""

    def __init__(
        self,
        broker: Broker | None = None,
        presence: Presence | None = None,
        hubs: Callable[[str], Hub] | None = None,
        recall: History | None = None,
    ) -> None:
        self.broker = broker or LocalBroker()
        self.presence = presence or LocalPresence()
        self.recall = recall or LocalHistory()
        # The hub of a new app, given its key.
        self.hubs = hubs
        self._by_key: dict[str, App] = {}
        self._by_id: dict[str, App] = {}
        # The channels whose last publication every app keeps (``keep_last``).
        self.last_prefixes: tuple[str, ...] = ()

    def add(
        self,
        key: str,
        secret: str,
        require_signature: bool = False,
        history: HistoryPolicy | None = None,
        webhook_url: str | None = None,
        app_id: str | None = None,
        client_events: bool = False,
        max_presence_members: int = 0,
        webhook_format: str = "thunderpush",
        cache_ttl: float = CACHE_TTL,
        pusher_limits: PusherLimits | None = None,
        subscription_count: bool = False,
    ) -> App:
        """A new app; ``ValueError`` if its id is another app's.

        ``max_presence_members`` caps the users of each presence channel (0: no
        cap; the server's default is ``Config.max_presence_members``);
        ``subscription_count`` tells channels their subscription counts.
        """
        taken = self._by_id.get(app_id or key)
        if taken is not None and taken.key != key:
            raise ValueError(f"the app id {app_id or key} is the app {taken.key}'s")
        hub = Hub() if self.hubs is None else self.hubs(key)
        hub.max_members = max_presence_members
        hub.count_subscriptions(subscription_count)
        app = App(
            key,
            secret,
            self.broker,
            self.presence,
            hub,
            require_signature,
            history or HistoryPolicy(),
            webhook_url,
            self.recall,
            app_id or "",
            client_events,
            webhook_format,
            cache_ttl,
            self.last_prefixes,
            pusher_limits or PusherLimits(),
        )
        self._by_key[key] = app
        self._by_id[app.id] = app
        return app

    def get(self, key: str) -> App | None:
        return self._by_key.get(key)

    def keep_last(self, prefixes: tuple[str, ...]) -> None:
        """Every app, now and to come, keeps the last publication of the channels
        whose names start with one of ``prefixes`` (a dialect's: the server gives
        Pusher's cache channels), each for its ``cache_ttl``."""
        self.last_prefixes = prefixes
        for app in self._by_key.values():
            app.keep_last(prefixes)

    def set_ids(self, ids: Mapping[str, str]) -> None:
        """New app ids, by key (SIGHUP's reload), set together so that two apps
        may swap theirs; ``ValueError``, and nothing changed, if two would share one.

        Safe at any time: Pusher's HTTP API compares a request's app id with
        its app's on each request (``thunderpush.pusher.authentication``).
        """
        wanted = {app.key: ids.get(app.key, app.id) for app in self._by_key.values()}
        if len(set(wanted.values())) < len(wanted):
            raise ValueError("two apps would have the same app id")
        for key, app_id in wanted.items():
            self._by_key[key].id = app_id
        self._by_id = {app.id: app for app in self._by_key.values()}

    def __iter__(self) -> Iterator[App]:
        return iter(list(self._by_key.values()))

    def remove(self, key: str) -> None:
        """The app of ``key`` is served no more: its connections are closed (code 9002)."""
        app = self._by_key.pop(key)
        self._by_id.pop(app.id, None)
        app.hub.disconnect_all()

    def authenticate(self, key: str, secret: str) -> App | None:
        """The app whose key and secret these are, or None.

        Compared even for an unknown key, and in constant time, so that timing
        tells nothing about either.
        """
        app = self._by_key.get(key)
        expected = app.secret if app is not None else ""
        if (
            hmac.compare_digest(secret.encode("utf-8"), expected.encode("utf-8"))
            and app is not None
        ):
            return app
        return None

    def disconnect_all(self) -> None:
        """Close every connection of every app (on shutdown)."""
        for app in self._by_key.values():
            app.hub.disconnect_all()


def options_of(declared: AppConfig) -> dict[str, object]:
    """What ``Apps.add`` takes beside the key and the secret, for an app the
    configuration declares (a reload compares them with the running app's)."""
    return {
        "require_signature": bool(declared.require_signature),
        "history": declared_policy(declared.history_size, declared.history_ttl, declared.history),
        "webhook_url": declared.webhook_url,
        "app_id": declared.app_id,
        "client_events": bool(declared.client_events),
        "max_presence_members": declared.max_presence_members or 0,
        "webhook_format": declared.webhook_format or "thunderpush",
        "cache_ttl": CACHE_TTL if declared.cache_ttl is None else declared.cache_ttl,
        "pusher_limits": declared.pusher_limits(),
        "subscription_count": bool(declared.subscription_count),
    }
