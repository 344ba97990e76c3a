"""Builds what one server serves: the apps, the API, SockJS at ``/connect``, the client.

``thunderpush.server.process`` calls ``build`` with the command line's
configuration; tests and embedding applications call it to get the same
server in their own event loop::

    server = build(config)          # config.apikey / apisecret: the first app
    await server.door.listen(8080)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import tornado.web

from thunderpush.api import Api
from thunderpush.api import handlers as api_handlers
from thunderpush.core.apps import Apps
from thunderpush.core.commands import Limits
from thunderpush.server.config import Config
from thunderpush.transports.connection import connection_class
from thunderpush.transports.frontdoor import FrontDoor
from thunderpush.transports.sockjs import SockJSRouter


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


def make_application(config: Config, api: Api) -> tuple[tornado.web.Application, SockJSRouter]:
    """The Tornado application and its SockJS router (whose sessions shutdown closes)."""
    router = SockJSRouter(
        connection_class(api.apps, limits(config)),
        "/connect",
        {"sockjs_url": config.sockjs_url, "max_message_size": config.max_client_message_size},
    )
    urls = [*router.urls, *api_handlers.urls(api), (r"/thunderpush\.js", ClientScriptHandler)]
    application = tornado.web.Application(
        urls,
        debug=config.debug,
        default_handler_class=api_handlers.NotFoundHandler,
        default_handler_args={"api": api},
        websocket_max_message_size=config.max_client_message_size,
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


def build(config: Config, apps: Apps | None = None) -> Server:
    """A server for ``apps`` (by default: the one app of ``config``'s key and secret)."""
    if apps is None:
        apps = Apps()
        apps.add(config.apikey, config.apisecret, config.require_signature)
    api = Api(apps, config.max_body_size)
    application, router = make_application(config, api)
    return Server(config, apps, api, router, FrontDoor(config, application, router, api))
