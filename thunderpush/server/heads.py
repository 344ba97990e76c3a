"""HEAD is answered wherever GET is: uptime checks and load balancers send HEAD.

Tornado answers HEAD with 405 unless a handler defines ``head``; every page,
script and figure the server serves by GET (the client script, ``/health``,
``/ready``, ``/metrics``, SockJS's ``/info`` and iframe, the dashboard) is
answered the same by HEAD: its status and fields, no body (Tornado drops it
for a HEAD request).  ``answer_head`` walks an application's routes once, at
build time, and serves each such handler through a subclass whose ``head`` is
its ``get``, so no handler has to remember it.  The APIs' routes answer HEAD
as GET themselves (``thunderpush.api.calls``).
"""

from __future__ import annotations

from typing import Any

import tornado.web
from tornado.routing import Router


def answer_head(application: tornado.web.Application) -> None:
    """Every handler of ``application`` that answers GET answers HEAD too."""
    _walk(application.wildcard_router)
    _walk(application.default_router)


def _walk(router: Router) -> None:
    for rule in getattr(router, "rules", ()):
        target = rule.target
        if isinstance(target, Router):
            _walk(target)
        elif _needs_head(target):
            rule.target = type(target.__name__, (target,), _head_of(target))


def _needs_head(target: Any) -> bool:
    base = tornado.web.RequestHandler
    return (
        isinstance(target, type)
        and issubclass(target, base)
        and target.get is not base.get
        and target.head is base.head
    )


def _head_of(handler: type[tornado.web.RequestHandler]) -> dict[str, Any]:
    methods = tuple(handler.SUPPORTED_METHODS)
    supported = methods if "HEAD" in methods else (*methods, "HEAD")
    return {"head": handler.get, "SUPPORTED_METHODS": supported, "__doc__": handler.__doc__}
