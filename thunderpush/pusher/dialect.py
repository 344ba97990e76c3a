"""The Pusher dialect: how the hub's deliveries reach a Pusher client.

A ``PusherConnection`` carries ``PUSHER`` as its ``dialect``
(``thunderpush.core.dialect``), and its socket id as its ``id``, which a
publish's ``skip`` names.  A publish is an event named as the publisher said
(``message`` by default), with the sender's user id in a presence channel;
a message to a user is the default event on the user's ``#server-to-user-``
channel, as pusher-js expects; presence members carry their ``user_info``.
Pusher clients get other clients' messages (client events); Thunderpush's do
not.
"""

from __future__ import annotations

from typing import Any

from thunderpush.core.broker import PublishOptions
from thunderpush.core.dialect import MemberList
from thunderpush.pusher import protocol


class PusherDialect:
    """Frames for pusher-js and the other Pusher Channels clients."""

    member_infos = True

    def publication(
        self, channel: str, text: str, position: tuple[str, int] | None, options: PublishOptions
    ) -> str | None:
        name = options.event or protocol.DEFAULT_EVENT
        return protocol.event(name, channel, text, options.sender)

    def user_delivery(self, userid: str, text: str) -> str:
        channel = protocol.USER_CHANNEL_PREFIX + userid
        return protocol.event(protocol.DEFAULT_EVENT, channel, text)

    def member_added(self, channel: str, userid: str, info: Any) -> str:
        return protocol.member_added(channel, userid, info)

    def member_removed(self, channel: str, userid: str) -> str:
        return protocol.member_removed(channel, userid)

    def welcome(self, channel: str, members: MemberList) -> str:
        return protocol.presence_succeeded(channel, members)

    def refusal(self, channel: str, message: str) -> str:
        # 403: pusher-js shows a full presence channel as forbidden.
        return protocol.subscription_error(channel, message, 403)

    def subscription_count(self, channel: str, count: int) -> str | None:
        return protocol.subscription_count(channel, count)


PUSHER = PusherDialect()
