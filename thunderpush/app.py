"""Builds the Tornado application: SockJS at ``/connect``, the API, the client.

``runner`` calls this with the command line's settings; tests and embedding
applications call it directly to get the same routes.
"""

from __future__ import annotations

from importlib import resources

import tornado.web

from thunderpush import api, settings
from thunderpush.handler import ThunderSocketHandler
from thunderpush.router import SockJSRouter


class ClientScriptHandler(tornado.web.RequestHandler):
    """Serves the bundled JavaScript client at ``/thunderpush.js``."""

    _script = None

    def get(self) -> None:
        if ClientScriptHandler._script is None:
            source = resources.files("thunderpush").joinpath("static", "thunderpush.js")
            ClientScriptHandler._script = source.read_bytes()
        self.set_header("Content-Type", "application/javascript; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.finish(ClientScriptHandler._script)


def make_application(
    sockjs_url: str | None = None, debug: bool = False
) -> tuple[tornado.web.Application, SockJSRouter]:
    """The application and its SockJS router (whose sessions ``runner`` closes)."""
    router = SockJSRouter(
        ThunderSocketHandler, "/connect", {"sockjs_url": sockjs_url or settings.SOCKJS_URL}
    )
    urls = [*router.urls, *api.urls, (r"/thunderpush\.js", ClientScriptHandler)]
    application = tornado.web.Application(
        urls,
        debug=debug,
        default_handler_class=api.NotFoundHandler,
        websocket_max_message_size=settings.MAX_CLIENT_MESSAGE_SIZE,
    )
    return application, router
