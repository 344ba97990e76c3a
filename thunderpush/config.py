"""The server's configuration: one object, from the file, the environment and the flags.

``thunderpush.server.cli`` builds a ``Config`` from them (``thunderpush.settings``
merges the first two); tests and embedding applications build one directly.
Everything that needs a setting
is handed this object (or the one value it needs) when it is made, so no
module reads settings from anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

# The sockjs-client that the SockJS iframe page loads: the release the bundled
# client is tested with, so that iframe transports speak the same version.
SOCKJS_URL = "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js"
# How long kept messages live when nothing says otherwise, in seconds: long
# enough to cover a page's reconnects after a network change.
HISTORY_TTL = 300.0
# How long a channel's last publication is kept for its next subscribers
# (Pusher's cache channels), in seconds: Pusher's 30 minutes.
CACHE_TTL = 1800.0
# The statistics line's default period: often enough to see a trend, rarely
# enough that it does not crowd out the warnings.
STATS_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class HistoryRule:
    """A ``[[history]]`` table: channels whose names start with ``prefix`` keep
    their last ``size`` messages for ``ttl`` seconds (size 0: no history)."""

    prefix: str
    size: int
    ttl: float = HISTORY_TTL


@dataclass(frozen=True)
class PusherLimits:
    """Pusher's limits on an app's Pusher traffic (docs/pusher.rst), Pusher's own
    numbers by default; 0: no limit (but ``max_channel_name_length``).

    They bound what Pusher clients and Pusher's HTTP API may send, as Pusher does,
    so that an application that stays within them on Pusher stays within them
    here; Thunderpush's own API and clients keep Thunderpush's rules.
    """

    max_event_bytes: int = 10 * 1024  # an event's data (413, or 4301 for a client event)
    max_trigger_channels: int = 100  # channels of one trigger (400)
    max_batch_events: int = 10  # events of one batch trigger (400)
    max_channel_name_length: int = 164  # at most LONGEST_CHANNEL_NAME
    max_client_events_per_second: int = 10  # per connection (4301 past it)
    max_user_info_bytes: int = 1024  # a presence member's user_info as compact JSON
    max_app_connections: int = 0  # Pusher's are closed with 4004 past it

    def __str__(self) -> str:
        """As the reload's log line shows it: ``name value`` pairs."""
        return ", ".join(f"{field.name} {getattr(self, field.name)}" for field in fields(self))


# The longest channel name an app's ``max_channel_name_length`` may allow.
LONGEST_CHANNEL_NAME = 256
# Each limit is a server-wide setting (a flag) and an ``[[apps]]`` table's own.
PUSHER_LIMITS = tuple(field.name for field in fields(PusherLimits))


@dataclass(frozen=True)
class AppConfig:
    """One app the configuration file declares in an ``[[apps]]`` table.

    A None setting is the server's (``declared_apps`` fills them in); what
    ``Apps.add`` makes of them is ``thunderpush.core.apps.options_of``.
    """

    key: str
    secret: str
    require_signature: bool | None = None
    history_size: int | None = None
    history_ttl: float | None = None
    # The app's own ``[[apps.history]]`` rules; the server's ``history`` rules follow them.
    history: tuple[HistoryRule, ...] = ()
    # Where the app's webhooks are POSTed; None: none (or the server's).
    webhook_url: str | None = None
    # Pusher's app id (``/apps/<id>/``); None: the key.
    app_id: str | None = None
    client_events: bool | None = None
    max_presence_members: int | None = None
    # "thunderpush" or "pusher": how its webhooks are written; None: the server's.
    webhook_format: str | None = None
    cache_ttl: float | None = None
    # Pusher's limits (``PusherLimits``); None: the server's.
    max_event_bytes: int | None = None
    max_trigger_channels: int | None = None
    max_batch_events: int | None = None
    max_channel_name_length: int | None = None
    max_client_events_per_second: int | None = None
    max_user_info_bytes: int | None = None
    max_app_connections: int | None = None

    def pusher_limits(self) -> PusherLimits:
        """The app's Pusher limits: its own, Pusher's where it gives none."""
        given = {name: getattr(self, name) for name in PUSHER_LIMITS}
        return PusherLimits(**{name: value for name, value in given.items() if value is not None})

    subscription_count: bool | None = None


@dataclass
class Config:
    """Everything the command line can set, with the original's defaults."""

    # Public API key: appears in URLs and in the client's CONNECT command.
    # Empty when the apps all come from ``apps``.
    apikey: str = ""
    # Secret key that backends send in the X-Thunder-Secret-Key header.
    apisecret: str = ""
    # More apps, from the configuration file's ``[[apps]]`` tables.
    apps: tuple[AppConfig, ...] = ()
    # The TOML file the settings were read from (SIGHUP reads it again).
    config_file: str | None = None
    port: int = 8080
    # Address to bind to; empty means every interface.
    host: str = ""
    # Tornado debug/autoreload mode.
    debug: bool = False
    # DEBUG logging on stderr.
    verbose: bool = False
    pid_path: str = "/tmp/thunderpush.pid"
    sockjs_url: str = SOCKJS_URL
    # Largest HTTP API request body; larger ones get 413 before they are buffered.
    max_body_size: int = 1024 * 1024
    # Largest SockJS message a browser may send (commands are a few bytes long).
    max_client_message_size: int = 64 * 1024
    # How long a request head may take to arrive, in seconds.
    head_timeout: float = 10.0
    # How long a declared request body may take to arrive, in seconds.
    body_timeout: float = 30.0
    # How long a keep-alive connection may sit idle between requests, in seconds.
    idle_timeout: float = 75.0

    # -- security and limits (docs/security.rst) --------------------------
    # CONNECT must carry a user token signed with the app's secret.
    require_signature: bool = False
    # Origins allowed to open sessions ("https://example.com", "https://*.example.com");
    # empty means any.
    allowed_origins: tuple[str, ...] = ()
    # Unsent data one connection may hold before it is closed as too slow, in bytes.
    max_unsent_bytes: int = 1024 * 1024
    # Channels one connection may be subscribed to at once.
    max_channels_per_connection: int = 1000
    # Commands one connection may send per second (bursts up to the same number);
    # also the items (channels) per second of its SUBSCRIBE and UNSUBSCRIBE commands.
    max_commands_per_second: int = 100
    # Distinct users in one presence channel (as Pusher's default); 0 means no cap.
    max_presence_members: int = 100
    # Open connections from one IP address; 0 means no limit.
    max_connections_per_ip: int = 0
    # Open connections in total; 0 means no limit but the file descriptors.
    max_connections: int = 0
    # PEM certificate chain and private key: serve HTTPS and WSS on the same port.
    ssl_cert: str | None = None
    ssl_key: str | None = None

    # -- the cluster (docs/cluster.rst) -------------------------------------
    # redis://HOST:PORT/DB: join the cluster of every node with the same URLs.
    # Several URLs are shards: each channel and user lives on one of them
    # (``thunderpush.cluster.shards``); every node must list the same, in the
    # same order.  A single URL may be given as a string.
    redis_url: tuple[str, ...] = ()
    # The URLs are seeds of one Redis Cluster (Redis >= 7), not shards.
    redis_cluster: bool = False
    # A node that has not refreshed its presence for this long is gone, in seconds.
    presence_ttl: float = 30.0
    # Server processes to start on ports port, port+1, ... (needs redis_url when > 1).
    workers: int = 1

    # -- operations (docs/deployment.rst) ------------------------------------
    # Serve /metrics on this port instead of the main one; None: on the main port.
    metrics_port: int | None = None
    # On SIGTERM, close sessions in batches over this many seconds (clients move smoothly).
    drain_seconds: float = 5.0
    # "text" (readable lines) or "json" (one object per line, for log collectors).
    log_format: str = "text"
    # Log to this file instead of stderr (SIGHUP reopens it, for logrotate).
    log_file: str | None = None
    # A statistics line at INFO this often, in seconds; 0: never.
    stats_interval: float = STATS_INTERVAL_SECONDS

    # -- beyond the original (docs/history.rst, docs/webhooks.rst) -----------
    # Messages each channel keeps for clients that reconnect; 0: no history.
    history_size: int = 0
    # How long a kept message is kept, in seconds.
    history_ttl: float = HISTORY_TTL
    # ``[[history]]`` tables: per channel-prefix sizes and TTLs, for every app.
    history: tuple[HistoryRule, ...] = ()
    # Where channel and user events are POSTed (``[[apps]]`` may give their own).
    webhook_url: str | None = None
    # How they are written: Thunderpush's events and headers, or Pusher's
    # (``thunderpush.webhooks.events``); ``[[apps]]`` may choose their own.
    webhook_format: str = "thunderpush"

    # -- the Pusher protocol (docs/pusher.rst) ------------------------------
    # The Pusher app id of the key and secret given as arguments; None: the key.
    app_id: str | None = None
    # Pusher clients may send client-* events on private and presence channels.
    client_events: bool = False
    # How long a cache channel's last event is kept for its next subscribers.
    cache_ttl: float = CACHE_TTL
    # Pusher's limits for every app (``PusherLimits``: Pusher's numbers by default).
    max_event_bytes: int = PusherLimits.max_event_bytes
    max_trigger_channels: int = PusherLimits.max_trigger_channels
    max_batch_events: int = PusherLimits.max_batch_events
    max_channel_name_length: int = PusherLimits.max_channel_name_length
    max_client_events_per_second: int = PusherLimits.max_client_events_per_second
    max_user_info_bytes: int = PusherLimits.max_user_info_bytes
    max_app_connections: int = PusherLimits.max_app_connections
    # Non-presence channels' Pusher subscribers are told their subscription count.
    subscription_count: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.redis_url, str):
            self.redis_url = (self.redis_url,)


class ConfigError(ValueError):
    """A setting the server cannot start with; the message says which and why."""


def checked_credential(what: str, value: str) -> str:
    """``value``, unless it is empty or has whitespace at an end: then ``ConfigError``.

    An empty secret would let requests without the secret header through, and
    whitespace around one cannot be sent at all (HTTP trims header values), so
    such a server would refuse every backend.
    """
    if not value.strip():
        raise ConfigError(f"the {what} must not be empty or only whitespace")
    if value != value.strip():
        raise ConfigError(f"the {what} must not begin or end with whitespace")
    return value


def declared_apps(config: Config) -> list[AppConfig]:
    """Every app ``config`` declares: the key and secret first (if given), then ``apps``.

    Raises ``ConfigError`` for a blank key or secret, a key declared twice, or no app at all.
    """
    apps = list(config.apps)
    if config.apikey or config.apisecret:
        apps.insert(0, AppConfig(config.apikey, config.apisecret, app_id=config.app_id))
    if not apps:
        raise ConfigError("no app: give the client key and secret, or [[apps]] in --config")
    seen: set[str] = set()
    ids: dict[str, str] = {}
    resolved = []
    for app in apps:
        checked_credential("public key", app.key)
        checked_credential("secret", app.secret)
        if app.key in seen:
            raise ConfigError(f"the app {app.key} is declared twice")
        seen.add(app.key)
        app_id = app.app_id or app.key
        if ids.setdefault(app_id, app.key) != app.key:
            raise ConfigError(f"the app id {app_id} is declared twice")
        resolved.append(
            AppConfig(
                app.key,
                app.secret,
                _either(app.require_signature, config.require_signature),
                _either(app.history_size, config.history_size),
                _either(app.history_ttl, config.history_ttl),
                (*app.history, *config.history),
                _either(app.webhook_url, config.webhook_url),
                app.app_id,
                _either(app.client_events, config.client_events),
                _either(app.max_presence_members, config.max_presence_members),
                _either(app.webhook_format, config.webhook_format),
                cache_ttl=_either(app.cache_ttl, config.cache_ttl),
                subscription_count=_either(app.subscription_count, config.subscription_count),
            )
        )
        limits = {
            name: _either(getattr(app, name), getattr(config, name)) for name in PUSHER_LIMITS
        }
        resolved[-1] = replace(resolved[-1], **limits)
    return resolved


def _either(own: object, server: object) -> object:
    """An app's own setting, else the server's."""
    return server if own is None else own
