"""basic.publish checks that are off the hot path: the refusals of a publish assembled frame
by frame, and RabbitMQ's publish-time checks of message properties.

The publish path itself (``Channel.publish_whole`` -> ``Channel._publish_message`` ->
``Channel._route``) stays on the channel: it runs per message, a few flat calls deep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqp_server.channel import direct_reply_to
from amqp_server.protocol.errors import NOT_IMPLEMENTED, PRECONDITION_FAILED, ChannelError, ConnectionError
from amqp_server.protocol.frame_codec import Publish, decode_content_header

if TYPE_CHECKING:
    from amqp_server.channel.channel import Channel
    from amqp_server.core.message import Message


def run_publish(channel: Channel, publish: Publish, header: bytes, body: bytes | None) -> None:
    """A publish assembled frame by frame, refused first as rabbit_channel refuses them
    (``Channel.publish_whole`` leaves such publishes to this path)."""
    if publish.immediate:
        raise ConnectionError(NOT_IMPLEMENTED, "immediate=true", (60, 40))
    if body is None:
        size = decode_content_header(header)[1]
        raise ChannelError(
            PRECONDITION_FAILED, f"message size {size} is larger than configured max size {channel.max_message_size}", (60, 40)
        )
    channel._publish_message(publish, header, body)


def check_properties(channel: Channel, message: Message) -> None:
    """RabbitMQ's checks of a published message's properties (only run when any is present)."""
    if message.header[12] & 0x02:  # reply_to present: amq.rabbitmq.reply-to is rewritten
        direct_reply_to.rewrite_reply_to(channel, message)
    if message.header[13] & 0x10:  # user_id property present: it must be the logged-in user
        user_id = message.user_id
        username = channel.connection.username
        if user_id is not None and user_id != username:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"user_id property set to '{user_id}' but authenticated user was '{username}'",
            )
    message.check()
