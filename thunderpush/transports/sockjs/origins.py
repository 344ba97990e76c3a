"""Which browser origins may open sessions: one rule for every transport.

The websocket handshake (``thunderpush.transports.websocket.handshake``), the SockJS
polling and streaming transports' CORS answers and ``/connect/info``
(``thunderpush.transports.sockjs.router``) all ask the router's ``AllowedOrigins``,
so a page refused on one transport is refused on all of them.

An entry is an exact origin (``https://example.com``,
``http://localhost:8000``) or a wildcard host (``https://*.example.com``:
any subdomain, at any depth, but not ``example.com`` itself, as in CSP).
A default port may be written or left out.  A request without an ``Origin``
is not from a browser page and is allowed.

An ``Origin`` that names the ``Host`` the request was sent to proves nothing:
with DNS rebinding, any site's page can send its own name as both.  So the
server's own pages (SockJS's iframe transports run in one) are allowed only
when their origin is in the list.  Tornado's same-origin rule (``Origin``
naming the ``Host``) holds only for sockjs-tornado's ``websocket_allow_origin``
hosts, for applications that mount the router with that setting alone, as
sockjs-tornado did::

    origins = AllowedOrigins(("https://example.com", "https://*.example.com"))
    origins.allows("https://app.example.com", host="push.example.com")  # True
    origins.allows("https://push.example.com", host="push.example.com")  # False
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import NamedTuple

from thunderpush.core.throttle import Throttle

logger = logging.getLogger("thunderpush")

_DEFAULT_PORTS = {"http": 80, "https": 443}
# scheme "://" ["*."] host [":" port]: nothing else (no path, no user, no query).
_ENTRY = re.compile(r"([a-z][a-z0-9+.-]*)://(\*\.)?([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?")
# What ``/connect/info`` reports when any origin is allowed (SockJS's notation).
ANY = ("*:*",)


class _Origin(NamedTuple):
    """An origin or an entry, normalized: lower case, the scheme's default port filled in."""

    scheme: str
    host: str
    port: int | None
    wildcard: bool = False

    @property
    def netloc(self) -> str:
        """``host[:port]`` as a ``Host`` header names it (no default port)."""
        if self.port is None or self.port == _DEFAULT_PORTS.get(self.scheme):
            return self.host
        return f"{self.host}:{self.port}"

    def admits(self, origin: _Origin) -> bool:
        """Whether this entry allows ``origin``."""
        if self.scheme != origin.scheme or self.port != origin.port:
            return False
        if self.wildcard:
            return origin.host.endswith("." + self.host)
        return origin.host == self.host


def _parse(text: str) -> _Origin | None:
    """``text`` as an origin or entry; None when it is not one."""
    match = _ENTRY.fullmatch(text.strip().lower().rstrip("/"))
    if match is None:
        return None
    scheme, wildcard, host, port = match.groups()
    number = int(port) if port else _DEFAULT_PORTS.get(scheme)
    if number is not None and not 0 < number < 65536:
        return None
    return _Origin(scheme, host, number, wildcard is not None)


class AllowedOrigins:
    """The origins configured for a router; none means any origin."""

    __slots__ = ("entries", "_allowed", "_hosts", "_refusals")

    def __init__(
        self,
        entries: Iterable[str] = (),
        hosts: Iterable[str] = (),
        refusals: Throttle | None = None,
    ) -> None:
        """Raises ``ValueError`` naming the first entry that is no origin.

        ``hosts`` are sockjs-tornado's ``websocket_allow_origin`` entries
        (``host[:port]`` as the browser writes it, any scheme), for
        applications that mount the router with that setting.  A refused
        origin is logged (INFO) when ``refusals`` says a line about it is due:
        once per origin per minute, not once per request of a hostile page.
        """
        self._refusals = refusals
        self.entries: tuple[str, ...] = (*entries, *hosts)
        allowed = []
        for entry in entries:
            origin = _parse(entry)
            if origin is None:
                raise ValueError(
                    f"not an origin: {entry!r} (expected scheme://host[:port] "
                    "or scheme://*.domain[:port], e.g. https://example.com)"
                )
            allowed.append(origin)
        self._allowed = tuple(allowed)
        self._hosts = frozenset(host.lower() for host in hosts)

    @property
    def any(self) -> bool:
        return not self.entries

    @property
    def reported(self) -> list[str]:
        """The list ``/connect/info`` reports as ``origins``."""
        return list(self.entries or ANY)

    def allows(self, origin: str | None, host: str | None = None) -> bool:
        """Whether a request with this ``Origin`` header (None: none) may be served.

        ``host`` is the request's ``Host``: a page naming it is allowed only
        when no origin entries are configured, only ``websocket_allow_origin``
        hosts (Tornado's same-origin rule, as sockjs-tornado applied it).
        """
        if origin is None or not self.entries:
            return True
        if self._admits(origin, host):
            return True
        shown = origin[:200]  # a header a page chose: bounded, and quoted by %r
        if self._refusals is not None and self._refusals.due(shown):
            logger.info(
                "Origin refused: %r is not an allowed origin (--allowed-origins);"
                " its next refusals go unlogged for %g s.",
                shown,
                self._refusals.window,
            )
        return False

    def _admits(self, origin: str, host: str | None) -> bool:
        parsed = _parse(origin)
        if parsed is None or parsed.wildcard:
            return False  # "null", a path, garbage: no configured origin
        netloc = parsed.netloc
        if host and not self._allowed and netloc == host.strip().lower():
            return True
        return netloc in self._hosts or any(entry.admits(parsed) for entry in self._allowed)
