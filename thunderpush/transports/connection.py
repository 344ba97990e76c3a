"""One browser's SockJS connection: the core's ``Client`` on a sockjs-tornado session.

sockjs-tornado makes one of these per session, whatever the transport; client
messages become commands (``Client.handle``) and the hub's deliveries become
SockJS frames, queued on the session.
"""

from __future__ import annotations

from typing import Any

from thunderpush.core.apps import Apps
from thunderpush.core.commands import Client, Limits
from thunderpush.transports.sockjs import SockJSConnection


class ThunderConnection(Client, SockJSConnection):
    """A browser connection on any SockJS transport."""

    # The client's address, for the log.
    address: str | None = None

    def on_open(self, info: Any) -> None:
        # No app until the client says CONNECT with a valid key.
        self.app = None
        self.address = getattr(info, "ip", None)

    def log_context(self) -> dict[str, Any]:
        return {
            **super().log_context(),
            "address": self.address,
            "session": getattr(self.session, "session_id", None),
        }

    def on_message(self, msg: Any) -> None:
        self.handle(msg)

    def on_close(self) -> None:
        self.leave()

    def send_delivery(self, element: str) -> None:
        """Queue one delivery; ``element`` is already JSON, encoded once."""
        session = self.session
        if not session.is_closed:
            session.send_element(element)

    def close(self, code: int = 3000, message: str = "Go away!") -> None:
        self.session.close(code, message)


def connection_class(apps: Apps, limits: Limits) -> type[ThunderConnection]:
    """The connection class of a server serving ``apps`` (sockjs-tornado takes a class)."""
    return type("ThunderConnection", (ThunderConnection,), {"apps": apps, "limits": limits})
