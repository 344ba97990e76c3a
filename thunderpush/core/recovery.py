"""A subscriber that comes back is sent what it missed of a channel: its recovery.

``Hub`` (``thunderpush.core.hub``) gets these methods from ``Recovery``; they
are apart from the hub's fan-out because a recovery reads a stream rather
than delivers a publish, and may be answered later: a cluster node's listener
(``thunderpush.cluster.hub``) reads the stream from Redis (``recovered``), and
the hub holds the channel's deliveries to the connection meanwhile
(``thunderpush.core.gates``).  On one process the hub reads its own
``streams`` (``thunderpush.core.streams``) at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from thunderpush.core.protocol import encode_delivery, recovered
from thunderpush.core.streams import NO_STREAM, Stream, Streams

if TYPE_CHECKING:
    from thunderpush.core.gates import Gates
    from thunderpush.core.hub import Connection
    from thunderpush.core.listener import HubListener
    from thunderpush.core.retention import Keep


class Recovery:
    """The recovery half of a hub: what a returning subscriber missed, then ``recovered``."""

    gates: Gates
    listener: HubListener
    streams: Streams
    # The hub's delivery, for the deliveries held meanwhile.
    _deliver: Callable[[Iterable[Connection], str], int]

    def recover(
        self, connection: Connection, channel: str, since: tuple[str, int], keep: Keep | None
    ) -> None:
        """Sends ``connection``, now in ``channel``, what it missed after ``since``
        (epoch, offset), then a ``recovered`` event that says whether that was all.

        The listener may read the stream instead (a cluster's): the channel's
        deliveries to ``connection`` are held until ``recovered``.
        """
        gates = self.gates
        if gates.recovering(connection, channel):
            return  # the read under way answers this one too
        gates.reread(connection, channel)
        if keep is not None and self.listener.stream_wanted(connection, channel, since, keep):
            gates.hold(connection, channel, since)
        else:
            self.send_recovery(connection, channel, since, self.streams.read(channel, keep))

    def recovered(self, connection: Connection, channel: str, stream: Stream | None) -> None:
        """The stream the listener read for ``connection``'s recovery (None: it could
        not), then the deliveries held meanwhile that come after it."""
        waiting = self.gates.release(connection, channel)
        if waiting is None:
            return
        since, held = waiting
        stream = stream or NO_STREAM
        self.send_recovery(connection, channel, since, stream)
        if stream.epoch:
            self.gates.sent(connection, channel, (stream.epoch, stream.offset))
        for position, element in held:
            if self.gates.fresh(connection, channel, position):
                self._deliver([connection], element)

    def send_recovery(
        self, connection: Connection, channel: str, since: tuple[str, int], stream: Stream
    ) -> None:
        """Sends ``connection`` the messages of ``stream`` after ``since``, if it still
        has them all, then the ``recovered`` event.

        Each message is built as it is queued and the connection's unsent cap is
        checked as it is: once the connection is ``closed`` (over the cap) nothing
        more is built, so a recovery costs at most the cap and one message.
        """
        epoch, offset = since
        complete = stream.recoverable(epoch, offset)
        if complete:
            for number, payload in stream.after(offset).messages:
                if getattr(connection, "closed", False):
                    return
                connection.send_delivery(encode_delivery(payload, channel, (epoch, number)))
        if getattr(connection, "closed", False):
            return
        connection.send_delivery(recovered(channel, complete, stream.epoch, stream.offset))
