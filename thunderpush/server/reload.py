"""SIGHUP's reload: what a running server takes from the configuration file again.

Apps (added, removed, a new secret, ``require_signature``, history, webhook URL and
format, ``client_events``, ``max_presence_members``, ``cache_ttl``,
``subscription_count``, Pusher's limits, the Pusher ``app_id``) and the
limits that are read when they are used (channels and commands per connection, unsent bytes,
connections in total and per address) change at once.  The rest (ports, TLS,
the cluster, timeouts...) needs a restart.  The log names every change: one
INFO line per change applied (``Reloaded: ...``, values shown, URLs masked,
secrets never; a line about one app carries it as the ``app`` field), a last
line naming the apps that changed, one WARNING naming the changed settings that wait for a
restart, so an operator never has to guess whether an edit took.  The
running configuration (``server.config``) takes only what was applied: a
setting that waits for a restart keeps its running value there, so the warning
always compares the file with what runs (a port changed and changed back warns
no more).  A configuration that cannot be read changes nothing and is logged;
the server keeps running either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from thunderpush.config import PUSHER_LIMITS, AppConfig, Config, ConfigError, declared_apps
from thunderpush.core.apps import App, options_of
from thunderpush.core.retention import HistoryPolicy
from thunderpush.server.application import Server, limits
from thunderpush.settings import masked_url

logger = logging.getLogger("thunderpush")

# Settings applied without a restart; ``config_file`` is where they come from.
RELOADED = {
    "apikey",
    "apisecret",
    "apps",
    "app_id",
    "require_signature",
    "history_size",
    "history_ttl",
    "history",
    "webhook_url",
    "webhook_format",
    "client_events",
    "max_presence_members",
    "cache_ttl",
    "subscription_count",
    "max_channels_per_connection",
    "max_commands_per_second",
    "max_unsent_bytes",
    "max_connections",
    "max_connections_per_ip",
    "config_file",
    *PUSHER_LIMITS,
}

# The limits applied at once: each is read whenever it is used.
LIMITS = (
    "max_channels_per_connection",
    "max_commands_per_second",
    "max_unsent_bytes",
    "max_connections",
    "max_connections_per_ip",
)

# Each of ``options_of(app)`` and the ``App`` attribute that holds it.  Every
# option must be here (tests/test_settings.py checks): one that is not could
# change in the file and be ignored without a word.
APP_OPTIONS = {
    "require_signature": "require_signature",
    "history": "history",
    "webhook_url": "webhook_url",
    "webhook_format": "webhook_format",
    "app_id": "id",
    "client_events": "client_events",
    "max_presence_members": "max_presence_members",
    "cache_ttl": "cache_ttl",
    "pusher_limits": "pusher_limits",
    "subscription_count": "subscription_count",
}


def reload_settings(server: Server, read: Callable[[], Config]) -> None:
    """Applies what ``read`` returns to ``server``; never raises."""
    try:
        new = read()
        apps = declared_apps(new)
    except ConfigError as error:
        logger.warning("Configuration not reloaded, the running one stays: %s", error)
        return
    running = server.config
    changed = _apply_apps(server, {app.key: app for app in apps})
    for key, change in changed:
        logger.info("Reloaded: app %s%s.", key, change, extra={"app": key})
    for change in _apply_limits(server, running, new):
        logger.info("Reloaded: %s.", change)
    waiting = waiting_for_restart(running, new)
    if waiting:
        logger.warning("Changed settings that need a restart: %s.", ", ".join(waiting))
    # What runs now: the file's reloaded settings, the running value of the rest.
    server.config = replace(new, **{name: getattr(running, name) for name in waiting})
    keys = list(dict.fromkeys(key for key, _ in changed))
    logger.info(
        "Configuration reloaded: %d apps, %s.",
        len(apps),
        f"changed: {', '.join(keys)}" if keys else "none changed",
    )


def waiting_for_restart(running: Config, read: Config) -> list[str]:
    """The settings whose value in ``read`` differs from ``running``'s and needs a restart."""
    return [
        field.name
        for field in fields(Config)
        if field.name not in RELOADED and getattr(read, field.name) != getattr(running, field.name)
    ]


def _apply_apps(server: Server, declared: dict[str, AppConfig]) -> list[tuple[str, str]]:
    """Makes the running apps the ``declared`` ones; the changes: each app's key and
    what happened to it, as the log says it after the key.

    Apps no longer declared go first and app ids change together, so an app
    may take an id another gave up (or two may swap theirs) in one reload.
    """
    registry = server.apps
    changes = []
    for app in registry:
        if app.key not in declared:
            registry.remove(app.key)
            changes.append((app.key, " removed, its connections closed"))
    ids: dict[str, str] = {}
    for app in registry:
        changes += [(app.key, change) for change in _apply_app(app, declared[app.key], ids)]
    registry.set_ids(ids)
    for key, wanted in declared.items():
        if registry.get(key) is None:
            registry.add(key, wanted.secret, **options_of(wanted))
            changes.append((key, " added"))
    for app in registry:
        server.webhooks.watch(app)
    return changes


def _apply_app(app: App, wanted: AppConfig, ids: dict[str, str]) -> list[str]:
    """``app``'s settings as ``wanted``, but its new id, which goes into ``ids``."""
    changes = []
    if app.secret != wanted.secret:
        app.secret = wanted.secret
        changes.append(
            ": a new secret (tokens, Pusher signatures and dashboard"
            " sessions made with the old one are refused from now on)"
        )
    for name, given in options_of(wanted).items():
        # An app's id is its key unless one is given.
        value = (given or app.key) if name == "app_id" else given
        attribute = APP_OPTIONS[name]
        old = getattr(app, attribute)
        if old == value:
            continue
        if name == "app_id":
            ids[app.key] = value
        else:
            setattr(app, attribute, value)
        changes.append(f": {name} {_shown(name, old)} -> {_shown(name, value)}")
    return changes


def _shown(name: str, value: Any) -> str:
    """A setting's value for the log: URLs masked, history as its rules."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, HistoryPolicy):
        rules = [("", value.default), *value.prefixes]
        return ", ".join(f"{prefix}* {keep.size} for {keep.ttl:g} s" for prefix, keep in rules)
    if name == "webhook_url":
        return masked_url(value)
    return str(value)


def _apply_limits(server: Server, old: Config, new: Config) -> list[str]:
    server.router.get_connection_class().limits = server.pusher.limits = limits(new)
    server.websockets.settings.max_unsent_bytes = new.max_unsent_bytes
    server.door.open.most = new.max_connections
    server.door.open.most_per_ip = new.max_connections_per_ip
    return [
        f"{name} {getattr(old, name)} -> {getattr(new, name)}"
        for name in LIMITS
        if getattr(old, name) != getattr(new, name)
    ]
