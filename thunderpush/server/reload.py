"""SIGHUP's reload: what a running server takes from the configuration file again.

Apps (added, removed, a new secret, ``require_signature``, history or webhook) and the limits
that are read when they are used (channels and commands per connection,
unsent bytes, connections in total and per address) change at once.  The
rest (ports, TLS, the cluster, timeouts...) needs a restart: the log says
which changed settings wait for one.  A configuration that cannot be read
changes nothing and is logged; the server keeps running either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields

from thunderpush.server.application import Server, limits
from thunderpush.server.config import Config, ConfigError, declared_apps

logger = logging.getLogger("thunderpush")

# Settings applied without a restart; ``config_file`` is where they come from.
RELOADED = {
    "apikey",
    "apisecret",
    "apps",
    "require_signature",
    "history_size",
    "history_ttl",
    "history",
    "webhook_url",
    "client_events",
    "max_channels_per_connection",
    "max_commands_per_second",
    "max_unsent_bytes",
    "max_connections",
    "max_connections_per_ip",
    "config_file",
}


def reload_settings(server: Server, read: Callable[[], Config]) -> None:
    """Applies what ``read`` returns to ``server``; never raises."""
    try:
        new = read()
        apps = declared_apps(new)
    except ConfigError as error:
        logger.warning("Configuration not reloaded, the running one stays: %s", error)
        return
    _apply_apps(server, {app.key: app for app in apps})
    _apply_limits(server, new)
    waiting = [
        field.name
        for field in fields(Config)
        if field.name not in RELOADED
        and getattr(new, field.name) != getattr(server.config, field.name)
    ]
    if waiting:
        logger.warning("Changed settings that need a restart: %s.", ", ".join(waiting))
    server.config = new
    logger.info("Configuration reloaded: %d apps.", len(apps))


def _apply_apps(server: Server, declared: dict) -> None:
    registry = server.apps
    for app in registry:
        if app.key not in declared:
            registry.remove(app.key)
            logger.info("App %s removed; its connections are closed.", app.key)
    for key, wanted in declared.items():
        app = registry.get(key)
        if app is None:
            registry.add(key, wanted.secret, **wanted.options())
            logger.info("App %s added.", key)
        else:
            app.secret, app.require_signature = wanted.secret, wanted.require_signature
            app.history, app.webhook_url = wanted.history_policy(), wanted.webhook_url
            app.client_events = bool(wanted.client_events)
    for app in registry:
        server.webhooks.watch(app)


def _apply_limits(server: Server, config: Config) -> None:
    server.router.get_connection_class().limits = limits(config)
    server.router.settings["max_unsent_bytes"] = config.max_unsent_bytes
    server.door.open.most = config.max_connections
    server.door.open.most_per_ip = config.max_connections_per_ip
