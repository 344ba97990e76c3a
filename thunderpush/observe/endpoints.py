"""``/metrics``, ``/health`` and ``/ready`` as Tornado handlers.

They are scraped every few seconds, not thousands of times a second, so they
are served by Tornado (the front door hands them over) rather than on the
front door's fast path; the same handlers serve ``--metrics-port``.  None
needs a secret and none says anything sensitive: counts, never user ids,
channel names or keys.

* ``/health``: 200 ``{"status": "ok"}`` while the process serves (draining too);
* ``/ready``: 200 when it takes traffic, 503 while it drains or while its
  cluster backend is down, with ``{"ready", "draining", "cluster"}``;
* ``/metrics``: Prometheus's text format (``thunderpush.observe.metrics``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from tornado.httpserver import HTTPServer
from tornado.log import access_log

from thunderpush.config import ConfigError
from thunderpush.observe.metrics import exposition
from thunderpush.observe.snapshot import readiness

if TYPE_CHECKING:
    from thunderpush.observe.figures import Figures


class _ServerHandler(tornado.web.RequestHandler):
    def initialize(self, figures: Figures, registry: CollectorRegistry) -> None:
        self.figures = figures
        self.registry = registry

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def head(self) -> None:
        """As GET, without the body (Tornado drops it): uptime checks send HEAD,
        on the metrics port too."""
        self.get()

    def answer_json(self, status: int, data: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(data) + "\n")


class HealthHandler(_ServerHandler):
    def get(self) -> None:
        self.answer_json(200, {"status": "ok"})


class ReadyHandler(_ServerHandler):
    def get(self) -> None:
        report = readiness(self.figures)
        self.answer_json(200 if report["ready"] else 503, report)


class MetricsHandler(_ServerHandler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(exposition(self.registry))


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log line (the application's ``log_function``), except that
    ``/ready``'s 503 is an answer (not ready), not a server error to log as one,
    and a refusal its handler logged itself (``refusal_logged``) is an INFO line."""
    status = handler.get_status()
    quiet = isinstance(handler, ReadyHandler) or getattr(handler, "refusal_logged", False)
    if status < 400 or quiet:
        log = access_log.info
    elif status < 500:
        log = access_log.warning
    else:
        log = access_log.error
    request = handler.request
    summary = f"{request.method} {request.uri} ({request.remote_ip})"
    log("%d %s %.2fms", status, summary, 1000.0 * request.request_time())


def urls(
    figures: Figures, registry: CollectorRegistry, metrics: bool = True
) -> list[tuple[str, type, dict[str, Any]]]:
    """The routes, reading ``figures`` (``/ready``) and ``registry`` (``/metrics``),
    ``/metrics`` only if ``metrics`` (else it is on its own port)."""
    routes = [(r"/health", HealthHandler), (r"/ready", ReadyHandler)]
    if metrics:
        routes.append((r"/metrics", MetricsHandler))
    served = {"figures": figures, "registry": registry}
    return [(path, handler, served) for path, handler in routes]


def listen_for_metrics(
    figures: Figures, registry: CollectorRegistry, port: int, host: str = ""
) -> HTTPServer:
    """Serves the three on ``port`` of ``host`` (``--metrics-port``); stop it when done.

    Raises ``ConfigError`` for a port it cannot listen on (taken, not allowed).
    """
    application = tornado.web.Application(urls(figures, registry), log_function=log_request)
    http = HTTPServer(application)
    try:
        http.listen(port, host or None)
    except (OSError, OverflowError) as error:
        raise ConfigError(f"--metrics-port {port}: {getattr(error, 'strerror', error)}") from None
    return http
