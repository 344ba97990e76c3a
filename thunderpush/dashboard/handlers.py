"""``/dashboard``: the server's figures, live, for whoever knows an app's key and secret.

The page logs in with a plain form (key and secret in the POST body, never in
a URL, where proxies and browser history would keep them), then holds a
signed session cookie (``session``) rather than the secret: HTTP Basic would
make the browser send the secret with every poll and keep it until the
browser closes, with no way to log out.  The cookie is HttpOnly and
SameSite=Strict, so neither a script on the page nor another site can use it.

Everything the page needs comes from this server (``static/``): no CDN, no
build step, and a Content-Security-Policy that allows nothing else.  The
page polls ``/dashboard/data``, which answers the snapshot as JSON.

The login and logout POSTs are refused (403) when their ``Origin`` is
another site's: browsers send one with every POST, so no other page can log
a visitor in or out (SameSite=Strict keeps the cookie, not the form, from
other sites).  The pages' ``Referrer-Policy: same-origin`` makes the
browser name this origin there rather than ``null``.  Wrong logins are
limited per client address (``thunderpush.dashboard.guesses``): past the
limit every login from there is answered 429 for a while, and the log says
so once per lockout, not once per try.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import tornado.template
import tornado.web

from thunderpush.core.apps import App, Apps
from thunderpush.core.commands import shown
from thunderpush.dashboard.guesses import Guesses
from thunderpush.dashboard.session import SESSION_SECONDS, check_session, make_session

log = logging.getLogger("thunderpush.dashboard")

COOKIE = "thunderpush_dashboard"
PATH = "/dashboard"
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_TYPES = {
    "js": "application/javascript; charset=UTF-8",
    "css": "text/css; charset=UTF-8",
}

# The figures to show the owner of an app.
Snapshot = Callable[[App], Awaitable[dict[str, Any]]]


def _resource(name: str) -> bytes:
    return resources.files("thunderpush.dashboard").joinpath("static", name).read_bytes()


class _Base(tornado.web.RequestHandler):
    # A refusal this handler logs itself (once per lockout, or once per request):
    # the access log tells it at INFO, not as a second WARNING.
    refusal_logged = False

    def initialize(self, apps: Apps, snapshot: Snapshot, guesses: Guesses) -> None:
        self.apps = apps
        self.snapshot = snapshot
        self.guesses = guesses

    def set_default_headers(self) -> None:
        for name, value in _SECURITY_HEADERS.items():
            self.set_header(name, value)

    def session_app(self) -> App | None:
        return check_session(self.apps, self.get_cookie(COOKIE))

    def cross_site(self) -> bool:
        """Whether this POST comes from another site's page: refused (403) if so.

        An ``Origin`` that is present must name the host the request was sent
        to (as Tornado's websocket rule, whatever the scheme: a proxy may end
        TLS); ``null`` (a sandboxed or privacy-hidden page) is refused too.
        No ``Origin``: not a browser's cross-site POST.
        """
        origin = self.request.headers.get("Origin")
        if origin is None or _host_of(origin) == self.request.host.lower():
            return False
        self.refusal_logged = True
        log.warning(
            "Dashboard: refused a POST to %s from the origin %s (%s).",
            self.request.path,
            shown(origin),
            self.request.remote_ip,
        )
        self.set_status(403)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(b'{"error": "Cross-site request refused."}')
        return True


def _host_of(origin: str) -> str | None:
    """The ``host[:port]`` an ``Origin`` names, lower-cased; None if it names none."""
    try:
        return urlsplit(origin).netloc.lower() or None
    except ValueError:
        return None


class PageHandler(_Base):
    """The dashboard for a logged-in browser, the login form for any other."""

    _login: tornado.template.Template | None = None

    def get(self) -> None:
        if self.session_app() is None:
            self.login_form()
        else:
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.finish(_resource("dashboard.html"))

    def post(self) -> None:
        if self.cross_site():
            return
        address = self.request.remote_ip
        wait = self.guesses.locked(address)
        if wait:
            self.refusal_logged = True
            self.set_status(429)
            self.set_header("Retry-After", str(math.ceil(wait)))
            self.login_form(f"Too many wrong logins: try again in {math.ceil(wait)} s.")
            return
        key = self.get_body_argument("key", "")
        app = self.apps.authenticate(key, self.get_body_argument("secret", ""))
        if app is None:
            self.refusal_logged = True
            guesses = self.guesses
            if guesses.failed(address):
                log.warning(
                    "Dashboard: %d wrong logins from %s within %g s; its logins are"
                    " refused for %g s.",
                    guesses.limit,
                    address,
                    guesses.window,
                    guesses.window,
                )
            else:
                log.info("Dashboard: wrong key or secret from %s.", address)
            self.set_status(403)
            self.login_form("Wrong key or secret.")
            return
        self.set_cookie(
            COOKIE,
            make_session(app),
            path=PATH,
            expires_days=SESSION_SECONDS / 86400,
            httponly=True,
            secure=self.request.protocol == "https",
            samesite="Strict",
        )
        self.redirect(PATH, status=303)

    def login_form(self, error: str = "") -> None:
        if PageHandler._login is None:
            PageHandler._login = tornado.template.Template(_resource("login.html"))
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(PageHandler._login.generate(error=error))


class LogoutHandler(_Base):
    def post(self) -> None:
        if self.cross_site():
            return
        self.clear_cookie(COOKIE, path=PATH)
        self.redirect(PATH, status=303)


class DataHandler(_Base):
    """The snapshot as JSON, for a logged-in browser only."""

    async def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        app = self.session_app()
        if app is None:
            self.set_status(403)
            self.finish(b'{"error": "Log in at /dashboard."}')
        else:
            self.finish(json.dumps(await self.snapshot(app)))


class AssetHandler(tornado.web.RequestHandler):
    """The page's script and style sheet: public, they hold nothing of the server."""

    def get(self, name: str, kind: str) -> None:
        self.set_header("Content-Type", _TYPES[kind])
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(_resource(f"{name}.{kind}"))


def urls(apps: Apps, snapshot: Snapshot) -> list[tuple[str, type, dict[str, Any]] | tuple]:
    """The dashboard's routes; ``snapshot`` gives the figures each poll shows."""
    served = {"apps": apps, "snapshot": snapshot, "guesses": Guesses()}
    return [
        (PATH, PageHandler, served),
        (PATH + "/data", DataHandler, served),
        (PATH + "/logout", LogoutHandler, served),
        (PATH + r"/(dashboard)\.(js|css)", AssetHandler),
    ]
