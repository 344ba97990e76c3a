"""One browser's SockJS connection: the core's ``Client`` on a sockjs-tornado session.

sockjs-tornado makes one of these per session, whatever the transport; client
messages become commands (``Client.handle``) and the hub's deliveries become
SockJS frames, queued on the session.
"""

from __future__ import annotations

from typing import Any

from thunderpush.core.apps import Apps
from thunderpush.core.commands import Client, Limits
from thunderpush.core.throttle import Throttle
from thunderpush.transports.sockjs.router import SockJSConnection
from thunderpush.transports.websocket.socket import WebSocket


class ThunderConnection(Client, SockJSConnection):
    """A browser connection on any SockJS transport.

    The unsent cap (``max_unsent_bytes``) holds as each delivery is queued, not
    only when the loop turn flushes: a SockJS session checks its own queue,
    and for a websocket (whose deliveries wait in the outbox until the turn
    ends) ``send_delivery`` does, so that one command cannot build more than
    the cap for a client, however many recoveries or welcomes it asks for.
    """

    # The client's address, for the log.
    address: str | None = None
    # Bytes that may still be queued on a websocket before its unsent bytes are
    # counted again: counting walks the outbox entry, so it is done only once
    # this much has been queued since the last count (amortised O(1) a delivery).
    _headroom: int = 0

    def on_open(self, info: Any) -> None:
        # No app until the client says CONNECT with a valid key.
        self.app = None
        self.address = getattr(info, "ip", None)
        # Every attribute a command sets, set here first: an instance whose
        # attributes come later than its class's first instance's grows a
        # dict of its own (272 B on Python 3.11) instead of its inline values.
        self.userid = None
        self._bucket_full_at = self._items_full_at = 0

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
        """Queue one delivery; ``element`` is already JSON, encoded once.

        Past the unsent cap the connection is let go at once (``closed``) and
        nothing more is queued for it.
        """
        session = self.session
        if self.closed or session.is_closed:
            return
        handler = session.handler
        if isinstance(handler, WebSocket):
            self._headroom -= len(element)
            if self._headroom < 0 and not self._has_room(handler, len(element)):
                return
        session.send_element(element)

    def _has_room(self, handler: WebSocket, size: int) -> bool:
        """Whether ``size`` more bytes keep the websocket within the unsent cap; if
        not, it is closed as too slow, as when its transport says so itself."""
        limit = handler.service.settings.max_unsent_bytes
        unsent = handler.unsent_bytes + size
        if unsent <= limit:
            self._headroom = limit - unsent
            return True
        self.closed = True
        # The transport's own too-slow path: one line logged, the socket
        # aborted (what it holds freed), the session closed with 9011.
        handler.pause_writing()
        return False

    def close(self, code: int = 3000, message: str = "Go away!") -> None:
        self.closed = True
        self.session.close(code, message)


def connection_class(apps: Apps, limits: Limits) -> type[ThunderConnection]:
    """The connection class of a server serving ``apps`` (sockjs-tornado takes a class)."""
    served = {"apps": apps, "limits": limits, "refusals": Throttle()}
    return type("ThunderConnection", (ThunderConnection,), served)
