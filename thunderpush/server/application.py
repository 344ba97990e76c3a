"""Builds what one server serves: the apps, the API, SockJS at ``/connect``, the client.

``thunderpush.server.process`` calls ``build`` with the command line's
configuration; tests and embedding applications call it to get the same
server in their own event loop::

    server = build(config)          # config.apikey / apisecret: the first app
    await server.door.listen(8080)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from typing import TYPE_CHECKING

import tornado.web
from prometheus_client import CollectorRegistry

from thunderpush.api import Api
from thunderpush.config import Config, ConfigError, declared_apps
from thunderpush.core.apps import Apps, options_of
from thunderpush.core.commands import Limits
from thunderpush.dashboard import urls as dashboard_urls
from thunderpush.observe import endpoints, metrics
from thunderpush.observe.snapshot import cluster_snapshot, counters
from thunderpush.pusher.endpoint import PusherApi
from thunderpush.pusher.protocol import CACHE_PREFIXES
from thunderpush.pusher.websocket import PusherUpgrade
from thunderpush.server.figures import ServerFigures
from thunderpush.server.heads import answer_head
from thunderpush.transports.door.fallback import EndpointHandler
from thunderpush.transports.door.frontdoor import FrontDoor
from thunderpush.transports.sockjs.adapter import HandOffServer
from thunderpush.transports.sockjs.connection import connection_class
from thunderpush.transports.sockjs.origins import AllowedOrigins
from thunderpush.transports.sockjs.router import SockJSRouter
from thunderpush.transports.sockjs.websockets import websocket_upgrades
from thunderpush.transports.websocket.service import WebSocketService
from thunderpush.webhooks.sender import Webhooks

if TYPE_CHECKING:
    from thunderpush.cluster import Node


class ClientScriptHandler(tornado.web.RequestHandler):
    """Serves the bundled JavaScript client at ``/thunderpush.js``."""

    _script: bytes | None = None

    def get(self) -> None:
        if ClientScriptHandler._script is None:
            source = resources.files("thunderpush").joinpath("static", "thunderpush.js")
            ClientScriptHandler._script = source.read_bytes()
        self.set_header("Content-Type", "application/javascript; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.finish(ClientScriptHandler._script)


def limits(config: Config) -> Limits:
    """What each browser connection may do, as configured."""
    return Limits(config.max_channels_per_connection, config.max_commands_per_second)


def make_application(
    config: Config, api: Api, pusher_api: PusherApi
) -> tuple[tornado.web.Application, SockJSRouter]:
    """The Tornado application and its SockJS router (whose sessions shutdown closes).

    The APIs are its default handler (``fallback``): Tornado serves them the
    requests the front door hands off.

    Raises ``ConfigError`` for an allowed origin that is no origin.
    """
    try:
        AllowedOrigins(config.allowed_origins)
    except ValueError as error:
        raise ConfigError(f"--allowed-origins: {error}") from None
    router = SockJSRouter(
        connection_class(api.apps, limits(config)),
        "/connect",
        {
            "sockjs_url": config.sockjs_url,
            "max_message_size": config.max_client_message_size,
            "allowed_origins": config.allowed_origins,
            "max_unsent_bytes": config.max_unsent_bytes,
        },
    )
    urls = [*router.urls, (r"/thunderpush\.js", ClientScriptHandler)]
    application = tornado.web.Application(
        urls,
        debug=config.debug,
        default_handler_class=EndpointHandler,
        default_handler_args={"endpoints": (api, pusher_api), "otherwise": api.not_found},
        websocket_max_message_size=config.max_client_message_size,
        log_function=endpoints.log_request,
    )
    return application, router


@dataclass
class Server:
    """One server's parts, wired together but not yet listening."""

    config: Config
    apps: Apps
    api: Api
    router: SockJSRouter
    door: FrontDoor
    # What every websocket shares, SockJS's and Pusher's (the router made it).
    websockets: WebSocketService
    # The upgrade target of Pusher's ``/app/<key>``: its ``limits`` are reloaded.
    pusher: PusherUpgrade
    # This process in the cluster, with ``config.redis_url``: ``start`` joins it.
    node: Node | None = None
    # Set when shutdown begins: ``/ready`` says 503 from then on.
    draining: bool = False
    # The metrics served at ``/metrics`` (``thunderpush.observe.metrics``).
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    # The apps' webhook queues (``thunderpush.webhooks``): ``start`` starts sending.
    webhooks: Webhooks = field(default_factory=Webhooks)
    # What ``observe/`` reads of this server (``thunderpush.server.figures``).
    figures: ServerFigures = field(init=False)

    def __post_init__(self) -> None:
        self.figures = ServerFigures(self)

    async def start(self) -> None:
        """Joins the cluster, if there is one, and sends webhooks; ``stop`` ends both."""
        self.webhooks.start()
        if self.node is not None:
            await self.node.start()

    async def stop(self) -> None:
        """Leaves the cluster (whose last events are queued), then one last try for
        the webhooks."""
        if self.node is not None:
            await self.node.stop()
        await self.webhooks.stop()


def cluster_node(config: Config) -> Node:
    """This process's node in the cluster on ``config.redis_url`` (one URL, or
    several: shards; with ``config.redis_cluster``, seeds of one Redis Cluster).

    Imported here, and only with a Redis URL, so that a single process never loads redis.
    """
    from thunderpush.cluster import Node

    try:
        return Node(config.redis_url, config.presence_ttl, config.redis_cluster)
    except ValueError as error:
        raise ConfigError(f"--redis-url: {error}") from None


def build(config: Config, apps: Apps | None = None) -> Server:
    """A server for ``apps`` (by default: the apps ``config`` declares, on the
    cluster of ``config.redis_url`` if there is one).

    Raises ``ConfigError`` for settings it cannot serve with (origins, TLS files,
    an empty or whitespace key or secret, a Redis URL that is none).
    """
    node = None
    if apps is None:
        if config.redis_url:
            from thunderpush.cluster import cluster_apps

            node = cluster_node(config)
            apps = cluster_apps(node)
        else:
            apps = Apps()
        for app in declared_apps(config):
            apps.add(app.key, app.secret, **options_of(app))
    # Pusher's cache channels keep their last event (``thunderpush.pusher.cache``).
    apps.keep_last(CACHE_PREFIXES)
    api = Api(apps, config.max_body_size)
    pusher_api = PusherApi(api)
    application, router = make_application(config, api, pusher_api)
    service = router.service
    pusher = PusherUpgrade(service, apps, router.get_connection_class().limits)
    # Pusher's /app/<key> first, then SockJS's websocket paths.
    upgrades = [(PusherUpgrade.PATH, pusher), *websocket_upgrades(router)]
    # Connections handed over keep the same limits, as far as Tornado has them.
    tornado = HandOffServer(
        application,
        max_body_size=config.max_body_size,
        idle_connection_timeout=config.idle_timeout,
        body_timeout=config.body_timeout,
        protocol="https" if config.ssl_cert else None,
    )
    door = FrontDoor(config, tornado, (api, pusher_api), upgrades, service.sockets)
    server = Server(config, apps, api, router, door, service, pusher, node)
    for app in apps:
        server.webhooks.watch(app)
    server.metrics = metrics.registry(server.figures)
    if node is not None:
        # Written with each heartbeat, for the dashboard's sums over the cluster.
        node.counters = partial(counters, server.figures)
    # /health and /ready on the main port always (load balancers ask the port they
    # send traffic to); /metrics there unless it has a port of its own.
    own_port = config.metrics_port is not None
    application.add_handlers(r".*", endpoints.urls(server.figures, server.metrics, not own_port))
    application.add_handlers(r".*", dashboard_urls(apps, partial(cluster_snapshot, server.figures)))
    answer_head(application)
    return server
